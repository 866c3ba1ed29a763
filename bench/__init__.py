"""LakeHound's benchmark suite: ``python -m bench.run [--smoke]`` (see bench/run.py)."""
