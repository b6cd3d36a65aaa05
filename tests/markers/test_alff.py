"""ALFF that survives scrubbing and compares across sites: censoring, mALFF, zALFF."""

from __future__ import annotations

import json
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from danemap.atlas import Atlas
from danemap.config import Config, FunctionalConfig
from danemap.errors import DanemapWarning, InputError
from danemap.markers import (
    FunctionalFamily,
    collect_functional_group,
    process_run,
    write_run,
)
from danemap.markers.functional._alff import alff_band_indices, normalise_alff, voxel_alff

SHAPE = (10, 10, 6)
AFFINE = np.diag([3.0, 3.0, 3.0, 1.0])
TR = 2.0
N_T = 200
NAMES = ["Caudate_L", "Putamen_L", "DLPFC_L", "Thalamus_L"]
MOTION = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]


def _atlas() -> Atlas:
    lab = np.zeros(SHAPE, dtype=np.int16)
    lab[0:5, 0:5, :3] = 1
    lab[5:10, 0:5, :3] = 2
    lab[:, 5:10, :3] = 3
    lab[:, :, 3:6] = 4
    regions = pd.DataFrame({"index": [1, 2, 3, 4], "name": NAMES})
    return Atlas(nib.Nifti1Image(lab, AFFINE), regions, {}, "test")


def _ar1(rng: np.random.Generator, phi: float, size: tuple[int, ...]) -> np.ndarray:
    """Unit-variance AR(1) series along the first axis (BOLD-like red spectrum)."""
    e = rng.normal(size=(N_T, *size))
    x = np.empty_like(e)
    x[0] = e[0] / np.sqrt(1 - phi**2)
    for t in range(1, N_T):
        x[t] = phi * x[t - 1] + e[t]
    return x * np.sqrt(1 - phi**2)


def _image(data: np.ndarray) -> nib.Nifti1Image:
    img = nib.Nifti1Image(data, AFFINE)
    img.header.set_xyzt_units("mm", "sec")
    img.header["pixdim"][4] = TR
    return img


def _run(seed: int, spike_frac: float = 0.10, spike_pct: float = 4.0):
    """A spike-free run, the same run with spikes, and their confound tables.

    The BOLD is 1000-1200 a.u. per voxel with 1% regional AR(0.9) fluctuation and 1%
    voxel AR(0.3) noise. Spikes: ``spike_frac`` of the volumes (never the first or last 3)
    get a global intensity jump of +-``spike_pct``% (scaled 0.5-1.5 over voxels, so 2-6%,
    the size of motion spikes in Power et al. 2012), with FD 0.8-2.0 mm and standardised
    DVARS 2.5-5 at those volumes; elsewhere FD is about 0.12 mm and DVARS about 1.
    """
    rng = np.random.default_rng(seed)
    lab = np.asarray(_atlas().img.dataobj)
    base = 1000.0 * (1 + 0.2 * rng.random(SHAPE))
    regional = _ar1(rng, 0.9, (len(NAMES),))
    noise = _ar1(rng, 0.3, SHAPE)
    frac = np.empty((*SHAPE, N_T))
    for k in range(1, len(NAMES) + 1):
        frac[lab == k] = 0.01 * regional[:, k - 1][None, :] + 0.01 * noise[:, lab == k].T
    clean = base[..., None] * (1 + frac)
    cols: dict[str, np.ndarray] = {}
    for name in [*MOTION, "csf", "white_matter"]:
        x = np.cumsum(rng.normal(0, 0.02, N_T))
        d = np.r_[np.nan, np.diff(x)]
        cols[name] = x
        cols[name + "_derivative1"] = d
        cols[name + "_power2"] = x**2
        cols[name + "_derivative1_power2"] = d**2
    for i in range(3):
        cols[f"cosine{i:02d}"] = np.cos(np.pi * (np.arange(N_T) + 0.5) * (i + 1) / N_T)
    fd = np.abs(rng.normal(0.12, 0.05, N_T))
    dvars = np.abs(rng.normal(1.0, 0.15, N_T))
    n_spikes = round(spike_frac * N_T)
    at = np.sort(rng.choice(np.arange(3, N_T - 3), n_spikes, replace=False))
    spiked = clean.copy()
    field = 0.5 + rng.random(SHAPE)
    for i in at:
        spiked[..., i] *= 1 + rng.choice([-1.0, 1.0]) * spike_pct / 100 * field
    fd_s, dvars_s = fd.copy(), dvars.copy()
    fd_s[at] = rng.uniform(0.8, 2.0, n_spikes)
    dvars_s[at] = rng.uniform(2.5, 5.0, n_spikes)
    conf = pd.DataFrame(cols)
    conf_clean = conf.assign(framewise_displacement=np.r_[np.nan, fd[1:]],
                             std_dvars=np.r_[np.nan, dvars[1:]])
    conf_spiked = conf.assign(framewise_displacement=np.r_[np.nan, fd_s[1:]],
                              std_dvars=np.r_[np.nan, dvars_s[1:]])
    return clean, conf_clean, spiked, conf_spiked, at


def _process(data, conf, **cfg):
    cfg.setdefault("connectivity", ["correlation"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DanemapWarning)
        return process_run(_image(data), conf, _atlas(), config=FunctionalConfig(**cfg), tr=TR)


def _ratios(seed: int, **scrub) -> tuple[np.ndarray, np.ndarray, float]:
    """Region ALFF of the spiked run (scrubbed, and unscrubbed) over the spike-free ALFF."""
    clean, conf_clean, spiked, conf_spiked, _ = _run(seed)
    ref = _process(clean, conf_clean, strategy="simple").alff["alff"].to_numpy()
    res = _process(spiked, conf_spiked, strategy="scrubbing", **scrub)
    raw = _process(spiked, conf_spiked, strategy="simple").alff["alff"].to_numpy()
    return res.alff["alff"].to_numpy() / ref, raw / ref, res.qc["pct_scrubbed"]


# ----------------------------------------------------------------------------- censoring
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scrubbed_alff_within_10pct_of_spike_free(seed):
    # 10% spike volumes, flagged by FD/DVARS (fd 0.5 mm, std DVARS 1.5, segments >= 5) and
    # censored without padding (nilearn's preset; 16-22% censored): measured over seeds
    # 0-5, scrubbed/spike-free 0.915-0.999 per region (mean 0.961), where ignoring the
    # censoring (what ALFF did before) gives 1.153-1.399 (mean 1.296)
    scrubbed, unscrubbed, pct = _ratios(seed, scrub_before=0, scrub_after=0)
    assert 10 <= pct <= 25  # the flagged volumes, plus kept segments under 5 volumes
    assert np.all(np.abs(scrubbed - 1) < 0.10), scrubbed
    assert np.all(unscrubbed > 1.10), unscrubbed
    assert np.all(np.abs(scrubbed - 1) < np.abs(unscrubbed - 1))


def test_default_padding_censors_40pct_and_still_beats_ignoring_it():
    # danemap's default padding (1 before, 2 after, segments >= 5) turns 10% spikes into
    # 35-48% censored volumes; ALFF is then biased low (the 24 motion columns fitted on
    # fewer volumes absorb in-band signal): measured 0.783-0.969 (mean 0.880) over seeds
    # 0-5, against 1.153-1.399 unscrubbed. Such runs exceed max_scrubbed_pct and are
    # flagged for exclusion
    for seed in (0, 1):
        scrubbed, unscrubbed, pct = _ratios(seed)
        assert pct > 30
        assert np.all(np.abs(scrubbed - 1) < 0.25), scrubbed
        assert np.abs(scrubbed - 1).mean() < np.abs(unscrubbed - 1).mean()


def test_spikes_do_not_reach_scrubbed_alff():
    clean, _, spiked, conf_spiked, at = _run(3)
    a = _process(clean, conf_spiked, strategy="scrubbing", scrub_before=0, scrub_after=0)
    b = _process(spiked, conf_spiked, strategy="scrubbing", scrub_before=0, scrub_after=0)
    assert set(at) <= set(range(N_T)) - set(b.timeseries.index)
    np.testing.assert_allclose(b.alff["alff"], a.alff["alff"], rtol=1e-10)
    assert b.meta["alff"]["spectrum"].startswith("Lomb-Scargle")
    assert b.meta["alff"]["n_volumes_spectrum"] == len(b.timeseries)


def _residual(y: np.ndarray, design: np.ndarray) -> np.ndarray:
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    return y - design @ beta


def test_censored_alff_equals_scipy_lombscargle():
    # independent reference: nuisance fit on the kept volumes by lstsq, then
    # scipy.signal.lombscargle at the FFT bins, amplitude 2 sqrt(P / T), times the dof
    # factor; agreement to 1e-8 relative
    from scipy.signal import lombscargle

    rng = np.random.default_rng(7)
    x = _ar1(rng, 0.8, (5,)) + 0.3 * rng.normal(size=(N_T, 5))
    t = np.arange(N_T, dtype=float)
    design = np.c_[np.ones(N_T), t - t.mean(), np.cumsum(rng.normal(size=N_T))]
    basis = np.linalg.qr(design)[0]
    kept = np.setdiff1d(np.arange(N_T), rng.choice(N_T, 30, replace=False))
    alff, falff, _ = voxel_alff(x, TR, basis, sample_mask=kept)
    n_fft = 256
    lo, hi = alff_band_indices(n_fft, TR, (0.01, 0.08))
    omega = 2 * np.pi * np.arange(1, n_fft // 2) / (n_fft * TR)  # Nyquist apart
    k, r = kept.size, design.shape[1]
    dof = np.sqrt(((N_T - r) / N_T) / ((k - r) / k))
    for j in range(x.shape[1]):
        res = _residual(x[kept, j], design[kept])
        p = lombscargle(kept * TR, res, omega, normalize=False)
        # Nyquist: the sine vanishes at every sample, one quadrature (-1)^t remains
        sign = (-1.0) ** kept
        p = np.r_[p, (sign @ res) ** 2 / k]
        amp = 2 * np.sqrt(p / N_T) * dof
        assert alff[j] == pytest.approx(amp[lo - 1:hi].mean(), rel=1e-8)
        assert falff[j] == pytest.approx(amp[lo - 1:hi].sum() / amp.sum(), rel=1e-8)


def test_uncensored_alff_equals_numpy_periodogram():
    # independent reference on a whole run (no censoring): per voxel, lstsq residual on
    # [1, t, motion], zero-padded numpy FFT, DPARSF bins; region mean of the voxels;
    # agreement to 1e-7 relative (float64 data)
    clean, conf, *_ = _run(4)
    res = _process(clean, conf, strategy="custom", confounds=MOTION)
    lab = np.asarray(_atlas().img.dataobj)
    t = np.arange(N_T, dtype=float)
    design = np.c_[np.ones(N_T), t, conf[MOTION].to_numpy()]
    n_fft = 256
    lo, hi = (int(np.ceil(0.01 * n_fft * TR)), int(np.floor(0.08 * n_fft * TR)))
    for k, name in enumerate(NAMES, start=1):
        y = clean[lab == k].T
        amp = 2 * np.abs(np.fft.fft(_residual(y, design), n=n_fft, axis=0)) / N_T
        want = amp[lo:hi + 1].mean(axis=0).mean()
        got = res.alff.set_index("region").loc[name, "alff"]
        assert got == pytest.approx(want, rel=1e-7)
    assert res.meta["alff"]["spectrum"] == "FFT"


def test_sample_mask_outside_the_run_is_an_input_error():
    x = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(InputError, match=r"sample_mask: expected kept volume indices in 0\.\.19"):
        voxel_alff(x, TR, None, sample_mask=np.array([0, 5, 25]))
    with pytest.raises(InputError, match="found 0 indices"):
        voxel_alff(x, TR, None, sample_mask=np.array([], dtype=int))


# ----------------------------------------------------------------------------- mALFF, zALFF
def test_malff_and_zalff_are_alff_normalised_over_the_atlas_voxels():
    clean, conf, *_ = _run(5)
    res = _process(clean, conf, strategy="simple")
    a = res.alff
    meta = res.meta["alff"]
    mean, sd = meta["reference_mean_alff"], meta["reference_sd_alff"]
    assert meta["reference_n_voxels"] == a["n_voxels"].sum() == np.prod(SHAPE)
    np.testing.assert_allclose(a["malff"], a["alff"] / mean, rtol=1e-12)
    np.testing.assert_allclose(a["zalff"], (a["alff"] - mean) / sd, rtol=1e-12)
    w = a["n_voxels"] / a["n_voxels"].sum()  # the regions tile the reference voxels
    assert float((w * a["malff"]).sum()) == pytest.approx(1.0, rel=1e-12)
    assert float((w * a["zalff"]).sum()) == pytest.approx(0.0, abs=1e-12)


def test_zalff_has_mean_0_and_sd_1_over_its_reference_voxels():
    rng = np.random.default_rng(1)
    x = _ar1(rng, 0.7, (300,)) * rng.uniform(0.5, 3.0, 300)
    alff, _, const = voxel_alff(x, TR, None)
    malff, zalff, mean, sd = normalise_alff(alff, alff[~const])
    assert zalff.mean() == pytest.approx(0.0, abs=1e-12)
    assert zalff.std(ddof=1) == pytest.approx(1.0, rel=1e-12)
    assert malff.mean() == pytest.approx(1.0, rel=1e-12)
    assert mean == pytest.approx(alff.mean()) and sd == pytest.approx(alff.std(ddof=1))
    nan_m, nan_z, *_ = normalise_alff(alff, np.zeros(3))
    assert np.isnan(nan_m).all() and np.isnan(nan_z).all()


@pytest.mark.parametrize("scale", [8.0, 7.3])
@pytest.mark.parametrize("strategy", ["simple", "scrubbing"])
def test_malff_is_invariant_to_a_global_intensity_scale(scale, strategy):
    _, _, spiked, conf, _ = _run(6)
    a = _process(spiked, conf, strategy=strategy).alff
    b = _process(spiked * scale, conf, strategy=strategy).alff
    np.testing.assert_allclose(b["alff"], scale * a["alff"], rtol=1e-10)
    np.testing.assert_allclose(b["malff"], a["malff"], rtol=1e-10)
    np.testing.assert_allclose(b["zalff"], a["zalff"], rtol=1e-10)
    np.testing.assert_allclose(b["falff"], a["falff"], rtol=1e-10)


def test_group_tables_and_malff_as_the_default_alff_table(tmp_path):
    from danemap.io import DerivativesWriter

    writer = DerivativesWriter(tmp_path / "out")
    runs = []
    for i, sub in enumerate(["01", "02"]):
        clean, conf, *_ = _run(10 + i)
        res = _process(clean, conf, strategy="scrubbing")
        runs.append(res)
        write_run(res, writer, f"sub-{sub}")
    per_run = next((writer.root / "sub-02" / "func").glob("*_desc-alff_stats.tsv"))
    table = pd.read_csv(per_run, sep="\t")
    assert list(table.columns) == ["region", "alff", "falff", "malff", "zalff", "n_voxels"]
    side = json.loads(per_run.with_suffix(".json").read_text())
    assert "Lomb-Scargle" in side["censoring"] and "atlas" in side["malff_reference"]
    out = collect_functional_group(writer.root, writer.root / "group")
    assert {"alff", "malff", "zalff", "falff"} <= set(out)
    m = pd.read_csv(out["malff"], sep="\t")
    assert list(m.columns) == ["participant_id", *NAMES]
    np.testing.assert_allclose(m.loc[1, NAMES].to_numpy(dtype=float),
                               runs[1].alff["malff"], rtol=1e-7)
    gside = json.loads(out["malff"].with_suffix(".json").read_text())
    assert "group statistics use" in gside["Description"] and "atlas" in gside["Reference"]
    assert "Lomb-Scargle" in gside["Censoring"]
    tables = {t.name: t for t in FunctionalFamily().collect(writer.root, "danemap", Config())}
    assert tables["malff"].analysed  # the statistics run on mALFF, not on raw ALFF
    assert not tables["alff"].analysed and not tables["zalff"].analysed
