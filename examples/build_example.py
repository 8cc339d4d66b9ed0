"""Rebuild ``examples/tiny_resnet.onnx``, the bundled example that ``make run`` compiles.

A small ResNet-style CNN (conv-BN-ReLU stem, max pool, two residual stages, global average pool,
linear classifier) with seeded random weights, exported from PyTorch to ONNX (opset 17, IR version
10 so that onnxruntime reads it). Run: ``.venv/bin/python examples/build_example.py``.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

OUT = Path(__file__).with_name("tiny_resnet.onnx")


class Block(nn.Module):
    """Two 3x3 conv-BN layers with a (possibly strided, projected) residual connection."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.skip(x))


class TinyResNet(nn.Module):
    """A ResNet-style classifier for 3x64x64 images with 10 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        self.stages = nn.Sequential(Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2))
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stages(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


def make_model() -> TinyResNet:
    """The seeded model (the same weights every time)."""
    torch.manual_seed(0)
    model = TinyResNet().eval()
    for m in model.modules():  # non-trivial BN statistics, so BN folding has real work to do
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    return model


def build(path: Path = OUT) -> Path:
    """Export the seeded model to ``path``."""
    model = make_model()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, 3, 64, 64),), buf, dynamo=False, input_names=["image"],
                          output_names=["logits"], dynamic_axes={"image": {0: "B"}, "logits": {0: "B"}},
                          opset_version=17, do_constant_folding=False)
    proto = onnx.load_from_string(buf.getvalue())
    proto.ir_version = 10
    onnx.save(proto, str(path))
    return path


if __name__ == "__main__":
    print(f"wrote {build()}")
