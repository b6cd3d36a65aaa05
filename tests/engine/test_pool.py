"""The local pool: BLAS threads per worker, the memory limit, dead workers, worker logs."""

from __future__ import annotations

import functools
import logging
import os

import pytest

from danemap.engine import blas_threads, run_many, usable_cores


def _blas(item):
    import numpy as np  # noqa: F401  (loads OpenBLAS in the worker)
    from threadpoolctl import threadpool_info

    return {"pid": os.getpid(), "omp": os.environ.get("OMP_NUM_THREADS"),
            "threads": [lib["num_threads"] for lib in threadpool_info()]}


def _hungry(item, gib=2.0):
    import numpy as np

    if item == "sub-02":
        block = np.ones(int(gib * 2**30) // 8)  # touches every page: resident
        return float(block.sum())
    return item


def _die(item):
    if item == "sub-02":
        os._exit(3)
    return item


def _chatty(item):
    from danemap._utils.logging import get_logger

    get_logger("markers").warning("%s: a warning from the worker", item)
    return item


def test_blas_threads_rule():
    assert blas_threads(2, cores=2) == 1
    assert blas_threads(2, cores=8) == 4
    assert blas_threads(16, cores=4) == 1
    assert blas_threads(1) == usable_cores()


def test_each_worker_is_limited_to_its_share_of_the_cores():
    out = run_many(functools.partial(_blas), [f"sub-{i:02d}" for i in range(4)], n_jobs=2,
                   verbose=False)
    assert [o.status for o in out] == ["ok"] * 4
    expected = blas_threads(2)
    assert 2 * expected <= usable_cores() or expected == 1
    assert len({o.result["pid"] for o in out}) == 2  # two long-lived workers
    for o in out:
        assert o.result["threads"], "numpy's BLAS is not visible to threadpoolctl"
        assert max(o.result["threads"]) == expected, o.result
        assert o.result["omp"] == str(expected)


def test_worker_over_the_memory_limit_is_stopped_and_the_others_complete():
    items = ["sub-01", "sub-02", "sub-03", "sub-04"]
    out = run_many(functools.partial(_hungry), items, n_jobs=2, memory_limit_gib=0.5,
                   verbose=False)
    assert [o.status for o in out] == ["ok", "failed", "ok", "ok"]
    err = out[1].error
    assert err.startswith("[memory limit]")
    assert "over the limit of 0.5 GiB" in err
    peak = float(err.split("reached ")[1].split(" GiB")[0])
    assert 0.5 <= peak < 2.0  # stopped on the way, not after the whole 2 GiB
    assert out[1].peak_mib > 512
    assert all(0 < o.peak_mib < 512 for o in out if o.status == "ok")


def test_memory_limit_applies_with_one_job_too():
    out = run_many(functools.partial(_hungry, gib=1.0), ["sub-01", "sub-02"],
                   memory_limit_gib=0.5, verbose=False)
    assert [o.status for o in out] == ["ok", "failed"]
    assert "memory limit" in out[1].error


def test_a_dead_worker_fails_only_its_item():
    out = run_many(functools.partial(_die), ["sub-01", "sub-02", "sub-03", "sub-04"],
                   n_jobs=2, verbose=False)
    assert [o.status for o in out] == ["ok", "failed", "ok", "ok"]
    assert "died (exit code 3)" in out[1].error


def test_worker_log_records_reach_the_parent(caplog):
    with caplog.at_level(logging.INFO, logger="danemap"):
        logging.getLogger("danemap").propagate = True
        out = run_many(functools.partial(_chatty), ["sub-01", "sub-02"], n_jobs=2,
                       verbose=False)
    assert [o.status for o in out] == ["ok", "ok"]
    got = [(r.name, r.processName, r.getMessage()) for r in caplog.records
           if "from the worker" in r.getMessage()]
    assert sorted(m for _, _, m in got) == ["sub-01: a warning from the worker",
                                           "sub-02: a warning from the worker"]
    assert all(n == "danemap.markers" and p.startswith("danemap-worker-") for n, p, _ in got)


def test_negative_memory_limit_is_a_config_error():
    from danemap.errors import ConfigError

    with pytest.raises(ConfigError, match=r"run\.memory_limit_gib"):
        run_many(_blas, ["a"], memory_limit_gib=-1)


def test_pool_progress_bar_counts_every_participant(monkeypatch):
    import danemap._utils.logging as dlog

    calls = []

    def spy(items, description, total=None, verbose=True):
        calls.append((description, total, verbose))
        yield from items

    monkeypatch.setattr(dlog, "progress", spy)
    out = run_many(functools.partial(_die), ["sub-01", "sub-03", "sub-04"], n_jobs=2,
                   description="participants")
    assert [o.status for o in out] == ["ok"] * 3
    assert calls == [("participants", 3, True)]


def _sleepy(item):
    import time

    time.sleep(0.1 if item == "sub-01" else 60)
    return item


def _gone(pids, seconds=10.0):
    import time

    import psutil

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p)
                 and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return True
        time.sleep(0.1)
    return False


def test_an_error_in_the_parent_stops_every_worker(monkeypatch):
    import psutil

    import danemap._utils.logging as dlog

    workers = []
    before = {p.pid for p in psutil.Process().children()}  # e.g. Dask's resource tracker

    def interrupted(items, description, total=None, verbose=True):
        for item in items:
            workers.extend(p.pid for p in psutil.Process().children() if p.pid not in before)
            yield item
            raise KeyboardInterrupt

    monkeypatch.setattr(dlog, "progress", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_many(functools.partial(_sleepy), ["sub-01", "sub-02", "sub-03"], n_jobs=2)
    assert len(workers) >= 2
    assert _gone(workers, 5.0), "workers outlived the interrupted run"


_KILLED_PARENT = """
import functools, os, time
from pathlib import Path
from danemap.engine import run_many

def slow(item):
    Path({here!r}, f"{{os.getpid()}}.pid").write_text(item)
    time.sleep(60)

run_many(functools.partial(slow), ["sub-01", "sub-02"], n_jobs=2, verbose=False)
"""


def test_workers_die_with_a_killed_parent(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-c", _KILLED_PARENT.format(here=str(tmp_path))],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while len(list(tmp_path.glob("*.pid"))) < 2 and time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the parent stopped early: {proc.stderr.read()[-2000:]}")
        time.sleep(0.05)
    pids = [int(p.stem) for p in tmp_path.glob("*.pid")]
    assert len(pids) == 2
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert _gone(pids), "a worker outlived its SIGKILLed parent (it could go on writing)"


def test_participant_level_records_participants_stopped_at_the_memory_limit(tmp_path):
    import pandas as pd

    from danemap.cli import main
    from danemap.simulate import simulate_cohort

    bids = simulate_cohort(tmp_path / "bids", n_subjects=2, n_sites=1, seed=2, resolution=3,
                           modalities=("func",), n_volumes=40)
    out = tmp_path / "out"
    # 0.05 GiB is below what any worker needs: every participant is stopped, nothing done
    rc = main([str(bids), str(out), "participant", "--n-jobs", "2", "--memory-limit", "0.05"])
    assert rc == 2
    failures = pd.read_csv(out / "danemap" / "logs" / "failures.tsv", sep="\t")
    assert sorted(failures["participant_id"]) == ["sub-01", "sub-02"]
    assert set(failures["stage"]) == {"memory limit"}
    assert failures["error"].str.contains("over the limit of 0.05 GiB").all()
    assert not list((out / "danemap").glob("sub-*"))
