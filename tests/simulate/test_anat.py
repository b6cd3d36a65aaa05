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


# --- realistic path: Colin27 base, head pose, bias field, Rician noise, site contrast ---

def _colin_or_skip():
    from danemap.simulate._anat import COLIN27_PATH

    if not COLIN27_PATH.is_file():
        pytest.skip(f"{COLIN27_PATH} missing (Debian package mricron-data)")


def test_realistic_truth_measured_from_written_grid(atlas):
    """Interpolated-indicator truth vs the written dseg's voxel counts vs the intended factor."""
    from scipy import ndimage

    from danemap.simulate._anat import realistic_t1w_arrays

    _colin_or_skip()
    t1, lab, _, tr = realistic_t1w_arrays(atlas, [3, 1], "TD", SimulationEffects(),
                                               base="colin27", contrast=1.1)
    assert t1.shape == lab.shape == atlas.img.shape
    counts = np.bincount(lab.ravel().astype(int), minlength=int(lab.max()) + 1)
    index = dict(zip(atlas.regions["name"], atlas.regions["index"], strict=True))
    for name, tpl in tr["template_volume_mm3"].items():
        assert tr["dseg_volume_mm3"][name] == counts[index[name]] * 8.0
        if tpl < 5000.0:
            continue
        assert tr["volume_mm3"][name] == pytest.approx(tr["dseg_volume_mm3"][name], rel=0.04)
        assert tr["volume_mm3"][name] == pytest.approx(tr["intended_volume_mm3"][name],
                                                       rel=0.06), name
    # the pose moved the brain off the template grid: labels no longer match the atlas
    base = np.asarray(atlas.img.dataobj)
    assert (lab != base).mean() > 0.02
    assert max(abs(a) for a in tr["pose"]["rotation_deg"]) <= 8.0
    # Rician noise: a positive floor outside the head, no negative values
    assert t1.min() >= 0.0 and np.median(t1[:5, :5, :5]) > 5.0
    # reference for the interpolated volume: scipy's zoom-free check on one region
    src = np.indices(base.shape).reshape(3, -1).astype(float)
    ref = ndimage.map_coordinates((base == 11).astype(float), src, order=1).sum() * 8.0
    assert ref == pytest.approx(tr["template_volume_mm3"]["Caudate_L"], rel=1e-9)


def test_realistic_deterministic_and_seeded(atlas):
    from danemap.simulate._anat import realistic_t1w_arrays

    eff = SimulationEffects()
    a = realistic_t1w_arrays(atlas, [1, 2], "ADHD", eff, base="mni152")
    b = realistic_t1w_arrays(atlas, [1, 2], "ADHD", eff, base="mni152")
    c = realistic_t1w_arrays(atlas, [1, 3], "ADHD", eff, base="mni152")
    assert np.array_equal(a[0], b[0]) and a[3] == b[3]
    assert not np.array_equal(a[0], c[0])


def test_colin27_missing_is_input_error(tmp_path, monkeypatch):
    from danemap.simulate import _anat, simulate_cohort

    monkeypatch.setattr(_anat, "COLIN27_PATH", tmp_path / "nope.nii.gz")
    with pytest.raises(InputError, match="mricron-data"):
        simulate_cohort(tmp_path / "ds", n_subjects=2, n_sites=1, modalities=("anat",),
                        anat_base="colin27")
    with pytest.raises(InputError, match="anat_base: expected one of"):
        simulate_cohort(tmp_path / "ds2", n_subjects=2, n_sites=1, modalities=("anat",),
                        anat_base="colin")


def test_colin27_cohort_json_and_labels(tmp_path):
    from danemap.io import load_nifti
    from danemap.simulate import simulate_cohort

    _colin_or_skip()
    root = simulate_cohort(tmp_path / "ds", n_subjects=2, n_sites=1, seed=3,
                           modalities=("anat",), anat_base="colin27")
    truth = json.loads((root / "ground_truth.json").read_text())
    assert truth["parameters"]["anat_base"] == "colin27"
    assert truth["parameters"]["anat_realistic"] is True
    for sub, p in truth["participants"].items():
        meta = json.loads((root / sub / "anat" / f"{sub}_T1w.json").read_text())
        assert "NOT in MNI space" in meta["Note"]
        dseg = load_nifti(root / "derivatives/danemap-sim" / sub / "anat" / f"{sub}_dseg.nii.gz",
                          expect_ndim=3)
        lab = np.asarray(dseg.dataobj).astype(int)
        assert p["anat"]["dseg_volume_mm3"]["Putamen_L"] == (lab == 13).sum() * 8.0
        assert "pose" in p["anat"] and p["anat"]["base"] == "colin27"
