"""The tuning database: the best measured schedule of each kernel, kept across runs.

Records are JSON lines in ``~/.cache/graphopt/tuning.jsonl`` (``GRAPHOPT_CACHE_DIR`` moves the
folder), keyed by workload (a hash of the kernel's IR text), target and package versions. Each
record carries a checksum of its own content: a corrupted record, or one made for another target
or by other versions, is skipped with a warning and never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..ir.graph import Graph
from ..ir.printer import print_graph


def cache_dir() -> Path:
    """graphopt's cache folder (``$GRAPHOPT_CACHE_DIR`` or ``~/.cache/graphopt``)."""
    return Path(os.environ.get("GRAPHOPT_CACHE_DIR") or Path.home() / ".cache" / "graphopt")


def workload_key(kernel: Graph) -> str:
    """A stable hash of a kernel's IR text: same ops, attributes and shapes give the same key."""
    return hashlib.sha256(print_graph(kernel).encode()).hexdigest()[:24]


def versions() -> dict[str, str]:
    """The package versions a measurement depends on."""
    from .. import __version__

    out = {"graphopt": __version__}
    try:
        import tvm

        out["tvm"] = str(tvm.__version__)
    except ImportError:
        pass
    return out


@dataclass(frozen=True)
class TuningRecord:
    """One measured schedule of one kernel on one target."""

    workload: str
    target: str
    schedule: Mapping[str, Any]
    latency_us: float
    versions: Mapping[str, str] = field(default_factory=versions)
    kernel: str = ""  # a readable name (op chain), for people reading the file

    def checksum(self) -> str:
        """sha256 of the record's content (without the checksum itself)."""
        body = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def to_line(self) -> str:
        """The record as one JSON line, checksum included."""
        return json.dumps({**asdict(self), "checksum": self.checksum()}, sort_keys=True)


class TuningDatabase:
    """Best-known schedules; ``lookup`` only ever returns records valid for this target and versions."""

    def __init__(self, path: str | Path | None = None, target: str = "") -> None:
        self.path = Path(path) if path is not None else cache_dir() / "tuning.jsonl"
        self.target = target
        self.skipped: dict[str, int] = {}
        self._best: dict[str, TuningRecord] = {}
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        current = versions()
        for line in self.path.read_text().splitlines():
            if not line.strip():
                continue
            reason = None
            try:
                data = json.loads(line)
                checksum = data.pop("checksum", None)
                rec = TuningRecord(**data)
                if rec.checksum() != checksum:
                    reason = "bad checksum"
                elif rec.target != self.target:
                    reason = "other target"
                elif dict(rec.versions) != current:
                    reason = "other versions"
            except (ValueError, TypeError):
                reason = "unreadable"
            if reason is not None:
                self.skipped[reason] = self.skipped.get(reason, 0) + 1
                continue
            best = self._best.get(rec.workload)
            if best is None or rec.latency_us < best.latency_us:
                self._best[rec.workload] = rec
        if self.skipped:
            detail = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()))
            warnings.warn(f"tuning database {self.path}: skipped records ({detail})", stacklevel=2)

    def lookup(self, workload: str) -> TuningRecord | None:
        """The fastest valid record of ``workload``, if any."""
        return self._best.get(workload)

    def add(self, record: TuningRecord) -> None:
        """Append ``record`` to the file and keep it if it is the new best."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(record.to_line() + "\n")
        best = self._best.get(record.workload)
        if record.target == self.target and (best is None or record.latency_us < best.latency_us):
            self._best[record.workload] = record

    def __len__(self) -> int:
        return len(self._best)
