"""Passes over the IR, the pass manager that runs them, and its instruments."""

from .base import (
    Decision,
    Pass,
    PassContext,
    PassError,
    PassSpecError,
    PassVerifyError,
    register_pass,
    registered_passes,
)
from .instruments import (
    DumpIR,
    Instrument,
    PassLog,
    PrintAfterChange,
    TimingInstrument,
    VerifyInstrument,
)
from .manager import PassManager, run_passes
from .spec import describe_options, format_pass, format_pipeline, parse_pipeline

__all__ = [
    "Decision", "DumpIR", "Instrument", "Pass", "PassContext", "PassError", "PassLog", "PassManager", "PassSpecError",
    "PassVerifyError", "PrintAfterChange", "TimingInstrument", "VerifyInstrument", "describe_options",
    "format_pass", "format_pipeline", "parse_pipeline", "register_pass", "registered_passes", "run_passes",
]
