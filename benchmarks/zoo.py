"""A model zoo for benchmarks: full-size classic architectures written by hand with seeded weights.

    from graphopt.benchmarks.zoo import build, MODELS
    module, inputs = build("resnet50")              # batch 1, 1x3x224x224
    module, inputs = build("bert_base", layers=2, seq=16)

    python -m graphopt.benchmarks.zoo list
    python -m graphopt.benchmarks.zoo describe resnet50 mobilenet_v2
    python -m graphopt.benchmarks.zoo export resnet50 bert_base --out DIR

The architectures follow torchvision and Hugging Face layer by layer (so parameter counts match
theirs), except GoogLeNet and AlexNet, which follow the original papers (LRN, no BatchNorm, 5x5
convolutions in GoogLeNet's third branch, grouped convolutions in AlexNet). torchvision is not
needed. Weights are random but chosen so that the networks compute something non-trivial: BatchNorm
running statistics are calibrated on a random batch (mean != 0, var != 1, so BN folding changes
numbers), BN/LayerNorm affine parameters are randomized, and plain ReLU nets get variance-preserving
initialization so activations neither vanish nor explode across depth.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SEED = 0
IMAGE_SIZE = 224
SEQ_LEN = 128

Built = tuple[nn.Module, tuple[Tensor, ...]]


# ---------------------------------------------------------------------------------------------
# Weight preparation shared by the CNNs
# ---------------------------------------------------------------------------------------------

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


def image_inputs(seed: int = SEED, image_size: int = IMAGE_SIZE) -> tuple[Tensor, ...]:
    """One standard-normal 1x3xSxS image."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(1, 3, image_size, image_size, generator=g),)


def _finish_cnn(model: nn.Module, size: int, *, batchnorm: bool) -> Built:
    """Prepare weights (see module docstring) and return the model in eval mode with its input."""
    inputs = image_inputs(SEED, size)
    if batchnorm:
        _calibrate_batchnorm(model, inputs)
    else:
        _kaiming_init(model)
    return model.eval(), inputs


class ImageClassifier(nn.Module):
    """Base of the CNNs: one NCHW image in, 1000 logits out (names used by the ONNX export)."""

    input_names = ("image",)
    output_names = ("logits",)


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: type[nn.Module] | None = nn.ReLU
             ) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)


# ---------------------------------------------------------------------------------------------
# ResNet-50 (He et al. 2016; torchvision's v1.5: stride on the 3x3 convolution)
# ---------------------------------------------------------------------------------------------

class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand x4, plus the shortcut."""

    def __init__(self, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        cout = planes * 4
        self.body = nn.Sequential(
            _conv_bn(cin, planes, 1), _conv_bn(planes, planes, 3, stride), _conv_bn(planes, cout, 1, act=None))
        self.down = _conv_bn(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + self.down(x))


class ResNet50(ImageClassifier):
    """ResNet-50: stem, four stages of bottlenecks (3, 4, 6, 3), global pool, FC."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(_conv_bn(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1))
        blocks: list[nn.Module] = []
        cin = 64
        for planes, n, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
            for i in range(n):
                blocks.append(Bottleneck(cin, planes, stride if i == 0 else 1))
                cin = planes * 4
        self.stages = nn.Sequential(*blocks)
        self.fc = nn.Linear(2048, 1000)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def resnet50(image_size: int = IMAGE_SIZE) -> Built:
    """ResNet-50 (torchvision v1.5 layout), BatchNorm with calibrated stats; 25.6M params."""
    torch.manual_seed(SEED)
    return _finish_cnn(ResNet50(), image_size, batchnorm=True)


# ---------------------------------------------------------------------------------------------
# DenseNet-121 (Huang et al. 2017; growth 32, blocks 6-12-24-16, bottleneck 4x, compression 0.5)
# ---------------------------------------------------------------------------------------------

class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv (4k) - BN-ReLU-3x3 conv (k) on the concatenation of all earlier features."""

    def __init__(self, cin: int, growth: int = 32, bn_size: int = 4) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, bn_size * growth, 1, bias=False),
            nn.BatchNorm2d(bn_size * growth), nn.ReLU(inplace=True),
            nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False))

    def forward(self, features: list[Tensor]) -> Tensor:
        return self.body(torch.cat(features, 1))


class DenseBlock(nn.Module):
    """Dense connectivity: every layer sees every earlier output (torchvision concatenates per layer)."""

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
        layers: list[nn.Module] = [
            nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
        c = 64
        for i, n in enumerate((6, 12, 24, 16)):
            layers.append(DenseBlock(c, n))
            c += n * 32
            if i < 3:
                layers += [nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2, 2)]
                c //= 2
        layers.append(nn.BatchNorm2d(c))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, 1000)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.features(x))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def densenet121(image_size: int = IMAGE_SIZE) -> Built:
    """DenseNet-121 (torchvision layout), BatchNorm with calibrated stats; 8.0M params."""
    torch.manual_seed(SEED)
    return _finish_cnn(DenseNet121(), image_size, batchnorm=True)


# ---------------------------------------------------------------------------------------------
# GoogLeNet / Inception v1 (Szegedy et al. 2015), as in the paper and Caffe's bvlc_googlenet
# ---------------------------------------------------------------------------------------------

class ConvReLU(nn.Sequential):
    """Convolution with bias followed by ReLU (no BatchNorm: the 2014 networks predate it)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, padding: int | None = None, groups: int = 1):
        super().__init__(nn.Conv2d(cin, cout, k, stride, k // 2 if padding is None else padding, groups=groups),
                         nn.ReLU(inplace=True))


class Inception(nn.Module):
    """Four parallel branches (1x1; 1x1-3x3; 1x1-5x5; 3x3 maxpool-1x1) concatenated on channels."""

    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool: int) -> None:
        super().__init__()
        self.b1 = ConvReLU(cin, c1, 1)
        self.b2 = nn.Sequential(ConvReLU(cin, c3r, 1), ConvReLU(c3r, c3, 3))
        self.b3 = nn.Sequential(ConvReLU(cin, c5r, 1), ConvReLU(c5r, c5, 5))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), ConvReLU(cin, pool, 1))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


class InceptionV1(ImageClassifier):
    """GoogLeNet without the auxiliary heads: stem with LRN, nine inception modules, pool, FC."""

    def __init__(self) -> None:
        super().__init__()

        def pool() -> nn.Module:
            return nn.MaxPool2d(3, 2, ceil_mode=True)  # Caffe rounds pooled sizes up

        def lrn() -> nn.Module:
            return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)

        self.features = nn.Sequential(
            ConvReLU(3, 64, 7, 2), pool(), lrn(), ConvReLU(64, 64, 1), ConvReLU(64, 192, 3), lrn(), pool(),
            Inception(192, 64, 96, 128, 16, 32, 32), Inception(256, 128, 128, 192, 32, 96, 64), pool(),
            Inception(480, 192, 96, 208, 16, 48, 64), Inception(512, 160, 112, 224, 24, 64, 64),
            Inception(512, 128, 128, 256, 24, 64, 64), Inception(512, 112, 144, 288, 32, 64, 64),
            Inception(528, 256, 160, 320, 32, 128, 128), pool(),
            Inception(832, 256, 160, 320, 32, 128, 128), Inception(832, 384, 192, 384, 48, 128, 128))
        self.dropout = nn.Dropout(0.4)
        self.fc = nn.Linear(1024, 1000)

    def forward(self, x: Tensor) -> Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), 1)  # the paper's 7x7 average pool at 224x224
        return self.fc(self.dropout(torch.flatten(x, 1)))


def inception_v1(image_size: int = IMAGE_SIZE) -> Built:
    """GoogLeNet / Inception v1 as in the paper (LRN, 5x5 branch, no BN, no aux heads); 7.0M params."""
    torch.manual_seed(SEED)
    return _finish_cnn(InceptionV1(), image_size, batchnorm=False)


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
            ConvReLU(3, 64, 3, 2, padding=0), pool(), Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), pool(),
            Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), pool(), Fire(256, 48, 192, 192),
            Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), Fire(512, 64, 256, 256))
        self.classifier = nn.Sequential(nn.Dropout(0.5), ConvReLU(512, 1000, 1))

    def forward(self, x: Tensor) -> Tensor:
        x = self.classifier(self.features(x))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


def squeezenet1_1(image_size: int = IMAGE_SIZE) -> Built:
    """SqueezeNet 1.1 (torchvision layout); 1.24M params."""
    torch.manual_seed(SEED)
    return _finish_cnn(SqueezeNet11(), image_size, batchnorm=False)


# ---------------------------------------------------------------------------------------------
# ShuffleNet V2 1.0x (Ma et al. 2018)
# ---------------------------------------------------------------------------------------------

def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Interleave channel groups with view/transpose/view, as the paper and torchvision do."""
    b, c, h, w = x.shape
    x = x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous()
    return x.view(b, -1, h, w)


class ShuffleUnit(nn.Module):
    """Split channels (stride 1) or duplicate the input (stride 2), transform one half, concat, shuffle."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        half = cout // 2
        if stride > 1:
            self.branch1 = nn.Sequential(_conv_bn(cin, cin, 3, stride, groups=cin, act=None), _conv_bn(cin, half, 1))
        self.branch2 = nn.Sequential(
            _conv_bn(cin if stride > 1 else half, half, 1),
            _conv_bn(half, half, 3, stride, groups=half, act=None), _conv_bn(half, half, 1))

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat([x1, self.branch2(x2)], 1)
        else:
            out = torch.cat([self.branch1(x), self.branch2(x)], 1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(ImageClassifier):
    """ShuffleNet V2 1.0x: stem, stages of 4/8/4 shuffle units (116/232/464 ch), 1x1 to 1024, FC."""

    def __init__(self) -> None:
        super().__init__()
        units: list[nn.Module] = [_conv_bn(3, 24, 3, 2), nn.MaxPool2d(3, 2, 1)]
        cin = 24
        for repeats, cout in [(4, 116), (8, 232), (4, 464)]:
            units += [ShuffleUnit(cin if i == 0 else cout, cout, 2 if i == 0 else 1) for i in range(repeats)]
            cin = cout
        units.append(_conv_bn(cin, 1024, 1))
        self.features = nn.Sequential(*units)
        self.fc = nn.Linear(1024, 1000)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x).mean([2, 3]))  # torchvision pools with a mean over H, W


def shufflenet_v2(image_size: int = IMAGE_SIZE) -> Built:
    """ShuffleNet V2 1.0x (torchvision layout), BatchNorm with calibrated stats; 2.28M params."""
    torch.manual_seed(SEED)
    return _finish_cnn(ShuffleNetV2(), image_size, batchnorm=True)


# ---------------------------------------------------------------------------------------------
# MobileNet V2 (Sandler et al. 2018)
# ---------------------------------------------------------------------------------------------

class InvertedResidual(nn.Module):
    """1x1 expand (ReLU6), 3x3 depthwise (ReLU6), 1x1 linear projection; shortcut when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = [] if expand == 1 else [_conv_bn(cin, hidden, 1, act=nn.ReLU6)]
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6), _conv_bn(hidden, cout, 1, act=None)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(ImageClassifier):
    """MobileNet V2 1.0: stem, 17 inverted residual blocks, 1x1 to 1280, FC."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(3, 32, 3, 2, act=nn.ReLU6)]
        cin = 32
        for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                           (6, 160, 3, 2), (6, 320, 1, 1)]:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(_conv_bn(cin, 1280, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


def mobilenet_v2(image_size: int = IMAGE_SIZE) -> Built:
    """MobileNet V2 1.0 (torchvision layout), BatchNorm with calibrated stats; 3.5M params."""
    torch.manual_seed(SEED)
    return _finish_cnn(MobileNetV2(), image_size, batchnorm=True)


# ---------------------------------------------------------------------------------------------
# AlexNet (Krizhevsky et al. 2012), as in the paper and Caffe's bvlc_alexnet
# ---------------------------------------------------------------------------------------------

class AlexNet(ImageClassifier):
    """AlexNet with the paper's 96-256-384-384-256 channels, LRN and two-GPU grouped convolutions."""

    def __init__(self) -> None:
        super().__init__()

        def lrn() -> nn.Module:
            return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)  # k=2 as in the paper

        # Padding 2 on conv1 gives the paper's 55x55 maps from a 224x224 input (Caffe feeds 227x227).
        self.features = nn.Sequential(
            ConvReLU(3, 96, 11, 4, padding=2), lrn(), nn.MaxPool2d(3, 2),
            ConvReLU(96, 256, 5, groups=2), lrn(), nn.MaxPool2d(3, 2),
            ConvReLU(256, 384, 3), ConvReLU(384, 384, 3, groups=2), ConvReLU(384, 256, 3, groups=2),
            nn.MaxPool2d(3, 2))
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Linear(4096, 1000))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def alexnet(image_size: int = IMAGE_SIZE) -> Built:
    """AlexNet as in the paper (LRN, grouped convs; fixed 224x224 input: no adaptive pool); 61.0M params."""
    torch.manual_seed(SEED)
    return _finish_cnn(AlexNet(), image_size, batchnorm=False)


# ---------------------------------------------------------------------------------------------
# Transformers: BERT-base (Devlin et al. 2019) and GPT-2 small (Radford et al. 2019)
# ---------------------------------------------------------------------------------------------

def _randomize_layernorms(module: nn.Module) -> None:
    """Non-identity LayerNorm affine parameters, so a pass cannot get away with dropping them."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.8, 1.2)
                m.bias.normal_(0.0, 0.05)


def _split_heads(x: Tensor, heads: int) -> Tensor:
    b, t, d = x.shape
    return x.view(b, t, heads, d // heads).transpose(1, 2)  # (b, heads, t, head_dim)


def _merge_heads(x: Tensor) -> Tensor:
    b, h, t, d = x.shape
    return x.transpose(1, 2).contiguous().view(b, t, h * d)


class BertLayer(nn.Module):
    """Post-LN encoder layer: self-attention with additive mask, residual+LN, GELU FFN, residual+LN."""

    def __init__(self, d: int = 768, heads: int = 12, ffn: int = 3072, eps: float = 1e-12) -> None:
        super().__init__()
        self.heads = heads
        self.sqrt_dk = math.sqrt(d // heads)  # a Python float: a constant in the exported graph
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.attn_out = nn.Linear(d, d)
        self.attn_norm = nn.LayerNorm(d, eps=eps)
        self.ffn_in = nn.Linear(d, ffn)
        self.ffn_out = nn.Linear(ffn, d)
        self.ffn_norm = nn.LayerNorm(d, eps=eps)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        q, k, v = (_split_heads(f(x), self.heads) for f in (self.query, self.key, self.value))
        scores = torch.matmul(q, k.transpose(-1, -2)) / self.sqrt_dk + mask
        probs = self.dropout(torch.softmax(scores, dim=-1))
        attn = self.attn_out(_merge_heads(torch.matmul(probs, v)))
        x = self.attn_norm(x + self.dropout(attn))
        h = self.ffn_out(F.gelu(self.ffn_in(x)))  # exact (erf) GELU, as BERT uses
        return self.ffn_norm(x + self.dropout(h))


class BertBase(nn.Module):
    """BERT encoder with embeddings (token + position + segment, LN) and the tanh pooler on [CLS]."""

    input_names = ("input_ids", "token_type_ids", "attention_mask")
    output_names = ("last_hidden_state", "pooler_output")

    def __init__(self, layers: int = 12, vocab: int = 30522, d: int = 768, max_pos: int = 512) -> None:
        super().__init__()
        self.word = nn.Embedding(vocab, d)
        self.position = nn.Embedding(max_pos, d)
        self.segment = nn.Embedding(2, d)
        self.embed_norm = nn.LayerNorm(d, eps=1e-12)
        self.dropout = nn.Dropout(0.1)
        self.layers = nn.ModuleList(BertLayer(d) for _ in range(layers))
        self.pooler = nn.Linear(d, d)
        self.register_buffer("position_ids", torch.arange(max_pos).unsqueeze(0), persistent=False)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        pos = self.position_ids[:, : input_ids.shape[1]]
        x = self.word(input_ids) + self.position(pos) + self.segment(token_type_ids)
        x = self.dropout(self.embed_norm(x))
        # (b, 1, 1, t) additive mask: 0 where attended, -10000 on padding (the original BERT constant)
        mask = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        for layer in self.layers:
            x = layer(x, mask)
        return x, torch.tanh(self.pooler(x[:, 0]))


def bert_base(layers: int = 12, seq: int = SEQ_LEN) -> Built:
    """BERT-base uncased (12 layers, d=768, 12 heads, FFN 3072, GELU); inputs ids, segments, mask; 109.5M params."""
    torch.manual_seed(SEED)
    model = BertBase(layers)
    _randomize_layernorms(model)
    return model.eval(), bert_inputs(SEED, seq)


def bert_inputs(seed: int = SEED, seq: int = SEQ_LEN) -> tuple[Tensor, ...]:
    """Token ids, segment ids (sentence A then B) and a padding mask, as a tokenizer would give.

    The seed that builds the model gives an even split and the last eighth padded; other seeds
    draw the split and the padding length.
    """
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 30522, (1, seq), generator=g)
    split, used = seq // 2, seq - seq // 8
    if seed != SEED:
        split = int(torch.randint(1, seq, (1,), generator=g))
        used = int(torch.randint(1, seq + 1, (1,), generator=g))
    segments = (torch.arange(seq) >= split).long().unsqueeze(0)
    mask = (torch.arange(seq) < used).long().unsqueeze(0)
    return ids, segments, mask


def gelu_tanh(x: Tensor) -> Tensor:
    """GPT-2's GELU, written out with tanh as the original code (and HF's gelu_new) does."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class GPT2Block(nn.Module):
    """Pre-LN decoder block: LN, causal self-attention (fused QKV projection), residual, LN, MLP, residual."""

    def __init__(self, d: int = 768, heads: int = 12, max_pos: int = 1024) -> None:
        super().__init__()
        self.heads = heads
        self.sqrt_dk = math.sqrt(d // heads)
        self.ln_1 = nn.LayerNorm(d, eps=1e-5)
        self.c_attn = nn.Linear(d, 3 * d)
        self.attn_proj = nn.Linear(d, d)
        self.ln_2 = nn.LayerNorm(d, eps=1e-5)
        self.c_fc = nn.Linear(d, 4 * d)
        self.mlp_proj = nn.Linear(4 * d, d)
        self.dropout = nn.Dropout(0.1)
        self.register_buffer("causal", torch.tril(torch.ones(max_pos, max_pos, dtype=torch.bool)).view(
            1, 1, max_pos, max_pos), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        t = x.shape[1]
        q, k, v = (_split_heads(p, self.heads) for p in self.c_attn(self.ln_1(x)).split(x.shape[-1], dim=2))
        scores = torch.matmul(q, k.transpose(-1, -2)) / self.sqrt_dk
        # HF masks with the dtype's most negative finite value rather than -inf: no NaN rows ever
        scores = torch.where(self.causal[:, :, :t, :t], scores, torch.finfo(scores.dtype).min)
        probs = self.dropout(torch.softmax(scores, dim=-1))
        x = x + self.dropout(self.attn_proj(_merge_heads(torch.matmul(probs, v))))
        return x + self.dropout(self.mlp_proj(gelu_tanh(self.c_fc(self.ln_2(x)))))


class GPT2Small(nn.Module):
    """GPT-2 small: token + learned position embeddings, decoder blocks, final LN, tied LM head."""

    input_names = ("input_ids",)
    output_names = ("logits",)

    def __init__(self, layers: int = 12, vocab: int = 50257, d: int = 768, max_pos: int = 1024) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(max_pos, d)
        self.dropout = nn.Dropout(0.1)
        self.blocks = nn.ModuleList(GPT2Block(d, max_pos=max_pos) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d, eps=1e-5)
        self.register_buffer("position_ids", torch.arange(max_pos).unsqueeze(0), persistent=False)

    def forward(self, input_ids: Tensor) -> Tensor:
        x = self.dropout(self.wte(input_ids) + self.wpe(self.position_ids[:, : input_ids.shape[1]]))
        for block in self.blocks:
            x = block(x)
        return torch.matmul(self.ln_f(x), self.wte.weight.t())  # the LM head shares the embedding


def gpt2_small(layers: int = 12, seq: int = SEQ_LEN) -> Built:
    """GPT-2 small (12 blocks, d=768, 12 heads, GELU tanh, causal mask, tied head); ids in, logits out; 124.4M params."""
    torch.manual_seed(SEED)
    model = GPT2Small(layers)
    with torch.no_grad():
        model.wte.weight.normal_(0.0, 0.02)  # GPT-2's init: keeps the tied head's logits O(1)
    _randomize_layernorms(model)
    return model.eval(), gpt2_inputs(SEED, seq)


def gpt2_inputs(seed: int = SEED, seq: int = SEQ_LEN) -> tuple[Tensor, ...]:
    """Uniformly random token ids over GPT-2's vocabulary."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 50257, (1, seq), generator=g),)


# ---------------------------------------------------------------------------------------------
# Registry, description, command line
# ---------------------------------------------------------------------------------------------

MODELS: dict[str, Callable[..., Built]] = {
    "resnet50": resnet50,
    "densenet121": densenet121,
    "inception_v1": inception_v1,
    "squeezenet1_1": squeezenet1_1,
    "shufflenet_v2": shufflenet_v2,
    "mobilenet_v2": mobilenet_v2,
    "alexnet": alexnet,
    "bert_base": bert_base,
    "gpt2_small": gpt2_small,
}
"""Every zoo model by name; each builder takes keyword options (``image_size``; ``layers``, ``seq``)."""

REFERENCE_PARAMS: dict[str, int] = {
    "resnet50": 25_557_032,  # torchvision resnet50
    "densenet121": 7_978_856,  # torchvision densenet121
    "squeezenet1_1": 1_235_496,  # torchvision squeezenet1_1
    "shufflenet_v2": 2_278_604,  # torchvision shufflenet_v2_x1_0
    "mobilenet_v2": 3_504_872,  # torchvision mobilenet_v2
    "alexnet": 60_965_224,  # Caffe bvlc_alexnet (the paper's grouped layout)
    "bert_base": 109_482_240,  # HF bert-base-uncased BertModel, with pooler
    "gpt2_small": 124_439_808,  # HF gpt2 GPT2LMHeadModel, head tied to the embedding
}
"""Published parameter counts the zoo's models reproduce (GoogLeNet has no published no-aux count)."""


def build(name: str, **options: Any) -> Built:
    """The model ``name`` in eval mode and its batch-1 example inputs; ``options`` go to its builder."""
    if name not in MODELS:
        raise KeyError(f"unknown zoo model '{name}' (available: {', '.join(MODELS)})")
    return MODELS[name](**options)


def sample_inputs(name: str, seed: int = SEED, **options: Any) -> tuple[Tensor, ...]:
    """Fresh valid inputs for ``name`` without building it (ids inside the vocabulary, 0/1 masks).

    ``seed=SEED`` gives exactly the example inputs ``build`` returns; ``options`` as for ``build``
    (only the input-shaping ones: ``image_size``, ``seq``).
    """
    if name not in MODELS:
        raise KeyError(f"unknown zoo model '{name}' (available: {', '.join(MODELS)})")
    make = {"bert_base": bert_inputs, "gpt2_small": gpt2_inputs}.get(name, image_inputs)
    return make(seed, **{k: v for k, v in options.items() if k in ("image_size", "seq")})


def count_params(module: nn.Module) -> int:
    """Number of distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in module.parameters())


@dataclass(frozen=True)
class ModelInfo:
    """Size facts about a zoo model at its example input."""

    name: str
    summary: str
    params: int
    flops: int
    inputs: list[str]
    outputs: list[str]

    def to_text(self) -> str:
        """One line: name, parameters, GFLOPs, input and output types."""
        return (f"{self.name:<14} {self.params / 1e6:7.2f}M params {self.flops / 1e9:7.2f} GFLOP  "
                f"in {', '.join(self.inputs)}  out {', '.join(self.outputs)}")


def _type_str(t: Tensor) -> str:
    return f"{str(t.dtype).removeprefix('torch.')}{list(t.shape)}"


def describe(name: str, built: Built | None = None) -> ModelInfo:
    """Parameters, FLOPs (2 per multiply-add in convs and matmuls, counted by torch) and I/O types."""
    from torch.utils.flop_counter import FlopCounterMode

    module, inputs = built if built is not None else build(name)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = module(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    doc = (MODELS[name].__doc__ or "").strip()
    return ModelInfo(name, doc, count_params(module), int(counter.get_total_flops()),
                     [_type_str(t) for t in inputs], [_type_str(t) for t in outs])


def export(name: str, out_dir: str | Path, *, dynamic_batch: bool = False, force: bool = False) -> Path:
    """Write ``out_dir/NAME.onnx`` unless it is already there (a cache); returns its path."""
    from .onnx_export import export_onnx

    path = Path(out_dir).expanduser() / f"{name}.onnx"
    if path.exists() and not force:
        return path
    module, inputs = build(name)
    export_onnx(module, inputs, path, dynamic_batch=dynamic_batch)
    return path


def _names(args: Sequence[str]) -> list[str]:
    names = list(MODELS) if not args or list(args) == ["all"] else list(args)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise SystemExit(f"zoo: unknown model(s) {', '.join(unknown)} (available: {', '.join(MODELS)})")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m graphopt.benchmarks.zoo {list,describe,export}``."""
    p = argparse.ArgumentParser(prog="python -m graphopt.benchmarks.zoo", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print the model names and one-line summaries")
    sp = sub.add_parser("describe", help="build models and print parameters, FLOPs and I/O types")
    sp.add_argument("names", nargs="*", help="model names (default: all)")
    sp = sub.add_parser("export", help="write OUT/NAME.onnx for each model (skipped if it exists)")
    sp.add_argument("names", nargs="*", help="model names (default: all)")
    sp.add_argument("--out", required=True, help="output folder")
    sp.add_argument("--dynamic-batch", action="store_true", help="make axis 0 of inputs and outputs symbolic")
    sp.add_argument("--force", action="store_true", help="export even if the file exists")
    args = p.parse_args(argv)
    if args.command == "list":
        for name, fn in MODELS.items():
            print(f"{name:<14} {(fn.__doc__ or '').strip()}")
    elif args.command == "describe":
        for name in _names(args.names):
            print(describe(name).to_text(), flush=True)
    else:
        for name in _names(args.names):
            start = time.perf_counter()
            existed = (Path(args.out).expanduser() / f"{name}.onnx").exists() and not args.force
            path = export(name, args.out, dynamic_batch=args.dynamic_batch, force=args.force)
            what = "cached" if existed else f"exported in {time.perf_counter() - start:.1f} s"
            print(f"{path} ({path.stat().st_size / 2**20:.1f} MiB, {what})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
