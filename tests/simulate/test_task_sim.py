"""The MID simulator: timing, planted amplitudes, group shift, written files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from danemap.errors import InputError
from danemap.simulate._task import (
    CONDITIONS,
    TaskSimParams,
    mid_events,
    simulate_mid_roi,
    task_responses,
    task_subject,
)


def test_mid_timing() -> None:
    ev, n = mid_events(np.random.default_rng(0))
    cues = ev[ev["trial_type"].str.endswith("_anticipation")]
    assert len(cues) == 60 and (cues["duration"] == 2.0).all()
    assert cues["trial_type"].value_counts().tolist() == [20, 20, 20]
    assert n >= 200 and ev["onset"].max() < n * 2.0
    gaps = np.diff(cues["onset"].to_numpy())
    assert gaps.std() > 0.3  # jittered


def test_responses_match_nilearn_regressors() -> None:
    from danemap.config import TaskConfig
    from danemap.markers.task import design_matrix, parse_conditions, validate_events

    cfg = TaskConfig()
    ev, n = mid_events(np.random.default_rng(1))
    r = task_responses(ev, n, 2.0)
    x = design_matrix(validate_events(ev, "sim", n, 2.0, parse_conditions(cfg.conditions),
                                      cfg.ignore), n, 2.0)
    for i, c in enumerate(CONDITIONS):
        assert np.corrcoef(x[c], r[:, i])[0, 1] > 0.999


def test_adhd_shift_and_truth() -> None:
    from danemap.atlas import load_atlas

    atlas = load_atlas(3)
    p = TaskSimParams(nacc_gain_sd=1e-9)
    _, _, _, td = simulate_mid_roi(atlas, 0, "TD", p)
    _, _, _, adhd = simulate_mid_roi(atlas, 0, "ADHD", TaskSimParams(nacc_gain_sd=0.3))
    assert td["contrasts"]["gain_minus_neutral"]["NAcc_L"] == pytest.approx(0.6, abs=1e-6)
    assert td["contrasts"]["gain_minus_neutral"]["DLPFC_L"] == 0.0
    assert td["contrasts"]["gain_minus_neutral"]["Occipital_L"] == 0.0
    assert "NAcc_L" in td["planted_regions"] and adhd["group"] == "ADHD"
    with pytest.raises(InputError, match="multiple of 3"):
        TaskSimParams(n_trials=10)
    with pytest.raises(InputError, match="group"):
        simulate_mid_roi(atlas, 0, "XX")


def test_task_subject_writes_fmriprep_layout(tmp_path: Path) -> None:
    from danemap.atlas import load_atlas

    truth = task_subject(tmp_path, "sub-07", {"group": "TD"}, {}, load_atlas(3), 0, 1,
                         TaskSimParams(n_trials=9))
    func = tmp_path / "derivatives" / "fmriprep" / "sub-07" / "func"
    assert (func / "sub-07_task-mid_space-MNI152NLin2009cAsym_res-3_desc-preproc_bold"
                   ".nii.gz").is_file()
    assert (func / "sub-07_task-mid_desc-confounds_timeseries.tsv").is_file()
    assert (tmp_path / "sub-07" / "func" / "sub-07_task-mid_events.tsv").is_file()
    assert truth["task"] == "mid" and truth["n_volumes"] > 0
