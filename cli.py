"""The ``graphopt`` command line.

    graphopt inspect MODEL [--passes SPEC] [--dump-ir DIR] [--memory [--plot FILE.png]] [--json]
    graphopt optimize IN.onnx -o OUT.onnx [--passes SPEC] [--quantize int8 [--calibration DATA.npz]]
    graphopt run MODEL [--inputs random|FILE.npz] [--output FILE.npz] [--tune MODE]
    graphopt compile MODEL -o OUT.gopt [--passes SPEC] [--tune MODE]
    graphopt tune MODEL [--budget SECONDS] [--json]
    graphopt explain MODEL [--passes SPEC] [--node TEXT] [--json]
    graphopt bench MODEL... [--systems LIST] [--runs N] [--json FILE] [--plot FILE.png]
    graphopt costmodel {collect,train,eval,adapt} DATA.jsonl [--json]   (see costmodel/commands.py)

Bad input (missing file, not a model, unsupported op, wrong input shape) prints one line and exits
with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

EXIT_BAD_INPUT = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``graphopt`` console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return int(args.func(args) or 0)
    except Exception as e:  # every failure becomes one readable line unless --debug asks for more
        if args.debug or not _is_user_error(e):
            if args.debug:
                raise
            print(f"graphopt: internal error: {type(e).__name__}: {e}", file=sys.stderr)
            print("graphopt: rerun with --debug for the traceback and please report it", file=sys.stderr)
            return 1
        print(f"graphopt: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _is_user_error(e: Exception) -> bool:
    from .backends.tvm import TVMUnavailableError
    from .frontends.errors import FrontendError
    from .ir.interpreter import InputError
    from .ir.parser import IRParseError

    user_errors: tuple[type[BaseException], ...] = (FrontendError, InputError, IRParseError, FileNotFoundError,
                                                    TVMUnavailableError)
    try:
        from .passes import PassError, PassSpecError

        user_errors += (PassSpecError,)
        from .passes.quantize import QuantizeError

        user_errors += (QuantizeError,)
        if isinstance(e, PassError) and isinstance(e.__cause__, user_errors):
            return True  # e.g. a quantize pass refusing an already quantized model
        if isinstance(e, PassError):
            # A pass failing on what the user asked for (e.g. an impossible memory budget) is their
            # input's fault; anything else inside a pass is ours.
            from .passes.schedule_order import MemoryBudgetError

            return isinstance(e.__cause__, MemoryBudgetError)
    except ImportError:
        pass
    return isinstance(e, user_errors) or (isinstance(e, ValueError) and "graphopt artifact" in str(e))


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    p = argparse.ArgumentParser(
        prog="graphopt", parents=[common],
        description="graphopt: a graph compiler for neural networks with a readable IR. "
                    "MODEL is an .onnx file, a .gir IR dump, or a .pt2 torch.export archive.",
        epilog="Run 'graphopt COMMAND --help' for the options of each command.",
    )
    sub = p.add_subparsers(title="commands", metavar="COMMAND")

    def add(name: str, help: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, parents=[common], help=help, description=help)
        sp.set_defaults(func=func)
        return sp

    sp = add("inspect", "print a model's IR and a summary (ops, parameters, FLOPs, peak memory)", _inspect)
    sp.add_argument("model", help="model file (.onnx, .gir, .pt2)")
    _add_passes(sp, default="")
    sp.add_argument("--dump-ir", metavar="DIR", help="write the IR after every pass into DIR (numbered files)")
    sp.add_argument("--no-ir", action="store_true", help="print only the summary, not the IR text")
    sp.add_argument("--memory", action="store_true",
                    help="plan memory: peak bytes, arena size, lower bound and the buffer lifetimes chart")
    sp.add_argument("--plot", metavar="FILE.png", help="with --memory: also draw the lifetimes into a PNG")
    sp.add_argument("--json", action="store_true", help="print one JSON object instead of text")

    sp = add("optimize", "optimize an ONNX model and write it back as ONNX", _optimize)
    sp.add_argument("model", help="input .onnx file")
    sp.add_argument("-o", "--output", required=True, help="output .onnx file")
    _add_passes(sp, default="canonicalize")
    sp.add_argument("--quantize", choices=["int8"],
                    help="quantize conv / matmul / gemm layers to int8 and write a QDQ model onnxruntime runs")
    sp.add_argument("--calibration", metavar="DATA.npz",
                    help="with --quantize: samples (one array per input, by name or in order; a leading "
                         "sample axis or a batch axis) for static activation ranges; without it, dynamic")
    sp.add_argument("--observer", choices=["minmax", "percentile", "entropy"], default="minmax",
                    help="with --calibration: how a range is chosen from the samples (default minmax)")
    sp.add_argument("--dump-ir", metavar="DIR", help="write the IR after every pass into DIR")
    sp.add_argument("--json", action="store_true", help="print one JSON object instead of text")

    sp = add("run", "compile a model and run it once on given or random inputs", _run)
    sp.add_argument("model", help="model file (.onnx, .gir, .pt2) or compiled artifact (.gopt)")
    sp.add_argument("--inputs", default="random", help="'random' (seeded) or an .npz file with one array per input")
    sp.add_argument("--output", metavar="FILE.npz", help="save the outputs to this .npz file")
    sp.add_argument("--seed", type=int, default=0, help="seed for random inputs")
    _add_passes(sp, default=None)
    _add_tune(sp)
    sp.add_argument("--json", action="store_true", help="print one JSON object instead of text")

    sp = add("compile", "compile a model into a .gopt artifact that graphopt.load() runs", _compile)
    sp.add_argument("model", help="model file (.onnx, .gir, .pt2)")
    sp.add_argument("-o", "--output", required=True, help="artifact path (.gopt)")
    _add_passes(sp, default=None)
    _add_tune(sp)
    sp.add_argument("--dump-ir", metavar="DIR", help="write the IR after every pass into DIR")
    sp.add_argument("--json", action="store_true", help="print one JSON object instead of text")

    sp = add("tune", "search kernel schedules for a model with TVM and fill the tuning database", _tune)
    sp.add_argument("model", help="model file (.onnx, .gir, .pt2)")
    sp.add_argument("--budget", type=float, metavar="SECONDS",
                    help="seconds to spend, spread over the kernels by FLOPs (default: the fast search)")
    sp.add_argument("--json", action="store_true", help="print one JSON object instead of text")

    from .benchmarks.bench import add_arguments as add_bench_arguments

    sp = add("explain", "run the pass pipeline and say why each decision was made", _explain)
    sp.add_argument("model", help="model file (.onnx, .gir, .pt2)")
    _add_passes(sp, default="canonicalize,fuse")
    sp.add_argument("--node", metavar="TEXT", help="only decisions whose subject mentions TEXT (an op or kernel)")
    sp.add_argument("--rejected", action="store_true", help="only rejected candidates")
    sp.add_argument("--rule", action="store_true",
                    help="decide by the passes' rules alone (no cost model, no measuring)")
    sp.add_argument("--json", action="store_true", help="print one JSON object instead of text")

    sp = add("bench", "benchmark graphopt against torch eager, inductor, onnxruntime and TVM", _bench)
    add_bench_arguments(sp)

    from .costmodel.commands import add_arguments as add_costmodel_arguments

    sp = add("costmodel", "the learned cost model: collect measurements, train, eval, adapt", _costmodel)
    add_costmodel_arguments(sp)
    return p


def _add_passes(sp: argparse.ArgumentParser, default: str | None) -> None:
    shown = "the backend's pipeline" if default is None else default or "none"
    sp.add_argument("--passes", default=default, metavar="SPEC",
                    help=f"pass pipeline, e.g. 'canonicalize' (default: {shown})")


def _tune_mode(text: str) -> str:
    from .passes.schedule import parse_tune

    try:
        parse_tune(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _add_tune(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--tune", metavar="MODE", type=_tune_mode,
                    help="kernel schedule search for TVM: none, fast, full or SECONDS (default: fast; "
                         "schedules already in the tuning database are reused without searching)")


def _emit(args: argparse.Namespace, payload: dict[str, Any], text: str) -> None:
    if args.json:
        print(json.dumps(payload, indent=1, default=str))
    else:
        print(text)


def _inspect(args: argparse.Namespace) -> int:
    from .frontends.detect import import_model
    from .ir.analysis import summarize
    from .passes import run_passes

    graph = import_model(args.model)
    graph, log = run_passes(graph, args.passes, dump_ir=args.dump_ir)
    summary = summarize(graph)
    text = "" if args.no_ir else graph.to_text() + "\n"
    text += summary.to_text()
    if log:
        text += "\n" + "\n".join(f"  pass {p['name']}: {p['summary']}" for p in log)
    memory: dict[str, Any] = {}
    if args.memory or args.plot:
        from .passes.memory.report import inspect_memory

        memory, memory_text = inspect_memory(graph, args.passes, args.plot)
        text += "\n" + memory_text
    _emit(args, {"summary": summary.to_json(), "passes": log, **({} if args.no_ir else {"ir": graph.to_text()}),
                 **({"memory": memory} if memory else {})}, text)
    return 0


def _explain(args: argparse.Namespace) -> int:
    from .api import builds_with_tvm, pass_context
    from .frontends.detect import import_model
    from .passes import PassContext, run_passes

    # The decisions compile makes: TVM's target and timing hook, and the cost model.
    ctx = pass_context(args.passes, builds_with_tvm("auto")) if not args.rule else PassContext()
    run_passes(import_model(args.model), args.passes, ctx=ctx)
    chosen = [d for d in ctx.decisions
              if (args.node is None or args.node in d.subject) and not (args.rejected and d.accepted)]
    lines = [f"{len(chosen)} decisions ({sum(d.accepted for d in chosen)} accepted) by {args.passes}"]
    for d in chosen:
        numbers = ", ".join(f"{k}={v:.4g}" for k, v in d.numbers.items())
        mark = "+" if d.accepted else "-"
        lines.append(f"  {mark} [{d.pass_name}] {d.subject}: {d.reason}" + (f" ({numbers})" if numbers else ""))
    _emit(args, {"passes": args.passes, "decisions": [d.to_json() for d in chosen]}, "\n".join(lines))
    return 0


def _optimize(args: argparse.Namespace) -> int:
    import onnx

    from .frontends.onnx import export_onnx, import_onnx
    from .passes import run_passes

    original = onnx.load(args.model) if Path(args.model).exists() else None
    graph = import_onnx(args.model)
    pipeline: Any = args.passes
    if args.quantize:
        from .passes import parse_pipeline
        from .passes.quantize import with_quantization

        pipeline = with_quantization(parse_pipeline(args.passes), graph, args.quantize, args.calibration,
                                     qdq_only=True, observer=args.observer)
    elif args.calibration:
        from .passes.quantize import QuantizeError

        raise QuantizeError("--calibration needs --quantize int8")
    graph, log = run_passes(graph, pipeline, dump_ir=args.dump_ir)
    model = export_onnx(graph, args.output)
    before = len(original.graph.node) if original is not None else None
    after = len(model.graph.node)
    _emit(args, {"input": args.model, "output": args.output, "nodes_before": before, "nodes_after": after,
                 "passes": log}, f"wrote {args.output}: {before} -> {after} ONNX nodes")
    return 0


def _load_or_compile(args: argparse.Namespace) -> Any:
    import graphopt

    if str(args.model).endswith(".gopt"):
        return graphopt.load(args.model)
    return graphopt.compile(args.model, passes=args.passes, tune=args.tune, dump_ir=getattr(args, "dump_ir", None))


def _run(args: argparse.Namespace) -> int:
    from .ir.interpreter import InputError

    compiled = _load_or_compile(args)
    graph = compiled.graph
    if args.inputs == "random":
        arrays = random_inputs(graph, seed=args.seed)
    else:
        with np.load(args.inputs, allow_pickle=False) as data:
            names = [str(v.name) for v in graph.inputs]
            if set(names) <= set(data.files):
                arrays = [data[n] for n in names]
            elif len(data.files) == len(names):
                arrays = [data[k] for k in data.files]  # np.savez default names arr_0, arr_1, … in order
            else:
                raise InputError(f"{args.inputs} holds {data.files}, but the model takes inputs {names}")
    start = time.perf_counter()
    outs = compiled(*arrays)
    seconds = time.perf_counter() - start
    outs = list(outs) if isinstance(outs, tuple) else [outs]
    if args.output:
        np.savez(args.output, *outs)
    stats = [{"shape": list(o.shape), "dtype": str(o.dtype),
              "mean": float(np.mean(o)) if o.size and o.dtype.kind in "fiu" else None} for o in outs]
    lines = [f"ran {args.model} in {seconds * 1e3:.1f} ms ({compiled.report().backend} backend)"]
    lines += [f"  output {i}: {s['dtype']}{s['shape']} mean={s['mean']:.6g}" if s["mean"] is not None
              else f"  output {i}: {s['dtype']}{s['shape']}" for i, s in enumerate(stats)]
    _emit(args, {"model": args.model, "seconds": seconds, "outputs": stats}, "\n".join(lines))
    return 0


def _compile(args: argparse.Namespace) -> int:
    import graphopt

    compiled = graphopt.compile(args.model, passes=args.passes, tune=args.tune, dump_ir=args.dump_ir)
    compiled.save(args.output)
    report = compiled.report()
    _emit(args, {"output": args.output, "report": report.to_json()}, report.to_text() + f"\nwrote {args.output}")
    return 0


def _tune(args: argparse.Namespace) -> int:
    from .api import TVM_PASSES, tvm_pass_context
    from .backends.tvm import require_tvm
    from .frontends.detect import import_model
    from .passes import run_passes

    require_tvm()
    tune = "fast" if args.budget is None else str(args.budget)
    ctx = tvm_pass_context()
    start = time.perf_counter()
    run_passes(import_model(args.model), TVM_PASSES.format(tune=tune), ctx=ctx)
    seconds = time.perf_counter() - start
    rows = [{"kernel": d.subject.removeprefix("kernel "), "tuned": d.accepted, "reason": d.reason, **d.numbers}
            for d in ctx.decisions if d.pass_name == "schedule"]
    lines = [f"tuned {args.model} in {seconds:.1f} s (tune={tune}): {ctx.summary('schedule')}",
             f"  {'kernel':<44} {'default us':>11} {'best us':>11} {'speedup':>8} {'GFLOP/s':>8}  schedule"]
    for r in rows:
        if "best_us" not in r:
            continue
        default = f"{r['default_us']:11.1f}" if "default_us" in r else f"{'-':>11}"
        speedup = f"{r['speedup']:7.2f}x" if "speedup" in r else f"{'-':>8}"
        rate = r.get("flops", 0.0) / r["best_us"] / 1e3 if r["best_us"] else 0.0
        lines.append(f"  {r['kernel'][:44]:<44} {default} {r['best_us']:11.1f} {speedup} {rate:8.1f}  "
                     f"{r['reason'].split(', ')[0]}")
    _emit(args, {"model": args.model, "tune": tune, "seconds": seconds, "summary": ctx.summary("schedule"),
                 "kernels": rows}, "\n".join(lines))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .benchmarks.bench import run_from_args

    return run_from_args(args)


def _costmodel(args: argparse.Namespace) -> int:
    from .costmodel.commands import run

    return run(args)


def random_inputs(graph: Any, seed: int = 0, symbol_size: int = 1) -> list[np.ndarray]:
    """Seeded inputs matching ``graph``'s inputs; symbolic dims get ``symbol_size``.

    Integer inputs (token ids, indices) are drawn from [0, 2) so they index any table.
    """
    rng = np.random.default_rng(seed)
    arrays = []
    for v in graph.inputs:
        shape = [d if isinstance(d, int) else symbol_size for d in v.type.shape]
        dt = v.type.dtype
        if dt.is_float:
            arrays.append(rng.standard_normal(shape).astype(dt.numpy))
        elif dt.value == "bool":
            arrays.append(rng.random(shape) < 0.5)
        else:
            arrays.append(rng.integers(0, 2, shape).astype(dt.numpy))
    return arrays


if __name__ == "__main__":
    sys.exit(main())
