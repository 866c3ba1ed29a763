"""The real-time scoring endpoint (jobs/serve.py): raw events in, severities out.

``events`` checks one event with the contract rules of ``validate``; ``online``
keeps the per-entity state the transaction features need; ``wal`` makes accepted
events durable before the answer; ``service`` ties them to the scoring core;
``app`` is the HTTP layer (SageMaker inference container contract).
"""
