"""End-to-end tests of the BIDS-App command line on a small simulated cohort."""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest

from danemap import __version__
from danemap.cli import main


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from danemap.simulate import simulate_cohort

    root = tmp_path_factory.mktemp("cli") / "bids"
    simulate_cohort(root, n_subjects=24, n_sites=2, seed=3, resolution=3,
                    modalities=("func",), n_volumes=80)
    return root


@pytest.fixture(scope="module")
def fast_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "fast.toml"
    path.write_text("[stats]\nn_permutations = 200\nclassify_permutations = 2\n")
    return path


def test_version(capsys):
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_usage_error_returns_2(capsys):
    assert main(["only-one-arg"]) == 2


def test_output_inside_input_is_refused(cohort, capsys):
    assert main([str(cohort), str(cohort / "out"), "participant"]) == 2
    assert "inside the input" in capsys.readouterr().err
    assert not (cohort / "out").exists()


def test_invalid_participant_label(cohort, tmp_path, capsys):
    assert main([str(cohort), str(tmp_path), "participant", "--participant-label", "../x"]) == 2
    assert "not a valid BIDS label" in capsys.readouterr().err


def test_participant_and_group_levels(cohort, tmp_path, fast_config):
    out = tmp_path / "out"
    assert main([str(cohort), str(out), "participant", "--participant-label", "01", "sub-02",
                 "--config", str(fast_config)]) == 0
    root = out / "danemap"
    assert sorted(p.name for p in root.glob("sub-*")) == ["sub-01", "sub-02"]
    desc = json.loads((root / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    assert desc["GeneratedBy"][0]["Name"] == "danemap"
    assert "classify_permutations = 2" in (root / "config.toml").read_text()
    func = root / "sub-01" / "func"
    assert (func / "sub-01_task-rest_atlas-danemap_desc-corr_connectivity.tsv").is_file()
    assert (func / "sub-01_task-rest_atlas-danemap_desc-networks_stats.tsv").is_file()

    first = (func / "sub-01_task-rest_atlas-danemap_desc-corr_connectivity.tsv").stat()
    assert main([str(cohort), str(out), "participant", "--config", str(fast_config)]) == 0
    again = (func / "sub-01_task-rest_atlas-danemap_desc-corr_connectivity.tsv").stat()
    assert again.st_mtime_ns == first.st_mtime_ns  # resumed: sub-01 was not recomputed
    status = pd.read_csv(root / "logs" / "participant_status.tsv", sep="\t")
    assert (status["status"] == "ok").sum() == 24  # the record of the run that did the work

    assert main([str(cohort), str(out), "group", "--config", str(fast_config)]) == 0
    group = root / "group"
    nets = pd.read_csv(group / "networks.tsv", sep="\t")
    assert len(nets) == 24
    effects = pd.read_csv(group / "stats" / "networks" / "effects.tsv", sep="\t")
    assert {"frontostriatal", "lc_pfc"} <= set(effects["feature"])
    assert not any(f.endswith("_n_edges") for f in effects["feature"])
    clf = pd.read_csv(group / "stats" / "networks" / "classification.tsv", sep="\t")
    assert "covariates" in set(clf["model"])
    report = (group / "group_report.html").read_text()
    assert "not a diagnostic device" in report


def test_broken_participant_does_not_stop_others(cohort, tmp_path, fast_config):
    import shutil

    bids = tmp_path / "bids"
    shutil.copytree(cohort, bids)
    bold = next((bids / "derivatives" / "fmriprep" / "sub-03" / "func").glob("*_bold.nii.gz"))
    data = gzip.decompress(bold.read_bytes())
    bold.write_bytes(gzip.compress(data[: len(data) // 2]))  # truncated image
    out = tmp_path / "out"
    rc = main([str(bids), str(out), "participant", "--participant-label", "02", "03", "04",
               "--config", str(fast_config)])
    assert rc == 1
    status = pd.read_csv(out / "danemap" / "logs" / "participant_status.tsv", sep="\t")
    status = status.set_index("participant_id")
    assert status.loc["sub-03", "status"] == "failed"
    assert "sub-03" in status.loc["sub-03", "error"]
    assert list(status.loc[["sub-02", "sub-04"], "status"]) == ["ok", "ok"]


def test_atlas_and_slurm_subcommands(cohort, tmp_path, capsys):
    assert main(["atlas", str(tmp_path / "atlas"), "--resolution", "3"]) == 0
    assert (tmp_path / "atlas" / "atlas-danemap_dseg.tsv").is_file()
    assert main(["slurm", str(cohort), str(tmp_path / "o"), "--max-parallel", "4"]) == 0
    script = (tmp_path / "o" / "danemap" / "slurm" / "danemap_array.sbatch").read_text()
    assert "#SBATCH --array=1-24%4" in script
    assert "participant --participant-label" in script
    assert main(["slurm", str(cohort), str(cohort / "o")]) == 2


def test_size_cap_from_config_is_enforced_before_reading(cohort, tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text("[run]\nmax_nifti_gib = 0.000001\n")
    out = tmp_path / "out"
    # its only participant failed: nothing done, exit 2 (1 is for a partial run)
    assert main([str(cohort), str(out), "participant", "--participant-label", "05",
                 "--config", str(cfg)]) == 2
    status = pd.read_csv(out / "danemap" / "logs" / "participant_status.tsv", sep="\t")
    assert "exceeds the limit" in status.loc[0, "error"]


def test_separate_runs_keep_every_status_and_one_config_hash(cohort, tmp_path, fast_config):
    """Like two SLURM tasks: each runs one participant; nothing of the other is lost."""
    out = tmp_path / "out"
    hashes = set()
    for label in ("06", "07"):
        assert main([str(cohort), str(out), "participant", "--participant-label", label,
                     "--config", str(fast_config)]) == 0
        desc = json.loads((out / "danemap" / "dataset_description.json").read_text())
        hashes.add(desc["GeneratedBy"][0]["ConfigHash"])
    assert len(hashes) == 1  # participant selection does not change the provenance hash
    status = pd.read_csv(out / "danemap" / "logs" / "participant_status.tsv", sep="\t")
    assert list(status["participant_id"]) == ["sub-06", "sub-07"]
    assert list(status["status"]) == ["ok", "ok"]


def test_group_level_survives_a_failing_table(cohort, tmp_path, fast_config, monkeypatch):
    import danemap.stats.pipeline as sp

    out = tmp_path / "out"
    assert main([str(cohort), str(out), "participant", "--config", str(fast_config)]) == 0
    real = sp.run_stats

    def flaky(table, *args, **kwargs):
        if "falff" in str(table):
            from danemap.errors import InputError

            raise InputError(f"{table}: planted failure")
        return real(table, *args, **kwargs)

    monkeypatch.setattr(sp, "run_stats", flaky)
    assert main([str(cohort), str(out), "group", "--config", str(fast_config)]) == 1
    group = out / "danemap" / "group"
    assert (group / "stats" / "networks" / "effects.tsv").is_file()
    assert (group / "stats" / "connectivity_corr" / "nbs.tsv").is_file()
    assert not (group / "stats" / "falff").exists()
    assert (group / "group_report.html").is_file()
    assert "classify_permutations = 2" in (group / "config.toml").read_text()


def test_subcommands_have_version(capsys):
    assert main(["stats", "--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_group_level_reports_every_participants_problem(cohort, tmp_path, capsys):
    import shutil

    bids = tmp_path / "bids"
    shutil.copytree(cohort, bids)
    table = pd.read_csv(bids / "participants.tsv", sep="\t", dtype=str)
    table.loc[0, "age"] = "ten"
    table.loc[1, "group"] = "ADHDD"
    table.to_csv(bids / "participants.tsv", sep="\t", index=False)
    assert main([str(bids), str(tmp_path / "out"), "group"]) == 2
    err = capsys.readouterr().err
    assert "2 problem(s)" in err
    assert "unknown value in column 'group'" in err and "did you mean 'ADHD'" in err
    # age is a covariate of the group level: the bad value, its line and the fix
    assert "'ten' (line 2)" in err and "remove 'age' from [stats] covariates" in err


def test_dataset_with_only_unclaimed_data_names_what_it_found(tmp_path, caplog):
    import logging

    bids = tmp_path / "bids"
    (bids / "sub-01" / "dwi").mkdir(parents=True)
    (bids / "sub-01" / "dwi" / "sub-01_dwi.nii.gz").write_bytes(b"")
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    from danemap.config import Config
    from danemap.pipeline import run_participant

    with caplog.at_level(logging.WARNING, logger="danemap"):  # the library call
        # its only participant failed: nothing done, 2
        assert run_participant(bids, tmp_path / "out", Config()) == 2
    # found by discovery whatever the modality, and named because no family consumes it
    assert "has data for dwi/dwi, which no marker family" in caplog.text
    status = pd.read_csv(tmp_path / "out" / "danemap" / "logs" / "participant_status.tsv",
                         sep="\t")
    error = status.loc[0, "error"]
    assert "no functional input" in error and "no structural input" in error
    assert "no PET/SPECT input" in error and "found only data for dwi/dwi" in error


def test_a_broken_image_fails_its_participant_with_the_file_named(tmp_path):
    from danemap.config import Config
    from danemap.pipeline import run_participant

    bids = tmp_path / "bids"
    for sub in ("sub-01", "sub-02"):
        (bids / sub / "pet").mkdir(parents=True)
    (bids / "sub-01" / "pet" / "sub-01_trc-FPCIT_pet.nii.gz").write_bytes(b"")  # broken
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    assert run_participant(bids, tmp_path / "out", Config()) == 2  # both failed: nothing done
    status = pd.read_csv(tmp_path / "out" / "danemap" / "logs" / "participant_status.tsv",
                         sep="\t").set_index("participant_id")
    assert "sub-01_trc-FPCIT_pet.nii.gz" in status.loc["sub-01", "error"]
    assert status.loc["sub-02", "status"] == "failed"  # no input at all: said, not skipped
    assert "no PET/SPECT input" in status.loc["sub-02", "error"]


def test_fallback_bold_without_fmriprep(cohort, tmp_path, fast_config, caplog):
    """A 4D MNI BOLD with its confounds TSV beside it, and no fMRIPrep folder."""
    import logging
    import shutil

    bids = tmp_path / "bids"
    func = bids / "sub-01" / "func"
    func.mkdir(parents=True)
    shutil.copy(cohort / "dataset_description.json", bids)
    src = cohort / "derivatives" / "fmriprep" / "sub-01" / "func"
    shutil.copy(next(src.glob("*_desc-preproc_bold.nii.gz")), func / "sub-01_task-rest_bold.nii.gz")
    shutil.copy(next(src.glob("*_desc-preproc_bold.json")), func / "sub-01_task-rest_bold.json")
    shutil.copy(next(src.glob("*_desc-confounds_timeseries.tsv")),
                func / "sub-01_task-rest_desc-confounds_timeseries.tsv")
    from danemap.config import load_config
    from danemap.pipeline import run_participant

    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="danemap"):
        assert run_participant(bids, out, load_config(fast_config)) == 0
    assert "assumed to be in MNI152 space" in caplog.text
    fallback = pd.read_csv(next((out / "danemap" / "sub-01" / "func").glob(
        "*_desc-networks_stats.tsv")), sep="\t")
    ref = tmp_path / "ref"
    assert main([str(cohort), str(ref), "participant", "--participant-label", "01",
                 "--config", str(fast_config)]) == 0
    fmriprep = pd.read_csv(next((ref / "danemap" / "sub-01" / "func").glob(
        "*_desc-networks_stats.tsv")), sep="\t")
    # same image, same confounds; only the (absent) brain mask differs
    assert list(fallback["network"]) == list(fmriprep["network"])
    assert abs(fallback["mean_z"] - fmriprep["mean_z"]).max() < 0.05


def test_user_atlas_through_the_bids_app(cohort, tmp_path, fast_config):
    import nibabel as nib
    import numpy as np

    from danemap.atlas import load_atlas
    from danemap.markers.functional import collect_functional_group

    builtin = load_atlas(3)
    keep = {"Caudate_L": 1, "Putamen_L": 2, "DLPFC_L": 3}
    old = np.asarray(builtin.img.dataobj)
    lab = np.zeros(old.shape, dtype=np.int16)
    for name, new in keep.items():
        lab[old == int(builtin.regions.set_index("name").loc[name, "index"])] = new
    folder = tmp_path / "atlas"
    folder.mkdir()
    nib.Nifti1Image(lab, builtin.img.affine).to_filename(folder / "atlas-mini_res-3_dseg.nii.gz")
    (folder / "atlas-mini_dseg.tsv").write_text(
        "index\tname\tnetwork\n1\tCaudate_L\tfs\n2\tPutamen_L\t\n3\tDLPFC_L\tfs\n")
    out = tmp_path / "out"
    assert main([str(cohort), str(out), "participant", "--participant-label", "01", "02",
                 "--atlas", str(folder / "atlas-mini_res-3_dseg.nii.gz"),
                 "--config", str(fast_config)]) == 0
    func = out / "danemap" / "sub-01" / "func"
    ts = pd.read_csv(func / "sub-01_task-rest_atlas-mini_timeseries.tsv", sep="\t")
    assert list(ts.columns) == ["volume", "Caudate_L", "Putamen_L", "DLPFC_L"]
    nets = pd.read_csv(func / "sub-01_task-rest_atlas-mini_desc-networks_stats.tsv", sep="\t")
    assert list(nets["network"]) == ["fs"]
    assert not list(func.glob("*atlas-danemap*"))
    tables = collect_functional_group(out / "danemap", tmp_path / "group", atlas="mini")
    assert list(pd.read_csv(tables["networks"], sep="\t").columns) == ["participant_id", "fs"]
