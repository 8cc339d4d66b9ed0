"""Calibration: user samples checked against the graph's inputs, run on the interpreter while
observers record the range of every activation a layer will quantize.

Samples come as an iterable (each sample an array for a one-input model, a tuple/list of arrays
in input order, or a dict by input name; torch tensors are fine), a single batched array, or an
``.npz`` file holding one array per input (by input name, else in order): an array with one more
axis than its input is a stack of samples; one of the input's rank is split along axis 0 into
chunks of the input's batch size.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...ir.graph import Graph, Value
from ...ir.interpreter import InputError, run_node
from ...ir.types import DType, TensorType
from .observers import Observer, ObserverKind, make_observer

DYNAMIC_BATCH_CHUNK = 32  # samples per interpreter run when the batch dim is symbolic


class CalibrationError(InputError):
    """Calibration data that does not fit the model: the message names the sample and input."""


@dataclass(frozen=True, eq=False)
class CalibrationSet:
    """Checked calibration samples, each a tuple of arrays in graph-input order."""

    samples: tuple[tuple[np.ndarray, ...], ...]
    source: str = "memory"

    def __len__(self) -> int:
        return len(self.samples)

    def __str__(self) -> str:
        return f"<{len(self.samples)} samples from {self.source}>"

    def head(self, n: int) -> CalibrationSet:
        """The first ``n`` samples."""
        return CalibrationSet(self.samples[:n], self.source)

    @staticmethod
    def of(data: Any, graph: Graph) -> CalibrationSet:
        """``data`` (see the module docstring) checked against ``graph``'s inputs."""
        if isinstance(data, CalibrationSet):
            samples, source = data.samples, data.source
        elif isinstance(data, (str, Path)):
            samples, source = _from_npz(Path(data), graph), str(data)
        elif _is_array(data):
            samples, source = _split_batched([_to_numpy(data)], graph), "memory"
        elif isinstance(data, Iterable) and not isinstance(data, Mapping):
            samples, source = [_sample(s, graph, i) for i, s in enumerate(data)], "memory"
        else:
            raise CalibrationError(f"calibration data must be samples, a batched array or an .npz path, "
                                   f"got {type(data).__name__}")
        if not samples:
            raise CalibrationError("calibration data holds no samples")
        for i, sample in enumerate(samples):
            check_sample(graph, sample, i)
        return CalibrationSet(tuple(tuple(s) for s in samples), source)


def _is_array(x: Any) -> bool:
    return isinstance(x, np.ndarray) or type(x).__module__.startswith("torch")


def _to_numpy(x: Any) -> np.ndarray:
    if type(x).__module__.startswith("torch"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _sample(s: Any, graph: Graph, index: int) -> tuple[np.ndarray, ...]:
    names = [str(v.name) for v in graph.inputs]
    if isinstance(s, Mapping):
        missing = [n for n in names if n not in s]
        if missing:
            raise CalibrationError(f"calibration sample {index} lacks input(s) {', '.join('%' + m for m in missing)}")
        return tuple(_to_numpy(s[n]) for n in names)
    if _is_array(s):
        return (_to_numpy(s),)
    if isinstance(s, (tuple, list)):
        return tuple(_to_numpy(a) for a in s)
    raise CalibrationError(f"calibration sample {index} is a {type(s).__name__}; expected an array, a tuple of "
                           f"arrays or a dict by input name")


def check_sample(graph: Graph, sample: Sequence[np.ndarray], index: int) -> None:
    """Raise CalibrationError naming the input when ``sample`` does not fit ``graph``'s inputs."""
    if len(sample) != len(graph.inputs):
        names = ", ".join(f"%{v.name}: {v.type}" for v in graph.inputs)
        raise CalibrationError(f"calibration sample {index} has {len(sample)} arrays; the model takes "
                               f"{len(graph.inputs)} inputs ({names})")
    for v, a in zip(graph.inputs, sample):
        want: TensorType = v.type
        try:
            got = DType.from_numpy(a.dtype)
        except ValueError:
            got = None
        shape_ok = a.ndim == want.rank and all(isinstance(d, str) or d == n for d, n in zip(want.shape, a.shape))
        if got != want.dtype or not shape_ok:
            raise CalibrationError(f"calibration sample {index}, input %{v.name}: expected {want}, got "
                                   f"{a.dtype}{list(a.shape)}")


def _split_batched(arrays: list[np.ndarray], graph: Graph) -> list[tuple[np.ndarray, ...]]:
    """Arrays holding many samples (a leading sample axis, or a batch bigger than the input's)."""
    if len(arrays) != len(graph.inputs):
        raise CalibrationError(f"calibration data has {len(arrays)} arrays; the model takes {len(graph.inputs)} inputs")
    counts, parts = [], []
    for v, a in zip(graph.inputs, arrays):
        t = v.type
        if a.ndim == t.rank + 1:
            parts.append(list(a))
        elif a.ndim == t.rank and t.rank > 0:
            step = t.shape[0] if isinstance(t.shape[0], int) else DYNAMIC_BATCH_CHUNK
            if step == 0 or a.shape[0] % step and isinstance(t.shape[0], int):
                raise CalibrationError(f"calibration input %{v.name}: {a.shape[0]} rows are not a multiple of the "
                                       f"batch size {step} of {t}")
            parts.append([a[i:i + step] for i in range(0, a.shape[0], step)])
        else:
            raise CalibrationError(f"calibration input %{v.name}: expected samples of {t}, got {a.dtype}{list(a.shape)}")
        counts.append(len(parts[-1]))
    if len(set(counts)) != 1:
        raise CalibrationError(f"calibration inputs hold different numbers of samples: {counts}")
    return list(zip(*parts))


def _from_npz(path: Path, graph: Graph) -> list[tuple[np.ndarray, ...]]:
    if not path.is_file():
        raise CalibrationError(f"calibration file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            names = [str(v.name) for v in graph.inputs]
            if set(names) <= set(data.files):
                arrays = [data[n] for n in names]
            elif len(data.files) == len(names):
                arrays = [data[k] for k in data.files]
            else:
                raise CalibrationError(f"{path} holds {data.files}, but the model takes inputs {names}")
    except (OSError, ValueError) as e:
        if isinstance(e, CalibrationError):
            raise
        raise CalibrationError(f"{path}: not a readable .npz file ({e})") from None
    return _split_batched(arrays, graph)


def observe(graph: Graph, samples: CalibrationSet, values: Iterable[Value], kind: ObserverKind,
            percentile: float = 99.99) -> dict[Value, tuple[float, float]]:
    """The calibrated range of each of ``values`` over ``samples`` (interpreter runs)."""
    wanted = set(values)
    observers: dict[Value, Observer] = {v: make_observer(kind, percentile) for v in wanted}
    last_use = {v: i for i, n in enumerate(graph.nodes) for v in n.inputs}
    for sample in samples.samples:
        env: dict[Value, np.ndarray] = dict(zip(graph.inputs, sample))
        for v in graph.inputs:
            if v in wanted:
                observers[v].update(env[v])
        for i, node in enumerate(graph.nodes):
            for v, out in zip(node.outputs, run_node(node, [env[u] for u in node.inputs])):
                env[v] = out
                if v in wanted:
                    observers[v].update(out)
            for u in node.inputs:  # free what no later node reads, so big models fit in memory
                if last_use.get(u) == i:
                    env.pop(u, None)
    return {v: o.range() for v, o in observers.items()}
