"""LakeHound core: the small shared package every job, UDF and test builds on.

Session builder, typed config, table I/O, the error hierarchy and the JVM jar lock
live here; detectors live in ``udfs`` and data contracts in ``schemas``.
"""

__version__ = "0.1.0"
