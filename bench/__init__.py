"""Benchmarks: ``bash bench/run`` (or ``python -m bench``). See bench/README.md."""
