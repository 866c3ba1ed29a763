"""Feature engineering: point-in-time correct Spark features and the one feature registry."""
