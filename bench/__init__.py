"""Benchmarks for issue 5 (performance); each module runs with `python -m bench.<name>`."""
