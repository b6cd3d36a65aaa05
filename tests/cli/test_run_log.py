"""Each BIDS-App level writes its run log: debug lines and the workers' tracebacks."""

from __future__ import annotations

import gzip
import re

import pytest

from danemap.cli import main


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory):
    from danemap.simulate import simulate_cohort

    root = tmp_path_factory.mktemp("runlog") / "bids"
    simulate_cohort(root, n_subjects=4, n_sites=1, seed=5, resolution=3,
                    modalities=("func",), n_volumes=60)
    bold = next((root / "derivatives" / "fmriprep" / "sub-02" / "func").glob("*_bold.nii.gz"))
    data = gzip.decompress(bold.read_bytes())
    bold.write_bytes(gzip.compress(data[: len(data) // 2]))  # a truncated image
    return root


@pytest.mark.parametrize("n_jobs", ["1", "2"])
def test_participant_level_writes_a_run_log_with_the_failed_traceback(small_cohort, tmp_path,
                                                                      n_jobs):
    import logging

    out = tmp_path / "out"
    rc = main([str(small_cohort), str(out), "participant", "--participant-label", "01", "02",
               "--n-jobs", n_jobs])
    assert rc == 1  # sub-02 failed, sub-01 completed
    logs = sorted((out / "danemap" / "logs").glob("*.log"))
    assert len(logs) == 1
    assert re.fullmatch(r"participant-\d{8}T\d{6}Z\.log", logs[0].name)
    text = logs[0].read_text(encoding="utf-8")
    assert " DEBUG danemap" in text
    assert re.search(r"ERROR danemap\.engine .*sub-02: failed", text)
    tb = text[text.index("sub-02: worker traceback:"):]
    assert "Traceback (most recent call last)" in tb and "InputError" in tb
    assert "participant level finished" in text and "command: danemap " in text
    # the handler is gone and the package logger's level restored after the level
    handlers = logging.getLogger("danemap").handlers
    assert not any(isinstance(h, logging.FileHandler) for h in handlers)


def test_run_log_records_an_error_that_stops_the_level(tmp_path):
    out = tmp_path / "out"
    assert main([str(tmp_path / "no-such-bids"), str(out), "group"]) == 2
    (log,) = (out / "danemap" / "logs").glob("group-*.log")
    text = log.read_text(encoding="utf-8")
    assert "group level stopped by" in text and "Traceback" in text


def test_no_run_log_is_written_into_the_input(small_cohort):
    assert main([str(small_cohort), str(small_cohort / "out"), "participant"]) == 2
    assert not (small_cohort / "out").exists()
