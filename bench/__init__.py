"""Benchmarks: standalone scripts (python bench/NAME.py) that print JSON with an in-run baseline."""
