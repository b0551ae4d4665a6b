"""Benchmarks: scripts that print figures and compare the pipeline against the bare computation in one run."""
