"""Benchmark harness: datasets, metrics, bootstrap, runs and reports."""
