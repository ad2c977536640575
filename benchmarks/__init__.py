"""Benchmarks that print their figures and ratios against a baseline measured in the same run."""
