"""The first-level GLM of nilearn's ``FirstLevelModel``, vectorised, for ROI or voxel signals.

Design matrix (:func:`design_matrix`), as nilearn's ``make_first_level_design_matrix``
(0.11-0.14) builds it: for each condition (sorted by name) a boxcar of its events on a
grid ``oversampling`` (50) times finer than the TR, starting ``min_onset`` (-24 s) before
the first frame, convolved with the Glover (or SPM) double-gamma HRF normalised to unit
sum, and linearly interpolated at the frame times ``k * TR``; then the confounds, the
discrete cosine drift basis up to ``high_pass`` and a constant. The convolution is done by
FFT for all conditions at once (nilearn convolves each condition directly), so building
a design costs milliseconds.

Fit (:func:`fit_glm`), as nilearn's ``run_glm``: each series is mean-scaled to percent
signal change (``100 * (y / mean(y) - 1)``, ``signal_scaling=0``); OLS gives residuals
whose lag-1 Yule-Walker coefficient (``r1 / r0`` with the ``T - 1`` and ``T``
normalisations, after removing the grand mean of the residuals) is truncated to a grid of
``1 / bins``; every series is refitted by OLS on the design and data pre-whitened with
that coefficient (``x_t - rho x_{t-1}``, the first row unchanged). A t contrast ``c`` has
effect ``c beta``, variance ``c (W'W)^+ c' sigma^2`` with ``sigma^2`` the whitened
residual sum of squares over ``T - P`` (``P`` design columns), and ``t = effect /
sqrt(variance)``. Fixed effects across runs (:func:`fixed_effects`) are precision
weighted (nilearn ``compute_fixed_effects(precision_weighted=True)``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from danemap.errors import InputError

__all__ = ["GlmFit", "contrast_matrix", "design_matrix", "first_level", "fit_glm",
           "fixed_effects", "hrf_kernel", "mean_scale"]

HRF_MODELS = ("glover", "spm")
DRIFT_MODELS = ("cosine", "none")
NOISE_MODELS = ("ar1", "ols")
#: nilearn's defaults: oversampling of the regressor grid, earliest onset modelled (s).
OVERSAMPLING = 50
MIN_ONSET = -24.0
#: Bins of the AR(1) coefficient (nilearn ``FirstLevelModel`` default).
AR1_BINS = 100


def hrf_kernel(hrf_model: str, tr: float, oversampling: int = OVERSAMPLING,
               time_length: float = 32.0) -> np.ndarray:
    """Return the HRF sampled every ``tr / oversampling`` s (unit sum), as nilearn's.

    Parameters
    ----------
    hrf_model : {"glover", "spm"}
        Glover (1999): delay 6 s, undershoot 12 s, dispersions 0.9, ratio 0.48; SPM:
        delay 6, undershoot 16, dispersions 1, ratio 1/6 (0.167).
    tr : float
        Repetition time (s).
    oversampling : int
        Samples per TR.
    time_length : float
        Kernel length (s).

    Returns
    -------
    ndarray
    """
    from scipy.stats import gamma

    if hrf_model == "glover":
        delay, under, disp, udisp, ratio = 6.0, 12.0, 0.9, 0.9, 0.48
    elif hrf_model == "spm":
        delay, under, disp, udisp, ratio = 6.0, 16.0, 1.0, 1.0, 0.167
    else:
        raise InputError(f"task.hrf_model: expected one of {list(HRF_MODELS)}, found "
                         f"{hrf_model!r}")
    dt = tr / oversampling
    t = np.linspace(0.0, time_length, int(np.rint(time_length / dt)))
    h = (gamma.pdf(t, delay / disp, loc=dt, scale=disp)
         - ratio * gamma.pdf(t, under / udisp, loc=dt, scale=udisp))
    return np.asarray(h / h.sum())


def _condition_regressors(events: pd.DataFrame, frame_times: np.ndarray, hrf_model: str,
                          oversampling: int, min_onset: float) -> tuple[list[str], np.ndarray]:
    from scipy.signal import fftconvolve

    n = frame_times.size
    lo, hi = float(frame_times.min()), float(frame_times.max())
    n_hr = (n - 1) / (hi - lo) * (hi * (1 + 1.0 / (n - 1)) - lo - min_onset) * oversampling + 1
    hr_times = np.linspace(lo + min_onset, hi * (1 + 1.0 / (n - 1)), int(np.rint(n_hr)))
    tmax = hr_times.size
    names = sorted(set(events["trial_type"].astype(str)))
    onsets = events["onset"].to_numpy(dtype=float)
    ends = onsets + events["duration"].to_numpy(dtype=float)
    values = (events["modulation"].to_numpy(dtype=float) if "modulation" in events.columns
              else np.ones(len(events)))
    col = np.searchsorted(names, events["trial_type"].astype(str).to_numpy())
    t_on = np.minimum(np.searchsorted(hr_times, onsets), tmax - 1)
    t_off = np.minimum(np.searchsorted(hr_times, ends), tmax - 1)
    t_off = np.where((t_off < tmax - 1) & (t_off == t_on), t_off + 1, t_off)  # 0 s events
    box = np.zeros((tmax, len(names)))
    np.add.at(box, (t_on, col), values)
    np.add.at(box, (t_off, col), -values)
    box = np.cumsum(box, axis=0)
    kernel = hrf_kernel(hrf_model, float(np.min(np.diff(frame_times))), oversampling)
    conv = fftconvolve(box, kernel[:, None], axes=0)[:tmax]
    out = np.column_stack([np.interp(frame_times, hr_times, conv[:, j])
                           for j in range(len(names))]) if names else np.zeros((n, 0))
    return names, out


def _cosine_drift(frame_times: np.ndarray, high_pass: float) -> np.ndarray:
    n = frame_times.size
    dt = (frame_times[-1] - frame_times[0]) / (n - 1)
    order = int(min(n - 1, int(np.floor(2 * n * high_pass * dt))))
    drift = np.ones((n, order + 1))
    k = np.arange(1, order + 1)
    drift[:, :order] = np.sqrt(2.0 / n) * np.cos(np.pi / n * (np.arange(n)[:, None] + 0.5) * k)
    return drift


def design_matrix(events: pd.DataFrame, n_volumes: int, tr: float, *,
                  hrf_model: str = "glover", drift_model: str = "cosine",
                  high_pass: float = 0.01, confounds: pd.DataFrame | None = None,
                  oversampling: int = OVERSAMPLING, min_onset: float = MIN_ONSET,
                  ) -> pd.DataFrame:
    """Build the first-level design matrix of one run (nilearn's, see the module docstring).

    Parameters
    ----------
    events : pandas.DataFrame
        ``onset``, ``duration``, ``trial_type`` (the condition), optional ``modulation``.
    n_volumes : int
        Volumes of the run (frame times ``k * tr``, slice-time reference 0).
    tr : float
        Repetition time (s).
    hrf_model : {"glover", "spm"}
        HRF.
    drift_model : {"cosine", "none"}
        Drift basis (``"none"``: only the constant).
    high_pass : float
        Cut-off (Hz) of the cosine basis.
    confounds : pandas.DataFrame or None
        Extra regressors, one row per volume, no missing values.
    oversampling : int
        Regressor grid samples per TR.
    min_onset : float
        Earliest onset (s, relative to the first frame) that is modelled.

    Returns
    -------
    pandas.DataFrame
        Conditions (sorted), confounds, ``drift_1..``, ``constant``; indexed by frame time.

    Raises
    ------
    InputError
        Unknown models, confounds with missing values or the wrong length.
    """
    if drift_model not in DRIFT_MODELS:
        raise InputError(f"task.drift_model: expected one of {list(DRIFT_MODELS)}, found "
                         f"{drift_model!r}")
    n = int(n_volumes)
    if n < 3:
        raise InputError(f"design: a run needs at least 3 volumes, found {n}")
    frame_times = np.linspace(0.0, (n - 1) * float(tr), n)
    names, matrix = _condition_regressors(events, frame_times, hrf_model, oversampling,
                                          min_onset)
    blocks = [matrix]
    if confounds is not None:
        if len(confounds) != n:
            raise InputError(f"confounds: {len(confounds)} rows but the run has {n} volumes")
        conf = confounds.to_numpy(dtype=float)
        if np.isnan(conf).any():
            raise InputError("confounds: the design matrix's extra regressors contain NaN")
        blocks.append(conf)
        names = names + [str(c) for c in confounds.columns]
    drift = _cosine_drift(frame_times, high_pass) if drift_model == "cosine" else np.ones((n, 1))
    blocks.append(drift)
    names = names + [f"drift_{k}" for k in range(1, drift.shape[1])] + ["constant"]
    if len(set(names)) != len(names):
        dup = sorted({x for x in names if names.count(x) > 1})
        raise InputError(f"design: duplicate column names {dup} (a confound named like a "
                         "condition or drift column)")
    x = np.hstack(blocks)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # a small SVD: threads only add overhead
        s = np.linalg.svd(x, compute_uv=False)
        cmax = 1e15  # nilearn full_rank: regularise a design singular at working precision
        if s.max() / s.min() >= cmax:
            u, s, vt = np.linalg.svd(x, full_matrices=False)
            lda = (s.max() - cmax * s.min()) / (cmax - 1)
            x = (u * (s + lda)) @ vt
    return pd.DataFrame(x, columns=names, index=pd.Index(frame_times, name="frame_time"))


def mean_scale(y: np.ndarray) -> np.ndarray:
    """Percent signal change per column, as nilearn's ``mean_scaling`` (means below 1 -> 1).

    Parameters
    ----------
    y : ndarray (T, V)
        Signals.

    Returns
    -------
    ndarray
        ``100 * (y / max(mean, 1) - 1)``.
    """
    mean = np.maximum(y.mean(axis=0), 1.0)
    return np.asarray(100.0 * (y / mean - 1.0))


def contrast_matrix(columns: Sequence[str],
                    contrasts: Mapping[str, Mapping[str, float]]) -> tuple[np.ndarray, list[bool]]:
    """Weights of each contrast over the design columns, and whether it is estimable.

    Parameters
    ----------
    columns : sequence of str
        Design-matrix columns.
    contrasts : mapping
        ``name -> {condition: weight}``.

    Returns
    -------
    weights : ndarray (K, P)
    ok : list of bool
        False for a contrast naming a condition the design lacks (no such events).
    """
    pos = {c: i for i, c in enumerate(columns)}
    out = np.zeros((len(contrasts), len(columns)))
    ok = []
    for k, weights in enumerate(contrasts.values()):
        good = all(c in pos for c, w in weights.items() if w != 0)
        ok.append(good)
        for c, w in weights.items():
            if c in pos:
                out[k, pos[c]] = w
    return out, ok


@dataclass
class GlmFit:
    """Contrast estimates of one GLM fit.

    Attributes
    ----------
    effect, variance, t : ndarray (K, V)
        Per contrast and series.
    rho : ndarray (V,)
        The binned AR(1) coefficient of each series (0 for OLS).
    dof : int
        Residual degrees of freedom ``T - P``.
    """

    effect: np.ndarray
    variance: np.ndarray
    t: np.ndarray
    rho: np.ndarray
    dof: int


def _whiten(a: np.ndarray, rho: float) -> np.ndarray:
    out = np.array(a, dtype=np.float64, copy=True)
    out[1:] -= rho * a[:-1]
    return out


def _pinv(x: np.ndarray) -> np.ndarray:
    """Pseudo-inverses of a stack of designs ``(L, T, P)``.

    A full-rank design (after scaling its columns to unit norm, the normal matrix has a
    condition number below 1e12) gets ``D (Xs'Xs)^-1 Xs'`` with ``Xs = X D``, the same
    matrix as the SVD pseudo-inverse (to about ``1e-10`` relative here) at a fraction of
    the cost; the others get ``numpy.linalg.pinv`` (SVD, nilearn's).
    """
    norms = np.sqrt(np.einsum("ltp,ltp->lp", x, x))
    norms = np.where(norms > 0, norms, 1.0)
    xs = x / norms[:, None, :]
    g = np.einsum("ltp,ltq->lpq", xs, xs)
    ev = np.linalg.eigvalsh(g)
    good = ev[:, 0] > 1e-12 * ev[:, -1]
    out = np.empty((x.shape[0], x.shape[2], x.shape[1]))
    if good.any():
        ginv = np.linalg.inv(g[good])
        out[good] = (ginv @ np.swapaxes(xs[good], 1, 2)) / norms[good][:, :, None]
    if (~good).any():
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):  # small matrices: one thread is faster, never slower
            out[~good] = np.linalg.pinv(x[~good])
    return out


def fit_glm(y: np.ndarray, x: np.ndarray, contrasts: np.ndarray, noise_model: str = "ar1",
            bins: int = AR1_BINS) -> GlmFit:
    """Fit the GLM ``y = x beta + e`` with nilearn's AR(1) (or OLS) model; t contrasts.

    Parameters
    ----------
    y : ndarray (T, V)
        Series (already scaled, censored volumes removed).
    x : ndarray (T, P)
        Design (same rows).
    contrasts : ndarray (K, P)
        Contrast weights.
    noise_model : {"ar1", "ols"}
        Noise model.
    bins : int
        AR(1) coefficient grid (``trunc(rho * bins) / bins``).

    Returns
    -------
    GlmFit
    """
    if noise_model not in NOISE_MODELS:
        raise InputError(f"task.noise_model: expected one of {list(NOISE_MODELS)}, found "
                         f"{noise_model!r}")
    y = np.asarray(y, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    c = np.atleast_2d(np.asarray(contrasts, dtype=np.float64))
    n_t, n_p = x.shape
    if y.shape[0] != n_t:
        raise InputError(f"glm: the data have {y.shape[0]} rows but the design has {n_t}")
    dof = n_t - n_p
    if dof < 1:
        raise InputError(f"glm: {n_t} volumes for {n_p} design columns leave no residual "
                         "degree of freedom")
    n_v = y.shape[1]
    if noise_model == "ols":
        rho = np.zeros(n_v)
    else:
        resid = y - x @ (_pinv(x[None])[0] @ y)
        e = resid - resid.mean()  # nilearn removes the grand mean
        r0 = np.einsum("tv,tv->v", e, e) / (n_t * n_t)
        r1 = np.einsum("tv,tv->v", e[:-1], e[1:]) / ((n_t - 1) * n_t)
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = r1 / r0
        rho = np.where(np.isfinite(rho), rho, 0.0)
        rho = (rho * bins).astype(int) * 1.0 / bins
    effect = np.empty((c.shape[0], n_v))
    variance = np.empty((c.shape[0], n_v))
    levels, inverse = np.unique(rho, return_inverse=True)
    wx = np.stack([_whiten(x, float(r)) for r in levels])
    pinv = _pinv(wx)  # (L, P, T)
    for i, r in enumerate(levels):
        sel = inverse == i
        wy = _whiten(y[:, sel], float(r))
        beta = pinv[i] @ wy
        wres = wy - wx[i] @ beta
        disp = np.einsum("tv,tv->v", wres, wres) / dof
        ccov = np.einsum("kp,pq,kq->k", c, pinv[i] @ pinv[i].T, c)
        effect[:, sel] = c @ beta
        variance[:, sel] = ccov[:, None] * disp[None, :]
    t = effect / np.sqrt(np.maximum(variance, 1e-50))
    return GlmFit(effect, variance, t, rho, dof)


def fixed_effects(effects: np.ndarray, variances: np.ndarray) -> tuple[np.ndarray, ...]:
    """Precision-weighted fixed effects over runs (axis 0), NaN runs left out.

    Parameters
    ----------
    effects, variances : ndarray (n_runs, ...)
        Per-run effects and variances.

    Returns
    -------
    effect, variance, t, n_runs : ndarray
        ``variance = 1 / sum(1 / v_i)``, ``effect = variance * sum(e_i / v_i)``,
        ``t = effect / sqrt(variance)``, and the runs used per element (NaN where none).
    """
    e = np.asarray(effects, dtype=float)
    v = np.maximum(np.asarray(variances, dtype=float), 1e-16)
    ok = np.isfinite(e) & np.isfinite(v)
    w = np.where(ok, 1.0 / np.where(ok, v, 1.0), 0.0)
    n = ok.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(n > 0, 1.0 / w.sum(axis=0), np.nan)
        eff = np.where(n > 0, (np.where(ok, e, 0.0) * w).sum(axis=0) * var, np.nan)
        t = eff / np.sqrt(var)
    return eff, var, t, n


def first_level(y: np.ndarray, design: pd.DataFrame,
                contrasts: Mapping[str, Mapping[str, float]],
                sample_mask: np.ndarray | None = None, noise_model: str = "ar1",
                scale: bool = True, min_trials: int = 1,
                counts: Mapping[str, int] | None = None) -> tuple[GlmFit, list[bool]]:
    """Fit one run: censor, mean-scale, fit, and NaN the contrasts that are not estimable.

    Parameters
    ----------
    y : ndarray (T, V)
        Raw series of the run (every volume).
    design : pandas.DataFrame
        From :func:`design_matrix` (every volume).
    contrasts : mapping
        ``name -> {condition: weight}``.
    sample_mask : ndarray of int or None
        Kept volumes (None: all).
    noise_model : {"ar1", "ols"}
        Noise model.
    scale : bool
        Mean-scale each series to percent signal change first.
    min_trials : int
        A contrast whose conditions have fewer events than this is NaN.
    counts : mapping or None
        Events per condition (for ``min_trials``).

    Returns
    -------
    fit : GlmFit
    ok : list of bool
        Which contrasts were estimable.
    """
    x = design.to_numpy()
    yy = np.asarray(y, dtype=np.float64)
    if sample_mask is not None:
        x, yy = x[sample_mask], yy[sample_mask]
    if scale:
        yy = mean_scale(yy)
    cmat, ok = contrast_matrix(list(design.columns), contrasts)
    if counts is not None:
        for k, weights in enumerate(contrasts.values()):
            if any(w != 0 and counts.get(cond, 0) < min_trials for cond, w in weights.items()):
                ok[k] = False
    from threadpoolctl import threadpool_limits

    # region series: small products, one thread is faster; voxels: let BLAS thread
    with threadpool_limits(1 if yy.shape[1] < 4096 else None):
        fit = fit_glm(yy, x, cmat, noise_model)
    bad = ~np.asarray(ok, dtype=bool)
    if bad.any():
        for arr in (fit.effect, fit.variance, fit.t):
            arr[bad] = np.nan
    return fit, ok
