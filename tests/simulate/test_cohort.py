"""simulate_cohort: BIDS layout, determinism, ground truth consistency, CLI."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from danemap.cli import main
from danemap.errors import InputError
from danemap.simulate import SimulationEffects, simulate_cohort

KW = {"n_subjects": 4, "n_sites": 2, "n_volumes": 20, "seed": 11}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return simulate_cohort(tmp_path_factory.mktemp("a") / "ds", dynamic_pet=True, **KW)


@pytest.fixture(scope="module")
def truth(cohort):
    return json.loads((cohort / "ground_truth.json").read_text())


def _images(root):
    return sorted(p.relative_to(root) for p in root.rglob("*.nii.gz"))


def test_bids_layout_and_sidecars(cohort):
    desc = json.loads((cohort / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "raw" and desc["BIDSVersion"]
    fdesc = json.loads((cohort / "derivatives/fmriprep/dataset_description.json").read_text())
    assert fdesc["DatasetType"] == "derivative"
    sub = "sub-01"
    func = cohort / "derivatives/fmriprep" / sub / "func"
    bold = func / f"{sub}_task-rest_space-MNI152NLin2009cAsym_res-3_desc-preproc_bold.nii.gz"
    img = nib.load(bold)
    assert img.shape == (61, 73, 61, 20) and img.get_data_dtype() == np.float32
    side = json.loads(bold.with_name(bold.name.replace(".nii.gz", ".json")).read_text())
    assert side["RepetitionTime"] == 2.0 and "SkullStripped" in side
    mask = func / f"{sub}_task-rest_space-MNI152NLin2009cAsym_res-3_desc-brain_mask.nii.gz"
    m = np.asarray(nib.load(mask).dataobj).astype(bool)
    assert np.all(np.asarray(img.dataobj)[~m] == 0)
    conf = pd.read_csv(func / f"{sub}_task-rest_desc-confounds_timeseries.tsv", sep="\t",
                       na_values="n/a", keep_default_na=False)
    assert len(conf) == 20 and np.isnan(conf["framewise_displacement"].iloc[0])
    assert {"trans_x_derivative1_power2", "white_matter", "csf", "a_comp_cor_05"} <= set(
        conf.columns)
    assert (cohort / sub / "anat" / f"{sub}_T1w.nii.gz").is_file()
    assert (cohort / sub / "anat" / f"{sub}_T1w.json").is_file()
    pet = json.loads((cohort / sub / "pet" / f"{sub}_trc-FPCIT_pet.json").read_text())
    for key in ("TracerName", "TimeZero", "FrameTimesStart", "FrameDuration", "Units",
                "TracerRadionuclide", "ModeOfAdministration", "InjectedRadioactivity"):
        assert key in pet
    dyn = json.loads((cohort / sub / "pet" / f"{sub}_trc-FEPE2I_pet.json").read_text())
    dimg = nib.load(cohort / sub / "pet" / f"{sub}_trc-FEPE2I_pet.nii.gz")
    assert dimg.shape[3] == len(dyn["FrameTimesStart"]) == len(dyn["FrameDuration"]) == 24
    assert sum(dyn["FrameDuration"]) == 5400
    assert (cohort / "derivatives/danemap-sim" / sub / "anat"
            / f"{sub}_space-MNI152NLin2009cAsym_res-2_dseg.nii.gz").is_file()


def test_participants_table(cohort, truth):
    df = pd.read_csv(cohort / "participants.tsv", sep="\t", na_values="n/a",
                     keep_default_na=False)
    assert list(df.columns) == ["participant_id", "group", "age", "sex", "site", "full4_iq",
                                "med_status", "adhd_index", "inattentive", "hyperimpulsive"]
    assert (df["group"] == "ADHD").sum() == (df["group"] == "TD").sum() == 2
    assert set(df["site"]) == {"site-1", "site-2"}
    assert df.loc[df["group"] == "TD", "med_status"].isna().all()
    assert df.loc[df["group"] == "ADHD", "med_status"].notna().all()
    assert df["age"].between(7, 21).all()
    sidecar = json.loads((cohort / "participants.json").read_text())
    assert set(df.columns[1:]) <= set(sidecar)
    assert df["adhd_index"][df["group"] == "ADHD"].mean() > df["adhd_index"][
        df["group"] == "TD"].mean()
    assert "symptoms_planted" in truth["phenotype"]


def test_ground_truth_reproduces_planted_effects(truth):
    assert truth["parameters"]["seed"] == 11
    assert truth["effects"]["fc_frontostriatal_z"] == -0.15
    sites = truth["sites"]
    for sub, p in truth["participants"].items():
        site = sites[p["site"]]
        assert p["func"]["site_shift_z"] == site["fc_shift_z"]
        for net in ("frontostriatal", "lc_pfc"):
            d = p["func"]["networks"][net]
            latent = np.arctanh([e["latent_r"] for e in d["edges"]])
            base = np.arctanh(truth["effects"]["fc_networks"][net])
            shift = truth["effects"][f"fc_{net}_z"] if p["group"] == "ADHD" else 0.0
            assert latent == pytest.approx(base + shift + d["subject_shift_z"]
                                           + site["fc_shift_z"], abs=1e-8), sub
            # expected ROI correlation from the recorded voxel counts and noise variance
            n_vox = dict(zip(truth["functional"]["regions"], truth["functional"]["n_vox"],
                             strict=True))
            s2 = truth["functional"]["noise_var"]
            for e in d["edges"]:
                rho = e["latent_r"] / np.sqrt((1 + s2 / n_vox[e["a"]]) * (1 + s2 / n_vox[e["b"]]))
                assert e["expected_roi_r"] == pytest.approx(rho, rel=1e-8)
            assert d["expected_score_z"] == pytest.approx(
                np.mean([e["expected_roi_z"] for e in d["edges"]]), abs=1e-9)
        # PET: striatal BP = table x group x subject factor
        bp = p["pet"]["true_bp"]
        g = 1 + truth["effects"]["dat_adhd_pct"] / 100 if p["group"] == "ADHD" else 1.0
        assert bp["Putamen_L"] == pytest.approx(3.1 * g * p["pet"]["striatal_factor"])
        assert p["pet"]["dynamic"]["true_bpnd"] == bp
        assert p["anat"]["icv_mm3"] > 1e6
    n_lc = dict(zip(truth["functional"]["regions"], truth["functional"]["n_vox"], strict=True))
    assert 1 <= n_lc["LC_L"] <= 3  # tiny, yet its truth is recorded like any other region
    fs = truth["functional"]["networks"]["frontostriatal"]
    assert fs["cohens_d_latent"] == pytest.approx(
        truth["effects"]["fc_frontostriatal_z"] / truth["effects"]["fc_subject_sd_z"])
    assert truth["structural"]["planted_cohens_d"]["Caudate_L"] == -0.11
    assert truth["pet"]["group_effect_pct"] == -5.0


def test_warped_label_volumes_match_ground_truth(cohort, truth):
    for sub, p in truth["participants"].items():
        dseg = cohort / "derivatives/danemap-sim" / sub / "anat" / (
            f"{sub}_space-MNI152NLin2009cAsym_res-2_dseg.nii.gz")  # anat_resolution=2
        lab = np.asarray(nib.load(dseg).dataobj)
        counts = np.bincount(lab.ravel().astype(int), minlength=len(p["anat"]["volume_mm3"]) + 1)
        names = truth["functional"]["regions"]
        for idx, name in enumerate(names, start=1):
            assert counts[idx] * 8.0 == p["anat"]["volume_mm3"][name]


def test_same_seed_identical_other_seed_differs(cohort, tmp_path):
    again = simulate_cohort(tmp_path / "b", dynamic_pet=True, **KW)
    for name in ("participants.tsv", "ground_truth.json", "participants.json"):
        assert (cohort / name).read_bytes() == (again / name).read_bytes()
    imgs = _images(cohort)
    assert imgs == _images(again) and len(imgs) == 4 * 5 + 4 * 1
    for rel in imgs:
        assert (cohort / rel).read_bytes() == (again / rel).read_bytes(), rel
    other = simulate_cohort(tmp_path / "c", modalities=("func",), **{**KW, "seed": 12})
    assert (other / "participants.tsv").read_bytes() != (cohort / "participants.tsv").read_bytes()
    rel = imgs[[str(p).endswith("preproc_bold.nii.gz") for p in imgs].index(True)]
    a = np.asarray(nib.load(cohort / rel).dataobj)
    b = np.asarray(nib.load(other / rel).dataobj)
    assert not np.array_equal(a, b)


def test_overwrites_previous_simulation_but_not_foreign_folder(tmp_path):
    out = simulate_cohort(tmp_path / "x", n_subjects=2, n_sites=1, modalities=("pet",))
    simulate_cohort(out, n_subjects=2, n_sites=1, modalities=("pet",))  # allowed
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data.txt").write_text("keep me")
    with pytest.raises(InputError, match=r"not empty and holds no ground_truth\.json"):
        simulate_cohort(foreign, n_subjects=2, modalities=("pet",))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_subjects": 1}, "n_subjects: expected an integer >= 2"),
        ({"n_sites": 5, "n_subjects": 4}, r"n_sites: expected an integer between 1 and"),
        ({"modalities": ("dwi",)}, r"modalities: unknown \['dwi'\]"),
        ({"modalities": ()}, "modalities: expected at least one"),
        ({"resolution": 1}, "resolution: expected 2 or 3"),
        ({"n_volumes": 3}, "n_volumes: expected an integer >= 10"),
        ({"tr": -1.0}, "tr: expected a positive"),
        ({"effects": {"dat_adhd_pct": 3}}, "effects: expected a SimulationEffects"),
    ],
)
def test_cohort_errors(tmp_path, kwargs, match):
    with pytest.raises(InputError, match=match):
        simulate_cohort(tmp_path / "e", **kwargs)


def test_out_dir_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(InputError, match="exists and is not a folder"):
        simulate_cohort(f, n_subjects=2, modalities=("pet",))


def test_cli_run(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["simulate", str(out), "--n-subjects", "2", "--n-sites", "1", "--modalities",
               "pet", "--seed", "4", "--effect-dat-pct", "10", "--effect-scale", "2",
               "--effect-frontostriatal", "-0.3", "--effect-lc-pfc", "-0.2"])
    assert rc == 0
    assert capsys.readouterr().out.strip() == str(out)
    truth = json.loads((out / "ground_truth.json").read_text())
    assert truth["effects"]["dat_adhd_pct"] == 10.0
    assert truth["effects"]["effect_scale"] == 2.0
    assert truth["effects"]["fc_frontostriatal_z"] == -0.3
    assert truth["effects"]["fc_lc_pfc_z"] == -0.2
    assert truth["parameters"]["modalities"] == ["pet"]
    assert not (out / "derivatives" / "fmriprep").exists()


def test_cli_usage_error(tmp_path):
    assert main(["simulate", str(tmp_path / "z"), "--resolution", "1"]) == 2


def test_site_effects_off(tmp_path):
    out = simulate_cohort(tmp_path / "s", n_subjects=2, n_sites=2, modalities=("pet",),
                          site_effects=False, effects=SimulationEffects(dat_site_scale_sd=0.5))
    truth = json.loads((out / "ground_truth.json").read_text())
    for site in truth["sites"].values():
        assert site["spect_calibration_scale"] == 1.0 and site["fc_shift_z"] == 0.0
