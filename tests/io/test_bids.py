"""Tests of BIDS discovery on a tiny fake tree (zero-size placeholder images)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
from pathlib import Path

import pytest

from danemap.errors import InputError
from danemap.io import (
    SessionData,
    bids_file,
    discover,
    parse_entities,
)

SPACE = "space-MNI152NLin2009cAsym"

ASEG = """\
# Title Segmentation Statistics
# generating_program mri_segstats
# Measure BrainSeg, BrainSegVol, Brain Segmentation Volume, 1139458.000000, mm^3
# Measure EstimatedTotalIntraCranialVol, eTIV, Estimated Total Intracranial Volume, \
1512345.678901, mm^3
# Measure SupraTentorial, SupraTentorialVol, Supratentorial volume, 1000.5, unitless
# NRows 3
# ColHeaders  Index SegId NVoxels Volume_mm3 StructName normMean normStdDev normMin normMax \
normRange
  1   4     6563     6563.4  Left-Lateral-Ventricle     32.6 11.2 11.0 83.0 72.0
  2  11     3613     3613.0  Left-Caudate               77.2  6.8 48.0 96.0 48.0
  3  12     4953     4953.1  Left-Putamen               84.1  5.3 60.0 101.0 41.0
"""

SYNTHSEG = """subject,total intracranial,left putamen,right putamen
sub-01_T1w.nii.gz,1500000.5,4800.25,4700
"""


def _touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture()
def bids(tmp_path):
    root = tmp_path / "bids"
    _touch(root / "dataset_description.json", json.dumps({"Name": "fake", "BIDSVersion": "1.9.0"}))
    _touch(root / "participants.tsv", "participant_id\tage\nsub-01\t9\nsub-02\t10\nsub-03\t11\n")
    _touch(root / "task-rest_bold.json", json.dumps({"RepetitionTime": 2.0, "TaskName": "rest"}))
    for sub in ("sub-01", "sub-02"):
        _touch(root / sub / "anat" / f"{sub}_T1w.nii.gz")
        _touch(root / sub / "anat" / f"{sub}_T1w.json", "{}")
        for run in (1, 2):
            _touch(root / sub / "func" / f"{sub}_task-rest_run-{run}_bold.nii.gz")
        _touch(root / sub / "pet" / f"{sub}_trc-FPCIT_pet.nii.gz")
        _touch(root / sub / "pet" / f"{sub}_trc-FPCIT_pet.json",
               json.dumps({"TracerName": "FP-CIT"}))
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
    _touch(root / "derivatives" / "freesurfer" / "sub-01" / "stats" / "aseg.stats", ASEG)
    _touch(root / "derivatives" / "synthseg" / "sub-02" / "sub-02_T1w_volumes.csv", SYNTHSEG)
    _touch(root / "derivatives" / "synthseg" / "all_volumes.csv", SYNTHSEG)
    return root


def test_parse_entities():
    assert parse_entities("sub-01_ses-1_task-rest_run-1_bold.nii.gz") == {
        "sub": "01", "ses": "1", "task": "rest", "run": "1", "suffix": "bold",
        "extension": ".nii.gz"}
    assert parse_entities("/x/y/task-rest_bold.json") == {
        "task": "rest", "suffix": "bold", "extension": ".json"}
    assert parse_entities("sub-01") == {"sub": "01"}


def test_discover_raw_and_derivatives(bids, caplog):
    with caplog.at_level(logging.WARNING, logger="danemap"):
        ds = discover(bids)
    assert "lists 1 participant(s) without a folder: sub-03" in caplog.text
    assert ds.participants == ["sub-01", "sub-02"]
    assert ds.sessions == {"sub-01": [], "sub-02": []}
    assert set(ds.derivatives) == {"fmriprep", "freesurfer", "synthseg"}
    s1 = ds.get("01")
    # raw files are found by datatype/suffix, whatever the modality
    assert s1.modalities == ["anat/T1w", "func/bold", "pet/pet"]
    t1w, bold, pet = (s1.get_files(m) for m in ("anat/T1w", "func/bold", "pet/pet"))
    assert [f.path.name for f in t1w] == ["sub-01_T1w.nii.gz"]
    assert [f.path.name for f in bold] == ["sub-01_task-rest_run-1_bold.nii.gz",
                                              "sub-01_task-rest_run-2_bold.nii.gz"]
    # inheritance: top-level task-rest_bold.json, overridden next to run-2
    assert bold[0].metadata == {"RepetitionTime": 2.0, "TaskName": "rest"}
    assert bold[1].metadata == {"RepetitionTime": 1.5, "TaskName": "rest"}
    assert bold[1].sidecar.name == "sub-01_task-rest_run-2_bold.json"
    assert pet[0].metadata == {"TracerName": "FP-CIT"}
    assert pet[0].entities["trc"] == "FPCIT"
    # derivatives: every file of the participant, by tool (the functional family pairs them
    # with the raw runs: tests/markers/test_functional_inputs.py)
    fp = bids / "derivatives" / "fmriprep"
    assert len(s1.derivatives["fmriprep"]) == 12
    assert all(p.parent == fp / "sub-01" / "func" for p in s1.derivatives["fmriprep"])
    assert s1.derivatives["freesurfer"] == [
        bids / "derivatives" / "freesurfer" / "sub-01" / "stats" / "aseg.stats"]
    assert s1.derivatives["synthseg"] == []
    assert s1.derivative_roots == ds.derivatives and s1.root == bids
    assert s1.aseg_stats is not None and s1.aseg_stats.name == "aseg.stats"
    s2 = ds.get("sub-02")
    assert s2.aseg_stats is None
    assert s2.derivatives == {"fmriprep": [], "freesurfer": [], "synthseg": [
        bids / "derivatives" / "synthseg" / "sub-02" / "sub-02_T1w_volumes.csv"]}
    assert [p.name for p in s2.synthseg] == ["sub-02_T1w_volumes.csv"]
    assert [p.name for p in ds.synthseg_tables] == ["all_volumes.csv"]
    assert list(ds.participants_table["participant_id"]) == ["sub-01", "sub-02", "sub-03"]


def test_participant_label_selection_and_errors(bids):
    ds = discover(bids, participant_label=["sub-02"])
    assert ds.participants == ["sub-02"]
    with pytest.raises(InputError, match=r"participant label 'sub-011' not found in the dataset; "
                                         r"closest existing: sub-01"):
        discover(bids, participant_label="011")
    with pytest.raises(InputError, match=r"participant label '../x' is not a valid BIDS label"):
        discover(bids, participant_label="../x")
    with pytest.raises(InputError, match=r"session_label given but .* has no ses-"):
        discover(bids, session_label="1")
    with pytest.raises(InputError, match=r"participant 'sub-09' not found"):
        ds.get("09")


def test_sessions_and_derivatives_argument(tmp_path):
    root = tmp_path / "sess"
    _touch(root / "dataset_description.json", "{}")
    for ses in ("1", "2"):
        _touch(root / "sub-01" / f"ses-{ses}" / "anat" / f"sub-01_ses-{ses}_T1w.nii")
    fp = tmp_path / "fmriprep_out"
    _touch(fp / "sub-01" / "ses-2" / "func"
           / f"sub-01_ses-2_task-rest_{SPACE}_desc-preproc_bold.nii.gz")
    ds = discover(root, derivatives=fp)
    assert ds.sessions == {"sub-01": ["ses-1", "ses-2"]}
    assert ds.derivatives == {"fmriprep": fp}
    assert [p.name for p in ds.get("01", "2").derivatives["fmriprep"]] == [
        f"sub-01_ses-2_task-rest_{SPACE}_desc-preproc_bold.nii.gz"]
    assert ds.get("01", "1").derivatives == {"fmriprep": []}
    with pytest.raises(InputError, match=r"has sessions"):
        ds.get("01")
    only = discover(root, session_label="ses-2")
    assert only.sessions == {"sub-01": ["ses-2"]}
    _touch(root / "sub-02" / "ses-1" / "anat" / "sub-02_ses-1_T1w.nii")
    only = discover(root, session_label="2")
    assert only.participants == ["sub-01"]  # sub-02 has no ses-2
    assert discover(root, session_label="1").participants == ["sub-01", "sub-02"]
    with pytest.raises(InputError, match=r"session label 'ses-3' not found.*closest"):
        discover(root, session_label="3")
    with pytest.raises(InputError, match=r"derivatives: unknown tool 'fmriprpe'.*'fmriprep'"):
        discover(root, derivatives={"fmriprpe": fp})
    with pytest.raises(InputError, match=r"derivatives folder .* does not exist"):
        discover(root, derivatives=tmp_path / "nope")


def test_discover_errors_and_warnings(tmp_path, caplog):
    with pytest.raises(InputError, match=r"BIDS folder .* does not exist"):
        discover(tmp_path / "missing")
    root = tmp_path / "nodesc"
    _touch(root / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    with caplog.at_level(logging.WARNING, logger="danemap"):
        ds = discover(root)
    assert "no dataset_description.json" in caplog.text
    assert ds.participants == ["sub-01"]
    _touch(root / "dataset_description.json", "{not json")
    with pytest.raises(InputError, match=r"dataset_description.json: not a readable JSON file"):
        discover(root)
    empty = tmp_path / "empty"
    _touch(empty / "dataset_description.json", "{}")
    with pytest.raises(InputError, match=r"has no sub-\* participant folders"):
        discover(empty)
    _touch(empty / "sub-01" / "anat" / "x.txt")
    _touch(empty / "participants.tsv", "participant_id\n01\n01\n")
    with pytest.raises(InputError, match=r"duplicate participant_id"):
        discover(empty)


def test_participants_with_only_fmriprep_outputs(tmp_path):
    """A dataset shared as fMRIPrep outputs only still yields its participants and files."""
    root = tmp_path / "ds"
    func = root / "derivatives" / "fmriprep" / "sub-07" / "func"
    _touch(root / "dataset_description.json", '{"Name": "x", "BIDSVersion": "1.9.0"}')
    bold = _touch(func / f"sub-07_task-rest_{SPACE}_res-2_desc-preproc_bold.nii.gz")
    tsv = _touch(func / "sub-07_task-rest_desc-confounds_timeseries.tsv", "a\n1\n")
    ds = discover(root)
    assert ds.participants == ["sub-07"]
    session = ds.get("07")
    assert session.files == {}
    assert session.derivatives == {"fmriprep": [tsv, bold]}  # sorted


def _generic_dataset(tmp_path: Path) -> Path:
    """Raw anat, func, pet and dwi in two sessions, fMRIPrep and FreeSurfer outputs."""
    root = tmp_path / "generic"
    _touch(root / "dataset_description.json", "{}")
    _touch(root / "dwi.json", json.dumps({"PhaseEncodingDirection": "j"}))
    for ses in ("ses-1", "ses-2"):
        base = root / "sub-01" / ses
        _touch(base / "anat" / f"sub-01_{ses}_T1w.nii.gz")
        _touch(base / "anat" / f"sub-01_{ses}_FLAIR.nii")
        _touch(base / "func" / f"sub-01_{ses}_task-rest_bold.nii.gz")
        _touch(base / "func" / f"sub-01_{ses}_task-rest_events.tsv", "onset\n")  # not NIfTI
        _touch(base / "pet" / f"sub-01_{ses}_trc-FDOPA_pet.nii.gz")
        _touch(base / "dwi" / f"sub-01_{ses}_dwi.nii.gz")
        _touch(base / "dwi" / f"sub-01_{ses}_dwi.bval", "0\n")
    fp = root / "derivatives" / "fmriprep"
    _touch(fp / "dataset_description.json", "{}")
    _touch(fp / "sub-01" / "anat" / "sub-01_desc-preproc_T1w.nii.gz")  # all sessions
    for ses in ("ses-1", "ses-2"):
        _touch(fp / "sub-01" / ses / "func" / f"sub-01_{ses}_task-rest_{SPACE}_desc-preproc_"
               "bold.nii.gz")
    # a malformed sidecar: derivative sidecars are read only when a family asks
    _touch(fp / "sub-01" / "ses-1" / "func" / f"sub-01_ses-1_task-rest_{SPACE}_desc-preproc_"
           "bold.json", "{not json")
    fs = root / "derivatives" / "freesurfer"
    _touch(fs / "sub-01_ses-1" / "stats" / "aseg.stats", ASEG)  # FreeSurfer session naming
    _touch(fs / "sub-01_ses-1" / "mri" / "aseg.mgz")
    _touch(fs / "sub-01_ses-2" / "stats" / "aseg.stats", ASEG)
    return root


def test_generic_raw_index_every_modality(tmp_path):
    root = _generic_dataset(tmp_path)
    ds = discover(root)
    for ses in ("ses-1", "ses-2"):
        session = ds.get("01", ses)
        assert session.modalities == ["anat/FLAIR", "anat/T1w", "dwi/dwi", "func/bold",
                                      "pet/pet"]
        base = root / "sub-01" / ses
        assert {m: [f.path for f in session.get_files(m)] for m in session.modalities} == {
            "anat/FLAIR": [base / "anat" / f"sub-01_{ses}_FLAIR.nii"],
            "anat/T1w": [base / "anat" / f"sub-01_{ses}_T1w.nii.gz"],
            "dwi/dwi": [base / "dwi" / f"sub-01_{ses}_dwi.nii.gz"],
            "func/bold": [base / "func" / f"sub-01_{ses}_task-rest_bold.nii.gz"],
            "pet/pet": [base / "pet" / f"sub-01_{ses}_trc-FDOPA_pet.nii.gz"]}
        (dwi,) = session.get_files("dwi/dwi")
        assert dwi.metadata == {"PhaseEncodingDirection": "j"}  # top-level sidecar
        assert dwi.sidecars == [root / "dwi.json"]
        assert session.get_files("pet/blood") == []
    # nothing functional-specific in io: no run pairing on the session
    assert {f.name for f in dataclasses.fields(SessionData)} == {
        "participant", "session", "files", "derivatives", "derivative_roots", "root",
        "aseg_stats", "synthseg"}
    assert list(inspect.signature(discover).parameters) == [
        "bids_dir", "participant_label", "session_label", "derivatives"]


def test_generic_derivative_index_by_tool(tmp_path):
    root = _generic_dataset(tmp_path)
    ds = discover(root)  # the malformed fMRIPrep sidecar is not read here
    fp, fs = root / "derivatives" / "fmriprep", root / "derivatives" / "freesurfer"
    assert ds.derivatives == {"fmriprep": fp, "freesurfer": fs}
    s1, s2 = ds.get("01", "1"), ds.get("01", "2")
    preproc1 = fp / "sub-01" / "ses-1" / "func" / (f"sub-01_ses-1_task-rest_{SPACE}_"
                                                    "desc-preproc_bold.nii.gz")
    # each session: its own ses-* folder and the session-independent files, never the
    # other session's
    assert s1.derivatives["fmriprep"] == [
        fp / "sub-01" / "anat" / "sub-01_desc-preproc_T1w.nii.gz",
        preproc1.with_suffix("").with_suffix(".json"),
        preproc1]
    assert [p.relative_to(fp) for p in s2.derivatives["fmriprep"]] == [
        Path("sub-01/anat/sub-01_desc-preproc_T1w.nii.gz"),
        Path(f"sub-01/ses-2/func/sub-01_ses-2_task-rest_{SPACE}_desc-preproc_bold.nii.gz")]
    assert s1.derivatives["freesurfer"] == [fs / "sub-01_ses-1" / "mri" / "aseg.mgz",
                                            fs / "sub-01_ses-1" / "stats" / "aseg.stats"]
    assert s2.derivatives["freesurfer"] == [fs / "sub-01_ses-2" / "stats" / "aseg.stats"]
    assert s1.aseg_stats == fs / "sub-01_ses-1" / "stats" / "aseg.stats"
    # sidecars on demand: the chain starts at the tool's folder
    with pytest.raises(InputError, match=r"desc-preproc_bold.json: not a readable JSON file"):
        s1.bids_file(preproc1)
    good = s2.bids_file(s2.derivatives["fmriprep"][1])
    assert good.entities["space"] == "MNI152NLin2009cAsym" and good.metadata == {}


def test_bids_file_sidecar_chain(tmp_path):
    root = tmp_path / "ds"
    nii = _touch(root / "sub-01" / "ses-1" / "func" / "sub-01_ses-1_task-rest_bold.nii.gz")
    _touch(root / "task-rest_bold.json", json.dumps({"RepetitionTime": 2.0, "A": 1}))
    _touch(root / "sub-01" / "sub-01_task-rest_bold.json", json.dumps({"A": 2}))
    _touch(root / "sub-01" / "ses-1" / "func" / "sub-01_ses-1_task-rest_bold.json",
           json.dumps({"RepetitionTime": 1.5}))
    _touch(root / "task-nback_bold.json", json.dumps({"A": 3}))  # another task: not applied
    f = bids_file(nii, root)
    assert f.metadata == {"RepetitionTime": 1.5, "A": 2}
    assert [p.relative_to(root).as_posix() for p in f.sidecars] == [
        "task-rest_bold.json", "sub-01/sub-01_task-rest_bold.json",
        "sub-01/ses-1/func/sub-01_ses-1_task-rest_bold.json"]
    assert bids_file(nii, root / "sub-01" / "ses-1").metadata == {"RepetitionTime": 1.5}
    with pytest.raises(InputError, match=r"bids_file: .* is not under the dataset folder"):
        bids_file(nii, tmp_path / "other")
    # a hand-made session with no roots reads only the file's own folder
    assert SessionData("sub-01", "ses-1").bids_file(nii).metadata == {"RepetitionTime": 1.5}


def test_fastsurfer_aseg_stats_found(tmp_path):
    root = tmp_path / "bids"
    _touch(root / "dataset_description.json", json.dumps({"Name": "x", "BIDSVersion": "1.9.0"}))
    _touch(root / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    aseg = _touch(root / "derivatives" / "fastsurfer" / "sub-01" / "stats" / "aseg.stats", ASEG)
    ds = discover(root)
    assert ds.derivatives == {"fastsurfer": root / "derivatives" / "fastsurfer"}
    assert ds.get("01").aseg_stats == aseg


# --- issue 13: the datasets users have -------------------------------------------------

def _sixteen(tmp_path):
    root = tmp_path / "ds16"
    _touch(root / "dataset_description.json", '{"Name": "x", "BIDSVersion": "1.9.0"}')
    for i in range(1, 17):
        _touch(root / f"sub-{i:02d}" / "anat" / f"sub-{i:02d}_T1w.nii.gz")
    return root


@pytest.mark.parametrize("label", ["1", "sub-1", "001"])
def test_label_suggestion_prefers_the_zero_padded_label(tmp_path, label):
    # difflib alone suggested "sub-16, sub-15, sub-14" for "1"
    with pytest.raises(InputError, match=r"participant label 'sub-0*1' not found in the "
                                         r"dataset; closest existing: sub-01$"):
        discover(_sixteen(tmp_path), participant_label=label)


def test_label_suggestion_falls_back_to_close_spellings(tmp_path):
    root = _sixteen(tmp_path)
    _touch(root / "sub-ADHD7" / "anat" / "sub-ADHD7_T1w.nii.gz")
    with pytest.raises(InputError, match=r"closest existing: sub-ADHD7$"):
        discover(root, participant_label="adhd7")  # letter case only
    with pytest.raises(InputError, match=r"closest existing: sub-ADHD7"):
        discover(root, participant_label="ADHD07")  # not the same number: spelling
    with pytest.raises(InputError, match=r"participant label 'sub-17' not found.*closest "
                                         r"existing: sub-1"):
        discover(root, participant_label="17")


def test_participant_level_discovery_ignores_columns_it_does_not_use(tmp_path, caplog):
    # genetics_ukbb has an age of "89+", mrs_fmrs "35-40": only the group level needs age
    root = _sixteen(tmp_path)
    rows = "".join(f"sub-{i:02d}\t{'89+' if i == 3 else '35-40' if i == 4 else 30 + i}\t"
                   f"{'M' if i % 2 else 'F'}\n" for i in range(1, 17))
    _touch(root / "participants.tsv", "participant_id\tage\tsex\n" + rows)
    ds = discover(root)
    assert ds.participants == [f"sub-{i:02d}" for i in range(1, 17)]
    table = ds.participants_table
    assert list(table["age"].iloc[2:4]) == ["89+", "35-40"]  # kept as text, not refused
    # the ids are still checked
    _touch(root / "participants.tsv", "participant_id\tage\nsub-01\t89+\nsub-01\t35-40\n")
    with pytest.raises(InputError, match=r"participants.tsv: 1 problem.*\n.*duplicate "
                                         r"participant_id: sub-01 \(lines 2, 3\)$"):
        discover(root)


def test_participants_tsv_with_bom_and_crlf_is_read_by_discovery(tmp_path):
    root = _sixteen(tmp_path)
    text = "participant_id\tgroup\r\n" + "".join(f"sub-{i:02d}\tTD\r\n" for i in range(1, 17))
    (root / "participants.tsv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    table = discover(root).participants_table
    assert list(table.columns) == ["participant_id", "group"]
    assert table["participant_id"].iloc[0] == "sub-01" and set(table["group"]) == {"TD"}


@pytest.mark.parametrize("label", ["sub-../../etc", "../../etc", "sub-01/../02", "sub-01/",
                                   "/etc", "sub-01\x00"])
def test_unsafe_participant_labels_are_input_errors(bids, label):
    with pytest.raises(InputError, match=r"is not a valid BIDS label: expected letters and "
                                         r"digits only"):
        discover(bids, participant_label=label)
    ds = discover(bids)
    with pytest.raises(InputError, match=r"is not a valid BIDS label"):
        ds.get(label)


def test_sub_folders_with_invalid_labels_are_skipped_with_a_warning(bids, caplog):
    _touch(bids / "sub-01.bak" / "anat" / "sub-01_T1w.nii.gz")
    _touch(bids / "sub-0 2" / "anat" / "x_T1w.nii.gz")
    _touch(bids / "sub-03_ses-1" / "anat" / "x_T1w.nii.gz")  # FreeSurfer-style: no warning
    with caplog.at_level(logging.WARNING, logger="danemap"):
        ds = discover(bids)
    assert ds.participants == ["sub-01", "sub-02"]
    assert "'sub-01.bak' is not a valid participant label" in caplog.text
    assert "'sub-0 2' is not a valid participant label" in caplog.text
    assert "sub-03_ses-1" not in caplog.text


def test_symlinks_outside_the_dataset_are_skipped_with_a_warning(tmp_path, caplog):
    root = tmp_path / "ds"
    _touch(root / "dataset_description.json", '{"Name": "x", "BIDSVersion": "1.9.0"}')
    _touch(root / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    outside = tmp_path / "elsewhere"
    _touch(outside / "sub-02" / "anat" / "sub-02_T1w.nii.gz")
    secret = _touch(outside / "secret.nii.gz")
    (root / "sub-02").symlink_to(outside / "sub-02", target_is_directory=True)
    (root / "sub-01" / "anat" / "sub-01_acq-x_T1w.nii.gz").symlink_to(secret)
    # a link that stays inside (DataLad's annexed files) is followed
    blob = _touch(root / ".git" / "annex" / "objects" / "ab" / "blob")
    (root / "sub-01" / "anat" / "sub-01_acq-annex_T1w.nii.gz").symlink_to(blob)
    # and a derivative file linking outside its tool's folder is skipped too
    func = root / "derivatives" / "fmriprep" / "sub-01" / "func"
    _touch(func / f"sub-01_task-rest_{SPACE}_desc-preproc_bold.nii.gz")
    (func / f"sub-01_task-rest_{SPACE}_desc-brain_mask.nii.gz").symlink_to(secret)
    # links elsewhere inside the dataset are fine, and a dangling link is kept (with a
    # warning) so that its reader names the missing file
    shared = _touch(root / "shared" / "confounds.tsv")
    (func / "sub-01_task-rest_desc-confounds_timeseries.tsv").symlink_to(shared)
    (root / "sub-01" / "anat" / "sub-01_acq-notfetched_T1w.nii.gz").symlink_to(
        root / ".git" / "annex" / "objects" / "missing")
    with caplog.at_level(logging.WARNING, logger="danemap"):
        ds = discover(root)
    assert ds.participants == ["sub-01"]
    assert [f.path.name for f in ds.get("01").get_files("anat/T1w")] == [
        "sub-01_T1w.nii.gz", "sub-01_acq-annex_T1w.nii.gz", "sub-01_acq-notfetched_T1w.nii.gz"]
    assert "sub-01_acq-notfetched_T1w.nii.gz is a symbolic link to " in caplog.text
    assert "which does not exist (a DataLad file not fetched yet?" in caplog.text
    assert [p.name for p in ds.get("01").derivatives["fmriprep"]] == [
        "sub-01_task-rest_desc-confounds_timeseries.tsv",
        f"sub-01_task-rest_{SPACE}_desc-preproc_bold.nii.gz"]
    text = caplog.text
    assert f"participant folder {root / 'sub-02'} is a symbolic link to " \
           f"{(outside / 'sub-02').resolve()}, outside {root}; skipped" in text
    assert f"data file {root / 'sub-01' / 'anat' / 'sub-01_acq-x_T1w.nii.gz'} is a " \
           f"symbolic link to {secret.resolve()}" in text
    assert "desc-brain_mask.nii.gz is a symbolic link" in text
    # asked for by label, the skipped participant is an error that says why
    with pytest.raises(InputError, match=r"participant label 'sub-02': its folder was "
                                         r"skipped because its folder .* is a symbolic link "
                                         r"to .*elsewhere/sub-02, outside"):
        discover(root, participant_label="02")


def test_a_dataset_reached_through_a_symlink_is_not_outside_itself(tmp_path):
    real = tmp_path / "real"
    _touch(real / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    ds = discover(link)
    assert ds.participants == ["sub-01"]
    assert len(ds.get("01").get_files("anat/T1w")) == 1


def test_session_folders_with_invalid_labels_are_skipped_with_a_warning(tmp_path, caplog):
    root = tmp_path / "ds"
    _touch(root / "sub-01" / "ses-1" / "anat" / "sub-01_ses-1_T1w.nii.gz")
    _touch(root / "sub-01" / "ses-..x" / "anat" / "sub-01_T1w.nii.gz")
    _touch(root / "sub-01" / "ses-1 old" / "anat" / "sub-01_T1w.nii.gz")
    with caplog.at_level(logging.WARNING, logger="danemap"):
        ds = discover(root)
    assert ds.sessions == {"sub-01": ["ses-1"]}
    assert "'ses-..x' is not a valid session label" in caplog.text
    assert "'ses-1 old' is not a valid session label" in caplog.text
