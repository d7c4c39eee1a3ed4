"""nnfast benchmarks (pytest-benchmark); see README.md."""
