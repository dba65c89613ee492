"""Throughput benchmarks (see bench/README.md); a package so the scripts and tests import its shared modules."""
