"""simulate_t1w: warped labels realise the planted regional volume factors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from danemap.atlas import load_atlas
from danemap.errors import InputError
from danemap.simulate import SimulationEffects, simulate_t1w

REGIONS = ("Caudate_L", "Putamen_R", "DLPFC_L", "mPFC_R", "Cerebellum_L")


@pytest.fixture(scope="module")
def atlas():
    return load_atlas(2)


@pytest.fixture(scope="module")
def shrunk(atlas):
    """Same seed (same noise, ICV, other regions); REGIONS at factor 0.9 vs untouched 1.0."""
    eff = SimulationEffects(icv_sd=0.0)
    runs = {}
    for f in (1.0, 0.9):
        runs[f] = simulate_t1w(atlas, seed=2, effects=eff,
                               log_volume_factors=dict.fromkeys(REGIONS, np.log(f)))
    return runs


def test_volumes_from_labels_match_truth(atlas):
    t1, dseg, truth = simulate_t1w(atlas, seed=3)
    lab = np.asarray(dseg.dataobj)
    counts = np.bincount(lab.ravel().astype(int), minlength=int(lab.max()) + 1)
    for i, name in zip(atlas.regions["index"], atlas.regions["name"], strict=True):
        assert truth["volume_mm3"][name] == counts[i] * 8.0
        assert counts[i] > 0, name  # small nuclei survive the smooth label model
        assert truth["intended_volume_factor"][name] == pytest.approx(
            np.exp(truth["log_volume_factor"][name] + truth["icv_log_factor"]))
    data = np.asarray(t1.dataobj)
    assert data.shape == atlas.img.shape and data.max() > 500
    assert truth["icv_mm3"] == pytest.approx(
        truth["template_icv_mm3"] * np.exp(truth["icv_log_factor"]), rel=0.02)


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_realised_volume_matches_intended_factor(atlas, factor):
    planted = dict.fromkeys(("Caudate_L", "Putamen_R", "DLPFC_L", "mPFC_R"), np.log(factor))
    _, _, truth = simulate_t1w(atlas, seed=1, log_volume_factors=planted)
    assert truth["icv_log_factor"] != 0.0  # the global ICV scaling is part of the check
    for name, tpl in truth["template_volume_mm3"].items():
        if tpl < 1000.0:
            continue
        ratio = truth["volume_mm3"][name] / truth["intended_volume_mm3"][name]
        assert ratio == pytest.approx(1.0, abs=0.02), (name, ratio)
    for name in planted:
        realised = truth["volume_mm3"][name] / truth["template_volume_mm3"][name]
        expected = factor * np.exp(truth["icv_log_factor"])
        assert realised == pytest.approx(expected, rel=0.02), name


def test_shrink_moves_labels_and_intensity(shrunk):
    (t1_a, lab_a, tr_a), (t1_b, lab_b, tr_b) = shrunk[1.0], shrunk[0.9]
    for name in REGIONS:
        ratio = tr_b["volume_mm3"][name] / tr_a["volume_mm3"][name]
        assert ratio == pytest.approx(0.9, abs=0.018), name
    la, lb = np.asarray(lab_a.dataobj), np.asarray(lab_b.dataobj)
    moved = la != lb
    assert moved.sum() > 500
    diff = np.abs(np.asarray(t1_b.dataobj) - np.asarray(t1_a.dataobj))
    far = (la == 0) & (lb == 0)
    # identical noise in both runs: any difference is the deformation
    assert diff[moved].mean() > 20.0
    assert diff[moved].mean() > 3 * np.median(diff[far])


def test_deterministic_per_seed(atlas, shrunk):
    eff = SimulationEffects(icv_sd=0.0)
    t1, lab, tr = simulate_t1w(atlas, seed=2, effects=eff,
                               log_volume_factors=dict.fromkeys(REGIONS, np.log(0.9)))
    t1_b, lab_b, tr_b = shrunk[0.9]
    assert np.array_equal(np.asarray(t1.dataobj), np.asarray(t1_b.dataobj))
    assert np.array_equal(np.asarray(lab.dataobj), np.asarray(lab_b.dataobj))
    assert tr == tr_b
    _, lab_c, _ = simulate_t1w(atlas, seed=4, effects=eff)
    assert not np.array_equal(np.asarray(lab_c.dataobj), np.asarray(lab.dataobj))


def test_group_effect_in_planted_log_volumes(atlas):
    eff = SimulationEffects(effect_scale=2.0)
    _, lab_td, td = simulate_t1w(atlas, seed=5, effects=eff)
    _, lab_ad, ad = simulate_t1w(atlas, seed=5, group="ADHD", effects=eff)
    index = dict(zip(atlas.regions["name"], atlas.regions["index"], strict=True))
    for name, d in (("Caudate_L", -0.11), ("Putamen_R", -0.14), ("NAcc_L", -0.15),
                    ("Pallidum_L", 0.0), ("Occipital_L", 0.0)):
        diff = ad["log_volume_factor"][name] - td["log_volume_factor"][name]
        assert diff == pytest.approx(d * 2.0 * 0.08, abs=1e-12), name
        # realised in the label images: voxel counts of the region, ADHD over TD
        counts = [(np.asarray(lab.dataobj) == index[name]).sum() for lab in (lab_ad, lab_td)]
        realised = np.log(counts[0] / counts[1])
        assert realised == pytest.approx(d * 2.0 * 0.08, abs=0.02), name


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"group": "x"}, "group: expected 'TD' or 'ADHD'"),
     ({"log_volume_factors": {"Caudat_L": 0.1}}, r"unknown region\(s\) \['Caudat_L'\]")],
)
def test_t1w_errors(atlas, kwargs, match):
    with pytest.raises(InputError, match=match):
        simulate_t1w(atlas, **kwargs)


def test_cohort_labels_realise_planted_group_shift(tmp_path, atlas):
    """The written label images (not the truth's own numbers) carry the planted shift."""
    from danemap.io import load_nifti
    from danemap.simulate import simulate_cohort

    eff = SimulationEffects(effect_scale=10.0)
    root = simulate_cohort(tmp_path / "ds", n_subjects=6, n_sites=1, seed=7,
                           modalities=("anat",), effects=eff)
    truth = json.loads((root / "ground_truth.json").read_text())
    assert truth["parameters"]["anat_resolution"] == 2
    per = truth["participants"]
    striatal = ("Caudate_L", "Caudate_R", "Putamen_L", "Putamen_R")
    index = dict(zip(atlas.regions["name"], atlas.regions["index"], strict=True))
    adj: dict[str, list[float]] = {"TD": [], "ADHD": []}
    for sub, p in per.items():
        a = p["anat"]
        dseg = load_nifti(root / "derivatives/danemap-sim" / sub / "anat"
                          / f"{sub}_space-MNI152NLin2009cAsym_res-2_dseg.nii.gz",
                          expect_ndim=3)
        lab = np.asarray(dseg.dataobj).astype(int)
        voxvol = float(np.prod(dseg.header.get_zooms()[:3]))
        realised = []
        for n in striatal:
            tpl = a["intended_volume_mm3"][n] / a["intended_volume_factor"][n]
            volume = float((lab == index[n]).sum()) * voxvol  # measured from the image
            # ICV-adjusted realised log volume reproduces the planted log factor
            got = np.log(volume / tpl) - a["icv_log_factor"]
            assert got == pytest.approx(a["log_volume_factor"][n], abs=0.02), (sub, n)
            realised.append(got)
        adj[p["group"]].append(float(np.mean(realised)))
    planted = np.mean([truth["structural"]["planted_cohens_d"][n] for n in striatal]) * 0.08
    shift = np.mean(adj["ADHD"]) - np.mean(adj["TD"])
    assert planted < -0.09 and shift < 0.0
    assert shift == pytest.approx(planted, abs=0.06)
