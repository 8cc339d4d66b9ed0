"""Measured kernels as an append-only JSON-lines file: one record per (kernel, schedule, threads).

Every record carries what makes it comparable: the feature-schema hash, the device fingerprint
and the package versions. A dataset holds one device and one schema; a record of another is never
mixed in: ``Dataset.load`` and ``Dataset.append`` reject it and count it (``rejected``), and the
count is reported (warning, ``--json``). Thread count is a measurement condition of the same
device, kept per record (and a feature), so 1- and 2-thread runs of one machine share a dataset.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import platform
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ..ir.graph import CONST, Node
from ..ir.parser import parse_ir
from .features import SCHEMA_HASH, TargetInfo, kernel_features, target_info
from .kernels import FULL_SPACE


class DatasetError(ValueError):
    """A dataset cannot be used as asked (several devices in one file, no records, ...)."""


def versions() -> dict[str, str]:
    """The versions of the packages a measurement depends on."""
    out = {}
    for dist in ("graphopt", "apache-tvm", "xgboost-cpu"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_fingerprint(target: TargetInfo | None = None) -> str:
    """This machine as the dataset names it: CPU model, cores and a hash of ISA and cache sizes."""
    t = target or target_info()
    detail = json.dumps([t.vector_bits, t.cores, t.l1d_kb, t.l2_kb, t.l3_kb, list(t.isa), platform.machine()])
    return f"{_cpu_model()} x{t.cores} #{hashlib.sha256(detail.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class Record:
    """One measurement: a kernel (by its IR) with one schedule under one thread count."""

    model: str  # the network the kernel comes from ("synthetic" for random kernels)
    kernel: str  # its ops, for people reading the file: nn.conv2d+math.add+nn.relu
    workload: str  # hash of the kernel's IR text: the same kernel in another network has the same key
    schedule: dict[str, Any]
    threads: int
    latency_us: float  # the fastest repeat: other processes only ever slow a kernel down
    repeats_us: tuple[float, ...]
    features: tuple[float, ...]
    weight: int = 1  # how often the kernel occurs in its network (TenSet's task weight)
    origin: str = ""  # how the kernel was formed: rule, unfused, random grouping, synthetic
    ir: str = ""  # the kernel as a one-node graph (its operands are the graph inputs)
    device: str = ""
    schema: str = SCHEMA_HASH
    versions: dict[str, str] = field(default_factory=dict)
    target: dict[str, Any] = field(default_factory=dict)  # the TargetInfo the features describe (``refeaturize``)

    def key(self) -> tuple[str, str, str, int]:
        """What makes a measurement distinct (resuming a collection skips keys already present)."""
        return record_key(self.model, self.workload, self.schedule, self.threads)

    def to_line(self) -> str:
        """The record as one JSON line."""
        data = asdict(self)
        data["features"] = [round(float(x), 5) for x in self.features]
        data["latency_us"] = float(self.latency_us)
        data["repeats_us"] = [float(x) for x in self.repeats_us]
        return json.dumps(data, sort_keys=True)

    @staticmethod
    def from_json(data: dict[str, Any]) -> Record:
        """A record read back from ``to_line``'s JSON."""
        data = dict(data)
        data["repeats_us"] = tuple(data.get("repeats_us", ()))
        data["features"] = tuple(data["features"])
        return Record(**data)


def record_key(model: str, workload: str, schedule: dict[str, Any], threads: int) -> tuple[str, str, str, int]:
    """The identity of a measurement (``Record.key``) before it is made."""
    return model, workload, json.dumps(schedule, sort_keys=True), threads


class Dataset:
    """The records of one device and one feature schema, read from and appended to a JSON-lines file."""

    def __init__(self, path: str | Path | None, device: str | None = None, schema: str | None = SCHEMA_HASH,
                 records: Sequence[Record] = ()) -> None:
        self.path = Path(path) if path is not None else None
        self.device = device
        self.schema = schema
        self.records: list[Record] = list(records)
        self.rejected: Counter[str] = Counter()

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = None, schema: str | None = SCHEMA_HASH,
             quiet: bool = False) -> Dataset:
        """Read ``path``: records of ``device`` (default: the file's only device) and ``schema``
        (None: of any schema, for ``refeaturize`` alone: other schemas' features mean other things).

        Records of another device or schema, and unreadable lines, are left out and counted in
        ``rejected`` (with a warning unless ``quiet``); a file holding several devices needs ``device``.
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no dataset at {path}")
        rows: list[Record] = []
        rejected: Counter[str] = Counter()
        # The shipped dataset is xz-compressed (a twentieth of the size); collected ones are plain.
        text = lzma.decompress(path.read_bytes()).decode() if path.suffix == ".xz" else path.read_text()
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                rows.append(Record.from_json(json.loads(line)))
            except (ValueError, TypeError, KeyError):
                rejected["unreadable"] += 1
        if device is None:
            devices = Counter(r.device for r in rows if schema is None or r.schema == schema)
            if len(devices) > 1:
                listed = ", ".join(f"{d!r} ({n})" for d, n in devices.most_common())
                raise DatasetError(f"{path} holds records of several devices: {listed}; choose one")
            device = next(iter(devices), None)
        ds = cls(path, device, schema)
        ds.rejected = rejected
        ds._admit(rows)
        if ds.rejected and not quiet:
            warnings.warn(f"dataset {path}: {ds.describe_rejected()}", stacklevel=2)
        return ds

    def _admit(self, rows: Iterable[Record]) -> list[Record]:
        admitted = []
        for r in rows:
            if self.schema is not None and r.schema != self.schema:
                self.rejected["other feature schema"] += 1
            elif self.device is not None and r.device != self.device:
                self.rejected["other device"] += 1
            else:
                self.device = self.device or r.device
                self.records.append(r)
                admitted.append(r)
        return admitted

    def describe_rejected(self) -> str:
        """``rejected 12 records: 10 other device, 2 unreadable`` (empty when none)."""
        if not self.rejected:
            return ""
        parts = ", ".join(f"{n} {why}" for why, n in sorted(self.rejected.items()))
        return f"rejected {sum(self.rejected.values())} records ({parts}); they were not used"

    def append(self, records: Iterable[Record]) -> int:
        """Add records of this dataset's device and schema (others are rejected and counted); how many."""
        if self.path is not None and self.path.suffix == ".xz":
            raise DatasetError(f"{self.path} is compressed and read-only; collect into a .jsonl file")
        admitted = self._admit(records)
        if admitted and self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as f:
                for r in admitted:
                    f.write(r.to_line() + "\n")
        return len(admitted)

    def keys(self) -> set[tuple[str, str, str, int]]:
        """The keys of every record (what a resumed collection skips)."""
        return {r.key() for r in self.records}

    def select(self, *, threads: int | None = None, models: Iterable[str] | None = None,
               exclude_models: Iterable[str] = ()) -> Dataset:
        """The records measured with ``threads`` and from ``models`` (all when None), minus ``exclude_models``."""
        keep_models = set(models) if models is not None else None
        drop = set(exclude_models)
        rows = [r for r in self.records if (threads is None or r.threads == threads)
                and (keep_models is None or r.model in keep_models) and r.model not in drop]
        return Dataset(None, self.device, self.schema, rows)

    def merged(self, other: Dataset) -> Dataset:
        """This dataset's records and ``other``'s, of the same schema, in memory: a deliberate mix of
        devices for training one model on several (each record's features describe its own
        device); ``device`` names them all. (Written to one file, it needs ``load(device=...)``.)"""
        if other.schema != self.schema:
            raise DatasetError(f"cannot merge datasets of feature schemas {self.schema} and {other.schema}")
        devices = [d for d in dict.fromkeys([*(self.device or "").split(" + "), *(other.device or "").split(" + ")]) if d]
        return Dataset(None, " + ".join(devices) or None, self.schema, [*self.records, *other.records])

    def without_ops(self, ops: Iterable[str]) -> Dataset:
        """The records whose kernels contain none of ``ops`` (to re-measure those after their lowering changed)."""
        drop = set(ops)
        return Dataset(None, self.device, self.schema, [r for r in self.records if not drop & set(r.kernel.split("+"))])

    def write(self, path: str | Path) -> Path:
        """Write every record to a new file ``path`` (xz-compressed when it ends in ``.xz``)."""
        path = Path(path)
        text = "".join(r.to_line() + "\n" for r in self.records)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".xz":
            path.write_bytes(lzma.compress(text.encode(), preset=9 | lzma.PRESET_EXTREME))
        else:
            path.write_text(text)
        return path

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Features (n x d) and latencies in microseconds (n)."""
        if not self.records:
            raise DatasetError("the dataset has no records")
        x = np.array([r.features for r in self.records], np.float32)
        y = np.array([r.latency_us for r in self.records], np.float64)
        return x, y

    def groups(self) -> list[str]:
        """The task of each record for ranking metrics: the same kernel under the same thread count."""
        return [f"{r.model}/{r.workload}/{r.threads}" for r in self.records]

    def candidate_set(self) -> list[bool]:
        """Whether each record belongs to a full schedule-search candidate set (``collect --full-space``)."""
        return [r.origin == FULL_SPACE for r in self.records]

    def models(self) -> list[str]:
        """The networks present, most records first."""
        return [m for m, _ in Counter(r.model for r in self.records).most_common()]

    def summary(self) -> dict[str, Any]:
        """Counts for reports and the dataset card."""
        return {"path": str(self.path) if self.path else None, "device": self.device, "schema": self.schema,
                "records": len(self.records), "kernels": len({(r.model, r.workload) for r in self.records}),
                "by_model": dict(Counter(r.model for r in self.records).most_common()),
                "by_threads": dict(sorted(Counter(r.threads for r in self.records).items())),
                "by_origin": dict(Counter(r.origin for r in self.records).most_common()),
                "rejected": dict(self.rejected)}

    def __len__(self) -> int:
        return len(self.records)


def kernel_from_ir(text: str) -> Node:
    """The kernel node of a record's ``ir`` (a one-kernel graph whose inputs are its operands)."""
    graph = parse_ir(text)
    return [n for n in graph.nodes if n.op != CONST][-1]


def record_target(r: Record) -> TargetInfo:
    """The machine a record was measured on, as its features describe it: the record's own
    ``target``; for a record without one, this host, if it is the record's device (a measurement of
    another machine must not get this one's vector width and caches)."""
    if r.target:
        return TargetInfo(**{**r.target, "isa": tuple(r.target.get("isa", ()))})
    host = target_info(threads=r.threads)
    if device_fingerprint(host) != r.device:
        raise DatasetError(f"a record of {r.device!r} holds no target description and this machine is "
                           f"{device_fingerprint(host)!r}: its features cannot be recomputed here")
    return host


def refeaturize(records: Iterable[Record], progress: Callable[[Iterable[Record]], Iterable[Record]] = iter
                ) -> list[Record]:
    """The records with features recomputed from their IR by the current schema (no re-measuring),
    each for the machine it was measured on (``record_target``)."""
    out = []
    for r in progress(records):
        target = record_target(r)
        feats = kernel_features(kernel_from_ir(r.ir), r.schedule, target)
        out.append(replace(r, features=tuple(float(x) for x in feats), schema=SCHEMA_HASH, target=asdict(target)))
    return out
