import functools

import pytest

from danemap.engine import run_many
from danemap.errors import ConfigError, InputError


def _work(item, fail=("sub-02",), bug=("sub-03",)):
    if item in fail:
        raise InputError(f"{item}: broken input")
    if item in bug:
        return 1 / 0
    return item.upper()


def test_failure_is_isolated_serial():
    out = run_many(_work, ["sub-01", "sub-02", "sub-03", "sub-04"], verbose=False)
    assert [o.status for o in out] == ["ok", "failed", "failed", "ok"]
    assert out[0].result == "SUB-01"
    assert "broken input" in out[1].error
    assert out[2].error.startswith("ZeroDivisionError")
    assert "Traceback" in out[2].detail


def test_failure_is_isolated_process_pool():
    out = run_many(functools.partial(_work), ["sub-01", "sub-02", "sub-04"], n_jobs=2,
                   verbose=False)
    assert [o.status for o in out] == ["ok", "failed", "ok"]


def test_resume_skips_done(tmp_path):
    calls = []

    def work(item):
        calls.append(item)
        if item == "sub-02" and len(calls) < 3:
            raise InputError("transient")
        return item

    first = run_many(work, ["sub-01", "sub-02"], state_dir=tmp_path, verbose=False)
    assert [o.status for o in first] == ["ok", "failed"]
    second = run_many(work, ["sub-01", "sub-02"], state_dir=tmp_path, verbose=False)
    assert [o.status for o in second] == ["skipped", "ok"]
    assert calls == ["sub-01", "sub-02", "sub-02"]
    third = run_many(work, ["sub-01", "sub-02"], state_dir=tmp_path, resume=False,
                     verbose=False)
    assert [o.status for o in third] == ["ok", "ok"]


def test_bad_backend_and_jobs():
    with pytest.raises(ConfigError, match=r"run\.backend"):
        run_many(_work, ["a"], backend="spark")
    with pytest.raises(ConfigError, match=r"run\.n_jobs"):
        run_many(_work, ["a"], n_jobs=0)


def test_dask_backend():
    import dask.distributed  # noqa: F401  (a test dependency: must not skip)

    # workers are separate processes: the function must be importable there (a builtin)
    out = run_many(int, ["1", "x", "3"], backend="dask", n_jobs=2, verbose=False)
    assert [o.status for o in out] == ["ok", "failed", "ok"]
    assert [o.result for o in out] == [1, None, 3]
    assert out[1].error.startswith("ValueError")
