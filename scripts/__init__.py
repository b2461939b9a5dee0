"""The project's scripts: the demo, the benchmark, the README settings table, the release check.

A package so that ``python -m scripts.bench`` from the repository's root finds the benchmark
here, before any other top-level ``scripts`` on the path.
"""
