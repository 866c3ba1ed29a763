"""Scoring engines that run outside Python workers (JVM-native)."""
