"""Run every case of the bad-input corpus (:mod:`tests.corpus._cases`).

Each case must end as it declares: an ``InputError`` naming the file and the field, a
success (possibly with a documented warning), or for the command line a failure whose
message is in ``participant_status.tsv`` or on stderr. Never a traceback, another
exception type, raw exception text (``ValueError:``, ``EmptyDataError``...) in the status
table, a hang (per-case timeout) or a multi-GB allocation (tracemalloc peak for unit
cases; an address-space limit for the CLI subprocess).
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tracemalloc
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from danemap.errors import DanemapWarning, InputError

try:
    from tests.corpus._cases import CASES, Call, Case, Fails, Raises, Rejected, Works
except ImportError:  # run from another working directory: import the module by path
    import importlib.util

    _spec = importlib.util.spec_from_file_location(
        "danemap_corpus_cases", Path(__file__).with_name("_cases.py"))
    assert _spec is not None and _spec.loader is not None
    _mod = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = _mod
    _spec.loader.exec_module(_mod)
    CASES, Call, Case = _mod.CASES, _mod.Call, _mod.Case
    Fails, Raises, Rejected, Works = _mod.Fails, _mod.Raises, _mod.Rejected, _mod.Works

UNIT_TIMEOUT_S = 30
CLI_TIMEOUT_S = 120
UNIT_PEAK_BYTES = 256 * 2**20  # tracemalloc peak of one unit case
CLI_ADDRESS_SPACE = 2 * 2**30  # RLIMIT_AS of the CLI subprocess (a run peaks near 0.25 GB)
#: raw exception text that must never reach participant_status.tsv
RAW = re.compile(r"Traceback|\b(ValueError|KeyError|IndexError|TypeError|AttributeError|"
                 r"EmptyDataError|ParserError|LinAlgError|ZeroDivisionError|RuntimeError|"
                 r"AssertionError|MemoryError|OSError|FileNotFoundError)\b")
_RUN = "import sys; from danemap.cli import main; sys.exit(main(sys.argv[1:]))"


def _has(text: str, word: str | tuple[str, ...]) -> bool:
    alternatives = (word,) if isinstance(word, str) else word
    return any(w.lower() in text.lower() for w in alternatives)


def _missing(text: str, words: Any) -> list[Any]:
    return [w for w in words if not _has(text, w)]


def _params() -> list[Any]:
    out = []
    for c in CASES:
        marks = [pytest.mark.xfail(strict=False, reason=c.xfail)] if c.xfail else []
        out.append(pytest.param(c, id=c.name, marks=marks))
    return out


class _Hang(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Hang


@pytest.fixture(scope="session")
def corpus_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated dataset (2 participants, 60 volumes, 3 mm) the CLI cases copy."""
    from danemap.simulate import simulate_cohort

    root = tmp_path_factory.mktemp("corpus") / "base"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DanemapWarning)
        simulate_cohort(root, n_subjects=2, n_sites=1, seed=1, resolution=3,
                        modalities=("func",), n_volumes=60)
    return root


@pytest.fixture(scope="session")
def corpus_task_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated MID-task dataset (2 participants, 3 mm) the events cases copy."""
    from danemap.simulate import simulate_cohort

    root = tmp_path_factory.mktemp("corpus") / "task"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DanemapWarning)
        simulate_cohort(root, n_subjects=2, n_sites=1, seed=1, resolution=3,
                        modalities=("task",))
    return root


def test_corpus_is_a_list_of_at_least_40_named_cases() -> None:
    names = [c.name for c in CASES]
    assert len(names) >= 40 and len(set(names)) == len(names)
    assert all(c.kind in ("unit", "cli") and c.doc for c in CASES)
    assert all(isinstance(c.expect, Raises | Works) for c in CASES if c.kind == "unit")


def _run_unit(c: Case, tmp: Path) -> None:
    thunk = c.build(tmp)
    result: Any = None
    error: BaseException | None = None
    previous = signal.signal(signal.SIGALRM, _alarm)
    tracemalloc.start()
    timeout = c.timeout_s or UNIT_TIMEOUT_S
    signal.alarm(timeout)
    try:
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            try:
                result = thunk()
            except _Hang:
                pytest.fail(f"{c.name}: no result after {timeout} s (a hang)")
            except Exception as exc:
                error = exc
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < UNIT_PEAK_BYTES, f"{c.name}: allocated {peak / 2**20:.0f} MiB"
    messages = " | ".join(str(w.message) for w in record
                          if issubclass(w.category, DanemapWarning))
    expect = c.expect
    if isinstance(expect, Raises):
        assert error is not None, f"{c.name}: expected an InputError, it succeeded"
        assert isinstance(error, InputError), (
            f"{c.name}: expected an InputError, got {type(error).__name__}: {error}")
        text = str(error)
        assert not _missing(text, expect.words), (
            f"{c.name}: the message lacks {_missing(text, expect.words)}: {text}")
        assert not [w for w in expect.absent if w.lower() in text.lower()], text
        return
    assert isinstance(expect, Works)
    if error is not None:
        raise AssertionError(f"{c.name}: expected success, got {type(error).__name__}: "
                             f"{error}") from error
    if expect.check is not None:
        assert expect.check(result), f"{c.name}: the result is not the expected one"
    assert not _missing(messages, expect.warns), (
        f"{c.name}: expected a warning with {expect.warns}, found {messages!r}")


def _limit_memory() -> None:  # runs in the CLI child before exec
    resource.setrlimit(resource.RLIMIT_AS, (CLI_ADDRESS_SPACE, CLI_ADDRESS_SPACE))


def _run_cli(c: Case, tmp: Path, base: Path) -> None:
    ds = tmp / "ds"
    shutil.copytree(base, ds, copy_function=os.link, symlinks=True)
    call = c.build(ds, base)
    assert isinstance(call, Call)
    out = tmp / "out"
    argv = [str(call.bids_dir or ds), str(out), "participant", "--n-jobs", "1"]
    if call.label:
        argv += ["--participant-label", "01"]
    argv += list(call.args)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MKL_NUM_THREADS="1", NO_COLOR="1", COLUMNS="200")
    try:
        proc = subprocess.run([sys.executable, "-c", _RUN, *argv], capture_output=True,
                              text=True, timeout=c.timeout_s or CLI_TIMEOUT_S, env=env,
                              cwd=tmp, preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{c.name}: no result after {c.timeout_s or CLI_TIMEOUT_S} s (a hang)")
    stderr = proc.stderr + proc.stdout
    where = f"{c.name}: exit {proc.returncode}; output:\n{stderr[-3000:]}"
    assert "Traceback" not in stderr, where
    assert proc.returncode in (0, 1, 2), where
    status_path = out / "danemap" / "logs" / "participant_status.tsv"
    row: dict[str, Any] | None = None
    if status_path.is_file():
        status = pd.read_csv(status_path, sep="\t", dtype=str, keep_default_na=False)
        for _, r in status.iterrows():
            assert not RAW.search(str(r["error"])), f"{c.name}: raw exception text: {r['error']}"
        rows = status[status["participant_id"] == "sub-01"]
        row = rows.iloc[0].to_dict() if len(rows) else None
    # the status row names the file in its stage ("functional: <file>") and says what
    error = f"{row.get('stage', '')} {row['error']}" if row else ""
    expect = c.expect
    if isinstance(expect, Works):
        assert proc.returncode == 0, where
        if call.label:
            assert row is not None and row["status"] == "ok", f"{where}\nstatus: {row}"
        assert not _missing(stderr, expect.warns), f"{where}\nexpected words {expect.warns}"
    elif isinstance(expect, Fails):
        assert proc.returncode in expect.codes, where
        text = error if expect.where == "status" else stderr
        if expect.where == "status":
            assert row is not None and row["status"] == "failed", f"{where}\nstatus: {row}"
        assert not _missing(text, expect.words), (
            f"{where}\nmissing {_missing(text, expect.words)} in the {expect.where}: {text}")
        assert not [w for w in expect.absent if w.lower() in text.lower()], text
    else:
        assert isinstance(expect, Rejected)
        assert row is not None, where
        if row["status"] == "failed":
            assert not _missing(error, expect.words), f"{where}\nerror: {error}"
        else:
            flagged = row["status"] == "ok" and int(float(row["qc_excluded_runs"] or 0)) >= 1
            assert flagged, f"{where}\nexpected a failure or a flagged run, status: {row}"


@pytest.mark.parametrize("c", _params())
def test_corpus_case(c: Case, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if c.kind == "unit":
        _run_unit(c, tmp_path)
    else:
        fixture = {"rest": "corpus_base", "task": "corpus_task_base"}[c.base]
        _run_cli(c, tmp_path, request.getfixturevalue(fixture))


# --------------------------------------------------------------------------- the harness
def _fake(build: Any, expect: Any) -> Case:
    return Case("fake", "unit", build, expect, None, "a harness self-test")


def test_harness_catches_a_large_allocation(tmp_path: Path) -> None:
    import numpy as np

    case = _fake(lambda tmp: lambda: np.ones(UNIT_PEAK_BYTES + 2**20, dtype=np.uint8), Works())
    with pytest.raises(AssertionError, match="allocated"):
        _run_unit(case, tmp_path)


def test_harness_catches_a_hang(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setattr(sys.modules[__name__], "UNIT_TIMEOUT_S", 1)
    with pytest.raises(pytest.fail.Exception, match="a hang"):
        _run_unit(_fake(lambda tmp: lambda: time.sleep(5), Works()), tmp_path)


def test_harness_catches_another_exception_type(tmp_path: Path) -> None:
    def boom() -> None:
        raise KeyError("x")

    with pytest.raises(AssertionError, match="expected an InputError, got KeyError"):
        _run_unit(_fake(lambda tmp: boom, Raises(("x",))), tmp_path)


def test_cli_address_space_limit_refuses_a_multi_gb_allocation() -> None:
    code = "import numpy as np; a = np.ones(3 * 2**30, dtype=np.uint8)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, preexec_fn=_limit_memory)
    assert proc.returncode != 0 and "MemoryError" in proc.stderr
