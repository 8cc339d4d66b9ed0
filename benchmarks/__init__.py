"""Benchmarks: the model zoo (``zoo``), its ONNX export, and comparisons with other tools."""
