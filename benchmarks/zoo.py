"""A model zoo for benchmarks: full-size classic architectures written by hand, seeded weights.

    from graphopt.benchmarks.zoo import build, MODELS
    module, inputs = build("resnet50")              # eval mode, batch 1, 1x3x224x224
    module, inputs = build("bert_base", layers=2, seq=16)

    python -m graphopt.benchmarks.zoo list
    python -m graphopt.benchmarks.zoo describe resnet50 mobilenet_v2
    python -m graphopt.benchmarks.zoo export resnet50 bert_base --out DIR

The CNNs live in ``zoo_cnn`` and the transformers in ``zoo_transformers``; torchvision and
transformers are not needed. Builders take keyword options: ``image_size`` for the CNNs (AlexNet
needs 224), ``layers`` and ``seq`` for BERT and GPT-2.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from . import zoo_cnn as cnn
from . import zoo_transformers as tf

SEED = 0
Built = tuple[nn.Module, tuple[Tensor, ...]]

MODELS: dict[str, Callable[..., Built]] = {
    "resnet50": cnn.resnet50,
    "densenet121": cnn.densenet121,
    "inception_v1": cnn.inception_v1,
    "squeezenet1_1": cnn.squeezenet1_1,
    "shufflenet_v2": cnn.shufflenet_v2,
    "mobilenet_v2": cnn.mobilenet_v2,
    "alexnet": cnn.alexnet,
    "bert_base": tf.bert_base,
    "gpt2_small": tf.gpt2_small,
}
"""Every zoo model's builder by name: ``builder(**options) -> (module, example_inputs)``."""

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
"""Published parameter counts the zoo reproduces (GoogLeNet has no published no-aux count)."""

_INPUTS: dict[str, Callable[..., tuple[Tensor, ...]]] = {
    "bert_base": tf.bert_inputs, "gpt2_small": tf.gpt2_inputs}
_INPUT_OPTIONS = ("image_size", "seq")


def _check(name: str) -> None:
    if name not in MODELS:
        raise KeyError(f"unknown zoo model '{name}' (available: {', '.join(MODELS)})")


def build(name: str, **options: Any) -> Built:
    """The model ``name`` in eval mode and its batch-1 example inputs, built with ``options``.

    Options: ``image_size`` for the CNNs (AlexNet needs 224); ``layers`` and ``seq`` for BERT and
    GPT-2.
    """
    _check(name)
    return MODELS[name](**options)


def sample_inputs(name: str, seed: int = SEED, **options: Any) -> tuple[Tensor, ...]:
    """Fresh valid inputs for ``name`` without building it (ids inside the vocabulary, 0/1 masks).

    ``seed=SEED`` gives exactly the example inputs ``build`` returns; of the ``build`` options only
    the input-shaping ones (``image_size``, ``seq``) matter here.
    """
    _check(name)
    make = _INPUTS.get(name, cnn.image_inputs)
    return make(seed, **{k: v for k, v in options.items() if k in _INPUT_OPTIONS})


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
    """Parameters, FLOPs (2 per multiply-add of convs and matmuls, counted by torch), I/O types."""
    from torch.utils.flop_counter import FlopCounterMode

    module, inputs = built if built is not None else build(name)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = module(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    doc = (MODELS[name].__doc__ or "").strip()
    return ModelInfo(name, doc, count_params(module), int(counter.get_total_flops()),
                     [_type_str(t) for t in inputs], [_type_str(t) for t in outs])


def export(name: str, out_dir: str | Path, *, dynamic_batch: bool = False,
           force: bool = False) -> Path:
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
        raise SystemExit(f"zoo: unknown model(s) {', '.join(unknown)} "
                         f"(available: {', '.join(MODELS)})")
    return names


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m graphopt.benchmarks.zoo",
                                description=(__doc__ or "").splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print the model names and one-line summaries")
    sp = sub.add_parser("describe", help="build models; print parameters, FLOPs and I/O types")
    sp.add_argument("names", nargs="*", help="model names (default: all)")
    sp = sub.add_parser("export", help="write OUT/NAME.onnx for each model (skipped if it exists)")
    sp.add_argument("names", nargs="*", help="model names (default: all)")
    sp.add_argument("--out", required=True, help="output folder")
    sp.add_argument("--dynamic-batch", action="store_true",
                    help="make axis 0 of every input and output symbolic")
    sp.add_argument("--force", action="store_true", help="export even if the file exists")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m graphopt.benchmarks.zoo {list,describe,export}``."""
    args = _parser().parse_args(argv)
    if args.command == "list":
        for name, fn in MODELS.items():
            print(f"{name:<14} {(fn.__doc__ or '').strip()}")
    elif args.command == "describe":
        for name in _names(args.names):
            print(describe(name).to_text(), flush=True)
    else:
        for name in _names(args.names):
            start = time.perf_counter()
            cached = (Path(args.out).expanduser() / f"{name}.onnx").exists() and not args.force
            path = export(name, args.out, dynamic_batch=args.dynamic_batch, force=args.force)
            what = "cached" if cached else f"exported in {time.perf_counter() - start:.1f} s"
            print(f"{path} ({path.stat().st_size / 2**20:.1f} MiB, {what})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
