"""Benchmarks of the pipeline against the seed tutorial (see bench/run.py)."""
