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


#: Fewest residual degrees of freedom a run may have after denoising (see
#: :func:`residual_dof`). A correlation estimated on ``nu`` degrees of freedom has a Fisher-z
#: standard error of about ``1 / sqrt(nu - 3)``: 0.38 at ``nu = 10``, as large as the
#: case-control differences the markers look for, and with fewer degrees of freedom than
#: regressors the residuals are rounding noise (a 20-volume run with the 30 ``simple``
#: confounds gives residuals of SD 5e-13 and correlations of 0.9999 everywhere).
MIN_RESIDUAL_DOF = 10


def filter_min_volumes(tr: float | None, high_pass: float | None,
                       low_pass: float | None, order: int = 5) -> int:
    """Fewest volumes nilearn's Butterworth filter accepts (0 without filtering).

    nilearn filters with ``scipy.signal.sosfiltfilt`` and its default odd padding of
    ``padlen = 3 * (2 * n_sections + 1 - n_trailing_zeros)`` samples, which needs more
    samples than ``padlen``: 34 volumes for the order-5 band-pass, 19 for a high-pass or
    a low-pass alone. The filter is built as :func:`nilearn.signal.butterworth` builds it
    (cut-offs at or above Nyquist lowered just below it; equal band edges: no filtering).

    Parameters
    ----------
    tr : float or None
        Repetition time in seconds (None: no filtering possible, 0 returned).
    high_pass, low_pass : float or None
        Cut-offs in Hz; None or <= 0 disables either.
    order : int
        Butterworth order (nilearn's ``signal.clean`` uses 5).

    Returns
    -------
    int
    """
    from scipy import signal as sp_signal

    hp = high_pass if high_pass is not None and high_pass > 0 else None
    lp = low_pass if low_pass is not None and low_pass > 0 else None
    if tr is None or (hp is None and lp is None):
        return 0
    nyq = 0.5 / tr
    eps = float(np.finfo(np.float32).eps)
    crit = [f if f < nyq else nyq - nyq * 10 * eps for f in (hp, lp) if f is not None]
    if len(crit) == 2 and crit[0] == crit[1]:
        return 0  # nilearn returns the signals unfiltered
    if len(crit) == 2 and crit[0] > crit[1]:
        raise InputError(
            f"functional.high_pass ({high_pass} Hz) must be below functional.low_pass "
            f"({low_pass} Hz)")
    btype = "band" if len(crit) == 2 else ("high" if hp is not None else "low")
    sos = sp_signal.butter(N=order, Wn=crit if len(crit) == 2 else crit[0], btype=btype,
                           output="sos", fs=1.0 / tr)
    padlen = 3 * (2 * len(sos) + 1 - min(int((sos[:, 2] == 0).sum()),
                                         int((sos[:, 5] == 0).sum())))
    return padlen + 1


def high_pass_terms(n_t: int, tr: float | None, high_pass: float | None) -> int:
    """Count the discrete cosine terms below ``high_pass``: ``floor(2 T TR f)``.

    The degrees of freedom a high-pass filter takes, counted as
    :func:`nilearn.glm.first_level.create_cosine_drift` (and fMRIPrep's ``cosine*``
    columns) count its basis.
    """
    if tr is None or high_pass is None or high_pass <= 0:
        return 0
    return int(np.floor(2.0 * n_t * tr * high_pass))


def residual_dof(n_t: int, n_kept: int, n_confounds: int, n_cosine: int, tr: float | None,
                 detrend: bool, high_pass: float | None) -> tuple[int, dict[str, int]]:
    """Residual degrees of freedom of one run's denoised series, before cleaning.

    ``dof = kept volumes - confounds - mean (1) - linear trend (1 with detrend) -
    high-pass terms``; each censored volume (scrubbing, non-steady-state) costs one degree
    of freedom as a spike regressor would: it is not among the kept volumes. The
    high-pass terms are :func:`high_pass_terms` less the ``cosine*`` columns already among
    the confounds (the same frequencies, not counted twice). The low-pass filter, which
    lowers the effective (spectral) degrees of freedom further, is not counted: the
    count is a floor that no usable run can be below, not an estimate of the
    autocorrelation-corrected sample size.

    Parameters
    ----------
    n_t : int
        Volumes of the run.
    n_kept : int
        Volumes left after censoring.
    n_confounds : int
        Confound columns regressed.
    n_cosine : int
        How many of them are ``cosine*`` (discrete cosine high-pass) columns.
    tr : float or None
        Repetition time in seconds.
    detrend : bool
        Whether a linear trend is removed.
    high_pass : float or None
        Butterworth high-pass cut-off in Hz (None or <= 0: none).

    Returns
    -------
    dof : int
        Residual degrees of freedom (may be negative).
    regressors : dict of str to int
        The regressors counted: ``confounds``, ``mean_and_trend``, ``high_pass``,
        ``censored_volumes``.
    """
    hp_terms = max(0, high_pass_terms(n_t, tr, high_pass) - n_cosine)
    regressors = {
        "confounds": int(n_confounds),
        "mean_and_trend": 2 if detrend else 1,
        "high_pass": hp_terms,
        "censored_volumes": int(n_t - n_kept),
    }
    return int(n_t - sum(regressors.values())), regressors


def cleaning_operator(n_t: int, confounds: np.ndarray | None, sample_mask: np.ndarray | None,
                      tr: float | None, detrend: bool, high_pass: float | None,
                      low_pass: float | None, source: str = "BOLD data") -> np.ndarray:
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
    source : str
        Name of the BOLD file (or data) for messages.

    Returns
    -------
    ndarray
        The cleaning operator, float64.

    Raises
    ------
    InputError
        Filtering without a TR, or a run too short for the filter
        (:func:`filter_min_volumes`).
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
    check_filter_length(n_t, tr, hp, lp, source)
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
        try:
            op = signal.clean(
                eye, detrend=detrend, standardize=None, confounds=conf, sample_mask=mask,
                filter="butterworth" if (hp is not None or lp is not None) else False,
                high_pass=hp, low_pass=lp, t_r=tr if tr is not None else 2.0,
                standardize_confounds=True,
            )
        except ValueError as exc:  # e.g. scipy's padlen on a short interpolated span
            raise InputError(f"{source}: denoising failed on its {n_t} volumes ({exc})"
                             ) from exc
    return np.ascontiguousarray(op)


def check_filter_length(n_t: int, tr: float | None, high_pass: float | None,
                        low_pass: float | None, source: str = "BOLD data") -> None:
    """Raise :class:`InputError` when ``n_t`` volumes are too few for the band-pass filter.

    Parameters
    ----------
    n_t : int
        Volumes of the run.
    tr : float or None
        Repetition time in seconds.
    high_pass, low_pass : float or None
        Cut-offs in Hz; None or <= 0 disables either.
    source : str
        Name of the BOLD file for the message.

    Raises
    ------
    InputError
        Naming the file, its volumes and the minimum :func:`filter_min_volumes` gives.
    """
    need = filter_min_volumes(tr, high_pass, low_pass)
    if n_t < need:
        raise InputError(
            f"{source}: has {n_t} volumes, but the Butterworth filter (high_pass="
            f"{high_pass} Hz, low_pass={low_pass} Hz, order 5, zero-phase with odd padding "
            f"of {need - 1} volumes) needs at least {need}; use a longer run, or disable "
            "the filter with functional.high_pass = 0 and functional.low_pass = 0"
        )


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
