"""The functional family's inputs: raw BOLD runs paired with fMRIPrep outputs, and fallbacks.

Discovery only indexes files (tests/io/test_bids.py); the pairing rules live in
``danemap.markers.functional._inputs`` and are tested here through the family.
"""

from __future__ import annotations

import json
from pathlib import Path

from danemap.config import Config
from danemap.io import SessionData, discover
from danemap.markers.base import get_family
from danemap.markers.functional import DEFAULT_SPACE, FunctionalFamily, functional_runs

SPACE = "space-MNI152NLin2009cAsym"


def _touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _bids(tmp_path: Path) -> Path:
    """Two participants with two rest runs each; fMRIPrep outputs for sub-01 only."""
    root = tmp_path / "bids"
    _touch(root / "dataset_description.json", json.dumps({"Name": "fake", "BIDSVersion": "1.9.0"}))
    _touch(root / "task-rest_bold.json", json.dumps({"RepetitionTime": 2.0, "TaskName": "rest"}))
    for sub in ("sub-01", "sub-02"):
        _touch(root / sub / "anat" / f"{sub}_T1w.nii.gz")
        for run in (1, 2):
            _touch(root / sub / "func" / f"{sub}_task-rest_run-{run}_bold.nii.gz")
    _touch(root / "sub-01" / "func" / "sub-01_task-rest_run-2_bold.json",
           json.dumps({"RepetitionTime": 1.5}))
    fp = root / "derivatives" / "fmriprep"
    _touch(fp / "dataset_description.json", "{}")
    func = fp / "sub-01" / "func"
    for run in (1, 2):
        stem = f"sub-01_task-rest_run-{run}"
        _touch(func / f"{stem}_{SPACE}_res-2_desc-preproc_bold.nii.gz")
        _touch(func / f"{stem}_{SPACE}_desc-preproc_bold.nii.gz")
        _touch(func / f"{stem}_space-T1w_desc-preproc_bold.nii.gz")
        _touch(func / f"{stem}_{SPACE}_res-2_desc-brain_mask.nii.gz")
        _touch(func / f"{stem}_{SPACE}_desc-brain_mask.nii.gz")
        _touch(func / f"{stem}_desc-confounds_timeseries.tsv", "a\n1\n")
    _touch(func / f"sub-01_task-rest_run-2_{SPACE}_res-2_desc-preproc_bold.json",
           json.dumps({"SkullStripped": False}))
    return root


def _usable(session: SessionData) -> list:
    return [run for _, run in get_family("functional").inputs(session, Config())]


def test_runs_pair_raw_bold_with_fmriprep_outputs(tmp_path):
    root = _bids(tmp_path)
    ds = discover(root)
    s1 = ds.get("01")
    runs = functional_runs(s1)
    assert len(runs) == 2
    assert _usable(s1) == runs
    run2 = runs[1]
    assert run2.entities == {"sub": "01", "task": "rest", "run": "2"}
    assert run2.bold.path.name == "sub-01_task-rest_run-2_bold.nii.gz"
    assert run2.bold.metadata == {"RepetitionTime": 1.5, "TaskName": "rest"}
    stem = f"sub-01_task-rest_run-2_{SPACE}_res-2"
    assert run2.preproc.path.name == f"{stem}_desc-preproc_bold.nii.gz"  # res-2 preferred
    assert run2.preproc.metadata == {"SkullStripped": False}  # fMRIPrep sidecar, on demand
    assert run2.mask.path.name == f"{stem}_desc-brain_mask.nii.gz"
    assert run2.confounds.path.name == "sub-01_task-rest_run-2_desc-confounds_timeseries.tsv"
    assert all(r.fallback is None for r in runs)  # fMRIPrep's preproc is not a fallback
    # sub-02 has raw runs but no fMRIPrep output and no confounds: nothing to compute
    s2 = ds.get("sub-02")
    assert [r.bold.path.name for r in functional_runs(s2)] == [
        "sub-02_task-rest_run-1_bold.nii.gz", "sub-02_task-rest_run-2_bold.nii.gz"]
    assert all(r.preproc is None for r in functional_runs(s2))
    assert _usable(s2) == []


def test_runs_of_sessions(tmp_path):
    root = tmp_path / "sess"
    _touch(root / "dataset_description.json", "{}")
    for ses in ("1", "2"):
        _touch(root / "sub-01" / f"ses-{ses}" / "anat" / f"sub-01_ses-{ses}_T1w.nii")
    fp = tmp_path / "fmriprep_out"
    _touch(fp / "sub-01" / "ses-2" / "func"
           / f"sub-01_ses-2_task-rest_{SPACE}_desc-preproc_bold.nii.gz")
    ds = discover(root, derivatives=fp)
    (run,) = _usable(ds.get("01", "2"))
    assert run.preproc is not None and run.entities == {"sub": "01", "ses": "2",
                                                         "task": "rest"}
    assert functional_runs(ds.get("01", "1")) == []


def test_participants_with_only_fmriprep_outputs(tmp_path):
    """A dataset shared as fMRIPrep outputs only still yields its runs."""
    root = tmp_path / "ds"
    func = root / "derivatives" / "fmriprep" / "sub-07" / "func"
    _touch(root / "dataset_description.json", '{"Name": "x", "BIDSVersion": "1.9.0"}')
    _touch(func / f"sub-07_task-rest_{SPACE}_res-2_desc-preproc_bold.nii.gz")
    _touch(func / "sub-07_task-rest_desc-confounds_timeseries.tsv", "a\n1\n")
    (run,) = _usable(discover(root).get("07"))
    assert run.preproc is not None and run.confounds is not None
    assert run.bold is None


def test_fallback_bold_in_other_mni_space(tmp_path):
    root = tmp_path / "bids"
    _touch(root / "dataset_description.json", json.dumps({"Name": "x", "BIDSVersion": "1.9.0"}))
    func = root / "derivatives" / "fmriprep" / "sub-01" / "func"
    stem = "sub-01_task-rest"
    _touch(func / f"{stem}_space-MNI152NLin6Asym_desc-smoothAROMAnonaggr_bold.nii.gz")
    _touch(func / f"{stem}_space-MNI152NLin6Asym_res-2_desc-preproc_bold.nii.gz")
    _touch(func / f"{stem}_space-T1w_desc-preproc_bold.nii.gz")
    _touch(func / f"{stem}_desc-confounds_timeseries.tsv", "a\n1\n")
    session = discover(root).get("01")
    (run,) = _usable(session)
    assert run.preproc.path.name == f"{stem}_space-MNI152NLin6Asym_res-2_desc-preproc_bold.nii.gz"
    assert run.fallback == (f"{stem}_space-MNI152NLin6Asym_res-2_desc-preproc_bold.nii.gz: no "
                            "space-MNI152NLin2009cAsym_desc-preproc_bold image; this MNI152 "
                            "BOLD is used instead")
    assert run.confounds.path.name == f"{stem}_desc-confounds_timeseries.tsv"
    # the space is the family's setting: asking for NLin6Asym makes it no fallback
    (run,) = functional_runs(session, space="MNI152NLin6Asym")
    assert run.fallback is None and run.preproc.entities["res"] == "2"
    assert FunctionalFamily.space == DEFAULT_SPACE == "MNI152NLin2009cAsym"


def test_fallback_raw_bold_with_confounds_beside_it(tmp_path):
    root = tmp_path / "bids"
    _touch(root / "dataset_description.json", json.dumps({"Name": "x", "BIDSVersion": "1.9.0"}))
    func = root / "sub-01" / "func"
    _touch(func / "sub-01_task-rest_bold.nii.gz")
    _touch(func / "sub-01_task-rest_bold.json", json.dumps({"RepetitionTime": 2.0}))
    _touch(func / "sub-01_task-rest_desc-confounds_timeseries.tsv", "a\n1\n")
    _touch(func / "sub-01_task-rest_desc-confounds_timeseries.json", json.dumps({"a": {}}))
    _touch(func / "sub-01_task-nback_bold.nii.gz")  # no confounds: not usable, left alone
    session = discover(root).get("01")
    nback, rest = functional_runs(session)
    assert nback.preproc is None and nback.fallback is None
    assert _usable(session) == [rest]
    assert rest.preproc.path.name == "sub-01_task-rest_bold.nii.gz"
    assert rest.preproc.metadata == {"RepetitionTime": 2.0}
    assert rest.confounds.path.name == "sub-01_task-rest_desc-confounds_timeseries.tsv"
    assert rest.confounds.metadata == {"a": {}}
    assert rest.fallback == ("sub-01_task-rest_bold.nii.gz: no fMRIPrep output; the BOLD image "
                             "itself is used with sub-01_task-rest_desc-confounds_timeseries.tsv"
                             " and is assumed to be in MNI152 space")


def test_mask_resolution_follows_the_preproc_image(tmp_path):
    root = tmp_path / "bids"
    _touch(root / "dataset_description.json", "{}")
    func = root / "derivatives" / "fmriprep" / "sub-01" / "func"
    stem = f"sub-01_task-rest_{SPACE}"
    _touch(func / f"{stem}_res-1_desc-preproc_bold.nii.gz")
    _touch(func / f"{stem}_res-3_desc-preproc_bold.nii.gz")
    for res in ("1", "2", "3"):
        _touch(func / f"{stem}_res-{res}_desc-brain_mask.nii.gz")
    (run,) = _usable(discover(root).get("01"))
    assert run.preproc.entities["res"] == "1"  # no res-2, no res-less: the lowest other
    assert run.mask.entities["res"] == "1"


def test_runs_of_a_hand_made_session(tmp_path):
    """A SessionData built without discover (no roots) pairs by folder names."""
    func = tmp_path / "fmriprep" / "sub-01" / "func"
    preproc = _touch(func / f"sub-01_task-rest_{SPACE}_desc-preproc_bold.nii.gz")
    other = _touch(tmp_path / "fmriprep" / "sub-01" / "anat"
                   / f"sub-01_task-rest_{SPACE}_desc-preproc_bold.nii.gz")
    session = SessionData("sub-01", None, derivatives={"fmriprep": [other, preproc]})
    (run,) = functional_runs(session)
    assert run.preproc.path == preproc
    assert functional_runs(SessionData("sub-01", None)) == []
