"""Spark-native, seed-deterministic generators of labelled synthetic data."""
