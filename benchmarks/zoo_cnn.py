"""The zoo's image classifiers, written by hand: ResNet-50, DenseNet-121, GoogLeNet, SqueezeNet 1.1,
ShuffleNet V2, MobileNet V2 and AlexNet (see ``zoo`` for the registry).

ResNet, DenseNet, SqueezeNet, ShuffleNet and MobileNet follow torchvision layer by layer, so their
parameter counts equal torchvision's. GoogLeNet and AlexNet follow the original papers (and Caffe's
bvlc models): LRN, no BatchNorm, 5x5 convolutions in GoogLeNet's third branch, grouped convolutions
in AlexNet. Weights are random but keep the signal alive: BatchNorm nets get random affine
parameters and running stats calibrated on a random image (mean != 0, var != 1, so folding BN
changes numbers); nets without BN get He initialization so activations keep unit scale with depth.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SEED = 0
IMAGE_SIZE = 224

Built = tuple[nn.Module, tuple[Tensor, ...]]


# ---------------------------------------------------------------------------------------------
# Inputs and weight preparation
# ---------------------------------------------------------------------------------------------

def image_inputs(seed: int = SEED, image_size: int = IMAGE_SIZE) -> tuple[Tensor, ...]:
    """One standard-normal 1x3xSxS image."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(1, 3, image_size, image_size, generator=g),)


def _kaiming_init(module: nn.Module) -> None:
    """He-normal weights for conv/linear layers so deep ReLU nets without BN keep unit scale."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")


@torch.no_grad()
def _calibrate_batchnorm(module: nn.Module, inputs: Sequence[Tensor]) -> None:
    """Give every BatchNorm random affine parameters and running stats measured on ``inputs``.

    Stats measured on a real forward pass keep the network well conditioned in eval mode, yet are
    far from the trivial (mean 0, var 1) of a fresh layer, so folding BN into convolutions matters.
    """
    bns = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_(0.0, 0.2)
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: one batch sets the stats exactly
    module.train()
    module(*inputs)
    for bn in bns:
        bn.momentum = 0.1
    module.eval()


def _finish(model: nn.Module, size: int, *, batchnorm: bool) -> Built:
    """Prepare the weights (see the module docstring); the model in eval mode and its input."""
    inputs = image_inputs(SEED, size)
    if batchnorm:
        _calibrate_batchnorm(model, inputs)
    else:
        _kaiming_init(model)
    return model.eval(), inputs


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------

class ImageClassifier(nn.Module):
    """Base of the CNNs: one NCHW image in, 1000 logits out (names used by the ONNX export)."""

    input_names = ("image",)
    output_names = ("logits",)


def conv_bn(
    cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
    act: type[nn.Module] | None = nn.ReLU,
) -> nn.Sequential:
    """Convolution without bias ("same" padding), BatchNorm, then ``act`` unless None."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)


class ConvReLU(nn.Sequential):
    """Convolution with bias, then ReLU (no BatchNorm: the 2012-2016 nets predate or skip it)."""

    def __init__(
        self, cin: int, cout: int, k: int, stride: int = 1, padding: int | None = None,
        groups: int = 1,
    ) -> None:
        pad = k // 2 if padding is None else padding
        super().__init__(nn.Conv2d(cin, cout, k, stride, pad, groups=groups), nn.ReLU(inplace=True))


class _LRNFunction(torch.autograd.Function):
    """Local response normalization that exports as one ONNX ``LRN`` node.

    ``F.local_response_norm`` is written in Python (pad, pow, avg_pool3d, …), so tracing it gives
    a dozen primitive nodes; ONNX exports of the original networks (the ONNX model zoo's AlexNet
    and GoogLeNet) carry a single LRN, and that is the graph an optimizer meets in practice.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, size: int, alpha: float, beta: float, k: float) -> Tensor:
        return F.local_response_norm(x, size, alpha, beta, k)

    @staticmethod
    def symbolic(g: Any, x: Any, size: int, alpha: float, beta: float, k: float) -> Any:
        # Same formula as torch: x / (k + alpha / size * sum of squares over the window) ** beta
        return g.op("LRN", x, size_i=size, alpha_f=alpha, beta_f=beta, bias_f=k)


class LRN(nn.Module):
    """Cross-channel local response normalization (Krizhevsky et al. 2012)."""

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: Tensor) -> Tensor:
        if torch.onnx.is_in_onnx_export():
            return _LRNFunction.apply(x, self.size, self.alpha, self.beta, self.k)
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)


def _global_pool(x: Tensor) -> Tensor:
    return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


# ---------------------------------------------------------------------------------------------
# ResNet-50 (He et al. 2016; torchvision's v1.5: stride on the 3x3 convolution)
# ---------------------------------------------------------------------------------------------

class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand x4, plus the shortcut."""

    def __init__(self, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        cout = planes * 4
        self.body = nn.Sequential(conv_bn(cin, planes, 1), conv_bn(planes, planes, 3, stride),
                                  conv_bn(planes, cout, 1, act=None))
        self.down: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.down = conv_bn(cin, cout, 1, stride, act=None)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + self.down(x))


class ResNet50(ImageClassifier):
    """ResNet-50: stem, four stages of bottlenecks (3, 4, 6, 3), global pool, FC."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1))
        blocks: list[nn.Module] = []
        cin = 64
        for planes, n, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
            for i in range(n):
                blocks.append(Bottleneck(cin, planes, stride if i == 0 else 1))
                cin = planes * 4
        self.stages = nn.Sequential(*blocks)
        self.fc = nn.Linear(2048, 1000)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(_global_pool(self.stages(self.stem(x))))


def resnet50(image_size: int = IMAGE_SIZE) -> Built:
    """ResNet-50 (torchvision v1.5 layout), BatchNorm with calibrated stats; 25.6M params."""
    torch.manual_seed(SEED)
    return _finish(ResNet50(), image_size, batchnorm=True)


# ---------------------------------------------------------------------------------------------
# DenseNet-121 (Huang et al. 2017; growth 32, blocks 6-12-24-16, bottleneck 4x, compression 0.5)
# ---------------------------------------------------------------------------------------------

def _bn_relu_conv(cin: int, cout: int, k: int) -> list[nn.Module]:
    """DenseNet's pre-activation order: BatchNorm and ReLU *before* the convolution."""
    return [nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
            nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)]


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv (4k) - BN-ReLU-3x3 conv (k) on the concatenation of all earlier features."""

    def __init__(self, cin: int, growth: int = 32, bn_size: int = 4) -> None:
        super().__init__()
        self.body = nn.Sequential(*_bn_relu_conv(cin, bn_size * growth, 1),
                                  *_bn_relu_conv(bn_size * growth, growth, 3))

    def forward(self, features: list[Tensor]) -> Tensor:
        return self.body(torch.cat(features, 1))


class DenseBlock(nn.Module):
    """Dense connectivity: every layer sees every earlier output (concatenated anew per layer)."""

    def __init__(self, cin: int, n: int, growth: int = 32) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DenseLayer(cin + i * growth, growth) for i in range(n))

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(features))
        return torch.cat(features, 1)


class DenseNet121(ImageClassifier):
    """DenseNet-121: stem, four dense blocks joined by BN-ReLU-1x1-avgpool transitions, BN, FC."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                                   nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
        c = 64
        for i, n in enumerate((6, 12, 24, 16)):
            layers.append(DenseBlock(c, n))
            c += n * 32
            if i < 3:
                layers += [*_bn_relu_conv(c, c // 2, 1), nn.AvgPool2d(2, 2)]
                c //= 2
        layers.append(nn.BatchNorm2d(c))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, 1000)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(_global_pool(F.relu(self.features(x))))


def densenet121(image_size: int = IMAGE_SIZE) -> Built:
    """DenseNet-121 (torchvision layout), BatchNorm with calibrated stats; 8.0M params."""
    torch.manual_seed(SEED)
    return _finish(DenseNet121(), image_size, batchnorm=True)


# ---------------------------------------------------------------------------------------------
# GoogLeNet / Inception v1 (Szegedy et al. 2015), as in the paper and Caffe's bvlc_googlenet
# ---------------------------------------------------------------------------------------------

class Inception(nn.Module):
    """Four parallel branches (1x1; 1x1-3x3; 1x1-5x5; 3x3 maxpool-1x1) concatenated."""

    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool: int):
        super().__init__()
        self.b1 = ConvReLU(cin, c1, 1)
        self.b2 = nn.Sequential(ConvReLU(cin, c3r, 1), ConvReLU(c3r, c3, 3))
        self.b3 = nn.Sequential(ConvReLU(cin, c5r, 1), ConvReLU(c5r, c5, 5))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), ConvReLU(cin, pool, 1))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


# (in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj) per module, from the paper's Table 1
_INCEPTION_3 = [(192, 64, 96, 128, 16, 32, 32), (256, 128, 128, 192, 32, 96, 64)]
_INCEPTION_4 = [(480, 192, 96, 208, 16, 48, 64), (512, 160, 112, 224, 24, 64, 64),
                (512, 128, 128, 256, 24, 64, 64), (512, 112, 144, 288, 32, 64, 64),
                (528, 256, 160, 320, 32, 128, 128)]
_INCEPTION_5 = [(832, 256, 160, 320, 32, 128, 128), (832, 384, 192, 384, 48, 128, 128)]


class InceptionV1(ImageClassifier):
    """GoogLeNet without the auxiliary heads: stem with LRN, nine inception modules, pool, FC."""

    def __init__(self) -> None:
        super().__init__()

        def pool() -> nn.Module:
            return nn.MaxPool2d(3, 2, ceil_mode=True)  # Caffe rounds pooled sizes up

        def stage(configs: list[tuple[int, ...]]) -> list[nn.Module]:
            return [Inception(*c) for c in configs]

        self.features = nn.Sequential(
            ConvReLU(3, 64, 7, 2), pool(), LRN(5, 1e-4, 0.75, 1.0),
            ConvReLU(64, 64, 1), ConvReLU(64, 192, 3), LRN(5, 1e-4, 0.75, 1.0), pool(),
            *stage(_INCEPTION_3), pool(), *stage(_INCEPTION_4), pool(), *stage(_INCEPTION_5))
        self.dropout = nn.Dropout(0.4)
        self.fc = nn.Linear(1024, 1000)

    def forward(self, x: Tensor) -> Tensor:
        # A global average pool: the paper's 7x7 pool at 224x224, and smaller inputs still work
        return self.fc(self.dropout(_global_pool(self.features(x))))


def inception_v1(image_size: int = IMAGE_SIZE) -> Built:
    """GoogLeNet (Inception v1) as published: LRN, 5x5 branch, no BN, no aux head; 7.0M params."""
    torch.manual_seed(SEED)
    return _finish(InceptionV1(), image_size, batchnorm=False)


# ---------------------------------------------------------------------------------------------
# SqueezeNet 1.1 (Iandola et al. 2016; the 1.1 variant from the SqueezeNet repository)
# ---------------------------------------------------------------------------------------------

class Fire(nn.Module):
    """Squeeze 1x1, then expand with parallel 1x1 and 3x3 convolutions, concatenated."""

    def __init__(self, cin: int, squeeze: int, e1: int, e3: int) -> None:
        super().__init__()
        self.squeeze = ConvReLU(cin, squeeze, 1)
        self.e1 = ConvReLU(squeeze, e1, 1)
        self.e3 = ConvReLU(squeeze, e3, 3)

    def forward(self, x: Tensor) -> Tensor:
        x = self.squeeze(x)
        return torch.cat([self.e1(x), self.e3(x)], 1)


class SqueezeNet11(ImageClassifier):
    """SqueezeNet 1.1: 3x3 stem, eight fire modules, 1x1 conv classifier, global average pool."""

    def __init__(self) -> None:
        super().__init__()

        def pool() -> nn.Module:
            return nn.MaxPool2d(3, 2, ceil_mode=True)

        self.features = nn.Sequential(
            ConvReLU(3, 64, 3, 2, padding=0), pool(),
            Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), pool(),
            Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), pool(),
            Fire(256, 48, 192, 192), Fire(384, 48, 192, 192),
            Fire(384, 64, 256, 256), Fire(512, 64, 256, 256))
        self.classifier = nn.Sequential(nn.Dropout(0.5), ConvReLU(512, 1000, 1))

    def forward(self, x: Tensor) -> Tensor:
        return _global_pool(self.classifier(self.features(x)))


def squeezenet1_1(image_size: int = IMAGE_SIZE) -> Built:
    """SqueezeNet 1.1 (torchvision layout); 1.24M params."""
    torch.manual_seed(SEED)
    return _finish(SqueezeNet11(), image_size, batchnorm=False)


# ---------------------------------------------------------------------------------------------
# ShuffleNet V2 1.0x (Ma et al. 2018)
# ---------------------------------------------------------------------------------------------

def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Interleave channel groups with view/transpose/view, as the paper and torchvision do."""
    b, c, h, w = x.shape
    x = x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous()
    return x.view(b, -1, h, w)


class ShuffleUnit(nn.Module):
    """Split channels (stride 1) or use the whole input twice (stride 2); concat; shuffle."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        half = cout // 2
        if stride > 1:
            self.branch1 = nn.Sequential(conv_bn(cin, cin, 3, stride, groups=cin, act=None),
                                         conv_bn(cin, half, 1))
        self.branch2 = nn.Sequential(
            conv_bn(cin if stride > 1 else half, half, 1),
            conv_bn(half, half, 3, stride, groups=half, act=None), conv_bn(half, half, 1))

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat([x1, self.branch2(x2)], 1)
        else:
            out = torch.cat([self.branch1(x), self.branch2(x)], 1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(ImageClassifier):
    """ShuffleNet V2 1.0x: stem, 4/8/4 shuffle units (116/232/464 ch), 1x1 conv to 1024, FC."""

    def __init__(self) -> None:
        super().__init__()
        units: list[nn.Module] = [conv_bn(3, 24, 3, 2), nn.MaxPool2d(3, 2, 1)]
        cin = 24
        for repeats, cout in [(4, 116), (8, 232), (4, 464)]:
            units.append(ShuffleUnit(cin, cout, 2))
            units += [ShuffleUnit(cout, cout, 1) for _ in range(repeats - 1)]
            cin = cout
        units.append(conv_bn(cin, 1024, 1))
        self.features = nn.Sequential(*units)
        self.fc = nn.Linear(1024, 1000)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x).mean([2, 3]))  # torchvision pools with a mean over H, W


def shufflenet_v2(image_size: int = IMAGE_SIZE) -> Built:
    """ShuffleNet V2 1.0x (torchvision layout), BatchNorm with calibrated stats; 2.28M params."""
    torch.manual_seed(SEED)
    return _finish(ShuffleNetV2(), image_size, batchnorm=True)


# ---------------------------------------------------------------------------------------------
# MobileNet V2 (Sandler et al. 2018)
# ---------------------------------------------------------------------------------------------

class InvertedResidual(nn.Module):
    """1x1 expand (ReLU6), 3x3 depthwise (ReLU6), 1x1 linear projection; shortcut if same shape."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers = [] if expand == 1 else [conv_bn(cin, hidden, 1, act=nn.ReLU6)]
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
                   conv_bn(hidden, cout, 1, act=None)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x) if self.residual else self.body(x)


# (expansion t, channels c, repeats n, first stride s) per stage, from the paper's Table 2
_MOBILENET_V2_STAGES = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                        (6, 160, 3, 2), (6, 320, 1, 1)]


class MobileNetV2(ImageClassifier):
    """MobileNet V2 1.0: stem, 17 inverted residual blocks, 1x1 conv to 1280, FC."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(3, 32, 3, 2, act=nn.ReLU6)]
        cin = 32
        for t, c, n, s in _MOBILENET_V2_STAGES:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(conv_bn(cin, 1280, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(_global_pool(self.features(x)))


def mobilenet_v2(image_size: int = IMAGE_SIZE) -> Built:
    """MobileNet V2 1.0 (torchvision layout), BatchNorm with calibrated stats; 3.5M params."""
    torch.manual_seed(SEED)
    return _finish(MobileNetV2(), image_size, batchnorm=True)


# ---------------------------------------------------------------------------------------------
# AlexNet (Krizhevsky et al. 2012), as in the paper and Caffe's bvlc_alexnet
# ---------------------------------------------------------------------------------------------

class AlexNet(ImageClassifier):
    """AlexNet with the paper's 96-256-384-384-256 channels, LRN and two-GPU grouped convs."""

    def __init__(self) -> None:
        super().__init__()
        # Padding 2 on conv1 gives the paper's 55x55 maps from 224x224 (Caffe feeds 227x227);
        # LRN uses the paper's k=2.
        self.features = nn.Sequential(
            ConvReLU(3, 96, 11, 4, padding=2), LRN(5, 1e-4, 0.75, 2.0), nn.MaxPool2d(3, 2),
            ConvReLU(96, 256, 5, groups=2), LRN(5, 1e-4, 0.75, 2.0), nn.MaxPool2d(3, 2),
            ConvReLU(256, 384, 3), ConvReLU(384, 384, 3, groups=2),
            ConvReLU(384, 256, 3, groups=2), nn.MaxPool2d(3, 2))
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Linear(4096, 1000))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def alexnet(image_size: int = IMAGE_SIZE) -> Built:
    """AlexNet as in the paper (LRN, grouped convs; 224x224 input only); 61.0M params."""
    torch.manual_seed(SEED)
    return _finish(AlexNet(), image_size, batchnorm=False)
