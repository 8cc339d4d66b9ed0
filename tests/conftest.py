"""Shared test set-up: the test helpers (``models``, ``model_utils``) import as top-level modules.

pytest runs with ``--import-mode=importlib`` (the repo root is itself a package), which does not put
this folder on ``sys.path``; tests write ``from models import make_model``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Tests must not read or grow the user's tuning database and artifact cache.
if "GRAPHOPT_CACHE_DIR" not in os.environ:
    os.environ["GRAPHOPT_CACHE_DIR"] = tempfile.mkdtemp(prefix="graphopt-test-cache-")
# A test's TVM build must come from its own compile, never from an earlier test's (tests/test_build_cache.py
# turns the build cache back on for itself).
os.environ["GRAPHOPT_BUILD_CACHE"] = "0"
