"""Functional markers: equivalence with nilearn, TR rules, ALFF, outputs, error paths."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from danemap.atlas import Atlas
from danemap.config import FunctionalConfig
from danemap.errors import DanemapWarning, InputError
from danemap.markers import (
    bipartite_edges,
    collect_functional_group,
    process_run,
    process_timeseries,
    resolve_tr,
    write_run,
)
from danemap.markers.functional._alff import voxel_alff
from danemap.markers.functional._confounds import scrub_mask, select_confounds

SHAPE = (12, 12, 10)
AFFINE = np.diag([3.0, 3.0, 3.0, 1.0])
AFFINE[:3, 3] = [-18, -18, -15]
NAMES = ["Caudate_L", "Putamen_L", "DLPFC_L", "LC_L", "Thal_L", "Empty_L"]
NETS = {"frontostriatal": [("Caudate_L", "DLPFC_L"), ("Putamen_L", "DLPFC_L")],
        "lc_pfc": [("LC_L", "DLPFC_L")], "withempty": [("Empty_L", "DLPFC_L")]}


def _atlas() -> Atlas:
    lab = np.zeros(SHAPE, dtype=np.int16)
    lab[1:5, 1:5, 1:4] = 1
    lab[6:10, 1:5, 1:4] = 2
    lab[1:10, 6:11, 5:9] = 3
    lab[5, 5, 5] = 4  # a 1-voxel LC
    lab[1:4, 6:9, 1:3] = 5
    regions = pd.DataFrame({"index": [1, 2, 3, 4, 5, 6], "name": NAMES})
    return Atlas(nib.Nifti1Image(lab, AFFINE), regions, NETS, "test")


def _confounds(n_t: int, rng: np.random.Generator) -> pd.DataFrame:
    cols: dict[str, np.ndarray] = {}
    for base in ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z",
                 "csf", "white_matter", "global_signal"]:
        x = np.cumsum(rng.normal(0, 0.05, n_t))
        d = np.r_[np.nan, np.diff(x)]
        cols[base] = x
        cols[base + "_derivative1"] = d
        cols[base + "_power2"] = x**2
        cols[base + "_derivative1_power2"] = d**2
    fd = np.abs(rng.normal(0.15, 0.08, n_t))
    fd[[i for i in (20, 21, 50, 77) if i < n_t]] = 1.2
    cols["framewise_displacement"] = np.r_[np.nan, fd[1:]]
    cols["std_dvars"] = np.r_[np.nan, np.abs(rng.normal(1.0, 0.2, n_t - 1))]
    for i in range(8):
        cols[f"a_comp_cor_{i:02d}"] = rng.normal(size=n_t)
    for i in range(3):
        cols[f"cosine{i:02d}"] = np.cos(np.pi * (np.arange(n_t) + 0.5) * (i + 1) / n_t)
    return pd.DataFrame(cols)


def _write_run(tmp_path, sub="01", n_t=90, seed=0, tr=2.0, sidecar=True):
    rng = np.random.default_rng(seed)
    atlas = _atlas()
    lab = np.asarray(atlas.img.dataobj)
    conf = _confounds(n_t, rng)
    shared = rng.normal(size=n_t)
    data = 1000 + 20 * rng.normal(size=(*SHAPE, n_t))
    for k in range(1, 6):
        sig = shared * (0.5 + 0.1 * k) + rng.normal(size=n_t)
        data[lab == k] += 15 * sig
    data += 5 * conf["trans_x"].to_numpy()
    data = data.astype(np.float32)
    data[0] = 0  # background slab like fMRIPrep
    d = tmp_path / f"sub-{sub}" / "func"
    d.mkdir(parents=True, exist_ok=True)
    stem = f"sub-{sub}_task-rest"
    img = nib.Nifti1Image(data, AFFINE)
    img.header.set_xyzt_units("mm", "sec")
    img.header["pixdim"][4] = tr
    bold = d / f"{stem}_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz"
    nib.save(img, bold)
    if sidecar:
        (d / f"{stem}_space-MNI152NLin2009cAsym_desc-preproc_bold.json").write_text(
            json.dumps({"RepetitionTime": tr}))
    conf_path = d / f"{stem}_desc-confounds_timeseries.tsv"
    conf.to_csv(conf_path, sep="\t", index=False, na_rep="n/a")
    masks = ["combined"] * 5 + ["CSF", "WM", "combined"]
    meta = {f"a_comp_cor_{i:02d}": {"Mask": m} for i, m in enumerate(masks)}
    conf_path.with_suffix(".json").write_text(json.dumps(meta))
    return bold, conf_path, atlas


def _quiet_process(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DanemapWarning)  # the empty test region
        return process_run(*args, **kwargs)


CFGS = {
    "simple": (FunctionalConfig(strategy="simple"), {"motion": "full", "wm_csf": "basic"}),
    "scrubbing": (FunctionalConfig(strategy="scrubbing", wm_csf="full", scrub_before=0,
                                   scrub_after=0),
                  {"motion": "full", "wm_csf": "full", "fd_threshold": 0.5,
                   "std_dvars_threshold": 1.5, "scrub": 5}),
    "compcor": (FunctionalConfig(strategy="compcor", n_compcor=5),
                {"motion": "full", "n_compcor": 5}),
}


@pytest.mark.parametrize("strategy", list(CFGS))
def test_confound_selection_matches_load_confounds_strategy(tmp_path, strategy):
    from nilearn.interfaces.fmriprep import load_confounds_strategy

    bold, conf_path, _ = _write_run(tmp_path)
    cfg, kw = CFGS[strategy]
    ref, ref_mask = load_confounds_strategy(str(bold), denoise_strategy=strategy, **kw)
    df = pd.read_csv(conf_path, sep="\t", na_values="n/a")
    meta = json.loads(conf_path.with_suffix(".json").read_text())
    sel = select_confounds(df, cfg, meta, "conf")
    assert sorted(sel.confounds.columns) == sorted(ref.columns)
    np.testing.assert_allclose(sel.confounds[ref.columns].to_numpy(), ref.to_numpy(),
                               atol=1e-10)
    if ref_mask is None:
        assert sel.sample_mask is None
    else:
        np.testing.assert_array_equal(sel.sample_mask, ref_mask)


def test_default_differences_from_nilearn_presets_are_the_documented_ones(tmp_path):
    """FunctionalConfig defaults vs nilearn's presets: only the documented differences."""
    from nilearn.interfaces.fmriprep import load_confounds_strategy

    bold, conf_path, _ = _write_run(tmp_path)
    df = pd.read_csv(conf_path, sep="\t", na_values="n/a")
    meta = json.loads(conf_path.with_suffix(".json").read_text())
    # scrubbing: WM/CSF "basic" instead of "full", and padding 1 before / 2 after
    ref, ref_mask = load_confounds_strategy(str(bold), denoise_strategy="scrubbing")
    ours = select_confounds(df, FunctionalConfig(strategy="scrubbing"), meta, "c")
    extra = {f"{b}{x}" for b in ("csf", "white_matter")
             for x in ("_derivative1", "_power2", "_derivative1_power2")}
    assert set(ref.columns) - set(ours.confounds.columns) == extra
    assert set(ours.confounds.columns) < set(ref.columns)
    censored_ref = set(range(len(df))) - set(ref_mask)
    censored = set(range(len(df))) - set(ours.sample_mask)
    assert censored_ref < censored  # padding censors more, and nothing nilearn keeps
    assert {t + d for t in censored_ref for d in (-1, 1, 2) if 0 <= t + d < len(df)} <= censored
    # compcor: 5 components instead of all the combined-mask ones
    ref, _ = load_confounds_strategy(str(bold), denoise_strategy="compcor")
    ours = select_confounds(df, FunctionalConfig(strategy="compcor"), meta, "c")
    comp = [c for c in ref.columns if c.startswith("a_comp_cor")]
    assert comp == [f"a_comp_cor_0{i}" for i in (0, 1, 2, 3, 4, 7)]
    assert set(ref.columns) - set(ours.confounds.columns) == {"a_comp_cor_07"}
    every = select_confounds(df, FunctionalConfig(strategy="compcor", n_compcor=-1), meta, "c")
    assert sorted(every.confounds.columns) == sorted(ref.columns)
    # simple: no difference
    ref, _ = load_confounds_strategy(str(bold), denoise_strategy="simple")
    ours = select_confounds(df, FunctionalConfig(), meta, "c")
    assert sorted(ours.confounds.columns) == sorted(ref.columns)


def _brain_mask(tmp_path) -> Path:
    """fMRIPrep-like brain mask that cuts into the Caudate, DLPFC and Thal regions.

    It leaves out the zero background slab (x = 0), the slab x = 1 (the edge of three
    regions) and the top slice z = 8 of the DLPFC; the 1-voxel LC stays inside.
    """
    m = np.ones(SHAPE, dtype=np.uint8)
    m[:2] = 0
    m[:, :, 8] = 0
    assert np.asarray(_atlas().img.dataobj)[5, 5, 5] == 4 and m[5, 5, 5] == 1
    path = tmp_path / "sub-01_task-rest_space-MNI152NLin2009cAsym_desc-brain_mask.nii.gz"
    nib.save(nib.Nifti1Image(m, AFFINE), path)
    return path


def _assert_matches_nilearn(res, ref: np.ndarray, label: str) -> None:
    """Time series <= 1e-5 relative; correlation and partial correlation <= 1e-6.

    ``ref`` is nilearn's cleaned ``NiftiLabelsMasker`` output for the non-empty regions;
    connectivity is compared with ``ConnectivityMeasure(cov_estimator=EmpiricalCovariance())``
    on our series (same estimator, same series) and end to end on nilearn's.
    """
    from nilearn.connectome import ConnectivityMeasure
    from sklearn.covariance import EmpiricalCovariance

    ours = res.timeseries[NAMES[:5]].to_numpy()
    assert ours.shape == ref.shape
    rel = np.abs(ours - ref).max() / np.abs(ref).max()
    errs = {}
    for kind, key in (("correlation", "corr"), ("partial correlation", "partialcorr")):
        cm = ConnectivityMeasure(kind=kind, cov_estimator=EmpiricalCovariance())
        got = res.connectivity[key].loc[NAMES[:5], NAMES[:5]].to_numpy()
        errs[key] = np.abs(got - cm.fit_transform([ours])[0]).max()
        # end to end against the nilearn masker output (float32 round-off in nilearn)
        assert np.abs(got - cm.fit_transform([ref])[0]).max() <= 1e-5
        assert res.connectivity[key]["Empty_L"].isna().all()
    print(f"{label}: ROI time series max relative error vs nilearn {rel:.2e}; corr "
          f"{errs['corr']:.1e}, partial corr {errs['partialcorr']:.1e}")
    assert rel <= 1e-5, rel
    assert max(errs.values()) <= 1e-6, errs
    assert res.timeseries["Empty_L"].isna().all()


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("strategy", list(CFGS))
def test_roi_timeseries_and_connectivity_match_nilearn(tmp_path, strategy, masked):
    from nilearn.interfaces.fmriprep import load_confounds_strategy
    from nilearn.maskers import NiftiLabelsMasker

    bold, _, atlas = _write_run(tmp_path)
    mask = _brain_mask(tmp_path) if masked else None
    cfg, kw = CFGS[strategy]
    res = _quiet_process(bold, bold.parent / "sub-01_task-rest_desc-confounds_timeseries.tsv",
                         atlas, cfg, mask=mask)
    conf, sample_mask = load_confounds_strategy(str(bold), denoise_strategy=strategy, **kw)
    clean = {"standardize": None, "detrend": True, "high_pass": cfg.high_pass,
             "low_pass": cfg.low_pass, "t_r": 2.0}
    masker = NiftiLabelsMasker(atlas.img, mask_img=None if mask is None else str(mask),
                               strategy="mean", **clean)
    ref = masker.fit_transform(str(bold), confounds=conf, sample_mask=sample_mask)
    _assert_matches_nilearn(res, ref, f"{strategy}{' masked' if masked else ''}")
    counts = res.regions.set_index("name")["n_voxels"]
    assert counts["LC_L"] == 1
    if masked:  # the mask removed voxels and changed the signal nilearn sees
        assert counts["Caudate_L"] == 3 * 4 * 3 and counts["DLPFC_L"] == 8 * 5 * 3
        unmasked = NiftiLabelsMasker(atlas.img, strategy="mean", **clean).fit_transform(
            str(bold), confounds=conf, sample_mask=sample_mask)
        assert np.abs(unmasked - ref).max() > 1e-2 * np.abs(ref).max()


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_custom_strategy_matches_signal_clean(tmp_path, masked):
    """A user list of confound columns equals nilearn ``signal.clean`` with those columns."""
    from nilearn import signal
    from nilearn.maskers import NiftiLabelsMasker

    bold, conf_path, atlas = _write_run(tmp_path)
    mask = _brain_mask(tmp_path) if masked else None
    cols = ["csf", "white_matter", "trans_x", "rot_z", "a_comp_cor_00",
            "trans_x_derivative1"]
    cfg = FunctionalConfig(strategy="custom", confounds=cols)
    res = _quiet_process(bold, conf_path, atlas, cfg, mask=mask)
    assert res.qc["confounds"] == cols and res.meta["Denoising"]["strategy"] == "custom"
    raw = NiftiLabelsMasker(atlas.img, mask_img=None if mask is None else str(mask),
                            strategy="mean", standardize=None).fit_transform(str(bold))
    conf = pd.read_csv(conf_path, sep="\t", na_values="n/a")[cols]
    # the derivative's n/a first row takes the second row's value, as nilearn's
    # load_confounds does (load_confounds_utils.prepare_output)
    assert conf.iloc[0].isna().sum() == 1
    conf.iloc[0] = conf.iloc[0].fillna(conf.iloc[1])
    ref = signal.clean(raw, detrend=True, standardize=None, confounds=conf.to_numpy(),
                       high_pass=cfg.high_pass, low_pass=cfg.low_pass, t_r=2.0)
    _assert_matches_nilearn(res, ref, f"custom{' masked' if masked else ''}")
    # the columns were really regressed: without them the series differ
    plain = signal.clean(raw, detrend=True, standardize=None, high_pass=cfg.high_pass,
                         low_pass=cfg.low_pass, t_r=2.0)
    assert np.abs(plain - ref).max() > 1e-2 * np.abs(ref).max()


def test_network_scores_and_empty_region_edges(tmp_path):
    bold, conf, atlas = _write_run(tmp_path)
    res = _quiet_process(bold, conf, atlas, FunctionalConfig())
    nets = res.networks.set_index("network")
    r = res.connectivity["corr"]
    want = np.mean(np.arctanh([r.loc["Caudate_L", "DLPFC_L"], r.loc["Putamen_L", "DLPFC_L"]]))
    assert nets.loc["frontostriatal", "mean_z"] == pytest.approx(want, abs=1e-12)
    assert nets.loc["frontostriatal", "n_edges"] == 2
    assert nets.loc["lc_pfc", "n_voxels_min"] == 1
    assert nets.loc["lc_pfc", "small_regions"] == "LC_L"
    assert nets.loc["withempty", "n_edges"] == 0
    assert nets.loc["withempty", "dropped_edges"] == "Empty_L__DLPFC_L"
    assert np.isnan(nets.loc["withempty", "mean_z"])


def test_atlas_empty_region_warns(tmp_path):
    bold, conf, atlas = _write_run(tmp_path)
    with pytest.warns(DanemapWarning, match="Empty_L"):
        process_run(bold, conf, atlas)


def test_in_memory_image_equals_file(tmp_path):
    bold, conf, atlas = _write_run(tmp_path)
    a = _quiet_process(bold, conf, atlas)
    img = nib.load(bold)
    img = nib.Nifti1Image(np.asarray(img.dataobj), img.affine, img.header)
    b = _quiet_process(img, conf, atlas, tr=2.0)
    np.testing.assert_allclose(a.timeseries.to_numpy(), b.timeseries.to_numpy(), atol=1e-9)
    np.testing.assert_allclose(a.alff["alff"], b.alff["alff"], rtol=1e-5)


def test_int16_scaled_data_match_float(tmp_path):
    bold, conf, atlas = _write_run(tmp_path)
    img = nib.load(bold)
    data = np.asarray(img.dataobj)
    raw = np.round(data / 0.05).astype(np.int16)
    scaled = nib.Nifti1Image(raw, img.affine, img.header)
    scaled.header.set_data_dtype(np.int16)
    scaled.header.set_slope_inter(0.05, 0.0)
    p = bold.with_name("scaled_bold.nii.gz")
    nib.save(scaled, p)
    a = _quiet_process(p, conf, atlas, tr=2.0)
    ref = _quiet_process(nib.Nifti1Image(raw * 0.05, img.affine), conf, atlas, tr=2.0)
    np.testing.assert_allclose(a.timeseries.to_numpy(), ref.timeseries.to_numpy(), atol=1e-6)
    np.testing.assert_allclose(a.alff["alff"], ref.alff["alff"], rtol=1e-4)


# ----------------------------------------------------------------------------- TR
def _hdr(tr, unit="sec"):
    h = nib.Nifti1Header()
    h.set_data_shape((2, 2, 2, 5))
    h.set_zooms((1, 1, 1, tr))
    h.set_xyzt_units("mm", unit)
    return h


def test_tr_sources(tmp_path):
    assert resolve_tr(_hdr(2.0), None) == 2.0
    assert resolve_tr(_hdr(2000.0, "msec"), None) == pytest.approx(2.0)
    assert resolve_tr(_hdr(0.0), {"RepetitionTime": 1.5}) == 1.5
    assert resolve_tr(_hdr(2.0), {"RepetitionTime": 2.0004}) == 2.0004
    assert resolve_tr(_hdr(2.0), {"RepetitionTime": 3.0}, tr=2.5) == 2.5


def test_tr_disagreement_names_both(tmp_path):
    side = tmp_path / "bold.json"
    side.write_text(json.dumps({"RepetitionTime": 0.8}))
    with pytest.raises(InputError, match=r"x_bold.nii.gz: its JSON sidecar .*bold.json has "
                       r"RepetitionTime=0.8 s .*pixdim\[4\]=2.0 s.*--repetition-time"):
        resolve_tr(_hdr(2.0), side, bold_name="x_bold.nii.gz")


def test_tr_missing_everywhere(tmp_path):
    with pytest.raises(InputError, match=r"no repetition time.*pixdim"):
        resolve_tr(_hdr(0.0), tmp_path / "missing.json")
    with pytest.raises(InputError, match="RepetitionTime' must be a number"):
        resolve_tr(_hdr(2.0), {"RepetitionTime": "two"})
    with pytest.raises(InputError, match="tr: expected a positive"):
        resolve_tr(_hdr(2.0), None, tr=-1.0)


def test_process_run_tr_conflict_from_files(tmp_path):
    bold, conf, atlas = _write_run(tmp_path, sidecar=False)
    bold.with_name(bold.name.replace(".nii.gz", ".json")).write_text(
        json.dumps({"RepetitionTime": 1.0}))
    with pytest.raises(InputError, match="disagrees"):
        _quiet_process(bold, conf, atlas)


# ----------------------------------------------------------------------------- ALFF
def _dparsf_alff(y, tr, band=(0.01, 0.08)):
    """Reference: DPARSF y_alff_falff written independently with full FFT."""
    n = len(y)
    p = int(2 ** np.ceil(np.log2(n)))
    t = np.arange(n)
    y = y - np.polyval(np.polyfit(t, y, 1), t)
    amp = 2 * np.abs(np.fft.fft(np.r_[y, np.zeros(p - n)])) / n
    lo = int(np.ceil(band[0] * p * tr + 1))
    hi = int(np.floor(band[1] * p * tr + 1))
    return amp[lo - 1:hi].mean(), amp[lo - 1:hi].sum() / amp[1:p // 2 + 1].sum()


def test_voxel_alff_matches_dparsf_formula():
    rng = np.random.default_rng(3)
    tr, n = 2.0, 150
    t = np.arange(n) * tr
    slow = np.sin(2 * np.pi * 0.04 * t)
    fast = np.sin(2 * np.pi * 0.2 * t)
    x = np.c_[slow + 0.1 * rng.normal(size=n), fast + 0.1 * rng.normal(size=n),
              rng.normal(size=n), np.full(n, 5.0)]
    tt = np.arange(n, dtype=float)
    basis = np.linalg.qr(np.c_[np.ones(n), tt - tt.mean()])[0]
    alff, falff, const = voxel_alff(x, tr, basis)
    for j in range(3):
        a, f = _dparsf_alff(x[:, j], tr)
        assert alff[j] == pytest.approx(a, rel=1e-9)
        assert falff[j] == pytest.approx(f, rel=1e-9)
    assert falff[0] > 0.5 > falff[1]
    assert const.tolist() == [False, False, False, True]
    assert alff[3] == 0 and np.isnan(falff[3])


def test_alff_table(tmp_path):
    bold, conf, atlas = _write_run(tmp_path)
    res = _quiet_process(bold, conf, atlas)
    a = res.alff.set_index("region")
    assert a.loc["Empty_L", "n_voxels"] == 0 and np.isnan(a.loc["Empty_L", "alff"])
    assert (a["alff"].dropna() > 0).all()
    assert ((a["falff"].dropna() > 0) & (a["falff"].dropna() < 1)).all()


def test_alff_band_without_bins():
    with pytest.raises(InputError, match="ALFF band"):
        voxel_alff(np.random.default_rng(0).normal(size=(8, 2)), 2.0, None, band=(0.01, 0.02))


# ----------------------------------------------------------------------------- scrubbing/QC
def test_scrub_mask_padding_and_segments():
    fd = np.zeros(30)
    fd[10] = 1.0
    m = scrub_mask(fd, None, 0.5, None, before=1, after=2, min_segment=0)
    assert np.flatnonzero(m).tolist() == [9, 10, 11, 12]
    fd[16] = 1.0  # 5 kept volumes between: a full segment, kept
    m = scrub_mask(fd, None, 0.5, None, before=0, after=0, min_segment=5)
    assert np.flatnonzero(m).tolist() == [10, 16]
    fd[16], fd[15] = 0.0, 1.0  # 4 kept volumes between: too short, censored
    m = scrub_mask(fd, None, 0.5, None, before=0, after=0, min_segment=5)
    assert np.flatnonzero(m).tolist() == [10, 11, 12, 13, 14, 15]
    fd[:] = 0
    fd[2] = 1.0
    m = scrub_mask(fd, None, 0.5, None, 0, 0, 5)
    assert np.flatnonzero(m).tolist() == [0, 1, 2]


def test_motion_qc_and_exclusion(tmp_path):
    _, conf_path, _ = _write_run(tmp_path)
    df = pd.read_csv(conf_path, sep="\t", na_values="n/a")
    cfg = FunctionalConfig(strategy="scrubbing", max_scrubbed_pct=5.0, max_mean_fd=0.1)
    sel = select_confounds(df, cfg, None, "c")
    fd = df["framewise_displacement"].to_numpy()
    assert sel.qc["mean_fd"] == pytest.approx(np.nanmean(fd))
    assert sel.qc["n_fd_over_threshold"] == int(np.sum(np.nan_to_num(fd) > 0.5)) >= 4
    assert sel.qc["pct_scrubbed"] == pytest.approx(100 * (1 - sel.sample_mask.size / len(df)))
    assert sel.qc["exclude"] and len(sel.qc["exclusion_reasons"]) == 2
    ok = select_confounds(df, FunctionalConfig(), None, "c")
    assert ok.sample_mask is None and not ok.qc["exclude"]


def test_non_steady_state_censored():
    rng = np.random.default_rng(1)
    df = _confounds(40, rng)
    df["non_steady_state_outlier00"] = np.r_[1, np.zeros(39)]
    sel = select_confounds(df, FunctionalConfig(), None, "c")
    assert sel.sample_mask.tolist() == list(range(1, 40))


# ----------------------------------------------------------------------------- errors
def test_confound_errors():
    rng = np.random.default_rng(1)
    df = _confounds(40, rng)
    with pytest.raises(InputError, match=r"motion columns \['rot_z_power2'"):
        select_confounds(df.drop(columns=["rot_z_power2"]), FunctionalConfig(), None, "c.tsv")
    with pytest.raises(InputError, match="strategy: expected one of"):
        select_confounds(df, FunctionalConfig(strategy="aroma"), None, "c")
    with pytest.raises(InputError, match="empty list"):
        select_confounds(df, FunctionalConfig(strategy="custom"), None, "c")
    with pytest.raises(InputError, match=r"user-listed columns \['nope'\]"):
        select_confounds(df, FunctionalConfig(strategy="custom", confounds=["nope"]), None, "c")
    with pytest.raises(InputError, match="motion: expected one of"):
        select_confounds(df, FunctionalConfig(motion="all"), None, "c")
    with pytest.raises(InputError, match="a_comp_cor"):
        select_confounds(df.drop(columns=[c for c in df if "comp_cor" in c]),
                         FunctionalConfig(strategy="compcor"), None, "c")
    with pytest.raises(InputError, match="framewise_displacement"):
        select_confounds(df.drop(columns=["framewise_displacement"]),
                         FunctionalConfig(strategy="scrubbing"), None, "c")
    with pytest.raises(InputError, match="every volume was censored"):
        select_confounds(df, FunctionalConfig(strategy="scrubbing", fd_threshold=-1), None,
                         "c")


def test_custom_strategy_uses_listed_columns():
    df = _confounds(40, np.random.default_rng(1))
    sel = select_confounds(df, FunctionalConfig(strategy="custom",
                                                confounds=["csf", "trans_x"]), None, "c")
    assert list(sel.confounds.columns) == ["csf", "trans_x"]
    assert abs(sel.confounds.to_numpy().mean()) < 1e-12


def test_process_run_input_errors(tmp_path):
    bold, conf, atlas = _write_run(tmp_path)
    short = pd.read_csv(conf, sep="\t", na_values="n/a").iloc[:10]
    with pytest.raises(InputError, match=r"has 10 rows but .* has 90 volumes"):
        _quiet_process(bold, short, atlas)
    with pytest.raises(InputError, match="confounds file not found"):
        _quiet_process(bold, tmp_path / "nope.tsv", atlas)
    with pytest.raises(InputError, match="expected a path to a 4D"):
        _quiet_process(42, conf, atlas)
    with pytest.raises(InputError, match="connectivity: expected kinds"):
        _quiet_process(bold, conf, atlas, FunctionalConfig(connectivity=["granger"]))
    bad = tmp_path / "text.tsv"
    bad.write_text("a\tb\nx\t1\n")
    with pytest.raises(InputError, match="must be numeric"):
        _quiet_process(bold, bad, atlas)


# ----------------------------------------------------------------------------- timeseries
def test_process_timeseries_requires_tr_for_filtering():
    df = pd.DataFrame(np.random.default_rng(0).normal(size=(50, 3)), columns=["a", "b", "c"])
    with pytest.raises(InputError, match="needs the repetition time"):
        process_timeseries(df, networks={})
    res = process_timeseries(df, config=FunctionalConfig(high_pass=0, low_pass=0),
                             networks={"n": bipartite_edges(["a"], ["b", "c"])})
    assert res.alff is None
    assert res.networks.loc[0, "n_edges"] == 2
    with pytest.raises(InputError, match=r"regions \['zz'\]"):
        process_timeseries(df, 2.0, networks={"n": [("a", "zz")]})
    with pytest.raises(InputError, match=r"columns \['q'\] are not in"):
        process_timeseries(df, 2.0, confounds=["q"], networks={})
    with pytest.raises(InputError, match="expected a pandas DataFrame"):
        process_timeseries(df.to_numpy(), 2.0)  # type: ignore[arg-type]


def test_partial_n_voxels_are_unknown_not_negative(tmp_path):
    from danemap.io import DerivativesWriter

    df = pd.DataFrame(np.random.default_rng(0).normal(size=(50, 3)), columns=["a", "b", "c"])
    cfg = FunctionalConfig(high_pass=0, low_pass=0)
    nets = {"ab": [("a", "b")], "bc": [("b", "c")]}
    res = process_timeseries(df, config=cfg, networks=nets, n_voxels={"a": 3, "b": 40})
    t = res.networks.set_index("network")
    assert t.loc["ab", "n_voxels_total"] == 43 and t.loc["ab", "n_voxels_min"] == 3
    assert t.loc["ab", "small_regions"] == "a"
    # c has no count: the totals are unknown, never -1, and c is not listed as small
    assert pd.isna(t.loc["bc", "n_voxels_total"]) and pd.isna(t.loc["bc", "n_voxels_min"])
    assert t.loc["bc", "small_regions"] == "" and t.loc["bc", "region_voxels"] == "b=40;c=n/a"
    assert res.regions["n_voxels"].isna().tolist() == [False, False, True]
    paths = write_run(res, DerivativesWriter(tmp_path), "01")
    tsv = next(p for p in paths if p.name.endswith("desc-networks_stats.tsv"))
    row = tsv.read_text().splitlines()[2].split("\t")
    assert row[8:10] == ["n/a", "n/a"] and "-1" not in row
    side = json.loads(next(p for p in paths if p.name.endswith("timeseries.tsv"))
                      .with_suffix(".json").read_text())
    assert side["RegionVoxels"] == {"a": 3, "b": 40, "c": None}
    with pytest.raises(InputError, match=r"n_voxels: expected a non-negative whole number "
                                         r"for region 'a', found -1"):
        process_timeseries(df, config=cfg, networks=nets, n_voxels={"a": -1})
    with pytest.raises(InputError, match=r"n_voxels: regions \['zz'\] are not columns"):
        process_timeseries(df, config=cfg, networks=nets, n_voxels={"zz": 3})


def test_process_timeseries_equals_signal_clean():
    from nilearn import signal

    rng = np.random.default_rng(2)
    df = pd.DataFrame(rng.normal(size=(120, 4)) + 50, columns=list("abcd"))
    conf = pd.DataFrame(rng.normal(size=(120, 3)))
    mask = np.r_[0:40, 45:120]
    res = process_timeseries(df, 2.0, confounds=conf, networks={}, sample_mask=mask)
    ref = signal.clean(df.to_numpy(), detrend=True, standardize=None, confounds=conf.to_numpy(),
                       sample_mask=mask.copy(), high_pass=0.01, low_pass=0.1, t_r=2.0)
    np.testing.assert_allclose(res.timeseries.to_numpy(), ref, atol=1e-10)
    assert res.timeseries.index.tolist() == mask.tolist()


def test_partial_correlation_nan_when_too_few_volumes():
    # 15 volumes: 14 residual degrees of freedom (enough for the correlation) < 20 regions
    df = pd.DataFrame(np.random.default_rng(0).normal(size=(15, 20)),
                      columns=[f"r{i}" for i in range(20)])
    res = process_timeseries(df, config=FunctionalConfig(high_pass=0, low_pass=0, detrend=False),
                             networks={})
    assert np.isnan(res.connectivity["partialcorr"].to_numpy()).all()
    assert np.isfinite(res.connectivity["corr"].to_numpy()).all()
    assert res.qc["residual_dof"] == 14 and res.qc["partialcorr_estimable"] is False
    assert "14 residual degrees of freedom for 20 usable regions" in res.qc[
        "partialcorr_reason"]


# ----------------------------------------------------------------------------- outputs
def test_write_run_and_group_tables(tmp_path):
    from danemap.io import DerivativesWriter

    writer = DerivativesWriter(tmp_path / "out")
    for i, sub in enumerate(["01", "02", "03"]):
        bold, conf, atlas = _write_run(tmp_path / "in", sub=sub, seed=i)
        res = _quiet_process(bold, conf, atlas)
        paths = write_run(res, writer, f"sub-{sub}", session="A", run=1)
        names = sorted(p.name for p in paths)
        assert f"sub-{sub}_ses-A_task-rest_run-1_atlas-danemap_desc-corr_connectivity.tsv" in names
        assert f"sub-{sub}_ses-A_task-rest_run-1_desc-qc_motion.json" in names
    sq = pd.read_csv(paths[1], sep="\t", index_col=0, na_values="n/a")
    assert list(sq.index) == list(sq.columns) == NAMES
    out = collect_functional_group(writer.root, writer.root / "group")
    assert {"connectivity_corr", "connectivity_partialcorr", "connectivity_tangent",
            "networks", "alff", "falff", "motion_qc"} <= set(out)
    corr = pd.read_csv(out["connectivity_corr"], sep="\t", na_values="n/a")
    assert list(corr.columns[:3]) == ["participant_id", "session", "run"]
    assert corr["participant_id"].tolist() == ["sub-01", "sub-02", "sub-03"]
    assert "Caudate_L__Putamen_L" in corr.columns and len(corr.columns) == 3 + 15
    want = np.arctanh(res.connectivity["corr"].loc["Caudate_L", "Putamen_L"])
    assert corr.loc[2, "Caudate_L__Putamen_L"] == pytest.approx(want, abs=1e-7)
    tan = pd.read_csv(out["connectivity_tangent"], sep="\t")
    assert not any("Empty_L" in c for c in tan.columns) and len(tan) == 3
    nets = pd.read_csv(out["networks"], sep="\t", na_values="n/a")
    assert "frontostriatal" in nets.columns
    assert not any(c.endswith(("_n_edges", "_n_voxels_min")) for c in nets.columns)
    counts = pd.read_csv(out["networks_counts"], sep="\t", na_values="n/a")
    assert "lc_pfc_n_voxels_min" in counts.columns
    alff = pd.read_csv(out["alff"], sep="\t", na_values="n/a")
    assert list(alff.columns[3:]) == NAMES
    side = {k: json.loads(p.with_suffix(".json").read_text()) for k, p in out.items()}
    for name, sc in side.items():  # every sidecar describes its columns
        assert {"participant_id", "session", "run"} <= set(sc), name
        assert sc["Description"] and ("ColumnPatterns" in sc or name == "motion_qc"), name
    assert side["motion_qc"]["mean_fd"]["Units"] == "mm"
    assert "Fisher z" in side["connectivity_corr"]["Description"]
    assert "Fisher z" not in side["connectivity_tangent"]["Description"]
    edge = side["connectivity_tangent"]["ColumnPatterns"]["<RegionA>__<RegionB>"]
    assert "not Fisher z" in edge["Description"]
    assert side["connectivity_tangent"]["TangentReference"].startswith(
        "fitted on all runs (cases and controls)")
    assert "classification" in side["connectivity_tangent"]["TangentReference"]
    assert side["connectivity_tangent"]["RegionsLeftOut"] == ["Empty_L"]
    assert side["networks_counts"]["Description"] != side["networks"]["Description"]
    assert "<network>_n_voxels_min" in side["networks_counts"]["ColumnPatterns"]


def test_collect_group_errors(tmp_path):
    with pytest.raises(InputError, match="is not a directory"):
        collect_functional_group(tmp_path / "nope", tmp_path / "g")
    (tmp_path / "d").mkdir()
    with pytest.raises(InputError, match=r"no '\*_atlas-danemap_timeseries.tsv' found"):
        collect_functional_group(tmp_path / "d", tmp_path / "g")


def test_connectivity_setting_selects_kinds_and_group_tables(tmp_path):
    """``FunctionalConfig.connectivity`` decides the per-run matrices and the group tables."""
    from danemap.io import DerivativesWriter

    full_w = DerivativesWriter(tmp_path / "full")
    part_w = DerivativesWriter(tmp_path / "partial")
    only_partial = FunctionalConfig(connectivity=["partial correlation"])
    for i, sub in enumerate(["01", "02", "03"]):
        bold, conf, atlas = _write_run(tmp_path / "in", sub=sub, seed=i)
        full = _quiet_process(bold, conf, atlas)
        res = _quiet_process(bold, conf, atlas, only_partial)
        assert list(full.connectivity) == ["corr", "partialcorr"]
        assert list(res.connectivity) == ["partialcorr"]
        assert res.meta["ConnectivityKinds"] == ["partialcorr"]
        pd.testing.assert_frame_equal(res.connectivity["partialcorr"],
                                      full.connectivity["partialcorr"])
        # the network scores still come from the correlation
        pd.testing.assert_frame_equal(res.networks, full.networks)
        write_run(full, full_w, sub)
        names = [p.name for p in write_run(res, part_w, sub)]
        assert not any("desc-corr" in n for n in names)
        assert any("desc-partialcorr_connectivity" in n for n in names)
    none = _quiet_process(bold, conf, atlas, FunctionalConfig(connectivity=[]))
    assert none.connectivity == {} and np.isfinite(none.networks["mean_z"].iloc[:2]).all()
    aliases = _quiet_process(bold, conf, atlas, FunctionalConfig(connectivity=["corr"]))
    assert list(aliases.connectivity) == ["corr"]

    out = collect_functional_group(part_w.root, tmp_path / "g1",
                                   connectivity=only_partial.connectivity)
    assert {"connectivity_partialcorr", "networks", "alff", "motion_qc"} <= set(out)
    assert "connectivity_corr" not in out and "connectivity_tangent" not in out
    part = pd.read_csv(out["connectivity_partialcorr"], sep="\t", na_values="n/a")
    assert part["participant_id"].tolist() == ["sub-01", "sub-02", "sub-03"]
    # every kind requested (the default): what the runs have, and tangent from the series
    out = collect_functional_group(part_w.root, tmp_path / "g2")
    assert "connectivity_tangent" in out and "connectivity_corr" not in out
    # runs that have every file: the setting still decides
    out = collect_functional_group(full_w.root, tmp_path / "g3", connectivity=["tangent"])
    assert {"connectivity_tangent", "networks"} <= set(out)
    assert not {"connectivity_corr", "connectivity_partialcorr"} & set(out)
    with pytest.raises(InputError, match=r"connectivity: expected kinds .* \['granger'\]"):
        collect_functional_group(full_w.root, tmp_path / "g4", connectivity=["granger"])
    with pytest.raises(InputError, match="connectivity: expected a list"):
        collect_functional_group(full_w.root, tmp_path / "g4", connectivity="tangent")


def _timeseries_run(root, sub="01"):
    from danemap.io import DerivativesWriter

    df = pd.DataFrame(np.random.default_rng(1).normal(size=(40, 3)), columns=["a", "b", "c"])
    res = process_timeseries(df, config=FunctionalConfig(high_pass=0, low_pass=0),
                             networks={"ab": [("a", "b")]})
    writer = DerivativesWriter(root)
    return writer.root, write_run(res, writer, sub)


@pytest.mark.parametrize(("target", "content", "message"), [
    ("motion.json", "{not json", r"motion QC file .*desc-qc_motion.json: .*not valid JSON"),
    ("motion.json", "[1, 2]", r"desc-qc_motion.json: expected a JSON object, found list"),
    ("stats.tsv", "network\tmean_r\nab\t0.1\n",
     r"desc-networks_stats.tsv: expected columns .* missing \['mean_z', 'n_edges'"),
    ("timeseries.tsv", "", r"timeseries.tsv: cannot be read as a tab-separated table"),
    ("connectivity.tsv", "region\ta\tb\na\t1\t0.2\n",
     r"desc-partialcorr_connectivity.tsv: expected a square matrix .* 1 rows x 2 columns"),
    ("connectivity.tsv", "region\ta\tb\na\t1\tx\nb\t0.2\t1\n",
     r"partialcorr_connectivity.tsv: every matrix value must be a number"),
])
def test_collect_group_malformed_run_files_name_the_file(tmp_path, target, content, message):
    root, files = _timeseries_run(tmp_path)
    path = next(p for p in files if p.name.endswith(target) and "desc-corr" not in p.name)
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        collect_functional_group(root, tmp_path / "g")


def test_dvars_threshold_and_min_segment_come_from_config():
    n = 40
    motion = {c: np.zeros(n) for c in ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y",
                                        "rot_z")}
    df = pd.DataFrame({**motion, "white_matter": np.zeros(n), "csf": np.zeros(n),
                       "framewise_displacement": np.r_[np.nan, np.zeros(n - 1)],
                       "std_dvars": np.r_[np.nan, np.zeros(n - 1)]})
    df.loc[20, "std_dvars"] = 3.0  # a DVARS spike with no FD spike
    base = {"strategy": "scrubbing", "motion": "basic", "scrub_before": 0, "scrub_after": 0}
    with_dvars = select_confounds(df, FunctionalConfig(**base))
    assert 20 not in with_dvars.sample_mask
    without = select_confounds(df, FunctionalConfig(**base, std_dvars_threshold=0))
    assert without.sample_mask is None or 20 in without.sample_mask
    df.loc[3, "framewise_displacement"] = 2.0  # leaves a 2-volume segment at the start
    short = select_confounds(df, FunctionalConfig(**base, scrub_min_segment=5))
    assert not {0, 1, 2, 3} & set(short.sample_mask)
    kept = select_confounds(df, FunctionalConfig(**base, scrub_min_segment=0))
    assert {0, 1, 2} <= set(kept.sample_mask)


@pytest.mark.parametrize(("damage", "message"), [
    ("cut", "Compressed file ended"), ("flip", "CRC check failed|invalid"),
    ("trailer", "CRC check failed"),
])
def test_corrupt_gzip_bold_is_a_clear_input_error(tmp_path, damage, message):
    bold, conf, atlas = _write_run(tmp_path)
    raw = bytearray(bold.read_bytes())
    half = len(raw) // 2
    if damage == "cut":
        raw = raw[:half]
    elif damage == "flip":
        raw[half:half + 64] = bytes(b ^ 0xFF for b in raw[half:half + 64])
    else:  # every voxel decodes; only the CRC32 in the gzip trailer is wrong
        raw[-6] ^= 0xFF
    bold.write_bytes(bytes(raw))
    with pytest.raises(InputError, match=rf"{bold.name}: (file is truncated|corrupt gzip "
                                         rf"stream).*({message})"):
        _quiet_process(bold, conf, atlas)


def test_corrupt_deflate_block_isal_error_becomes_input_error(tmp_path):
    # isal's IsalError subclasses neither OSError nor ValueError: it must not escape raw
    from isal.igzip_lib import IsalError

    from danemap.io import load_nifti_header
    from danemap.markers.functional._extract import gather_from_file, voxel_order

    bold, _, atlas = _write_run(tmp_path, n_t=20)
    header = load_nifti_header(bold)  # read while the file is intact
    order, starts, counts = voxel_order(np.asarray(atlas.img.dataobj), atlas.labels)
    raw = bold.read_bytes()
    # zero 8 bytes right after the gzip header (10 bytes + the file name)
    start = raw.index(b"\x00", 10) + 1 if raw[3] & 0x08 else 10
    bold.write_bytes(raw[:start + 8] + b"\x00" * 8 + raw[start + 16:])
    with pytest.raises(InputError, match=rf"{bold.name}: corrupt gzip stream "
                                         r"\(IsalError: .*(deflate|lookback)"):
        gather_from_file(bold, header, order, starts, counts)
    assert issubclass(IsalError, Exception) and not issubclass(IsalError, OSError | ValueError)


@pytest.mark.parametrize(("which", "what"), [("confounds", "confounds sidecar"),
                                              ("bold", "BOLD sidecar")])
def test_malformed_json_sidecars_are_input_errors(tmp_path, which, what):
    bold, conf, atlas = _write_run(tmp_path)
    target = conf if which == "confounds" else bold.with_name(
        bold.name.replace(".nii.gz", ".json"))
    target.with_suffix(".json").write_bytes(b"\xff{not json")
    with pytest.raises(InputError, match=rf"{what} .*: not a readable JSON file"):
        _quiet_process(bold, conf, atlas)


def test_partial_correlation_of_rank_deficient_series_is_nan(caplog):
    import logging

    from danemap.markers.functional._connectivity import connectivity

    rng = np.random.default_rng(0)
    basis = rng.normal(size=(60, 8))  # 60 volumes but only 8 degrees of freedom
    ts = basis @ rng.normal(size=(8, 12))  # 12 regions
    with caplog.at_level(logging.WARNING, logger="danemap"), warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from a sqrt of a negative
        corr, part = connectivity(ts)
    assert np.isfinite(corr).all()
    assert np.isnan(part).all()
    assert "covariance of the 12 usable regions is singular" in caplog.text
    corr, part = connectivity(rng.normal(size=(60, 12)))  # full rank: finite
    assert np.isfinite(part).all()


def test_group_table_of_only_na_is_not_written(tmp_path, caplog):
    import logging

    from danemap.io import DerivativesWriter

    writer = DerivativesWriter(tmp_path / "out")
    for i, sub in enumerate(["01", "02"]):
        bold, conf, atlas = _write_run(tmp_path / "in", sub=sub, seed=i)
        res = _quiet_process(bold, conf, atlas)
        res.connectivity["partialcorr"].loc[:, :] = np.nan  # as when singular in every run
        write_run(res, writer, f"sub-{sub}")
    with caplog.at_level(logging.WARNING, logger="danemap"):
        out = collect_functional_group(writer.root, writer.root / "group")
    assert "connectivity_partialcorr" not in out
    assert not (writer.root / "group" / "connectivity_partialcorr.tsv").exists()
    assert "connectivity_partialcorr: every value is n/a" in caplog.text
    assert "connectivity_corr" in out


@pytest.mark.parametrize(("detrend", "hp", "lp"), [(True, 0.01, 0.1), (False, 0.01, None),
                                                    (True, None, None), (False, None, 0.08)])
def test_cleaning_operator_with_confounds_equals_nilearn_clean(detrend, hp, lp):
    """The cached filter + per-run confound projection is nilearn's signal.clean operator."""
    from nilearn import signal

    from danemap.markers.functional._clean import (
        _confound_operator,
        _plain_operator,
        cleaning_operator,
    )

    rng = np.random.default_rng(7)
    n_t = 120
    conf = np.column_stack([rng.normal(size=(n_t, 5)).cumsum(axis=0), rng.normal(size=n_t)])
    plain = _plain_operator(n_t, 2.0, detrend, hp, lp)
    assert _confound_operator(plain, conf) is not None  # the fast path is the one tested
    # degenerate confounds, where nilearn's result hinges on rounding: nilearn builds it
    collinear = np.column_stack([conf, conf[:, 0] + conf[:, 1]])
    assert _confound_operator(plain, collinear) is None
    np.testing.assert_array_equal(cleaning_operator(n_t, collinear, None, 2.0, detrend, hp, lp),
                                  signal.clean(np.eye(n_t), detrend=detrend, standardize=None,
                                               confounds=collinear,
                                               filter="butterworth" if (hp or lp) else False,
                                               high_pass=hp, low_pass=lp, t_r=2.0,
                                               standardize_confounds=True))
    if detrend or hp:  # a constant confound is wiped out
        assert _confound_operator(plain, np.column_stack([conf, np.ones(n_t)])) is None
    op = cleaning_operator(n_t, conf, None, 2.0, detrend, hp, lp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ref = signal.clean(np.eye(n_t), detrend=detrend, standardize=None, confounds=conf,
                           filter="butterworth" if (hp or lp) else False, high_pass=hp,
                           low_pass=lp, t_r=2.0, standardize_confounds=True)
    np.testing.assert_allclose(op, ref, atol=1e-10)
    x = rng.normal(size=(n_t, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        want = signal.clean(x, detrend=detrend, standardize=None, confounds=conf,
                            filter="butterworth" if (hp or lp) else False, high_pass=hp,
                            low_pass=lp, t_r=2.0, standardize_confounds=True)
    np.testing.assert_allclose(op @ x, want, atol=1e-9)


# ----------------------------------------------------------------------------- mean BOLD
def test_mean_bold_is_the_mean_over_volumes_and_is_written(tmp_path):
    from danemap.io import DerivativesWriter
    from danemap.markers.functional._compute import mean_bold

    bold, conf, atlas = _write_run(tmp_path / "in", n_t=90)
    img = nib.load(bold)
    data = np.asarray(img.dataobj, dtype=np.float64)
    want = data.mean(axis=3)
    res = _quiet_process(bold, conf, atlas)
    got = np.asarray(res.mean_image.dataobj)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(res.mean_image.affine, img.affine, rtol=1e-9, atol=1e-9)
    # the in-memory image, and int16 data with a slope and an intercept, give the same mean
    mem = mean_bold(nib.Nifti1Image(data.astype(np.float32), img.affine, img.header))
    np.testing.assert_allclose(np.asarray(mem.dataobj), want, rtol=1e-6, atol=1e-3)
    raw = np.round((data - 100.0) / 0.05).astype(np.int16)
    scaled = nib.Nifti1Image(raw, img.affine, img.header)
    scaled.header.set_data_dtype(np.int16)
    scaled.header.set_slope_inter(0.05, 100.0)
    p = bold.with_name("scaled_bold.nii")  # uncompressed: the seek path
    nib.save(scaled, p)
    np.testing.assert_allclose(np.asarray(mean_bold(p).dataobj),
                               raw.mean(axis=3) * 0.05 + 100.0, rtol=1e-6, atol=1e-4)
    writer = DerivativesWriter(tmp_path / "out")
    paths = write_run(res, writer, "sub-01", space="MNI152NLin2009cAsym", res="2")
    out = [q for q in paths if q.name.endswith("_bold.nii.gz")]
    assert [q.name for q in out] == [
        "sub-01_task-rest_space-MNI152NLin2009cAsym_res-2_desc-mean_bold.nii.gz"]
    np.testing.assert_allclose(np.asarray(nib.load(out[0]).dataobj), want, rtol=1e-6,
                               atol=1e-3)
    side = json.loads(out[0].with_name(out[0].name.replace(".nii.gz", ".json")).read_text())
    assert side["Sources"] == [str(bold)]


def test_mean_bold_of_a_truncated_file_names_it(tmp_path):
    from danemap.markers.functional._compute import mean_bold

    bold, _, _ = _write_run(tmp_path, n_t=40)
    img = nib.load(bold)
    p = tmp_path / "cut_bold.nii"
    nib.save(img, p)
    header = nib.load(p).header
    p.write_bytes(p.read_bytes()[:-5000])
    with pytest.raises(InputError, match=r"cut_bold\.nii: file is truncated"):
        mean_bold(p, header)


def test_the_fd_series_is_written_for_the_report(tmp_path):
    from danemap.io import DerivativesWriter
    from danemap.markers.functional._family import _fd_series

    bold, conf, atlas = _write_run(tmp_path / "in", n_t=90)
    res = _quiet_process(bold, conf, atlas)
    fd, source = _fd_series(conf, 90)
    want = pd.read_csv(conf, sep="\t", na_values="n/a")["framewise_displacement"]
    np.testing.assert_allclose(fd, want, rtol=1e-12)
    assert source == str(conf)
    assert _fd_series(conf, 91) == (None, None)  # not this run's volumes
    assert _fd_series(None, 90) == (None, None)
    writer = DerivativesWriter(tmp_path / "out")
    paths = write_run(res, writer, "sub-01", fd=fd, fd_source=source)
    out = next(q for q in paths if q.name == "sub-01_task-rest_desc-fd_timeseries.tsv")
    table = pd.read_csv(out, sep="\t", na_values="n/a")
    assert list(table.columns) == ["volume", "framewise_displacement"]
    assert list(table["volume"]) == list(range(90))
    np.testing.assert_allclose(table["framewise_displacement"], want, rtol=1e-12)
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["framewise_displacement"]["Units"] == "mm" and side["Sources"] == [str(conf)]
