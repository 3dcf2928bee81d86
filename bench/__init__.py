"""Benchmarks: speed, memory and accuracy measurements; each module runs with `python -m bench.<name>`."""
