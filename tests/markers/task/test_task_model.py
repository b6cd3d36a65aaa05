"""The task GLM against nilearn: design matrix, ROI-level and voxel-wise fits, fixed effects."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from danemap.config import TaskConfig
from danemap.markers.task import (
    design_matrix,
    first_level,
    fit_glm,
    fixed_effects,
    parse_conditions,
    parse_contrasts,
    roi_first_level,
    task_confounds,
    validate_events,
)

TR = 2.0


def _events(rng: np.random.Generator, n: int, run_s: float) -> pd.DataFrame:
    return pd.DataFrame({
        "onset": np.sort(rng.uniform(0, run_s - 20, n)),
        "duration": rng.choice([0.0, 1.5, 2.0], n),
        "trial_type": rng.choice(["gain", "loss", "neutral", "hit", "miss"], n),
    })


@pytest.mark.parametrize("hrf", ["glover", "spm"])
def test_design_equals_nilearn(hrf: str) -> None:
    from nilearn.glm.first_level import make_first_level_design_matrix

    rng = np.random.default_rng(1)
    n = 210
    ev = _events(rng, 90, n * TR)
    conf = pd.DataFrame(rng.normal(size=(n, 8)), columns=[f"c{i}" for i in range(8)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nilearn warns about the 0 s events
        ref = make_first_level_design_matrix(np.arange(n) * TR, ev, hrf_model=hrf,
                                             add_regs=conf)
    ours = design_matrix(ev, n, TR, hrf_model=hrf, confounds=conf)
    assert list(ours.columns) == list(ref.columns)
    np.testing.assert_allclose(ours.to_numpy(), ref.to_numpy(), rtol=0, atol=1e-12)


def _nilearn_roi(y: np.ndarray, ev: pd.DataFrame, conf: pd.DataFrame | None,
                 sample_mask: np.ndarray | None, contrast: str, noise_model: str = "ar1",
                 scaling: object = 0) -> dict[str, np.ndarray]:
    """nilearn FirstLevelModel on series stored as the voxels of a (V, 1, 1, T) image."""
    from nilearn.glm.first_level import FirstLevelModel

    n_t, n_v = y.shape
    img = nib.Nifti1Image(y.T.reshape(n_v, 1, 1, n_t).astype(np.float64), np.eye(4))
    mask = nib.Nifti1Image(np.ones((n_v, 1, 1), dtype=np.uint8), np.eye(4))
    flm = FirstLevelModel(t_r=TR, mask_img=mask, noise_model=noise_model,
                          signal_scaling=scaling, minimize_memory=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flm.fit(img, events=ev, confounds=conf,
                sample_masks=None if sample_mask is None else [sample_mask])
        out = flm.compute_contrast(contrast, output_type="all")
    return {k: np.asarray(out[k].get_fdata()).ravel() for k in ("effect_size",
                                                                  "effect_variance", "stat")}


def test_roi_path_equals_nilearn_first_level_model() -> None:
    from danemap.atlas import load_atlas
    from danemap.simulate._task import simulate_mid_roi

    atlas = load_atlas(3)
    cfg = TaskConfig()
    ts, conf_raw, ev_raw, _ = simulate_mid_roi(atlas, 3, "TD")
    # censor a few volumes as scrubbing would (the functional family's selection)
    conf_raw.loc[[40, 41, 120], "framewise_displacement"] = 2.0
    sel = task_confounds(conf_raw, TaskConfig(strategy="scrubbing"), None)
    assert sel.sample_mask is not None and len(sel.sample_mask) < len(ts)
    ev = validate_events(ev_raw, "sim", len(ts), TR, parse_conditions(cfg.conditions),
                         cfg.ignore)
    table, _info = roi_first_level(ts, ev, TR, cfg, sel.confounds, sel.sample_mask)
    model_ev = ev[["onset", "duration", "trial_type"]]
    worst = 0.0
    for name, weights in parse_contrasts(cfg.contrasts).items():
        expr = " + ".join(f"{w:+g}*{c}" for c, w in weights.items()).replace("+-", "-")
        ref = _nilearn_roi(ts.to_numpy(), model_ev, sel.confounds, sel.sample_mask, expr)
        got = table[table["contrast"] == name].set_index("region").loc[list(ts.columns)]
        for col, key in (("effect", "effect_size"), ("variance", "effect_variance"),
                         ("t", "stat")):
            rel = np.abs(got[col].to_numpy() - ref[key]) / np.abs(ref[key]).max()
            worst = max(worst, float(rel.max()))
    print(f"ROI path vs nilearn FirstLevelModel: max relative error {worst:.2e}")
    assert worst <= 1e-6


def _small_image(seed: int, n_t: int = 160) -> tuple[np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ev = _events(rng, 60, n_t * TR)
    x = design_matrix(ev, n_t, TR)
    n_v = 6 * 5 * 4
    beta = rng.normal(0, 3, (len(ev["trial_type"].unique()), n_v))
    noise = np.empty((n_t, n_v))
    e = rng.normal(0, 10, (n_t, n_v))
    phi = rng.uniform(-0.2, 0.6, n_v)
    noise[0] = e[0]
    for t in range(1, n_t):
        noise[t] = phi * noise[t - 1] + e[t]
    y = 800 + x.iloc[:, :beta.shape[0]].to_numpy() @ beta + noise
    return y, ev


def test_voxelwise_maps_equal_nilearn() -> None:
    from nilearn.glm.first_level import FirstLevelModel

    y, ev = _small_image(5)
    n_t = y.shape[0]
    img = nib.Nifti1Image(y.T.reshape(6, 5, 4, n_t, order="F"), np.diag([2, 2, 2, 1]))
    mask = np.ones((6, 5, 4), dtype=bool)
    mask[0, 0, :] = False
    flm = FirstLevelModel(t_r=TR, mask_img=nib.Nifti1Image(mask.astype(np.uint8),
                                                           img.affine))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flm.fit(img, events=ev)
        ref = flm.compute_contrast("gain - neutral", output_type="all")
    data = np.asarray(img.dataobj).reshape(-1, n_t, order="F")[mask.ravel(order="F")].T
    fit, ok = first_level(data, design_matrix(ev, n_t, TR),
                          {"c": {"gain": 1.0, "neutral": -1.0}})
    assert ok == [True]
    for got, key in ((fit.effect[0], "effect_size"), (fit.variance[0], "effect_variance"),
                     (fit.t[0], "stat")):
        want = np.asarray(ref[key].get_fdata()).reshape(-1, order="F")[mask.ravel(order="F")]
        rel = np.abs(got - want) / np.abs(want).max()
        assert rel.max() <= 1e-6, (key, rel.max())


def test_fixed_effects_equal_nilearn() -> None:
    from nilearn.glm.contrasts import _compute_fixed_effects_params

    rng = np.random.default_rng(2)
    e = rng.normal(size=(3, 50))
    v = rng.uniform(0.1, 2.0, (3, 50))
    ref_e, ref_v, ref_t, _ = _compute_fixed_effects_params(e, v, True, [100] * 3)
    fe, fv, ft, n = fixed_effects(e, v)
    np.testing.assert_allclose(fe, ref_e, rtol=1e-12)
    np.testing.assert_allclose(fv, ref_v, rtol=1e-12)
    np.testing.assert_allclose(ft, ref_t, rtol=1e-12)
    assert (n == 3).all()
    e[1, :5] = np.nan  # a run without the contrast is left out
    fe2, _, _, n2 = fixed_effects(e, v)
    w = 1 / v[[0, 2], :5]
    np.testing.assert_allclose(fe2[:5], (e[[0, 2], :5] * w).sum(0) / w.sum(0), rtol=1e-12)
    assert (n2[:5] == 2).all()


def test_roi_vs_voxel_average_differs_only_through_ar1_and_scaling() -> None:
    """OLS without scaling: averaging commutes with the fit; AR(1) + scaling: it does not."""
    y, ev = _small_image(7)
    x = design_matrix(ev, y.shape[0], TR)
    c = np.zeros((1, x.shape[1]))
    c[0, list(x.columns).index("gain")] = 1.0
    ols_vox = fit_glm(y, x.to_numpy(), c, "ols").effect.mean()
    ols_roi = fit_glm(y.mean(axis=1, keepdims=True), x.to_numpy(), c, "ols").effect[0, 0]
    assert abs(ols_vox - ols_roi) <= 1e-10 * abs(ols_roi)
    fit_v, _ = first_level(y, x, {"g": {"gain": 1.0}})
    fit_r, _ = first_level(y.mean(axis=1, keepdims=True), x, {"g": {"gain": 1.0}})
    diff = abs(fit_v.effect.mean() - fit_r.effect[0, 0]) / abs(fit_r.effect[0, 0])
    print(f"AR(1) + scaling: voxel-average vs ROI-level relative difference {diff:.2e}")
    assert 1e-8 < diff < 0.1
