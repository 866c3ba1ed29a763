"""Model lifecycle: pure functions for metrics, tuning, drift and promotion decisions.

Nothing here imports pyspark: the jobs (train, evaluate, drift, feedback) bring
bounded numpy samples to these functions, and tests check them against
scikit-learn and scipy on the same arrays.
"""
