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


def test_ground_truth_records_the_planted_settings(truth):
    """What ground_truth.json says was planted (the recovery tests below read the images)."""
    assert truth["parameters"]["seed"] == 11
    assert truth["effects"]["fc_frontostriatal_z"] == -0.045  # realistic default: d = -0.3
    fs = truth["functional"]["networks"]["frontostriatal"]
    assert fs["cohens_d_latent"] == pytest.approx(-0.3)
    assert truth["functional"]["networks"]["mesolimbic"]["cohens_d_latent"] == 0.0
    for p in truth["participants"].values():
        site = truth["sites"][p["site"]]
        assert p["func"]["site_shift_z"] == site["fc_shift_z"]
        assert p["func"]["intensity_scale"] == site["bold_intensity_scale"]
        assert p["pet"]["calibration_scale"] == site["spect_calibration_scale"]
        assert site["signal_scale_source"] == "drawn"
        assert p["pet"]["dynamic"]["true_bpnd"] == p["pet"]["true_bp"]
    n_lc = dict(zip(truth["functional"]["regions"], truth["functional"]["n_vox"], strict=True))
    assert 1 <= n_lc["LC_L"] <= 3  # tiny, yet its truth is recorded like any other region
    assert truth["structural"]["planted_cohens_d"]["Caudate_L"] == -0.11
    assert truth["pet"]["group_effect_pct"] == -5.0


# Recovery from what was written. The effects are raised far above the realistic defaults
# (FC shifts -0.3 and -0.5 z with no between-subject spread, DAT -30 % with none; LC-PFC
# more, since the 1-3 voxel LC attenuates its ROI-level change), so that 2 ADHD + 2
# TD participants show them; site 2 measures 8x the signal of site 1 and no other site
# effect is drawn.
RECOVERY_EFFECTS = SimulationEffects(
    fc_frontostriatal_z=-0.3, fc_lc_pfc_z=-0.5, fc_subject_sd_z=0.0,
    dat_adhd_pct=-30.0, dat_subject_sd_pct=0.0, site_scale=(1.0, 8.0))


@pytest.fixture(scope="module")
def recovery(tmp_path_factory):
    root = simulate_cohort(tmp_path_factory.mktemp("r") / "ds", n_subjects=4, n_sites=2,
                           seed=5, modalities=("func", "pet"), n_volumes=150,
                           effects=RECOVERY_EFFECTS, site_effects=False)
    return root, json.loads((root / "ground_truth.json").read_text())


@pytest.fixture(scope="module")
def measured_func(recovery):
    """danemap's participant-level functional outputs, computed from the written files."""
    import warnings

    from danemap.atlas import load_atlas
    from danemap.config import FunctionalConfig
    from danemap.errors import DanemapWarning
    from danemap.markers import process_run

    root, truth = recovery
    atlas = load_atlas(3)
    out = {}
    for sub in truth["participants"]:
        d = root / "derivatives" / "fmriprep" / sub / "func"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DanemapWarning)
            # high-pass only: the planted ROI correlations hold under any linear filter
            out[sub] = process_run(next(d.glob("*_desc-preproc_bold.nii.gz")),
                                   next(d.glob("*_desc-confounds_timeseries.tsv")), atlas,
                                   FunctionalConfig(low_pass=0),
                                   mask=next(d.glob("*_desc-brain_mask.nii.gz")))
    return out


def test_written_bold_recovers_planted_network_scores(recovery, measured_func):
    _, truth = recovery
    per = truth["participants"]
    diffs: dict[str, dict[str, list[float]]] = {}
    for sub, res in measured_func.items():
        got = res.networks.set_index("network")["mean_z"]
        grp = per[sub]["group"]
        for net in ("frontostriatal", "lc_pfc", "mesolimbic", "nigrostriatal"):
            want = per[sub]["func"]["networks"][net]["expected_score_z"]
            tol = 0.1 if net == "frontostriatal" else 0.2  # fewer edges, or LC (1-3 voxels)
            assert got[net] == pytest.approx(want, abs=tol), (sub, net)
            diffs.setdefault(net, {}).setdefault(grp, []).append(float(got[net]))
    planted = truth["functional"]["networks"]
    for net, by_group in diffs.items():
        measured = np.mean(by_group["ADHD"]) - np.mean(by_group["TD"])
        means = planted[net]["expected_score_z_group_mean"]
        want = means["ADHD"] - means["TD"]
        print(f"{net}: measured ADHD - TD {measured:+.3f}, planted {want:+.3f}")
        if net in ("frontostriatal", "lc_pfc"):
            assert want < -0.2 and measured < -0.15, net  # the planted decrease is in the data
        else:
            assert want == pytest.approx(0.0, abs=1e-9), net
        assert measured == pytest.approx(want, abs=0.1), net


def test_written_images_carry_the_site_scale(recovery, measured_func):
    """site_scale multiplies what is measured: BOLD intensity, raw ALFF and SPECT counts."""
    from danemap.io import load_nifti
    from danemap.simulate._pet import measure_sbr

    root, truth = recovery
    assert truth["effects"]["site_scale"] == [1.0, 8.0]
    for name, want in (("site-1", 1.0), ("site-2", 8.0)):
        site = truth["sites"][name]
        assert site["signal_scale_source"] == "site_scale"
        assert site["bold_intensity_scale"] == site["spect_calibration_scale"] == want
        assert site["fc_shift_z"] == 0.0  # site_effects=False leaves only the scale
    per = truth["participants"]
    by_site: dict[str, dict[str, list[float]]] = {}
    labels = None
    for sub, p in per.items():
        bold = load_nifti(next((root / "derivatives" / "fmriprep" / sub / "func").glob(
            "*_desc-preproc_bold.nii.gz")))
        data = np.asarray(bold.dataobj)
        brain = data[..., 0] != 0
        alff = measured_func[sub].alff.set_index("region")
        pet = load_nifti(root / sub / "pet" / f"{sub}_trc-FPCIT_pet.nii.gz", expect_ndim=3)
        img = np.asarray(pet.dataobj, dtype=float)
        if labels is None:
            from danemap.atlas import load_atlas
            from danemap.simulate._common import atlas_arrays

            labels, _, names, idx = atlas_arrays(load_atlas(3))
        occ = np.isin(labels, [i for n, i in zip(names, idx, strict=True)
                               if n.startswith("Occipital")])
        s = by_site.setdefault(p["site"], {})
        s.setdefault("bold_mean", []).append(float(data[brain].mean()))
        s.setdefault("alff", []).append(float(alff["alff"].mean()))
        s.setdefault("malff", []).append(float(alff["malff"].mean()))
        s.setdefault("occipital_counts", []).append(float(img[occ].mean()))
        sbr = measure_sbr(img, labels, names, idx)
        s.setdefault("sbr_putamen", []).append(sbr["Putamen_L"])
        # SBR is a ratio: the measured value follows the planted one at either scale
        assert sbr["Putamen_L"] == pytest.approx(p["pet"]["expected_sbr"]["Putamen_L"],
                                                 rel=0.05), sub
    ratio = {k: np.mean(by_site["site-2"][k]) / np.mean(by_site["site-1"][k])
             for k in by_site["site-1"]}
    print("site-2 / site-1:", {k: round(float(v), 3) for k, v in ratio.items()})
    for key in ("bold_mean", "alff", "occipital_counts"):
        assert ratio[key] == pytest.approx(8.0, rel=0.05), key
    for key in ("malff", "sbr_putamen"):  # normalised measures do not see the scale
        assert ratio[key] == pytest.approx(1.0, abs=0.05), key


def test_written_spect_recovers_planted_dat_effect(recovery):
    from danemap.io import load_nifti
    from danemap.simulate._pet import measure_sbr

    root, truth = recovery
    from danemap.atlas import load_atlas
    from danemap.simulate._common import atlas_arrays

    labels, _, names, idx = atlas_arrays(load_atlas(3))
    sbr: dict[str, list[float]] = {"ADHD": [], "TD": []}
    for sub, p in truth["participants"].items():
        img = np.asarray(load_nifti(root / sub / "pet" / f"{sub}_trc-FPCIT_pet.nii.gz",
                                    expect_ndim=3).dataobj, dtype=float)
        m = measure_sbr(img, labels, names, idx)
        sbr[p["group"]].append(np.mean([m[n] for n in ("Caudate_L", "Caudate_R",
                                                       "Putamen_L", "Putamen_R")]))
    ratio = np.mean(sbr["ADHD"]) / np.mean(sbr["TD"])
    print(f"striatal SBR ADHD / TD: {ratio:.3f} (planted BP ratio 0.70)")
    # partial volume mixes in unchanged neighbours, so the SBR ratio is a little above 0.7
    assert 0.68 < ratio < 0.76


def test_warped_label_volumes_match_ground_truth(cohort, truth):
    for sub, p in truth["participants"].items():
        dseg = cohort / "derivatives/danemap-sim" / sub / "anat" / (
            f"{sub}_space-MNI152NLin2009cAsym_res-2_dseg.nii.gz")  # anat_resolution=2
        lab = np.asarray(nib.load(dseg).dataobj)
        counts = np.bincount(lab.ravel().astype(int), minlength=len(p["anat"]["volume_mm3"]) + 1)
        names = truth["functional"]["regions"]
        for idx, name in enumerate(names, start=1):
            assert counts[idx] * 8.0 == p["anat"]["volume_mm3"][name]


def test_same_seed_identical_with_any_n_jobs_other_seed_differs(cohort, tmp_path):
    # the second run in 2 worker processes: the draws depend on the seed and the
    # participant only
    again = simulate_cohort(tmp_path / "b", dynamic_pet=True, n_jobs=2, **KW)
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
    simulate_cohort(out, n_subjects=2, n_sites=1, modalities=("pet",),
                    overwrite=True)  # allowed with overwrite (refused without: see below)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data.txt").write_text("keep me")
    with pytest.raises(InputError, match=r"not empty and holds no ground_truth\.json"):
        simulate_cohort(foreign, n_subjects=2, modalities=("pet",))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_subjects": 1}, "n_subjects: expected an integer >= 2"),
        ({"n_jobs": 0}, "n_jobs: expected an integer >= 1, found 0"),
        ({"n_sites": 5, "n_subjects": 4}, r"n_sites: expected an integer between 1 and"),
        ({"modalities": ("dwi",)}, r"modalities: unknown \['dwi'\]"),
        ({"modalities": ()}, "modalities: expected at least one"),
        ({"resolution": 1}, "resolution: expected 2 or 3"),
        ({"n_volumes": 3}, "n_volumes: expected an integer >= 10"),
        ({"tr": -1.0}, "tr: expected a positive"),
        ({"effects": {"dat_adhd_pct": 3}}, "effects: expected a SimulationEffects"),
        ({"effects": SimulationEffects(site_scale=(1.0, 8.0, 2.0))},
         r"effects\.site_scale: expected one factor per site \(2\), found 3"),
    ],
)
def test_cohort_errors(tmp_path, kwargs, match):
    with pytest.raises(InputError, match=match):
        simulate_cohort(tmp_path / "e", **kwargs)


@pytest.mark.parametrize("scale", [(), (1.0, 0.0), (1.0, float("nan")), ("big",), 3.0, "18"])
def test_site_scale_validation(scale):
    with pytest.raises(InputError, match=r"SimulationEffects\.site_scale: expected"):
        SimulationEffects(site_scale=scale)


def test_site_scale_is_a_tuple_of_floats():
    assert SimulationEffects(site_scale=[1, 8]).site_scale == (1.0, 8.0)
    assert SimulationEffects().site_scale is None


def test_out_dir_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(InputError, match="exists and is not a folder"):
        simulate_cohort(f, n_subjects=2, modalities=("pet",))


def test_cli_run(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["simulate", str(out), "--n-subjects", "2", "--n-sites", "1", "--modalities",
               "pet", "--seed", "4", "--effect-dat-pct", "10", "--effect-scale", "2",
               "--effect-frontostriatal", "-0.3", "--effect-lc-pfc", "-0.2",
               "--site-scale", "3"])
    assert rc == 0
    assert capsys.readouterr().out.strip() == str(out)
    truth = json.loads((out / "ground_truth.json").read_text())
    assert truth["effects"]["dat_adhd_pct"] == 10.0
    assert truth["effects"]["effect_scale"] == 2.0
    assert truth["effects"]["fc_frontostriatal_z"] == -0.3
    assert truth["effects"]["fc_lc_pfc_z"] == -0.2
    assert truth["effects"]["site_scale"] == [3.0]
    assert truth["sites"]["site-1"]["spect_calibration_scale"] == 3.0
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


def test_existing_simulation_is_refused_without_overwrite_and_replaced_with_it(tmp_path):
    out = simulate_cohort(tmp_path / "x", n_subjects=8, n_sites=1, modalities=("pet",))
    assert len(list(out.glob("sub-*"))) == 8
    before = (out / "participants.tsv").read_bytes()
    with pytest.raises(InputError, match=r"not empty: it holds a previous simulation .*"
                                         r"ground_truth\.json.*overwrite=True"):
        simulate_cohort(out, n_subjects=2, n_sites=1, modalities=("pet",))
    assert (out / "participants.tsv").read_bytes() == before  # nothing touched
    assert len(list(out.glob("sub-*"))) == 8
    simulate_cohort(out, n_subjects=2, n_sites=1, modalities=("pet",), overwrite=True)
    # the old dataset is removed first: no sub-03...08 left behind
    assert sorted(p.name for p in out.glob("sub-*")) == ["sub-01", "sub-02"]
    truth = json.loads((out / "ground_truth.json").read_text())
    assert sorted(truth["participants"]) == ["sub-01", "sub-02"]


def test_overwrite_never_removes_a_foreign_folder(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data.txt").write_text("keep me")
    with pytest.raises(InputError, match=r"holds no ground_truth\.json.*even with overwrite"):
        simulate_cohort(foreign, n_subjects=2, modalities=("pet",), overwrite=True)
    assert (foreign / "data.txt").read_text() == "keep me"


def test_invalid_arguments_remove_nothing_even_with_overwrite(tmp_path):
    out = simulate_cohort(tmp_path / "x", n_subjects=2, n_sites=1, modalities=("pet",))
    with pytest.raises(InputError, match="site_scale"):
        simulate_cohort(out, n_subjects=2, n_sites=1, modalities=("pet",), overwrite=True,
                        effects=SimulationEffects(site_scale=(1.0, 2.0)))
    assert (out / "ground_truth.json").is_file() and len(list(out.glob("sub-*"))) == 2


def test_cli_refuses_an_existing_simulation_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["simulate", str(out), "--n-subjects", "2", "--n-sites", "1", "--modalities", "pet"]
    assert main([*args, "--n-subjects", "4"]) == 0
    capsys.readouterr()
    assert main(args) == 2
    cap = capsys.readouterr()
    assert cap.out == ""
    assert "previous simulation" in cap.err and "--overwrite" in cap.err
    assert cap.err.count("previous simulation") == 1  # reported once
    assert len(list(out.glob("sub-*"))) == 4
    assert main([*args, "--overwrite"]) == 0
    cap = capsys.readouterr()
    assert cap.out.strip() == str(out)
    assert " SUMMARY simulate: 2 participants at 1 site(s), pet" in cap.err
    assert sorted(p.name for p in out.glob("sub-*")) == ["sub-01", "sub-02"]
