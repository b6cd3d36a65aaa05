"""Denoising as one linear operator.

Every step of :func:`nilearn.signal.clean` with ``standardize=False`` is linear in the
signals: cubic-spline interpolation of censored volumes, polynomial detrending, the
zero-phase Butterworth band-pass (``sosfiltfilt`` with odd padding), censoring and the
orthogonal projection onto the complement of the (detrended, filtered, z-scored)
confounds. The whole chain is therefore one ``(T_kept, T)`` matrix ``L`` with
``clean(X) == L @ X``. We build ``L`` once per run by letting nilearn clean the identity
matrix (T signals of length T, a few milliseconds for T = 200), so our numbers are
nilearn's to rounding, and apply it with a single matrix product to the region series
(and, without band-pass and censoring, to the atlas voxels for ALFF). Detrending,
filtering and confound regression are thus applied to the data in one pass.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

from danemap.errors import InputError

__all__: list[str] = []


def cleaning_operator(n_t: int, confounds: np.ndarray | None, sample_mask: np.ndarray | None,
                      tr: float | None, detrend: bool, high_pass: float | None,
                      low_pass: float | None) -> np.ndarray:
    """Return ``L`` (``n_kept x n_t``) such that ``L @ X == nilearn.signal.clean(X, ...)``.

    Parameters
    ----------
    n_t : int
        Number of volumes.
    confounds : ndarray (n_t, k) or None
        Confound regressors (all volumes).
    sample_mask : ndarray of int or None
        Indices of the kept volumes.
    tr : float or None
        Repetition time in seconds (needed when filtering).
    detrend : bool
        Remove a linear trend.
    high_pass, low_pass : float or None
        Butterworth cut-offs in Hz; None or <= 0 disables.

    Returns
    -------
    ndarray
        The cleaning operator, float64.
    """
    from nilearn import signal

    hp = high_pass if high_pass is not None and high_pass > 0 else None
    lp = low_pass if low_pass is not None and low_pass > 0 else None
    if (hp is not None or lp is not None) and tr is None:
        raise InputError(
            "tr: band-pass filtering (high_pass="
            f"{high_pass}, low_pass={low_pass}) needs the repetition time; found none. "
            "Pass tr=... or disable filtering (high_pass=0, low_pass=0)"
        )
    if (confounds is None or confounds.shape[1] == 0) and sample_mask is None:
        return _plain_operator(n_t, tr, detrend, hp, lp).copy()
    if sample_mask is None and confounds is not None:
        op = _confound_operator(_plain_operator(n_t, tr, detrend, hp, lp),
                                np.asarray(confounds, dtype=np.float64))
        if op is not None:
            return op
    eye = np.eye(n_t)
    conf = None if confounds is None or confounds.shape[1] == 0 else np.asarray(
        confounds, dtype=np.float64)
    mask = None if sample_mask is None else np.array(sample_mask, dtype=np.intp)
    with warnings.catch_warnings():
        # nilearn warns about cut-offs above Nyquist; the operator is the same as nilearn's
        warnings.simplefilter("ignore", UserWarning)
        op = signal.clean(
            eye, detrend=detrend, standardize=None, confounds=conf, sample_mask=mask,
            filter="butterworth" if (hp is not None or lp is not None) else False,
            high_pass=hp, low_pass=lp, t_r=tr if tr is not None else 2.0,
            standardize_confounds=True,
        )
    return np.ascontiguousarray(op)


def _confound_operator(plain: np.ndarray, confounds: np.ndarray) -> np.ndarray | None:
    """``signal.clean``'s operator with confounds and no censoring, from the plain one.

    Without censoring, nilearn detrends and filters the signals and the confounds with the
    same linear map (``plain``), z-scores the processed confounds (``zscore_sample``) and
    projects them out with a pivoted QR, dropping directions whose ``|R_ii|`` is below
    ``100 eps``. Doing the same here with the cached ``plain`` operator avoids filtering
    ``n_t`` identity columns for every run; the result equals nilearn's to rounding.

    Returns None when detrending and filtering all but remove a confound (e.g. a constant
    column), or when the processed confounds are (nearly) collinear: z-scoring or the rank
    cut-off then act on rounding noise, which differs between the two ways of computing
    it, so the caller lets nilearn build the whole operator instead.
    """
    from scipy import linalg

    conf = plain @ confounds
    size = np.sqrt(np.mean(confounds**2, axis=0))  # root mean square, constant included
    conf -= conf.mean(axis=0)
    sd = conf.std(axis=0, ddof=1)
    if np.any(sd <= _WIPED_OUT * size):
        return None
    sd[sd < np.finfo(np.float64).eps] = 1.0  # nilearn leaves constant columns unscaled
    conf /= sd
    q, r, _ = linalg.qr(conf, mode="economic", pivoting=True)
    diag = np.abs(np.diag(r))
    if diag.min() < _WIPED_OUT * diag.max():
        return None  # (nearly) collinear confounds: which direction is dropped is rounding
    return np.ascontiguousarray(plain - q @ (q.T @ plain))


#: A processed confound whose SD is below this fraction of its original root mean square
#: is "wiped out" by detrending and filtering.
_WIPED_OUT = 1e-6


@functools.lru_cache(maxsize=16)
def _plain_operator(n_t: int, tr: float | None, detrend: bool, hp: float | None,
                    lp: float | None) -> np.ndarray:
    """Return the cached operator without confounds or censoring (precomputed inputs)."""
    from nilearn import signal

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        op = signal.clean(
            np.eye(n_t), detrend=detrend, standardize=None, confounds=None,
            filter="butterworth" if (hp is not None or lp is not None) else False,
            high_pass=hp, low_pass=lp, t_r=tr if tr is not None else 2.0,
        )
    return np.ascontiguousarray(op)


def residual_basis(op: np.ndarray, atol: float = 1e-8) -> np.ndarray | None:
    """If ``op == I - U U.T`` (a projection), return ``U``; else None.

    Detrending plus confound regression without filtering or censoring is such a
    projection; applying it as ``X - U (U.T X)`` costs ``4 T r`` flops per voxel instead
    of ``2 T**2``.
    """
    n = op.shape[0]
    if op.shape[1] != n:
        return None
    resid = np.eye(n) - op
    if not np.allclose(resid, resid.T, atol=atol):
        return None
    w, v = np.linalg.eigh(0.5 * (resid + resid.T))
    keep = w > 0.5
    u = v[:, keep]
    if not np.allclose(u @ u.T, resid, atol=atol):
        return None
    return u
