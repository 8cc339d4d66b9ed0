"""graphopt's cost model against TVM MetaSchedule's ``XGBModel`` on the same schedule candidates.

    python -m graphopt.benchmarks.metaschedule_compare [--threads 1] [--json OUT]
        [--data costmodel/shipped/dataset.jsonl.xz] [--holdout NET ...] [--train-sample N]

Both models see the same records and are scored by the same functions (``costmodel.metrics``):

1. Every record of the shipped dataset measured with ``--threads`` is lowered to a TIR PrimFunc
   the way the TVM backend builds a kernel for timing (``backends.tvm.kernel.build_kernel`` with
   ``KernelSchedule.from_annotation(schedule)`` for ``host_target()``; nothing is compiled or run).
   A record that does not lower is left out of both models' data and counted.
2. Each kernel (network, workload) is one MetaSchedule task: its module is the kernel lowered with
   the default schedule ``{}``, each candidate a ``MeasureCandidate(Schedule(IRModule(func)),
   ArgInfo.from_prim_func(func))`` and its label ``RunnerResult(run_secs=[latency s])``. The real
   ``XGBModel(extractor=PerStoreFeature(), adaptive_training=False)`` is fed task by task with
   ``update(TuneContext(mod=task module, target=...), candidates, results)``. XGBModel retrains
   from scratch on all its data at every ``update``; with thousands of tasks that would be
   thousands of fits, so its own adaptive-training gate is held shut until the last task, whose
   ``update`` trains once on everything (exactly the state ``adaptive_training=False`` ends in).
   ``num_warmup_samples=0`` so that predictions always come from the booster, ``nthread=2`` (as
   graphopt's model); everything else is MetaSchedule's default.
3. Leave one network out, as ``graphopt costmodel eval`` does: for each network with a full
   candidate set (``origin == "full-space"``), both models train on the records of the other
   networks and the random ("synthetic") kernels, then rank that network's full candidate sets.
   graphopt's model is ``costmodel.evaluation.train`` on the stored features; at prediction both
   extract features from the candidates themselves (graphopt's ``kernel_features`` from the IR,
   PerStoreFeature from the TIR), which the prediction times include. XGBModel predicts a
   normalized throughput (higher is better); its negation is ranked like a latency.

Reported per kernel and pooled: ``search_score`` (measure the best-predicted 20 % of a kernel's
candidates: share of the exhaustive best), TenSet top-1/top-5, within-task pairwise accuracy, and
seconds spent. XGBModel's "features" time is the ``update`` calls before the last (feature
extraction and bookkeeping), its "fit" time the last ``update`` (training); graphopt's fit includes
its interval booster and conformal calibration. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..costmodel import metrics
from ..costmodel.dataset import Dataset, Record, kernel_from_ir
from ..costmodel.evaluation import train
from ..costmodel.features import kernel_features, target_info
from ..costmodel.kernels import FULL_SPACE, SYNTHETIC

DEFAULT_DATA = Path(__file__).resolve().parent.parent / "costmodel" / "shipped" / "dataset.jsonl.xz"
NTHREAD = 2  # graphopt's model trains with 2 XGBoost threads; MetaSchedule's gets the same

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass
class Task:
    """One kernel's measured candidates, lowered: a MetaSchedule task."""

    model: str
    workload: str
    records: list[Record]
    funcs: list[Any]  # tvm PrimFunc of each record
    mod: Any  # tvm IRModule: the kernel lowered with the default schedule (the task's workload)

    @property
    def key(self) -> str:
        """The task name used by the ranking metrics (network/workload)."""
        return f"{self.model}/{self.workload}"

    @property
    def full_space(self) -> bool:
        """Whether this task holds a kernel's full candidate set."""
        return any(r.origin == FULL_SPACE for r in self.records)


def lower(record: Record, schedule: dict[str, Any] | None = None, target: Any = None) -> Any:
    """The PrimFunc of ``record``'s kernel with its schedule (or ``schedule``), as the TVM backend
    builds it for timing (``backends.tvm.measure.build_for_timing`` without the compile)."""
    from ..backends.tvm.measure import lower_alone

    return lower_alone(kernel_from_ir(record.ir), record.schedule if schedule is None else schedule,
                       target=target).func


def _module(func: Any) -> Any:
    import tvm

    return tvm.IRModule({"main": func.with_attr("global_symbol", "main")})


def build_tasks(records: Sequence[Record], progress: Progress = _quiet) -> tuple[list[Task], Counter[str]]:
    """Group ``records`` by kernel and lower each; also the count of records left out, by reason."""
    from ..backends.tvm.target import host_target

    target = host_target()
    by_kernel: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        by_kernel.setdefault((r.model, r.workload), []).append(r)
    tasks: list[Task] = []
    skipped: Counter[str] = Counter()
    for i, ((model, workload), group) in enumerate(by_kernel.items()):
        if i % 200 == 0:
            progress(f"lowering kernel {i + 1}/{len(by_kernel)}")
        kept, funcs = [], []
        for r in group:
            try:
                funcs.append(lower(r, target=target))
                kept.append(r)
            except Exception as e:  # noqa: BLE001 -- any lowering failure only removes the record, counted by type
                skipped[f"lowering failed ({type(e).__name__})"] += 1
        if not kept:
            continue
        try:
            mod = _module(lower(kept[0], schedule={}, target=target))
        except Exception:  # noqa: BLE001 -- the default schedule may not lower where others do
            mod = _module(funcs[0])
        tasks.append(Task(model, workload, kept, funcs, mod))
    return tasks, skipped


class MetaScheduleRanker:
    """TVM MetaSchedule's ``XGBModel`` with ``PerStoreFeature``, fed one task at a time."""

    def __init__(self, seed: int = 43) -> None:
        # TuneContext imports TVM's tensor intrinsics on first use (20 s on a busy 2-core machine):
        # import them here so that is not counted as the model's feature time.
        import tvm.s_tir.tensor_intrin  # noqa: F401
        from tvm.s_tir.meta_schedule.cost_model import XGBModel
        from tvm.s_tir.meta_schedule.cost_model.xgb_model import XGBConfig
        from tvm.s_tir.meta_schedule.feature_extractor import PerStoreFeature

        from ..backends.tvm.target import host_target

        self.target = host_target().target
        self.model = XGBModel(extractor=PerStoreFeature(), config=XGBConfig(seed=seed, nthread=NTHREAD),
                              num_warmup_samples=0, adaptive_training=False, num_tuning_cores=NTHREAD)
        self.features_s = self.fit_s = 0.0

    def _context(self, task: Task) -> Any:
        from tvm.s_tir.meta_schedule.tune_context import TuneContext

        return TuneContext(mod=task.mod, target=self.target, num_threads=NTHREAD)

    @staticmethod
    def _candidates(task: Task) -> list[Any]:
        from tvm.s_tir.meta_schedule.arg_info import ArgInfo
        from tvm.s_tir.meta_schedule.search_strategy import MeasureCandidate
        from tvm.s_tir.schedule import Schedule

        out = []
        for func in task.funcs:
            mod = _module(func)
            out.append(MeasureCandidate(Schedule(mod), ArgInfo.from_prim_func(mod["main"])))
        return out

    def fit(self, tasks: Sequence[Task], progress: Progress = _quiet) -> None:
        """``update`` with every task's candidates and latencies; the model trains at the last one."""
        from tvm.s_tir.meta_schedule.runner import RunnerResult

        # XGBModel.update retrains on all data at every call unless adaptive training says the data
        # grew too little; holding that gate shut until the last task trains once, on everything.
        self.model.adaptive_training = True
        self.model.last_train_size = sys.maxsize
        start = time.perf_counter()
        for i, task in enumerate(tasks):
            if i % 500 == 0:
                progress(f"XGBModel.update task {i + 1}/{len(tasks)}")
            last = i == len(tasks) - 1
            if last:
                self.model.adaptive_training = False
                self.features_s = time.perf_counter() - start
                start = time.perf_counter()
            results = [RunnerResult(run_secs=[r.latency_us * 1e-6], error_msg=None) for r in task.records]
            self.model.update(self._context(task), self._candidates(task), results)
        self.fit_s = time.perf_counter() - start

    def predict(self, task: Task) -> np.ndarray:
        """XGBModel's score of each candidate, negated: lower is better, like a latency."""
        return -np.asarray(self.model.predict(self._context(task), self._candidates(task)), float)


class GraphoptRanker:
    """graphopt's cost model (``costmodel.evaluation.train``) on the same records."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.model: Any = None
        self.fit_s = 0.0

    def fit(self, records: Sequence[Record], device: str | None) -> None:
        """Train on the stored features of ``records``."""
        start = time.perf_counter()
        self.model = train(Dataset(None, device, records=records), seed=self.seed)
        self.fit_s = time.perf_counter() - start

    def predict(self, task: Task) -> np.ndarray:
        """Predicted latency (us) of each candidate, features computed from the kernel's IR."""
        kernel = kernel_from_ir(task.records[0].ir)
        x = np.stack([kernel_features(kernel, r.schedule, target_info(threads=r.threads)) for r in task.records])
        return self.model.predict_features(x)[0]


def scores(tasks: Sequence[Task], preds: Sequence[np.ndarray]) -> dict[str, Any]:
    """The ranking metrics of predictions ``preds`` (lower is better) over ``tasks``, pooled."""
    y = np.concatenate([[r.latency_us for r in t.records] for t in tasks])
    pred = np.concatenate(preds)
    groups = [t.key for t in tasks for _ in t.records]
    weights = [r.weight for t in tasks for r in t.records]
    return {"candidates": len(y), "search_20pct": metrics.search_score(y, pred, groups),
            "top1": metrics.top_k_score(y, pred, groups, 1, weights),
            "top5": metrics.top_k_score(y, pred, groups, 5, weights),
            "pairwise": metrics.pairwise_accuracy(y, pred, groups)}


@dataclass
class Comparison:
    """Per held-out kernel rows and pooled scores of both models."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    pooled: dict[str, Any] = field(default_factory=dict)
    setup: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Everything as plain JSON data."""
        return {"setup": self.setup, "per_kernel": self.rows, "pooled": self.pooled}


def compare(records: Sequence[Record], *, holdout: Sequence[str] | None = None, train_sample: int | None = None,
            seed: int = 0, device: str | None = None, progress: Progress = _quiet) -> Comparison:
    """Leave one network out over the networks of ``records`` that have full candidate sets.

    ``train_sample``: train both models on this many records drawn at random (the same draw)
    instead of all of the other networks' records.
    """
    start = time.perf_counter()
    tasks, skipped = build_tasks(records, progress)
    lower_s = time.perf_counter() - start
    networks = list(holdout) if holdout else sorted({t.model for t in tasks if t.full_space and t.model != SYNTHETIC})
    out = Comparison(setup={"records": len(records), "lowered": sum(len(t.records) for t in tasks),
                            "skipped": dict(skipped), "tasks": len(tasks), "held_out": networks,
                            "train_sample": train_sample, "lower_s": lower_s, "nthread": NTHREAD})
    rng = np.random.default_rng(seed)
    preds: dict[str, list[np.ndarray]] = {"graphopt": [], "metaschedule": []}
    tested: list[Task] = []
    for name in networks:
        test = [t for t in tasks if t.model == name and t.full_space]
        train_tasks = [t for t in tasks if t.model != name]
        if train_sample is not None:
            train_tasks = _sample(train_tasks, train_sample, rng)
        # graphopt's model trains on the records in the file's order, as ``costmodel eval`` does: the
        # boosters subsample rows, so another order is another (equally good) model.
        kept = {id(r) for t in train_tasks for r in t.records}
        train_records = [r for r in records if id(r) in kept]
        progress(f"holding out {name}: training on {len(train_records)} records ({len(train_tasks)} kernels)")
        ours, theirs = GraphoptRanker(seed), MetaScheduleRanker()
        ours.fit(train_records, device)
        theirs.fit(train_tasks, progress)
        for task in test:
            row: dict[str, Any] = {"network": name, "kernel": task.records[0].kernel, "workload": task.workload,
                                   "candidates": len(task.records), "train_records": len(train_records)}
            for label, ranker in (("graphopt", ours), ("metaschedule", theirs)):
                t0 = time.perf_counter()
                p = ranker.predict(task)
                s = scores([task], [p])
                row[label] = {"search_20pct": s["search_20pct"].get("mean"), "top1": s["top1"], "top5": s["top5"],
                              "pairwise": s["pairwise"], "predict_s": time.perf_counter() - t0}
                preds[label].append(p)
            row["graphopt"]["fit_s"] = ours.fit_s
            row["metaschedule"].update(fit_s=theirs.fit_s, features_s=theirs.features_s)
            out.rows.append(row)
            tested.append(task)
            progress(f"  {name}: graphopt {row['graphopt']['search_20pct']:.3f}, "
                     f"metaschedule {row['metaschedule']['search_20pct']:.3f} (search 20 %)")
    for label, predicted in preds.items():
        if tested:
            out.pooled[label] = scores(tested, predicted)
            out.pooled[label]["fit_s"] = sum(r[label]["fit_s"] for r in out.rows)
            out.pooled[label]["predict_s"] = sum(r[label]["predict_s"] for r in out.rows)
    if tested:
        out.pooled["metaschedule"]["features_s"] = sum(r["metaschedule"]["features_s"] for r in out.rows)
    return out


def _sample(tasks: Sequence[Task], n: int, rng: np.random.Generator) -> list[Task]:
    """Tasks holding ``n`` records drawn at random (whole tasks, so XGBModel's groups stay intact)."""
    order = rng.permutation(len(tasks))
    picked, total = [], 0
    for i in order:
        if total >= n:
            break
        picked.append(tasks[i])
        total += len(tasks[i].records)
    return picked


def _pct(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{100 * x:.1f}"


def format_table(result: Comparison) -> str:
    """The per-kernel and pooled figures as a Markdown table."""
    head = ("| held out | kernel | cand. | search 20 % go / ms | top-1 go / ms | top-5 go / ms | "
            "pairwise go / ms | fit s go / ms | predict s go / ms |")
    lines = [head, "|" + "---|" * 2 + "---:|" * 7]

    def cells(g: dict[str, Any], m: dict[str, Any], search_g: Any, search_m: Any) -> str:
        ms_fit = m["fit_s"] + m.get("features_s", 0.0)
        return (f"{search_g} / {search_m} | {_pct(g['top1'])} / {_pct(m['top1'])} | {_pct(g['top5'])} / "
                f"{_pct(m['top5'])} | {_pct(g['pairwise'])} / {_pct(m['pairwise'])} | {g['fit_s']:.1f} / "
                f"{ms_fit:.1f} | {g['predict_s']:.2f} / {m['predict_s']:.2f} |")

    for r in result.rows:
        g, m = r["graphopt"], r["metaschedule"]
        lines.append(f"| {r['network']} | {r['kernel'][:40]} | {r['candidates']} | "
                     + cells(g, m, _pct(g["search_20pct"]), _pct(m["search_20pct"])))
    if result.pooled:
        g, m = result.pooled["graphopt"], result.pooled["metaschedule"]
        sg, sm = g["search_20pct"], m["search_20pct"]
        lines.append(f"| **pooled** | {sg['tasks']} kernels | {g['candidates']} | "
                     + cells(g, m, f"{_pct(sg['mean'])} (worst {_pct(sg['worst'])})",
                             f"{_pct(sm['mean'])} (worst {_pct(sm['worst'])})"))
    setup = result.setup
    lines.append("")
    lines.append(f"go = graphopt, ms = MetaSchedule XGBModel + PerStoreFeature. {setup['lowered']} of "
                 f"{setup['records']} records lowered ({sum(setup['skipped'].values())} skipped: "
                 f"{setup['skipped'] or 'none'}) in {setup['lower_s']:.0f} s; {setup['tasks']} kernels. "
                 f"ms fit s = update() calls (PerStoreFeature extraction) + its one training.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="dataset (default: the shipped one)")
    p.add_argument("--threads", type=int, default=1, help="records measured with this many threads (default 1)")
    p.add_argument("--holdout", nargs="*", help="networks to hold out (default: all with full candidate sets)")
    p.add_argument("--train-sample", type=int, help="train both models on this many random records")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)
    ds = Dataset.load(args.data).select(threads=args.threads)

    def progress(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    result = compare(ds.records, holdout=args.holdout, train_sample=args.train_sample, seed=args.seed,
                     device=ds.device, progress=progress)
    result.setup.update(data=args.data, threads=args.threads)
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_json(), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
