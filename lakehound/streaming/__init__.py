"""Live scoring: Structured Streaming from Kafka or a landing folder into Delta.

``sources`` reads raw payloads, ``process`` turns one micro-batch into quarantine,
scores and alerts with the batch contract, features and detectors, ``sinks`` MERGEs
them into Delta idempotently, ``delivery`` sends alerts to a webhook and a Kafka
topic, ``state`` is the event-time windowed per-entity aggregate, ``progress``
reports what the queries do.
"""
