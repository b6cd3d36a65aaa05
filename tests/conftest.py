"""Shared pytest fixtures.

``shared_data`` locates ``../shared/data`` relative to the repository root (not the
current directory). Without it the real-data tests skip with a reason, except under
``CI=true``, where a missing folder is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# ITK (ANTsPy) reads its thread count once per process, at its first use, whichever test
# that is: one thread makes the raw-T1w path deterministic (see markers/structural/_ants.py)
os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
# danemap's per-machine cache (the Colin27 atlas-space map, about 2.5 minutes to compute):
# the suite keeps its own, beside pytest's, shared by every test and the processes they
# start, so it is computed once per checkout, never in the user's home
os.environ.setdefault("DANEMAP_CACHE_DIR", str(REPO_ROOT / ".pytest_cache" / "danemap"))


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ``../shared/data``; fails under CI=true when missing, else skips."""
    if not SHARED_DATA.is_dir():
        msg = f"real data folder {SHARED_DATA} is missing"
        if _in_ci():
            pytest.fail(f"{msg}, and CI=true requires tests/real to run")
        pytest.skip(msg)
    return SHARED_DATA
