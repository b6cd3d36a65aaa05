"""Static quantification: reference computations, planted truth, degenerate input."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest
from nibabel.affines import apply_affine
from scipy import ndimage

from danemap.atlas import load_atlas
from danemap.errors import DanemapWarning, InputError
from danemap.markers.pet._regions import (
    TRACERS,
    pet_region_set,
    reference_mask,
    tracer_defaults,
)
from danemap.markers.pet._static import COLUMNS, quantify_static, static_measures
from danemap.simulate import SimulationEffects, simulate_dat_spect

FWHM = 8.0  # the simulator's default SPECT PSF
SIDES = [("caudate", "Caudate"), ("putamen", "Putamen")]


@pytest.fixture(scope="module")
def atlas():
    return load_atlas(3)


@pytest.fixture(scope="module")
def labels(atlas):
    return np.asarray(atlas.img.dataobj).astype(int)


def idx(atlas, name):
    return int(atlas.regions.loc[atlas.regions["name"] == name, "index"].iloc[0])


def value(df, region, hemi, measure, method="uncorrected"):
    sel = df[(df.region == region) & (df.hemisphere == hemi) & (df.measure == measure)
             & (df.method == method)]
    assert len(sel) == 1, (region, hemi, measure, method, len(sel))
    return float(sel["value"].iloc[0])


# ----------------------------------------------------------------- reference computation
def test_uncorrected_measures_match_an_independent_computation(atlas, labels):
    """Region masks rebuilt from the labels and the affine; means by scipy.ndimage."""
    rng = np.random.default_rng(0)
    striatum = np.isin(labels, [idx(atlas, f"{s}_{h}") for s in ("Caudate", "Putamen", "NAcc")
                                for h in "LR"])
    data = rng.gamma(4.0, 10.0, size=labels.shape) + 60.0 * rng.random() * striatum
    img = nib.Nifti1Image(data, atlas.affine)
    df = quantify_static(img, atlas, tracer="DaTscan")
    assert list(df.columns) == list(COLUMNS)
    assert set(df["method"]) == {"uncorrected"} and not df["pvc"].any()
    assert set(df["reference"]) == {"occipital"}
    occ = np.isin(labels, [idx(atlas, "Occipital_L"), idx(atlas, "Occipital_R")])
    ref = ndimage.mean(data, occ.astype(int), index=1)
    y = apply_affine(atlas.affine, np.indices(labels.shape).reshape(3, -1).T)[:, 1]
    y = y.reshape(labels.shape)
    sbr = {}
    for hemi in ("L", "R"):
        put = labels == idx(atlas, f"Putamen_{hemi}")
        cau = labels == idx(atlas, f"Caudate_{hemi}")
        nac = labels == idx(atlas, f"NAcc_{hemi}")
        masks = {"caudate": cau, "putamen": put, "accumbens": nac,
                 "putamen_anterior": put & (y >= 0), "putamen_posterior": put & (y < 0),
                 "striatum": cau | put | nac}
        for name, m in masks.items():
            assert m.any()
            want = data[m].mean() / ref
            assert value(df, name, hemi, "SUVR") == pytest.approx(want, rel=1e-10)
            assert value(df, name, hemi, "SBR") == pytest.approx(want - 1, rel=1e-10)
            sbr[(name, hemi)] = want - 1
    pooled = (labels == idx(atlas, "Putamen_L")) | (labels == idx(atlas, "Putamen_R"))
    assert value(df, "putamen", "bilateral", "SUVR") == pytest.approx(
        data[pooled].mean() / ref, rel=1e-10)
    for hemi in ("L", "R"):
        assert value(df, "putamen_caudate", hemi, "PC_ratio") == pytest.approx(
            sbr[("putamen", hemi)] / sbr[("caudate", hemi)], rel=1e-10)
    left, right = sbr[("caudate", "L")], sbr[("caudate", "R")]
    assert value(df, "caudate", "bilateral", "asymmetry_index") == pytest.approx(
        100 * abs(left - right) / ((left + right) / 2), rel=1e-10)


def test_static_measures_by_hand():
    means = {("putamen", "L"): 30.0, ("putamen", "R"): 25.0, ("caudate", "L"): 20.0,
             ("caudate", "R"): 20.0}
    df = static_measures(means, 10.0, reference="occipital")
    assert value(df, "putamen", "L", "SBR") == pytest.approx(2.0)
    assert value(df, "putamen", "R", "SUVR") == pytest.approx(2.5)
    assert value(df, "putamen_caudate", "L", "PC_ratio") == pytest.approx(2.0)
    assert value(df, "putamen_caudate", "R", "PC_ratio") == pytest.approx(1.5)
    # SBR 2.0 vs 1.5: 100 * 0.5 / 1.75
    assert value(df, "putamen", "bilateral", "asymmetry_index") == pytest.approx(
        100 * 0.5 / 1.75)
    assert value(df, "caudate", "bilateral", "asymmetry_index") == 0.0
    # a caudate without specific binding: the ratio is undefined, not infinite
    df = static_measures({("putamen", "L"): 30.0, ("caudate", "L"): 10.0}, 10.0)
    assert np.isnan(value(df, "putamen_caudate", "L", "PC_ratio"))
    with pytest.raises(InputError, match="expected a finite mean > 0"):
        static_measures(means, 0.0, reference="occipital")


def test_regions_references_and_tracers(atlas, labels):
    for spelling, name in (("[123I]FP-CIT", "FP-CIT"), ("DaTscan", "FP-CIT"),
                           ("ioflupane", "FP-CIT"), ("FE-PE2I", "PE2I"),
                           ("[18F]FE-PE2I", "PE2I"), ("(S,S)-[11C]MRB", "MRB"),
                           ("FMeNER-D2", "MRB"), ("123I-FP-CIT", "FP-CIT")):
        assert tracer_defaults(spelling).name == name, spelling
    assert {t.name: t.reference for t in TRACERS} == {
        "FP-CIT": "occipital", "PE2I": "cerebellum", "MRB": "caudate"}
    assert tracer_defaults("MRB").regions == ("LC", "thalamus")
    generic = tracer_defaults("raclopride")
    assert not generic.known and generic.fwhm_mm == 0.0 and "Known" in generic.describe()
    cer = reference_mask(atlas, "cerebellum")
    want = np.isin(labels, [idx(atlas, "Cerebellum_L"), idx(atlas, "Cerebellum_R")])
    assert np.array_equal(cer, want)
    assert not cer[labels == idx(atlas, "Vermis")].any()  # hemispheres without the vermis
    rs = pet_region_set(atlas, regions=["putamen_anterior", "Vermis", "dlpfc"],
                        reference="Thalamus", split_y_mm=5.0)
    got = {(r.name, r.hemisphere) for r in rs.targets}
    assert got == {("putamen_anterior", "L"), ("putamen_anterior", "R"),
                   ("putamen_anterior", "bilateral"), ("Vermis", "midline"),
                   ("dlpfc", "L"), ("dlpfc", "R"), ("dlpfc", "bilateral")}
    # the split moves with split_y_mm; anterior + posterior = the whole putamen
    ant = rs.labels == next(k for k, v in rs.part_names.items() if v == "Putamen_L_anterior")
    post = rs.labels == next(k for k, v in rs.part_names.items()
                             if v == "Putamen_L_posterior")
    put = labels == idx(atlas, "Putamen_L")
    assert np.array_equal(ant | post, put) and not (ant & post).any()
    y = apply_affine(atlas.affine, np.argwhere(ant))[:, 1]
    assert y.min() >= 5.0 and 0 < ant.sum() < put.sum()


def test_mask_reference_and_other_atlas_grid(atlas, labels, tmp_path):
    img, _ = simulate_dat_spect(atlas, seed=7, noise=False)
    occ = np.isin(labels, [idx(atlas, "Occipital_L"), idx(atlas, "Occipital_R")])
    path = tmp_path / "occ_mask.nii.gz"
    nib.save(nib.Nifti1Image(occ.astype(np.uint8), atlas.affine), path)
    by_name = quantify_static(img, atlas, regions=["putamen"], reference="occipital",
                              pvc="gtm", fwhm_mm=FWHM)
    by_mask = quantify_static(img, atlas, regions=["putamen"], reference=str(path),
                              pvc="gtm", fwhm_mm=FWHM)
    assert set(by_mask["reference"]) == {str(path)}
    for method, tol in (("uncorrected", 1e-10), ("gtm", 1e-3)):
        assert value(by_mask, "putamen", "L", "SBR", method) == pytest.approx(
            value(by_name, "putamen", "L", "SBR", method), rel=tol)
    # an atlas on another grid is resampled onto the image (nearest neighbour)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DanemapWarning)
        other = quantify_static(img, load_atlas(2), regions=["putamen"])
        lab2 = np.asarray(load_atlas(2).resample_to(img).img.dataobj)
    data = np.asarray(img.dataobj, dtype=float)
    ref = data[np.isin(lab2, [idx(atlas, "Occipital_L"), idx(atlas, "Occipital_R")])].mean()
    want = data[lab2 == idx(atlas, "Putamen_L")].mean() / ref - 1
    assert value(other, "putamen", "L", "SBR") == pytest.approx(want, rel=1e-10)


# ----------------------------------------------------------------- planted truth
def test_gtm_recovers_planted_sbr_and_uncorrected_is_biased_low(atlas):
    for noise in (False, True):
        img, truth = simulate_dat_spect(atlas, seed=3, noise=noise)
        df = quantify_static(img, atlas, tracer="FP-CIT", pvc="gtm", fwhm_mm=FWHM)
        for region, stem in SIDES:
            for hemi in ("L", "R"):
                true = truth["true_sbr"][f"{stem}_{hemi}"]
                assert true == truth["true_bp"][f"{stem}_{hemi}"]
                raw = value(df, region, hemi, "SBR") / true - 1
                cor = value(df, region, hemi, "SBR", "gtm") / true - 1
                print(f"noise={noise} {region}_{hemi}: true SBR {true:.3f}, uncorrected "
                      f"{100 * raw:+.1f} %, GTM {100 * cor:+.2f} %")
                assert abs(cor) < 0.05
                assert raw < -0.25  # partial volume: about -33 % to -37 % at 8 mm, 3 mm grid
    assert set(df["method"]) == {"uncorrected", "gtm"}
    assert df.loc[df.method == "gtm", "pvc"].all()


def test_rbv_recovers_planted_sbr(atlas):
    img, truth = simulate_dat_spect(atlas, seed=5, noise=False)
    df = quantify_static(img, atlas, regions=["caudate", "putamen"], pvc="rbv", fwhm_mm=FWHM)
    assert set(df["method"]) == {"uncorrected", "rbv"}
    for region, stem in SIDES:
        for hemi in ("L", "R"):
            true = truth["true_sbr"][f"{stem}_{hemi}"]
            got = value(df, region, hemi, "SBR", "rbv")
            print(f"RBV {region}_{hemi}: {got:.3f} vs true {true:.3f}")
            assert got == pytest.approx(true, rel=0.05)


def _striatal_sbr(df, method):
    return np.mean([value(df, r, h, "SBR", method) for r, _ in SIDES for h in ("L", "R")])


def test_planted_group_and_medication_effects_recovered(atlas):
    """+14 % (Fusar-Poli 2012 average), naive +8 %, stimulant +20 %: 10 TD vs 5 + 5 ADHD.

    Poisson noise at the default counts; no between-subject spread, so that the planted
    percentages, not a sample of subjects, are what the measurement must recover.
    """
    eff = SimulationEffects(dat_adhd_pct=14.0, dat_med_pct=6.0, dat_subject_sd_pct=0.0)
    out: dict[str, dict[str, list[float]]] = {}
    for k in range(20):
        group, med = ("TD", None) if k < 10 else ("ADHD", "stimulant" if k % 2 else "naive")
        img, truth = simulate_dat_spect(atlas, seed=100 + k, group=group, effects=eff,
                                        med_status=med)
        assert truth["dat_change_pct"] == {None: 0.0, "naive": 8.0, "stimulant": 20.0}[med]
        df = quantify_static(img, atlas, regions=["caudate", "putamen"], pvc="gtm",
                             fwhm_mm=FWHM)
        key = group if med is None else med
        for method in ("uncorrected", "gtm"):
            out.setdefault(method, {}).setdefault(key, []).append(_striatal_sbr(df, method))
            out[method].setdefault("ADHD", []) if key == "TD" else out[method].setdefault(
                "ADHD", []).append(out[method][key][-1])
    for method in ("uncorrected", "gtm"):
        td = np.mean(out[method]["TD"])
        for key, planted in (("ADHD", 14.0), ("naive", 8.0), ("stimulant", 20.0)):
            pct = 100 * (np.mean(out[method][key]) / td - 1)
            print(f"{method}: {key} vs TD {pct:+.2f} % (planted {planted:+.0f} %)")
            if method == "gtm":
                assert pct == pytest.approx(planted, abs=3.0), key


def test_subjects_with_between_subject_variation(atlas):
    """Default 10 % between-subject SD: each subject's GTM SBR tracks its own truth."""
    errs = []
    for k in range(6):
        img, truth = simulate_dat_spect(atlas, seed=200 + k, group="ADHD",
                                        med_status="naive")
        df = quantify_static(img, atlas, regions=["putamen"], pvc="gtm", fwhm_mm=FWHM)
        true = truth["true_sbr"]["Putamen_L"]
        errs.append(value(df, "putamen", "L", "SBR", "gtm") / true - 1)
    print("GTM putamen_L rel. errors:", np.round(errs, 4).tolist())
    assert np.max(np.abs(errs)) < 0.05


# ----------------------------------------------------------------- degenerate input
@pytest.fixture(scope="module")
def clean(atlas):
    return simulate_dat_spect(atlas, seed=1, noise=False)[0]


def test_degenerate_images(atlas, clean):
    data = np.asarray(clean.dataobj, dtype=float)
    four = nib.Nifti1Image(np.stack([data, data], axis=-1), atlas.affine)
    with pytest.raises(InputError, match="needs a 3D image, found a 4D image of 2 frames"):
        quantify_static(four, atlas)
    one = nib.Nifti1Image(data[..., None], atlas.affine)  # a single frame is a 3D image
    assert len(quantify_static(one, atlas)) > 0
    nan = data.copy()
    nan[30, 30, 30] = np.nan
    with pytest.raises(InputError, match="found 1 NaN/inf voxel"):
        quantify_static(nib.Nifti1Image(nan, atlas.affine), atlas)
    with pytest.raises(InputError, match="reference region 'occipital' has mean 0"):
        quantify_static(nib.Nifti1Image(np.zeros_like(data), atlas.affine), atlas)
    neg = data.copy()
    neg[reference_mask(atlas, "occipital")] = -1.0
    with pytest.raises(InputError, match="expected a finite mean > 0"):
        quantify_static(nib.Nifti1Image(neg, atlas.affine), atlas)


def test_region_not_on_the_grid(atlas, clean):
    data = np.asarray(clean.dataobj, dtype=float)
    # a field of view that starts above the cerebellum (slice 25 on: z >= 3 mm)
    crop = data[:, :, 25:]
    aff = atlas.affine.copy()
    aff[:3, 3] = apply_affine(atlas.affine, [0, 0, 25])
    img = nib.Nifti1Image(crop, aff)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DanemapWarning)
        with pytest.raises(InputError, match=r"reference region 'cerebellum' \(bilateral\): "
                                             "no voxel on the image grid"):
            quantify_static(img, atlas, tracer="PE2I", regions=["caudate"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"pvc": "gtm"}, r"needs the PSF FWHM \(> 0 mm\) of the image, found None"),
     ({"pvc": "gtm", "fwhm_mm": 0.0}, "found 0.0"),
     ({"pvc": "mg"}, "expected None or one of"),
     ({"regions": ["putamn"]}, "PET region 'putamn': not a PET region.*closest: putamen"),
     ({"regions": []}, "expected a non-empty list"),
     ({"reference": "occipitl"}, "PET 'reference' 'occipitl'.*closest: occipital"),
     ({"reference": "/no/such/mask.nii.gz"}, "mask file /no/such/mask.nii.gz does not exist"),
     ({"reference": 3}, "expected a region name or a mask")],
)
def test_argument_errors(atlas, clean, kwargs, match):
    with pytest.raises(InputError, match=match):
        quantify_static(clean, atlas, **kwargs)


def test_unknown_tracer_uses_generic_defaults_with_a_warning(atlas, clean, caplog):
    with caplog.at_level("WARNING", logger="danemap"):
        df = quantify_static(clean, atlas, tracer="raclopride")
    assert "not in the tracer table" in caplog.text
    assert set(df["reference"]) == {"occipital"}
    caplog.clear()
    with caplog.at_level("WARNING", logger="danemap"):
        quantify_static(clean, atlas, tracer="raclopride", reference="cerebellum",
                        regions=["putamen"])
    assert "not in the tracer table" not in caplog.text


def test_rbv_image_matches_the_rbv_rows(atlas, labels):
    from danemap.markers.pet._static import rbv_image

    img, _ = simulate_dat_spect(atlas, seed=5, noise=False)
    out = rbv_image(img, atlas, fwhm_mm=FWHM, regions=["putamen"])
    assert out.shape == img.shape and np.allclose(out.affine, img.affine)
    data = np.asarray(out.dataobj, dtype=float)
    df = quantify_static(img, atlas, regions=["putamen"], pvc="rbv", fwhm_mm=FWHM)
    ref = data[reference_mask(atlas, "occipital")].mean()
    want = data[labels == idx(atlas, "Putamen_L")].mean() / ref - 1
    assert value(df, "putamen", "L", "SBR", "rbv") == pytest.approx(want, rel=1e-5)
    with pytest.raises(InputError, match="RBV needs the PSF FWHM"):
        rbv_image(img, atlas, fwhm_mm=0.0)


def test_gtm_warns_about_regions_the_psf_barely_sees(atlas, clean):
    # the LC is 1-2 voxels on the 3 mm grid: at 8 mm its mean holds a few % of its own
    # activity, and its GTM value is an amplification of noise and misregistration
    with pytest.warns(DanemapWarning, match=r"LC \(L\): 0\.0"):
        quantify_static(clean, atlas, regions=["LC", "putamen"], pvc="gtm", fwhm_mm=FWHM)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DanemapWarning)  # the striatum is well seen
        quantify_static(clean, atlas, regions=["putamen", "caudate"], pvc="gtm",
                        fwhm_mm=FWHM)
