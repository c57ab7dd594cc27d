"""Benchmarks: workbench against its peers, run with ``python -m benchmarks.run`` (results in RESULTS.md)."""
