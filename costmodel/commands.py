"""``graphopt costmodel {collect,prune,refeaturize,train,eval,adapt}``: the command-line face of this package.

    graphopt costmodel collect DATA.jsonl [--budget S] [--models LIST] [--threads N] [--rpc HOST:PORT:KEY]
                                          [--full-space N] [--isa avx2|sse4] [--ops LIST]
    graphopt costmodel prune DATA.jsonl --ops LIST -o OUT.jsonl[.xz]
    graphopt costmodel refeaturize DATA.jsonl -o OUT.jsonl[.xz]
    graphopt costmodel train DATA.jsonl -o MODEL.json [--threads N] [--exclude-models LIST]
    graphopt costmodel eval DATA.jsonl [--model MODEL.json] [--holdout LIST] [--threads N]
    graphopt costmodel adapt DATA.jsonl --model BASE.json --samples 10 [--threads N] [-o OUT.json]

Every subcommand takes ``--json`` (one JSON object on stdout) and ``--device`` for a dataset file
that holds several devices.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from typing import Any

from .dataset import Dataset, DatasetError, refeaturize
from .features import SCHEMA_HASH
from .model import CostModel, CostModelLoadError

USER_ERRORS = (DatasetError, CostModelLoadError, ValueError, FileNotFoundError)
"""Errors that mean bad input (a one-line message and exit status 2, not a traceback)."""


def _list(text: str | None) -> list[str] | None:
    return [s for s in text.split(",") if s] if text else None


def add_arguments(sp: argparse.ArgumentParser) -> None:
    """The ``costmodel`` subcommands and their options."""
    sub = sp.add_subparsers(title="costmodel commands", metavar="ACTION", dest="cm_action")

    def action(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("dataset", help="dataset file (JSON lines, appended to by collect)")
        p.add_argument("--device", help="the device to use when the dataset file holds several")
        p.add_argument("--threads", type=int, help="only records measured with this many threads "
                       "(collect: run TVM's parallel loops on this many threads)")
        p.add_argument("--seed", type=int, default=0, help="seed for sampling and training")
        p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
        return p

    p = action("collect", "measure kernels from the zoo networks and random graphs into a dataset")
    p.add_argument("--budget", type=float, default=900, metavar="SECONDS", help="wall-time limit (default 900)")
    p.add_argument("--models", metavar="LIST", help="comma-separated zoo networks (default: all; 'none': only random)")
    p.add_argument("--synthetic", type=int, default=300, metavar="N", help="random graphs to add (default 300)")
    p.add_argument("--variants", type=int, default=4, metavar="N",
                   help="random schedules per kernel besides the default (anchored kernels; half for others)")
    p.add_argument("--full-space", type=int, default=0, metavar="N",
                   help="per network, measure every schedule-search candidate of N tiled kernels (first)")
    p.add_argument("--repeat", type=int, default=5, help="timed repeats per kernel; the fastest is kept")
    p.add_argument("--rpc", metavar="HOST:PORT:KEY",
                   help="measure on a device registered with a TVM RPC tracker (HOST:PORT: one RPC server)")
    p.add_argument("--isa", choices=["avx2", "sse4"], help="compile for an older vector ISA level of this CPU "
                   "(another device, e.g. to try adaptation)")
    p.add_argument("--ops", metavar="LIST", help="only kernels containing one of these ops, e.g. "
                   "tensor.concat,nn.batch_norm (to re-measure them after their lowering changed; see prune)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = action("prune", "copy a dataset without the records of kernels containing some ops (stale measurements)")
    p.add_argument("--ops", required=True, metavar="LIST", help="comma-separated ops, e.g. tensor.concat,nn.batch_norm")
    p.add_argument("-o", "--output", required=True, metavar="OUT.jsonl",
                   help="the new dataset file (xz-compressed if it ends in .xz); collect --ops can refill it")

    p = action("refeaturize", "recompute every record's features from its stored IR with this graphopt's feature "
               "schema (after the features changed; no re-measuring)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.jsonl",
                   help="the new dataset file (xz-compressed if it ends in .xz)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = action("train", "train a cost model on a dataset")
    p.add_argument("-o", "--output", required=True, metavar="MODEL.json", help="the model's sidecar file")
    p.add_argument("--exclude-models", metavar="LIST", help="networks to leave out of training")
    p.add_argument("--also", nargs="+", default=[], metavar="DATA.jsonl",
                   help="datasets of other devices to train on too (the features describe each device, "
                        "so one model can serve them all)")

    p = action("eval", "evaluate on networks held out of training (or a given model on the whole dataset)")
    p.add_argument("--model", metavar="MODEL.json", help="evaluate this model instead of cross-validating")
    p.add_argument("--holdout", metavar="LIST", help="networks to hold out one at a time (default: every network)")
    p.add_argument("--also", nargs="+", default=[], metavar="DATA.jsonl",
                   help="other devices' datasets to train on too, as train --also (their records of the "
                        "held-out network are left out as well)")

    p = action("adapt", "fit a model to a new device from a few of its measurements")
    p.add_argument("--model", metavar="BASE.json", help="the model to adapt (default: the shipped model)")
    p.add_argument("--samples", type=int, default=10, help="measurements to adapt with (default 10)")
    p.add_argument("-o", "--output", metavar="MODEL.json", help="write the adapted model here")


def run(args: argparse.Namespace) -> int:
    """Run the chosen subcommand; bad input prints one line and returns 2."""
    handlers = {"collect": _collect, "prune": _prune, "refeaturize": _refeaturize, "train": _train, "eval": _eval,
                "adapt": _adapt}
    if args.cm_action not in handlers:
        print(f"graphopt costmodel: choose an action: {', '.join(handlers)}", file=sys.stderr)
        return 2
    try:
        payload, text = handlers[args.cm_action](args)
    except USER_ERRORS as e:
        if getattr(args, "debug", False):
            raise
        print(f"graphopt: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(json.dumps(_plain(payload), indent=1, allow_nan=False) if args.json else text)
    return 0


def _plain(value: Any) -> Any:
    """JSON-ready: numpy scalars as Python numbers, NaN (a metric with nothing to score) as null."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _load(args: argparse.Namespace, path: str | None = None) -> Dataset:
    """The dataset ``args`` name (or another file of its own device, ``path``), at ``--threads``."""
    ds = Dataset.load(args.dataset, device=args.device) if path is None else Dataset.load(path)
    return ds.select(threads=args.threads) if args.threads is not None else ds


def _check_new_output(args: argparse.Namespace, action: str) -> None:
    from pathlib import Path

    if Path(args.output).resolve() == Path(args.dataset).resolve():
        raise ValueError(f"{action} writes a new dataset file; give -o another path than the input")


def _fmt(m: dict[str, Any]) -> str:
    keys = ("mape", "kendall_tau", "pairwise_accuracy", "top1_score", "top5_score", "coverage")
    text = "  ".join(f"{k}={m[k]:.3f}" for k in keys if k in m) + f"  (n={m['n']})"
    search = m.get("search_20pct", {})
    if search.get("tasks"):
        text += (f"  search_20pct={search['mean']:.3f} (worst {search['worst']:.3f}, "
                 f"{round(search['tasks_at_95pct'] * search['tasks'])} of {search['tasks']} sets >= 95 %)")
    return text


def _collect(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from .collect import Timing, collect, set_threads

    if not args.rpc:
        set_threads(args.threads)
    models = [] if args.models == "none" else _list(args.models)
    report = collect(args.dataset, models=models, synthetic=args.synthetic, variants=args.variants,
                     full_space=args.full_space, budget_s=args.budget, isa=args.isa, rpc=args.rpc, timing=Timing(repeat=args.repeat), seed=args.seed,
                     ops=_list(args.ops), progress=not args.no_progress and not args.json)
    return report.to_json(), report.to_text()


def _prune(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    ops = _list(args.ops) or []
    _check_new_output(args, "prune")
    ds = _load(args)
    kept = ds.without_ops(ops)
    path = kept.write(args.output)
    payload = {"output": str(path), "kept": len(kept), "dropped": len(ds) - len(kept), "ops": ops}
    return payload, f"kept {len(kept)} of {len(ds)} records (dropped {len(ds) - len(kept)} with {', '.join(ops)}) -> {path}"


def _refeaturize(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from tqdm import tqdm

    _check_new_output(args, "refeaturize")
    ds = Dataset.load(args.dataset, device=args.device, schema=None)
    if args.threads is not None:
        ds = ds.select(threads=args.threads)
    old = Counter(r.schema for r in ds.records)

    def bar(records: Any) -> Any:
        return tqdm(records, disable=args.no_progress or args.json, unit="record", desc="refeaturizing")

    out = Dataset(None, ds.device, SCHEMA_HASH, refeaturize(ds.records, bar))
    path = out.write(args.output)
    payload = {"output": str(path), "records": len(out), "schema": SCHEMA_HASH, "from_schemas": dict(old),
               "rejected": dict(ds.rejected)}
    froms = ", ".join(f"{n} of {s}" for s, n in old.most_common())
    return payload, f"recomputed the features of {len(out)} records ({froms}) with schema {SCHEMA_HASH} -> {path}"


def _also(args: argparse.Namespace) -> Dataset | None:
    """The ``--also`` datasets (other devices) as one, or None."""
    also = None
    for extra in args.also:
        more = _load(args, extra)
        also = more if also is None else also.merged(more)
    return also


def _train(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from .evaluation import train

    ds = _load(args)
    also = _also(args)
    if also is not None:
        ds = ds.merged(also)
    ds = ds.select(exclude_models=_list(args.exclude_models) or ())
    model = train(ds, seed=args.seed)
    path = model.save(args.output)
    size = model.size_bytes(path)
    payload = {"model": str(path), "bytes": size, "records": len(ds), "device": ds.device,
               "widen": model.meta["widen"], "rejected": dict(ds.rejected)}
    return payload, f"trained on {len(ds)} records of {ds.device}; wrote {path} ({size / 1024:.0f} KiB)"


def _eval(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from .evaluation import cross_validate, evaluate_model

    ds = _load(args)
    if args.model:
        result = {"split": "none (given model, whole dataset)", "model": args.model,
                  "pooled": evaluate_model(CostModel.load(args.model), ds)}
        text = f"{args.model} on {args.dataset}: {_fmt(result['pooled'])}"
    else:
        also = _also(args)
        result = cross_validate(ds, holdout=_list(args.holdout), seed=args.seed, also=also)
        trained = f" (training also on {len(also)} records of {also.device})" if also is not None else ""
        lines = [f"held-out networks ({result['split']}), {len(ds)} records of {ds.device}{trained}:"]
        lines += [f"  {name:<14} {_fmt(m)}" for name, m in result["per_network"].items()]
        lines.append(f"  {'pooled':<14} {_fmt(result['pooled'])}")
        text = "\n".join(lines)
    result["rejected"] = dict(ds.rejected)
    return result, text


def _adapt(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from . import load_default_model
    from .adapt import evaluate_adaptation

    base = CostModel.load(args.model) if args.model else load_default_model()
    ds = _load(args)
    x, y = ds.arrays()
    result = evaluate_adaptation(base, x, y, ds.groups(), args.samples, seed=args.seed,
                                 weights=[r.weight for r in ds.records], candidate_set=ds.candidate_set())
    model = result.pop("model")
    if args.output:
        result["output"] = str(model.save(args.output))
    text = (f"adapted with {args.samples} of {len(ds)} measurements ({ds.device}"
            f"{f', {args.threads} threads' if args.threads else ''}); on the other {result['evaluated']}:\n"
            f"  before  {_fmt(result['before'])}\n  after   {_fmt(result['after'])}")
    return result, text
