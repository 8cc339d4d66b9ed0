"""Small, architecturally faithful torch models shared by the frontend and end-to-end tests.

Each ``make_<name>()`` returns ``(module, example_inputs)``: a seeded, eval-mode module with random
weights (batch-norm statistics randomized too, so folding them is actually exercised) and a tuple
of example inputs with batch 1. They are kept small so the reference interpreter runs each in well
under a second or two.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

Example = tuple[nn.Module, tuple[torch.Tensor, ...]]


def _finish(module: nn.Module, seed: int) -> nn.Module:
    """Randomize batch-norm statistics and affine parameters (fresh ones are the identity)."""
    g = torch.Generator().manual_seed(seed + 1)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return module.eval()


def _image(seed: int, channels: int = 3, size: int = 64) -> tuple[torch.Tensor]:
    g = torch.Generator().manual_seed(seed + 2)
    return (torch.randn(1, channels, size, size, generator=g),)


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]


# ---------------------------------------------------------------------------------------------- MLP


class MLP(nn.Module):
    """Three linear layers with ReLU and GELU."""

    def __init__(self, din: int = 32, hidden: int = 64, dout: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(din, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, dout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the network."""
        return self.fc3(F.gelu(self.fc2(torch.relu(self.fc1(x)))))


def make_mlp(seed: int = 0) -> Example:
    """An MLP on a 1x32 input."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 2)
    return _finish(MLP(), seed), (torch.randn(1, 32, generator=g),)


# ------------------------------------------------------------------------------------------- ResNet


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or 1x1 downsample) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(cin, cout, 3, stride)
        self.conv2, self.bn2 = _conv_bn(cout, cout, 3)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(*_conv_bn(cin, cout, 1, stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the block."""
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4) with a shortcut."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1, self.bn1 = _conv_bn(cin, width, 1)
        self.conv2, self.bn2 = _conv_bn(width, width, 3, stride)
        self.conv3, self.bn3 = _conv_bn(width, cout, 1)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(*_conv_bn(cin, cout, 1, stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the block."""
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + shortcut)


class ResNet(nn.Module):
    """ResNet: conv-bn-relu stem, max pool, basic and bottleneck stages, global pool, fc."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(16, 16), BasicBlock(16, 16))
        self.layer2 = nn.Sequential(BasicBlock(16, 32, 2))
        self.layer3 = nn.Sequential(Bottleneck(32, 16, 2), Bottleneck(64, 16))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the network."""
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def make_resnet(seed: int = 0) -> Example:
    """A small ResNet on a 1x3x64x64 image."""
    torch.manual_seed(seed)
    return _finish(ResNet(), seed), _image(seed)


# -------------------------------------------------------------------------------------- MobileNetV2


class InvertedResidual(nn.Module):
    """Expand 1x1, depthwise 3x3, project 1x1 (linear); residual when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [*_conv_bn(cin, hidden, 1), nn.ReLU6()]
        layers += [*_conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.ReLU6()]
        layers += _conv_bn(hidden, cout, 1)
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the block."""
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2: inverted residuals with depthwise convs and ReLU6, dropout and a classifier."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Sequential(*_conv_bn(3, 16, 3, 2), nn.ReLU6())]
        cin = 16
        for t, c, n, s in [(1, 8, 1, 1), (6, 16, 2, 2), (6, 24, 2, 2)]:
            for i in range(n):
                blocks.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        blocks.append(nn.Sequential(*_conv_bn(cin, 64, 1), nn.ReLU6()))
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(64, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the network."""
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


def make_mobilenet_v2(seed: int = 0) -> Example:
    """A small MobileNetV2 on a 1x3x64x64 image."""
    torch.manual_seed(seed)
    return _finish(MobileNetV2(), seed), _image(seed)


# ----------------------------------------------------------------------------------------- DenseNet


class DenseLayer(nn.Module):
    """BN-ReLU-conv1x1-BN-ReLU-conv3x3, concatenated onto its input."""

    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, 2 * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(2 * growth)
        self.conv2 = nn.Conv2d(2 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the layer."""
        out = self.conv1(torch.relu(self.norm1(x)))
        out = self.conv2(torch.relu(self.norm2(out)))
        return torch.cat([x, out], 1)


class Transition(nn.Module):
    """BN-ReLU-conv1x1 halving the channels, then 2x2 average pooling."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(cin)
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.pool = nn.AvgPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the transition."""
        return self.pool(self.conv(torch.relu(self.norm(x))))


class DenseNet(nn.Module):
    """DenseNet: two dense blocks joined by a transition, global pooling and a classifier."""

    def __init__(self, growth: int = 8, num_classes: int = 10) -> None:
        super().__init__()
        c = 16
        layers: list[nn.Module] = [*_conv_bn(3, c, 3, 2), nn.ReLU(), nn.MaxPool2d(2, 2)]
        for block in range(2):
            for _ in range(3):
                layers.append(DenseLayer(c, growth))
                c += growth
            if block == 0:
                layers.append(Transition(c, c // 2))
                c //= 2
        layers.append(nn.BatchNorm2d(c))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the network."""
        x = torch.relu(self.features(x))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1))


def make_densenet(seed: int = 0) -> Example:
    """A small DenseNet on a 1x3x64x64 image."""
    torch.manual_seed(seed)
    return _finish(DenseNet(), seed), _image(seed)


# ---------------------------------------------------------------------------------------- Inception


class BasicConv(nn.Module):
    """Conv (no bias), BN, ReLU."""

    def __init__(self, cin: int, cout: int, k: int | tuple[int, int], padding: int | tuple[int, int] = 0,
                 stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run conv-bn-relu."""
        return torch.relu(self.bn(self.conv(x)))


class InceptionBlock(nn.Module):
    """Four parallel branches (1x1; 1x1-3x3; 1x1-1x3-3x1; maxpool-1x1) concatenated on channels."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.b1 = BasicConv(cin, 8, 1)
        self.b2 = nn.Sequential(BasicConv(cin, 8, 1), BasicConv(8, 12, 3, 1))
        self.b3 = nn.Sequential(BasicConv(cin, 8, 1), BasicConv(8, 8, (1, 3), (0, 1)),
                                BasicConv(8, 12, (3, 1), (1, 0)))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), BasicConv(cin, 8, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the branches and concatenate them."""
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


class Inception(nn.Module):
    """GoogLeNet-style: stem, two inception blocks with a strided max pool between, classifier."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(BasicConv(3, 16, 3, 1, 2), nn.MaxPool2d(3, 2, ceil_mode=True))
        self.inc1 = InceptionBlock(16)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.inc2 = InceptionBlock(40)
        self.fc = nn.Linear(40, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the network."""
        x = self.inc2(self.pool(self.inc1(self.stem(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def make_inception(seed: int = 0) -> Example:
    """A small Inception network on a 1x3x64x64 image."""
    torch.manual_seed(seed)
    return _finish(Inception(), seed), _image(seed)


# --------------------------------------------------------------------------------------- SqueezeNet


class Fire(nn.Module):
    """Squeeze 1x1, then expand 1x1 and 3x3 in parallel, concatenated."""

    def __init__(self, cin: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, expand, 1)
        self.expand3x3 = nn.Conv2d(squeeze, expand, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the fire module."""
        s = torch.relu(self.squeeze(x))
        return torch.cat([torch.relu(self.expand1x1(s)), torch.relu(self.expand3x3(s))], 1)


class SqueezeNet(nn.Module):
    """SqueezeNet 1.1: fire modules, ceil-mode max pools, conv classifier with global average."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(16, 8, 16), Fire(32, 8, 16), nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(32, 12, 24), Fire(48, 12, 24),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(48, num_classes, 1), nn.ReLU(),
                                        nn.AdaptiveAvgPool2d((1, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the network."""
        return torch.flatten(self.classifier(self.features(x)), 1)


def make_squeezenet(seed: int = 0) -> Example:
    """A small SqueezeNet on a 1x3x64x64 image."""
    torch.manual_seed(seed)
    return _finish(SqueezeNet(), seed), _image(seed)


# --------------------------------------------------------------------------------------- ShuffleNet


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave channel groups: reshape to (N, g, C/g, H, W), swap axes 1 and 2, flatten back."""
    n, c, h, w = x.shape
    x = x.view(n, groups, c // groups, h, w).transpose(1, 2).contiguous()
    return x.view(n, c, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit: split (stride 1) or two branches (stride 2), concat, channel shuffle."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        half = cout // 2
        if stride > 1:
            self.branch1: nn.Module = nn.Sequential(*_conv_bn(cin, cin, 3, stride, groups=cin),
                                                    *_conv_bn(cin, half, 1), nn.ReLU())
        else:
            self.branch1 = nn.Identity()
        bin_ = cin if stride > 1 else half
        self.branch2 = nn.Sequential(*_conv_bn(bin_, half, 1), nn.ReLU(),
                                     *_conv_bn(half, half, 3, stride, groups=half),
                                     *_conv_bn(half, half, 1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the unit."""
        if self.stride == 1:
            a, b = x.chunk(2, dim=1)
            out = torch.cat([a, self.branch2(b)], 1)
        else:
            out = torch.cat([self.branch1(x), self.branch2(x)], 1)
        return channel_shuffle(out, 2)


class ShuffleNet(nn.Module):
    """ShuffleNetV2: stem, strided and split units, 1x1 conv, global mean, fc."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(3, 16, 3, 2), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        self.stage2 = nn.Sequential(ShuffleUnit(16, 32, 2), ShuffleUnit(32, 32, 1))
        self.stage3 = nn.Sequential(ShuffleUnit(32, 64, 2), ShuffleUnit(64, 64, 1))
        self.conv5 = nn.Sequential(*_conv_bn(64, 96, 1), nn.ReLU())
        self.fc = nn.Linear(96, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the network."""
        x = self.conv5(self.stage3(self.stage2(self.stem(x))))
        return self.fc(x.mean([2, 3]))


def make_shufflenet(seed: int = 0) -> Example:
    """A small ShuffleNetV2 on a 1x3x64x64 image."""
    torch.manual_seed(seed)
    return _finish(ShuffleNet(), seed), _image(seed)


# ---------------------------------------------------------------------------------------------- VGG


class VGG(nn.Module):
    """VGG/AlexNet-style: conv-relu stacks with LRN and max pools, flatten, dropout-linear head."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 5, 2, 2), nn.ReLU(), nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2, 2),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(32 * 3 * 3, 64), nn.ReLU(),
            nn.Dropout(0.5), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the network."""
        return self.classifier(torch.flatten(self.features(x), 1))


def make_vgg(seed: int = 0) -> Example:
    """A small AlexNet/VGG-style network on a 1x3x64x64 image."""
    torch.manual_seed(seed)
    return _finish(VGG(), seed), _image(seed)


# --------------------------------------------------------------------------------------------- BERT


class SelfAttention(nn.Module):
    """Multi-head self-attention written out: q/k/v projections, scaled matmul, mask, softmax."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        n, s, _ = x.shape
        return x.view(n, s, self.heads, self.head_dim).permute(0, 2, 1, 3)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attend over the sequence; ``mask`` is additive, broadcast over heads and queries."""
        n, s, h = x.shape
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim) + mask
        ctx = torch.matmul(torch.softmax(scores, dim=-1), v)
        return self.out(ctx.permute(0, 2, 1, 3).reshape(n, s, h))


class BertLayer(nn.Module):
    """Post-norm transformer encoder layer with a GELU feed-forward."""

    def __init__(self, hidden: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.attention = SelfAttention(hidden, heads)
        self.ln1 = nn.LayerNorm(hidden, eps=1e-12)
        self.ffn_in = nn.Linear(hidden, ffn)
        self.ffn_out = nn.Linear(ffn, hidden)
        self.ln2 = nn.LayerNorm(hidden, eps=1e-12)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Run the layer."""
        x = self.ln1(x + self.attention(x, mask))
        return self.ln2(x + self.ffn_out(F.gelu(self.ffn_in(x))))


class Bert(nn.Module):
    """BERT-style encoder: token + position + segment embeddings, layer norm, encoder layers.

    Input ids with value 0 are padding: the attention mask is derived from them, so a pad token
    gets a large negative score as in BERT's extended attention mask.
    """

    def __init__(self, vocab: int = 100, hidden: int = 64, heads: int = 4, layers: int = 2,
                 max_len: int = 32) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, hidden)
        self.position_embeddings = nn.Embedding(max_len, hidden)
        self.token_type_embeddings = nn.Embedding(2, hidden)
        self.ln = nn.LayerNorm(hidden, eps=1e-12)
        self.layers = nn.ModuleList([BertLayer(hidden, heads, 4 * hidden) for _ in range(layers)])
        self.pooler = nn.Linear(hidden, hidden)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Encode ``input_ids`` (N, S) and return the pooled first token (N, hidden)."""
        seq = input_ids.shape[1]
        positions = torch.arange(seq, device=input_ids.device).unsqueeze(0)
        segments = torch.zeros_like(input_ids)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)
        x = self.ln(x + self.token_type_embeddings(segments))
        mask = (input_ids == 0).to(x.dtype)[:, None, None, :] * -10000.0
        for layer in self.layers:
            x = layer(x, mask)
        return torch.tanh(self.pooler(x[:, 0]))


def make_bert(seed: int = 0) -> Example:
    """A 2-layer BERT-style encoder (hidden 64, 4 heads) on 1x16 int64 ids, the last 3 padding."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 2)
    ids = torch.randint(1, 100, (1, 16), generator=g, dtype=torch.int64)
    ids[:, -3:] = 0
    return _finish(Bert(), seed), (ids,)


# --------------------------------------------------------------------------------------------- GPT-2


class CausalSelfAttention(nn.Module):
    """GPT-2 attention: fused qkv projection, causal mask from a tril buffer, masked_fill."""

    def __init__(self, hidden: int, heads: int, max_len: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.c_attn = nn.Linear(hidden, 3 * hidden)
        self.c_proj = nn.Linear(hidden, hidden)
        self.register_buffer("bias", torch.tril(torch.ones(max_len, max_len, dtype=torch.bool))
                             .view(1, 1, max_len, max_len), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend to the current and earlier positions only."""
        n, s, h = x.shape
        q, k, v = self.c_attn(x).split(h, dim=2)
        q, k, v = (t.view(n, s, self.heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
        scores = scores.masked_fill(~self.bias[:, :, :s, :s], float("-inf"))
        ctx = F.softmax(scores, dim=-1) @ v
        return self.c_proj(ctx.transpose(1, 2).contiguous().view(n, s, h))


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's GELU, the tanh approximation written out."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class GPT2Block(nn.Module):
    """Pre-norm decoder block: ln-attention-residual, ln-MLP(GELU tanh)-residual."""

    def __init__(self, hidden: int, heads: int, max_len: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(hidden)
        self.attn = CausalSelfAttention(hidden, heads, max_len)
        self.ln_2 = nn.LayerNorm(hidden)
        self.c_fc = nn.Linear(hidden, 4 * hidden)
        self.c_proj = nn.Linear(4 * hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the block."""
        x = x + self.attn(self.ln_1(x))
        return x + self.c_proj(gelu_tanh(self.c_fc(self.ln_2(x))))


class GPT2(nn.Module):
    """GPT-2-style decoder: token + position embeddings, blocks, final norm, tied LM head."""

    def __init__(self, vocab: int = 100, hidden: int = 64, heads: int = 4, layers: int = 2,
                 max_len: int = 32) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, hidden)
        self.wpe = nn.Embedding(max_len, hidden)
        self.blocks = nn.ModuleList([GPT2Block(hidden, heads, max_len) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(hidden)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits (N, S, vocab) for ``input_ids`` (N, S)."""
        pos = torch.arange(0, input_ids.shape[1], dtype=torch.long, device=input_ids.device)
        x = self.wte(input_ids) + self.wpe(pos)
        for block in self.blocks:
            x = block(x)
        return F.linear(self.ln_f(x), self.wte.weight)


def make_gpt2(seed: int = 0) -> Example:
    """A 2-block GPT-2-style decoder (hidden 64, 4 heads) on 1x16 int64 ids."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 2)
    return _finish(GPT2(), seed), (torch.randint(0, 100, (1, 16), generator=g, dtype=torch.int64),)


MODELS: dict[str, Callable[..., Example]] = {
    "mlp": make_mlp,
    "resnet": make_resnet,
    "mobilenet_v2": make_mobilenet_v2,
    "densenet": make_densenet,
    "inception": make_inception,
    "squeezenet": make_squeezenet,
    "shufflenet": make_shufflenet,
    "vgg": make_vgg,
    "bert": make_bert,
    "gpt2": make_gpt2,
}
"""Every model maker, by name (the order is roughly from simplest to hardest to import)."""


def make_model(name: str, seed: int = 0) -> Example:
    """``(module, example_inputs)`` of the model called ``name``."""
    return MODELS[name](seed)
