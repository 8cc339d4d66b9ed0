"""Benchmarks: the model zoo (``zoo``), its ONNX export, and comparisons against other optimizers."""
