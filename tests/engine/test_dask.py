"""The participant level on an existing Dask cluster gives the serial run's outputs."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from danemap.config import Config
from danemap.errors import ConfigError

#: What may differ between two runs of the same code: the run logs and the records of
#: when and where a run happened (status records, provenance sidecars).
VOLATILE_DIRS = ("logs",)


def _outputs(root: Path) -> dict[str, bytes]:
    files = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and rel.parts[0] not in VOLATILE_DIRS:
            files[str(rel)] = p.read_bytes()
    return files


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory):
    from danemap.simulate import simulate_cohort

    root = tmp_path_factory.mktemp("dask") / "bids"
    simulate_cohort(root, n_subjects=4, n_sites=1, seed=5, resolution=3,
                    modalities=("func",), n_volumes=60)
    return root


def test_dask_cluster_outputs_equal_a_serial_run(small_cohort, tmp_path):
    distributed = pytest.importorskip("dask.distributed")  # a test dependency (danemap[test])
    from danemap.pipeline import run_participant

    run = {"markers": ["functional"], "resolution": 3}
    serial = tmp_path / "serial"
    assert run_participant(small_cohort, serial, Config().updated({"run": run})) == 0
    # loopback only: by default the scheduler would bind a non-loopback address
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        cfg = Config().updated({"run": {**run, "backend": "dask",
                                        "dask_address": cluster.scheduler_address}})
        on_dask = tmp_path / "dask"
        assert run_participant(small_cohort, on_dask, cfg) == 0
        with distributed.Client(cluster.scheduler_address) as client:  # it really ran there
            assert sum(client.run(lambda: 1).values()) == 2
    left, right = _outputs(serial / "danemap"), _outputs(on_dask / "danemap")
    assert sorted(left) == sorted(right)
    assert any(k.endswith(".tsv") and "sub-04" in k for k in left)
    differ = [k for k in left if left[k] != right[k]]
    # the effective configuration records the back-end, and only that may differ
    assert differ == ["config.toml"], f"differ between the serial and the Dask run: {differ}"
    a, b = (tomllib.loads(side["config.toml"].decode()) for side in (left, right))
    assert (b["run"].pop("backend"), b["run"].pop("dask_address")) == ("dask", str(
        cfg.run.dask_address))
    a["run"].pop("backend"), a["run"].pop("dask_address")
    assert a == b


def test_unreachable_scheduler_is_a_config_error():
    dask = pytest.importorskip("dask")
    from danemap.engine import run_many

    with (dask.config.set({"distributed.comm.timeouts.connect": "1s"}),
          pytest.raises(ConfigError, match=r"run\.dask_address.*tcp://127\.0\.0\.1:9")):
        run_many(str, ["a"], backend="dask", dask_address="tcp://127.0.0.1:9", verbose=False)


def test_local_dask_worker_over_the_memory_limit_fails_only_its_item():
    pytest.importorskip("dask.distributed")
    from danemap.engine import run_many

    # the items are evaluated in the workers (a builtin: importable there); the second
    # allocates 2 GiB, past the 0.5 GiB each worker may use: Dask's nanny kills the worker
    items = ["1 + 1", "len(b'x' * 2**31)", "3 * 1"]
    out = run_many(eval, items, backend="dask", n_jobs=2, memory_limit_gib=0.5,
                   verbose=False)
    assert [o.status for o in out] == ["ok", "failed", "ok"]
    assert [out[0].result, out[2].result] == [2, 3]
    assert out[1].error.startswith("[worker] its Dask worker died while running it (over "
                                   "the 0.5 GiB each local worker may use")
