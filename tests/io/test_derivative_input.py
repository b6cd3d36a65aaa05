"""fMRIPrep output as input: a derivative dataset as BIDS_DIR, and ``--derivatives`` folders.

A small simulated cohort is run on its normal layout (raw dataset with
``derivatives/fmriprep`` inside) and on the other layouts users have; the connectivity
outputs must match the normal run.
"""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

from danemap.config import Config
from danemap.errors import DanemapWarning, InputError
from danemap.io import discover
from danemap.pipeline import run_participant

SPACE = "space-MNI152NLin2009cAsym"
CFG = Config().updated({"run": {"markers": ["functional"]}})


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """A 2-participant functional cohort, and the outputs of a run on its normal layout."""
    from danemap.simulate import simulate_cohort

    tmp = tmp_path_factory.mktemp("derivin")
    bids = simulate_cohort(tmp / "bids", n_subjects=2, n_sites=1, seed=3,
                           modalities=("func",), n_volumes=100)
    out = tmp / "normal"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DanemapWarning)
        assert run_participant(bids, out, CFG) == 0
    return bids, out / "danemap"


def _connectivity(root):
    files = sorted(root.glob("sub-*/func/*_connectivity.tsv"))
    return {f.relative_to(root): pd.read_csv(f, sep="\t", index_col=0) for f in files}


def _run(bids_dir, out, cfg=CFG):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DanemapWarning)
        code = run_participant(bids_dir, out, cfg)
    return code, out / "danemap"


def _assert_same_connectivity(got_root, want_root):
    want, got = _connectivity(want_root), _connectivity(got_root)
    # correlation and partial correlation of both participants
    assert len(want) == 4
    assert sorted(got) == sorted(want)
    for name, table in want.items():
        assert list(got[name].columns) == list(table.columns), name
        np.testing.assert_allclose(got[name].to_numpy(), table.to_numpy(), rtol=1e-10,
                                   atol=0, equal_nan=True, err_msg=str(name))


def test_fmriprep_folder_as_bids_dir_matches_the_normal_layout(cohort, tmp_path):
    bids, normal = cohort
    fmriprep = bids / "derivatives" / "fmriprep"
    desc = json.loads((fmriprep / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"  # what discovery detects
    ds = discover(fmriprep)
    assert ds.participants == ["sub-01", "sub-02"]
    assert ds.derivatives == {"fmriprep": fmriprep}
    s1 = ds.get("01")
    # the preprocessed BOLD is fMRIPrep output, not a raw image of the dataset
    assert s1.files == {}
    assert any(p.name.endswith("_desc-preproc_bold.nii.gz") for p in s1.derivatives["fmriprep"])
    code, root = _run(fmriprep, tmp_path / "out")
    assert code == 0
    _assert_same_connectivity(root, normal)


def test_fmriprep_folder_copied_alone_with_participants_tsv(cohort, tmp_path):
    bids, normal = cohort
    alone = tmp_path / "ds-fmriprep"
    shutil.copytree(bids / "derivatives" / "fmriprep", alone)
    shutil.copy(bids / "participants.tsv", alone / "participants.tsv")
    code, root = _run(alone, tmp_path / "out")
    assert code == 0
    _assert_same_connectivity(root, normal)
    assert discover(alone).participants_table is not None


def test_derivative_dataset_sub_folders_are_the_other_tools(tmp_path):
    fp = tmp_path / "fmriprep"
    (fp / "sub-01" / "func").mkdir(parents=True)
    (fp / "sourcedata" / "freesurfer" / "sub-01" / "stats").mkdir(parents=True)
    (fp / "sourcedata" / "freesurfer" / "sub-01" / "stats" / "aseg.stats").write_text("#\n")
    (fp / "dataset_description.json").write_text(json.dumps(
        {"Name": "fMRIPrep output", "BIDSVersion": "1.4.0", "DatasetType": "derivative",
         "GeneratedBy": [{"Name": "fMRIPrep", "Version": "20.2.0"}]}))
    ds = discover(fp)
    assert ds.derivatives == {"fmriprep": fp, "freesurfer": fp / "sourcedata" / "freesurfer"}
    assert ds.get("01").aseg_stats == fp / "sourcedata" / "freesurfer" / "sub-01" / "stats" \
        / "aseg.stats"
    # a FreeSurfer derivative dataset is read as FreeSurfer output
    fs = tmp_path / "fs"
    (fs / "sub-02" / "stats").mkdir(parents=True)
    (fs / "sub-02" / "stats" / "aseg.stats").write_text("#\n")
    (fs / "dataset_description.json").write_text(json.dumps(
        {"Name": "fs", "DatasetType": "derivative", "GeneratedBy": [{"Name": "FreeSurfer"}]}))
    ds = discover(fs)
    assert ds.derivatives == {"freesurfer": fs}
    assert ds.participants == ["sub-02"]
    assert ds.get("02").aseg_stats == fs / "sub-02" / "stats" / "aseg.stats"


def test_fmriprep_stored_elsewhere_with_derivatives(cohort, tmp_path):
    bids, normal = cohort
    raw = tmp_path / "raw"
    shutil.copytree(bids, raw, ignore=shutil.ignore_patterns("derivatives"))
    elsewhere = tmp_path / "scratch" / "fmriprep-23.2"
    shutil.copytree(bids / "derivatives" / "fmriprep", elsewhere)
    # the simulated raw dataset has no images: without the fMRIPrep folder, no participant
    with pytest.raises(InputError, match=r"has no sub-\* participant folders"):
        _run(raw, tmp_path / "none")
    cfg = CFG.updated({"run": {"derivatives": [str(elsewhere)]}})
    code, root = _run(raw, tmp_path / "out", cfg)
    assert code == 0
    _assert_same_connectivity(root, normal)


def test_derivatives_folder_overrides_the_one_in_the_dataset(cohort, tmp_path):
    bids, normal = cohort
    raw = tmp_path / "raw"
    shutil.copytree(bids, raw)
    good = tmp_path / "good" / "fmriprep"
    shutil.copytree(bids / "derivatives" / "fmriprep", good)
    # the dataset's own fMRIPrep folder is stale: every BOLD is damaged
    for bold in (raw / "derivatives" / "fmriprep").rglob("*_desc-preproc_bold.nii.gz"):
        bold.write_bytes(b"not a nifti")
    assert _run(raw, tmp_path / "stale")[0] != 0
    # a freesurfer folder in the dataset is still found: the override is per tool
    (raw / "derivatives" / "freesurfer" / "sub-01").mkdir(parents=True)
    ds = discover(raw, derivatives=[good])
    assert ds.derivatives == {"fmriprep": good, "freesurfer": raw / "derivatives" / "freesurfer"}
    code, root = _run(raw, tmp_path / "out",
                      CFG.updated({"run": {"derivatives": [str(good)]}}))
    assert code == 0
    _assert_same_connectivity(root, normal)


def test_derivatives_first_folder_wins_per_tool(tmp_path):
    root = tmp_path / "ds"
    (root / "sub-01" / "anat").mkdir(parents=True)
    first, second = tmp_path / "a", tmp_path / "b"
    (first / "fmriprep" / "sub-01").mkdir(parents=True)
    (second / "fmriprep" / "sub-01").mkdir(parents=True)
    (second / "freesurfer" / "sub-01").mkdir(parents=True)
    ds = discover(root, derivatives=[first, second])
    assert ds.derivatives == {"fmriprep": first / "fmriprep",
                              "freesurfer": second / "freesurfer"}


def test_missing_derivatives_folder_is_an_input_error_naming_it(cohort, tmp_path):
    bids, _ = cohort
    missing = tmp_path / "no" / "fmriprep"
    with pytest.raises(InputError, match=rf"derivatives folder {missing} does not exist"):
        discover(bids, derivatives=[bids / "derivatives" / "fmriprep", missing])
    with pytest.raises(InputError, match=rf"derivatives folder {missing} does not exist"):
        run_participant(bids, tmp_path / "out",
                        CFG.updated({"run": {"derivatives": [str(missing)]}}))
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(InputError, match=r"does not exist \(it is a file\): expected an "
                                         r"fMRIPrep output folder"):
        discover(bids, derivatives=[a_file])


def test_cli_derivatives_flags_repeated(cohort, tmp_path, capsys):
    from danemap.cli import main

    bids, normal = cohort
    raw = tmp_path / "raw"
    shutil.copytree(bids, raw, ignore=shutil.ignore_patterns("derivatives"))
    elsewhere = tmp_path / "scratch" / "fmriprep"
    shutil.copytree(bids / "derivatives" / "fmriprep", elsewhere)
    empty = tmp_path / "scratch2" / "fmriprep"  # provides no participant: the first wins
    empty.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DanemapWarning)
        code = main([str(raw), str(tmp_path / "out"), "participant", "--markers", "functional",
                     "--derivatives", str(elsewhere), "--derivatives", str(empty)])
    assert code == 0
    _assert_same_connectivity(tmp_path / "out" / "danemap", normal)
    missing = tmp_path / "nowhere"
    code = main([str(raw), str(tmp_path / "out2"), "participant", "--markers", "functional",
                 "--derivatives", str(missing)])
    assert code == 2
    assert f"derivatives folder {missing} does not exist" in capsys.readouterr().err


def test_cli_fmriprep_folder_as_bids_dir(cohort, tmp_path):
    from danemap.cli import main

    bids, normal = cohort
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DanemapWarning)
        code = main([str(bids / "derivatives" / "fmriprep"), str(tmp_path / "out"),
                     "participant", "--markers", "functional", "--participant-label", "01"])
    assert code == 0
    got = _connectivity(tmp_path / "out" / "danemap")
    assert sorted(str(k) for k in got) == [
        f"sub-01/func/sub-01_task-rest_atlas-danemap_desc-{k}_connectivity.tsv"
        for k in ("corr", "partialcorr")]
    want = _connectivity(normal)
    for name, table in got.items():
        np.testing.assert_allclose(table.to_numpy(), want[name].to_numpy(), rtol=1e-10,
                                   atol=0, equal_nan=True)


def test_participant_level_runs_with_an_age_it_does_not_use(cohort, tmp_path):
    # genetics_ukbb's "89+", mrs_fmrs's "35-40": the participant level needs the ids only
    bids, normal = cohort
    ds = tmp_path / "bids"
    shutil.copytree(bids, ds)
    table = pd.read_csv(ds / "participants.tsv", sep="\t", dtype=str)
    table["age"] = ["89+", "35-40"]
    table.to_csv(ds / "participants.tsv", sep="\t", index=False)
    code, root = _run(ds, tmp_path / "out")
    assert code == 0
    _assert_same_connectivity(root, normal)


def test_a_derivatives_folder_of_one_tool_is_that_tool(tmp_path):
    root = tmp_path / "ds"
    (root / "sub-01" / "anat").mkdir(parents=True)
    by_name = tmp_path / "store" / "freesurfer"
    (by_name / "sub-01" / "stats").mkdir(parents=True)
    (by_name / "sub-01" / "stats" / "aseg.stats").write_text("#\n")
    assert discover(root, derivatives=[by_name]).derivatives == {"freesurfer": by_name}
    by_desc = tmp_path / "store" / "fastsurfer-2.0"
    (by_desc / "sub-01" / "stats").mkdir(parents=True)
    (by_desc / "dataset_description.json").write_text(json.dumps(
        {"Name": "x", "DatasetType": "derivative", "GeneratedBy": [{"Name": "FastSurfer"}]}))
    assert discover(root, derivatives=[by_desc]).derivatives == {"fastsurfer": by_desc}
    other = tmp_path / "store" / "fmriprep-23.2"  # neither: fMRIPrep output, as before
    other.mkdir()
    assert discover(root, derivatives=[other]).derivatives == {"fmriprep": other}


def test_a_derivatives_root_as_bids_dir_says_what_to_pass(tmp_path):
    deriv = tmp_path / "ds" / "derivatives"
    (deriv / "fmriprep" / "sub-01").mkdir(parents=True)
    (deriv / "freesurfer").mkdir()
    with pytest.raises(InputError, match=rf"has no sub-\* participant folders; it holds "
                                         rf"fmriprep, freesurfer: give the raw dataset as "
                                         rf"BIDS_DIR and --derivatives {deriv}, or the tool's "
                                         rf"own folder \(e.g. {deriv / 'fmriprep'}\)"):
        discover(deriv)


def test_fmriprep_folder_without_dataset_description_is_recognised(cohort, tmp_path, caplog):
    import logging

    bids, normal = cohort
    bare = tmp_path / "bare"
    shutil.copytree(bids / "derivatives" / "fmriprep", bare)
    (bare / "dataset_description.json").unlink()
    with caplog.at_level(logging.WARNING, logger="danemap"):
        ds = discover(bare)
    assert "holds fMRIPrep outputs (*_desc-preproc_bold)" in caplog.text
    (bare / "dataset_description.json").write_text('{"Name": "x", "DatasetType": "raw"}')
    assert discover(bare).derivatives == {}  # raw, as its description says
    (bare / "dataset_description.json").unlink()
    assert ds.derivatives == {"fmriprep": bare} and ds.get("01").files == {}
    code, root = _run(bare, tmp_path / "out")
    assert code == 0
    _assert_same_connectivity(root, normal)
