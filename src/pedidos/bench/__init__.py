"""Benchmarks behind `pedidos bench` and `make bench`: the matrix, reads at scale, the soak."""
