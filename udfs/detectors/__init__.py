"""The detector library: pure numpy / scikit-learn classes, no pyspark import.

Every detector follows one contract (see :class:`udfs.detectors.base.Detector`)
and registers itself by name, so config says ``name: isolation_forest`` and the
Spark glue never needs to know which algorithm it is running.
"""

from udfs.detectors.registry import available, create, register

__all__ = ["available", "create", "register"]
