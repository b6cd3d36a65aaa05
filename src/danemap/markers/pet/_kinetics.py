"""Reference-tissue kinetic models, vectorised over voxels: SRTM, MRTM, MRTM2, Logan.

Every model takes frame start and end times (minutes after injection), the
frame-mean reference TAC ``cr`` (``n_frames``,) and the frame-mean target TACs ``ct``
(``n_frames``,) or (``n_frames``, ``n_voxels``), and fits all columns at once with matrix
products; no Python loop runs over voxels.

Time integrals and convolutions
-------------------------------
The TACs are frame means. Between frames they are interpolated linearly through the
frame mid-times, anchored at ``(0, 0)`` (injection at ``t = 0``) and extrapolated
linearly after the last mid-time. Every operational equation used here is linear in the
concentrations, so it holds for frame means when each term is averaged over the frame:
the measured ``ct`` and ``cr`` enter as they are, and only the time integrals
``∫_0^t C`` and the SRTM convolution ``C_R ⊗ exp(-θt)`` are computed from the
interpolant, both **exactly** for the piecewise-linear curve (closed-form recurrences,
no fine time grid), then averaged over each frame.

Models
------
* **SRTM** (Lammertsma & Hume 1996) by the basis-function method (Gunn et al. 1997):
  ``C_T = R1 C_R + (k2 - R1 θ) C_R ⊗ exp(-θt)`` with ``θ = k2a = k2 / (1 + BP_ND)``.
  For each ``θ`` of a log-spaced grid the design ``[C_R, B_θ]`` is the same for every
  voxel: its QR factorisation is computed once and the residual sums of squares of all
  voxels follow from one matrix product. The grid minimum is refined per voxel by a
  parabola in ``log θ`` through the three grid points around it (kept only if it lowers
  the RSS). ``R1`` is the ``C_R`` coefficient, ``k2 = c + R1 θ`` (``c`` the basis
  coefficient), ``BP_ND = k2 / θ - 1`` and ``k2' = k2 / R1``. Defaults: 200 values of
  ``θ`` log-spaced in [0.005, 1] /min, which covers ``k2a = R1 k2' / (1 + BP_ND)`` for
  ``R1`` 0.5-1.5, ``k2'`` 0.05-0.6 /min and ``BP_ND`` 0-9 (wider ranges: pass ``theta``).
* **MRTM** (Ichise et al. 2003, three parameters):
  ``C_T(T) = γ1 ∫_0^T C_R + γ2 ∫_0^T C_T + γ3 C_R(T)``, ``BP_ND = -(γ1/γ2 + 1)``,
  ``k2' = γ1 / γ3``, ``R1 = γ3``, ``k2 = γ1``, ``k2a = -γ2``; frames from ``t_star`` on.
* **MRTM2** (Ichise et al. 2003, ``k2'`` fixed):
  ``C_T(T) = γ1 (∫_0^T C_R + C_R(T)/k2') + γ2 ∫_0^T C_T``; ``BP_ND = -(γ1/γ2 + 1)``,
  ``k2 = γ1``, ``R1 = γ1 / k2'``, ``k2a = -γ2``. :func:`estimate_k2_ref` gives ``k2'`` as
  the median of MRTM fits of high-binding TACs.
* **Logan reference plot** (Logan et al. 1996): ``∫C_T / C_T`` against
  ``(∫C_R + C_R / k2') / C_T`` (or ``∫C_R / C_T`` without ``k2'``), a straight line
  with slope ``DVR`` from ``t*`` on; ``BP_ND = DVR - 1``. ``t*`` is chosen by
  :func:`logan_t_star` (PMOD's "max err" rule, see there) unless given.

Where the design depends on the voxel's own integral (MRTM, MRTM2, Logan, and the
refined SRTM step), the voxel column is orthogonalised against the voxel-independent
columns (Frisch-Waugh-Lovell, Householder QR done once, projection applied twice), so
each voxel's least squares is closed-form and all voxels are solved by matrix products.
Optional frame weights ``w`` give weighted least squares (rows scaled by ``sqrt(w)``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from danemap.errors import InputError

__all__ = [
    "KineticFit",
    "estimate_k2_ref",
    "frame_mean_integral_matrix",
    "logan_ref",
    "logan_t_star",
    "mrtm",
    "mrtm2",
    "parametric_map",
    "srtm",
    "srtm_basis",
]

logger = logging.getLogger("danemap")

THETA_MIN = 0.005
THETA_MAX = 1.0
N_THETA = 200
LOGAN_MAX_REL_RESIDUAL = 0.10
CHUNK_VOXELS = 20_000
MODELS = ("srtm", "mrtm", "mrtm2", "logan")


@dataclass(frozen=True)
class KineticFit:
    """Result of a reference-tissue model fit; arrays have the voxel shape of ``ct``.

    Attributes
    ----------
    model : str
        ``"srtm"``, ``"mrtm"``, ``"mrtm2"`` or ``"logan"``.
    bpnd : numpy.ndarray
        Non-displaceable binding potential ``BP_ND``.
    r1 : numpy.ndarray
        Relative delivery ``R1 = K1 / K1'`` (NaN for Logan).
    k2 : numpy.ndarray
        Target efflux ``k2`` (/min; NaN for Logan).
    k2a : numpy.ndarray
        Apparent efflux ``k2a = k2 / (1 + BP_ND)`` (/min; NaN for Logan).
    k2_ref : numpy.ndarray
        Reference efflux ``k2'`` (/min): estimated (SRTM ``k2 / R1``, MRTM ``γ1/γ3``) or
        the value given (MRTM2, Logan; NaN for Logan without ``k2'``).
    rss : numpy.ndarray
        Weighted residual sum of squares of the fitted equation (for Logan, of the plot).
    t_star : float
        Start (minutes) of the first frame used in the fit.
    intercept : numpy.ndarray
        Logan plot intercept (NaN for the other models).
    at_bound : numpy.ndarray of bool
        SRTM: the best ``θ`` is the first or last grid value (a constrained fit; typical
        of reference-like voxels, where ``θ`` is not identifiable); False elsewhere.
    """

    model: str
    bpnd: np.ndarray
    r1: np.ndarray
    k2: np.ndarray
    k2a: np.ndarray
    k2_ref: np.ndarray
    rss: np.ndarray
    t_star: float
    intercept: np.ndarray
    at_bound: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        """Return the array fields by name (``bpnd``, ``r1``, ... ``at_bound``)."""
        return {"bpnd": self.bpnd, "r1": self.r1, "k2": self.k2, "k2a": self.k2a,
                "k2_ref": self.k2_ref, "rss": self.rss, "intercept": self.intercept,
                "at_bound": self.at_bound}


# --------------------------------------------------------------------------- validation
def _frames(start: Any, end: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(start, dtype=np.float64)
    e = np.asarray(end, dtype=np.float64)
    if s.ndim != 1 or e.ndim != 1:
        raise InputError(f"frame times: expected 1-D start and end arrays (minutes), found "
                         f"shapes {s.shape} and {e.shape}")
    if s.shape != e.shape:
        raise InputError(f"frame times: start has {s.size} frames but end has {e.size}")
    if s.size == 0:
        raise InputError("frame times: expected at least one frame, found none")
    if not (np.isfinite(s).all() and np.isfinite(e).all()):
        raise InputError("frame times: expected finite start and end times, found NaN/inf")
    if s[0] < 0:
        raise InputError(f"frame times: expected start >= 0 (minutes after injection), "
                         f"found {s[0]!r}")
    bad = np.flatnonzero(e <= s)
    if bad.size:
        raise InputError(f"frame times: expected end > start, found end <= start at frame "
                         f"{int(bad[0])} ({s[bad[0]]!r} -> {e[bad[0]]!r})")
    over = np.flatnonzero(s[1:] < e[:-1] - 1e-9)
    if over.size:
        i = int(over[0])
        raise InputError(f"frame times: expected increasing, non-overlapping frames, found "
                         f"frame {i + 1} starting at {s[i + 1]!r} before frame {i} ends at "
                         f"{e[i]!r}")
    return s, e


def _tacs(cr: Any, ct: Any, n: int) -> tuple[np.ndarray, np.ndarray, bool]:
    r = np.asarray(cr, dtype=np.float64)
    if r.shape != (n,):
        raise InputError(f"reference TAC: expected shape ({n},) (one value per frame), found "
                         f"{r.shape}")
    if not np.isfinite(r).all():
        raise InputError(f"reference TAC: expected finite values, found NaN/inf at frames "
                         f"{np.flatnonzero(~np.isfinite(r)).tolist()}")
    if not np.any(r != 0):
        raise InputError("reference TAC: every frame is 0")
    t = np.asarray(ct, dtype=np.float64)
    single = t.ndim == 1
    if single:
        t = t[:, None]
    if t.ndim != 2 or t.shape[0] != n:
        raise InputError(f"target TACs: expected shape ({n},) or ({n}, n_voxels), found "
                         f"{np.shape(ct)}")
    if not np.isfinite(t).all():
        cols = np.flatnonzero(~np.isfinite(t).all(axis=0))
        raise InputError(f"target TACs: expected finite values, found NaN/inf in "
                         f"{cols.size} voxel(s) (first: column {int(cols[0])})")
    return r, t, single


def _weights(weights: Any, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise InputError(f"weights: expected shape ({n},), found {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise InputError("weights: expected finite values >= 0, found negative or NaN/inf")
    if not (w > 0).any():
        raise InputError("weights: every weight is 0")
    return w


def _positive(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected a positive number, found {value!r}") from None
    if not (np.isfinite(v) and v > 0):
        raise InputError(f"{name}: expected a positive finite number, found {value!r}")
    return v


def _used_frames(s: np.ndarray, w: np.ndarray, t_star: float, n_par: int,
                 model: str) -> np.ndarray:
    t_star = float(t_star)
    if not np.isfinite(t_star) or t_star < 0:
        raise InputError(f"{model}: t_star: expected a time >= 0 (minutes), found {t_star!r}")
    use = (s >= t_star - 1e-9) & (w > 0)
    if int(use.sum()) < n_par + 1:
        raise InputError(
            f"{model}: expected at least {n_par + 1} frames with non-zero weight from "
            f"t_star = {t_star:g} min on ({n_par} parameters), found {int(use.sum())} "
            f"of {s.size}")
    return use


# ------------------------------------------------------------------- the interpolant
def _knots(s: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knots (0, boundaries, mid-times) and the matrix L with f(knots) = L @ frame values."""
    mid = 0.5 * (s + e)
    knots = np.unique(np.concatenate([[0.0], s, e, mid]))
    n = s.size
    xs = np.concatenate([[0.0], mid])
    # the value at each knot as a linear combination of (0, v_0, ..., v_{n-1})
    lin = np.zeros((knots.size, n + 1))
    for k, t in enumerate(knots):
        if n == 1:
            j = 0
        else:
            j = int(np.clip(np.searchsorted(xs, t, side="right") - 1, 0, xs.size - 2))
        a = (t - xs[j]) / (xs[j + 1] - xs[j])
        lin[k, j] += 1.0 - a
        lin[k, j + 1] += a
    return knots, lin[:, 1:]


def _running_integral(knots: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Exact ∫_0^t f at the knots of a piecewise-linear f (trapezoid); f (n_knots, ...)."""
    h = np.diff(knots).reshape((-1,) + (1,) * (f.ndim - 1))
    seg = 0.5 * h * (f[1:] + f[:-1])
    out = np.zeros_like(f)
    np.cumsum(seg, axis=0, out=out[1:])
    return out


def frame_mean_integral_matrix(start: Any, end: Any) -> np.ndarray:
    """Matrix ``M`` with ``M @ c`` = frame means of ``∫_0^t c`` for frame-mean TACs ``c``.

    ``c`` is interpolated linearly through the frame mid-times from ``(0, 0)`` (see the
    module notes); its running integral is piecewise quadratic and averaged exactly.

    Parameters
    ----------
    start, end : array_like
        Frame start and end times (minutes after injection).

    Returns
    -------
    numpy.ndarray
        (``n_frames``, ``n_frames``) matrix.
    """
    s, e = _frames(start, end)
    knots, lin = _knots(s, e)
    f = lin  # (n_knots, n_frames): column j is the interpolant of the j-th unit TAC
    cum = _running_integral(knots, f)
    h = np.diff(knots)[:, None]
    # ∫ over each segment of the running integral: I_a h + h^2 (f_a/3 + f_b/6)
    seg = cum[:-1] * h + h * h * (f[:-1] / 3.0 + f[1:] / 6.0)
    acc = np.zeros_like(cum)
    np.cumsum(seg, axis=0, out=acc[1:])
    ia = np.searchsorted(knots, s)
    ib = np.searchsorted(knots, e)
    return (acc[ib] - acc[ia]) / (e - s)[:, None]


def _conv_at_knots(knots: np.ndarray, f: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Exact ``y(t) = ∫_0^t f(u) exp(-θ(t-u)) du`` at the knots for piecewise-linear f.

    ``f`` (n_knots,), ``theta`` any shape; returns (n_knots, *theta.shape).
    """
    y = np.zeros((knots.size, *theta.shape))
    for k in range(knots.size - 1):
        h = knots[k + 1] - knots[k]
        x = theta * h
        e1 = -np.expm1(-x)  # 1 - exp(-x)
        a_over_h = np.where(x > 1e-8, e1 / np.where(x > 0, x, 1.0), 1.0 - 0.5 * x)
        small = x < 1e-3
        xs = np.where(small, 1.0, x)
        g = np.where(small, 0.5 - x / 3.0 + x * x / 8.0 - x**3 / 30.0,
                     (e1 - xs * np.exp(-xs)) / (xs * xs))
        q = h * (a_over_h - g)
        p = h * a_over_h - q
        y[k + 1] = y[k] * np.exp(-x) + f[k] * p + f[k + 1] * q
    return y


def srtm_basis(start: Any, end: Any, cr: Any, theta: Any) -> np.ndarray:
    """Frame means of the SRTM basis ``B_θ = C_R ⊗ exp(-θt)`` (Gunn et al. 1997).

    Computed exactly for the piecewise-linear interpolant of ``cr`` (module notes), using
    ``∫_a^b y = (∫_a^b C_R - y(b) + y(a)) / θ`` for ``y' = C_R - θ y``.

    Parameters
    ----------
    start, end : array_like
        Frame start and end times (minutes after injection).
    cr : array_like
        Frame-mean reference TAC, (``n_frames``,).
    theta : array_like
        Rate constants (/min, > 0), any shape.

    Returns
    -------
    numpy.ndarray
        (``n_frames``, ``*theta.shape``).
    """
    s, e = _frames(start, end)
    r = np.asarray(cr, dtype=np.float64)
    if r.shape != s.shape:
        raise InputError(f"reference TAC: expected shape {s.shape}, found {r.shape}")
    th = np.asarray(theta, dtype=np.float64)
    if not (np.isfinite(th).all() and (th > 0).all()):
        raise InputError("theta: expected finite values > 0")
    return _basis(s, e, r, th)


def _basis(s: np.ndarray, e: np.ndarray, r: np.ndarray, th: np.ndarray) -> np.ndarray:
    knots, lin = _knots(s, e)
    f = lin @ r
    y = _conv_at_knots(knots, f, th)
    cum = _running_integral(knots, f)
    ia = np.searchsorted(knots, s)
    ib = np.searchsorted(knots, e)
    shape = (-1,) + (1,) * th.ndim
    d_int = (cum[ib] - cum[ia]).reshape(shape)
    return (d_int - (y[ib] - y[ia])) / (th * (e - s).reshape(shape))


# ----------------------------------------------------------------- batched least squares
def _project_out(q: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Return x minus its projection on the orthonormal columns of q (applied twice)."""
    for _ in range(2):
        x = x - q @ (q.T @ x)
    return x


def _fwl(a: np.ndarray, v: np.ndarray, y: np.ndarray,
         sw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-voxel least squares of y on [a, v]: a (n, p) shared, v and y (n, m) per voxel.

    Returns the shared-column coefficients (p, m), the voxel-column coefficient (m,)
    and the weighted RSS (m,). Voxels whose voxel column lies in span(a) get NaN.
    """
    from scipy.linalg import solve_triangular

    aw = a * sw[:, None]
    vw = v * sw[:, None]
    yw = y * sw[:, None]
    q, rr = np.linalg.qr(aw)
    vp = _project_out(q, vw)
    yp = _project_out(q, yw)
    vv = np.einsum("ij,ij->j", vp, vp)
    scale = np.einsum("ij,ij->j", vw, vw)
    ok = vv > 1e-24 * np.maximum(scale, np.finfo(float).tiny)
    g = np.where(ok, np.einsum("ij,ij->j", vp, yp) / np.where(ok, vv, 1.0), np.nan)
    res = yp - vp * g
    rss = np.einsum("ij,ij->j", res, res)
    coef = solve_triangular(rr, q.T @ (yw - vw * np.nan_to_num(g)), check_finite=False)
    coef[:, ~np.isfinite(g)] = np.nan
    return coef, g, rss


def _nan(shape: tuple[int, ...]) -> np.ndarray:
    return np.full(shape, np.nan)


def _out(single: bool, x: np.ndarray) -> np.ndarray:
    return np.asarray(x[0]) if single else x


def _fit(model: str, single: bool, t_star: float, bp: np.ndarray, r1: np.ndarray,
         k2: np.ndarray, k2a: np.ndarray, k2_ref: np.ndarray, rss: np.ndarray,
         intercept: np.ndarray, at_bound: np.ndarray | None = None) -> KineticFit:
    bound = np.zeros(bp.shape, dtype=bool) if at_bound is None else at_bound
    return KineticFit(model, _out(single, bp), _out(single, r1), _out(single, k2),
                      _out(single, k2a), _out(single, k2_ref), _out(single, rss),
                      float(t_star), _out(single, intercept), _out(single, bound))


def _degenerate(ct: np.ndarray, use: np.ndarray, model: str) -> np.ndarray:
    zero = ~np.any(ct[use] != 0, axis=0)
    if zero.any():
        logger.warning("%s: %d voxel(s) are 0 in every fitted frame; their parameters "
                       "are NaN", model, int(zero.sum()))
    return zero


# ------------------------------------------------------------------------------ SRTM
def srtm(ct: Any, cr: Any, start: Any, end: Any, *, theta: Any = None,
         weights: Any = None, refine: bool = True,
         chunk_size: int = CHUNK_VOXELS, warn: bool = True) -> KineticFit:
    """Fit SRTM by the basis-function method (Lammertsma & Hume 1996; Gunn et al. 1997).

    Parameters
    ----------
    ct : array_like
        Frame-mean target TAC(s), (``n_frames``,) or (``n_frames``, ``n_voxels``).
    cr : array_like
        Frame-mean reference TAC, (``n_frames``,).
    start, end : array_like
        Frame start and end times (minutes after injection; injection at 0).
    theta : array_like or None
        Increasing grid of ``θ = k2a`` values (/min, > 0); default 200 values
        log-spaced in [0.005, 1] /min.
    weights : array_like or None
        Frame weights (weighted least squares); default uniform.
    refine : bool
        Refine the grid minimum per voxel by a parabola in ``log θ`` (module notes).
    chunk_size : int
        Voxels per block of the grid search and the refinement (bounds memory to about
        ``24 * len(theta) * chunk_size`` bytes).
    warn : bool
        Log a warning when voxels have their best ``θ`` at the edge of the grid.

    Returns
    -------
    KineticFit
        ``bpnd``, ``r1``, ``k2``, ``k2a`` (= the fitted ``θ``), ``k2_ref = k2 / R1``,
        ``rss``, ``at_bound``; ``t_star`` is the first frame's start.

    Raises
    ------
    InputError
        On malformed frame times, TACs, weights or ``theta``, or fewer than 4 weighted
        frames.
    """
    s, e = _frames(start, end)
    r, y, single = _tacs(cr, ct, s.size)
    w = _weights(weights, s.size)
    _used_frames(s, w, float(s[0]), 3, "srtm")  # R1, k2, theta
    if theta is None:
        th = np.geomspace(THETA_MIN, THETA_MAX, N_THETA)
    else:
        th = np.asarray(theta, dtype=np.float64)
        if th.ndim != 1 or th.size < 3 or not np.isfinite(th).all() or (th <= 0).any() \
                or (np.diff(th) <= 0).any():
            raise InputError(f"theta: expected an increasing 1-D grid of at least 3 values "
                             f"> 0 (/min), found {np.array2string(th, threshold=6)}")
    if chunk_size < 1:
        raise InputError(f"chunk_size: expected >= 1, found {chunk_size!r}")
    sw = np.sqrt(w)
    basis = _basis(s, e, r, th)  # (n, n_theta)
    design = np.stack([np.broadcast_to(r[:, None], basis.shape), basis], axis=-1)
    design = design * sw[:, None, None]  # (n, n_theta, 2)
    q, rr = np.linalg.qr(np.moveaxis(design, 1, 0))  # (n_theta, n, 2), (n_theta, 2, 2)
    qt = np.moveaxis(q, 2, 1).reshape(-1, s.size)  # (2 n_theta, n)
    m = y.shape[1]
    best = np.empty(m, dtype=np.intp)
    rss = np.empty(m)
    coef = np.empty((2, m))
    nb = th.size
    rss3 = np.full((3, m), np.nan)  # RSS at best-1, best, best+1 (for the refinement)
    for c0 in range(0, m, chunk_size):
        sl = slice(c0, min(m, c0 + chunk_size))
        yw = y[:, sl] * sw[:, None]
        z = (qt @ yw).reshape(nb, 2, -1)
        all_rss = np.einsum("ij,ij->j", yw, yw)[None, :] - np.einsum("tkj,tkj->tj", z, z)
        b = np.argmin(all_rss, axis=0)
        cols = np.arange(b.size)
        best[sl] = b
        rss[sl] = np.maximum(all_rss[b, cols], 0.0)
        zb = z[b, :, cols]  # (m_chunk, 2)
        coef[:, sl] = np.linalg.solve(rr[b], zb[..., None])[..., 0].T
        for k, off in enumerate((-1, 0, 1)):
            idx = np.clip(b + off, 0, nb - 1)
            rss3[k, sl] = all_rss[idx, cols]
    k2a = th[best]
    r1, cb = coef[0].copy(), coef[1].copy()
    if refine:
        inner = (best > 0) & (best < nb - 1)
        lo, mid, hi = rss3
        curv = hi - 2.0 * mid + lo
        u = np.log(th)
        ok = inner & (curv > 0)
        all_iv = np.flatnonzero(ok)
        for c0 in range(0, all_iv.size, chunk_size):
            iv = all_iv[c0:c0 + chunk_size]
            du = 0.5 * (u[best[iv] + 1] - u[best[iv] - 1])
            shift = -0.5 * du * (hi[iv] - lo[iv]) / curv[iv]
            shift = np.clip(shift, -du, du)
            th_new = np.exp(u[best[iv]] + shift)
            bv = _basis(s, e, r, th_new)  # (n, n_iv): one basis per voxel
            cf, gv, rs = _fwl(r[:, None], bv, y[:, iv], sw)
            better = np.isfinite(gv) & (rs < rss[iv])
            sel = iv[better]
            k2a[sel] = th_new[better]
            r1[sel] = cf[0, better]
            cb[sel] = gv[better]
            rss[sel] = rs[better]
    zero = _degenerate(y, w > 0, "srtm")
    at_edge = ((best == 0) | (best == nb - 1)) & ~zero
    if warn and at_edge.any():
        logger.warning("srtm: the best theta of %d voxel(s) is at the edge of the grid "
                       "[%g, %g] /min; widen `theta` if this is not noise", int(at_edge.sum()),
                       th[0], th[-1])
    k2 = cb + r1 * k2a
    bp = k2 / k2a - 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        k2_ref = k2 / r1
    for arr in (bp, r1, k2, k2a, k2_ref, rss):
        arr[zero] = np.nan
    return _fit("srtm", single, float(s[0]), bp, r1, k2, np.asarray(k2a, dtype=float),
                k2_ref, rss, _nan((m,)), at_edge)


# ------------------------------------------------------------------------------ MRTM
def mrtm(ct: Any, cr: Any, start: Any, end: Any, *, t_star: float = 0.0,
         weights: Any = None) -> KineticFit:
    """Fit the three-parameter multilinear reference tissue model MRTM (Ichise 2003).

    ``C_T(T) = γ1 ∫_0^T C_R + γ2 ∫_0^T C_T + γ3 C_R(T)``, fitted on the frame means
    (module notes) of the frames starting at or after ``t_star``; integrals always start
    at injection.

    Parameters
    ----------
    ct : array_like
        Frame-mean target TAC(s), (``n_frames``,) or (``n_frames``, ``n_voxels``).
    cr : array_like
        Frame-mean reference TAC, (``n_frames``,).
    start, end : array_like
        Frame start and end times (minutes after injection).
    t_star : float
        First frame start (minutes) included in the fit; default 0 (all frames).
    weights : array_like or None
        Frame weights (weighted least squares); default uniform.

    Returns
    -------
    KineticFit
        ``bpnd = -(γ1/γ2 + 1)``, ``k2_ref = γ1/γ3``, ``r1 = γ3``, ``k2 = γ1``,
        ``k2a = -γ2``, ``rss``.

    Raises
    ------
    InputError
        On malformed inputs or fewer than 4 frames from ``t_star`` on.
    """
    s, e = _frames(start, end)
    r, y, single = _tacs(cr, ct, s.size)
    w = _weights(weights, s.size)
    use = _used_frames(s, w, t_star, 3, "mrtm")
    mat = frame_mean_integral_matrix(s, e)
    a = np.stack([mat @ r, r], axis=1)[use]
    v = (mat @ y)[use]
    coef, g2, rss = _fwl(a, v, y[use], np.sqrt(w[use]))
    g1, g3 = coef
    with np.errstate(divide="ignore", invalid="ignore"):
        bp = -(g1 / g2 + 1.0)
        k2_ref = g1 / g3
    zero = _degenerate(y, use, "mrtm")
    out = [bp, g3.copy(), g1.copy(), -g2, k2_ref, rss]
    for arr in out:
        arr[zero] = np.nan
    return _fit("mrtm", single, float(s[use][0]), out[0], out[1], out[2], out[3], out[4],
                out[5], _nan((y.shape[1],)))


def mrtm2(ct: Any, cr: Any, start: Any, end: Any, k2_ref: float, *, t_star: float = 0.0,
          weights: Any = None) -> KineticFit:
    """Fit MRTM2 (Ichise et al. 2003): MRTM with the reference efflux ``k2'`` fixed.

    ``C_T(T) = γ1 (∫_0^T C_R + C_R(T) / k2') + γ2 ∫_0^T C_T`` on the frame means.

    Parameters
    ----------
    ct : array_like
        Frame-mean target TAC(s), (``n_frames``,) or (``n_frames``, ``n_voxels``).
    cr : array_like
        Frame-mean reference TAC, (``n_frames``,).
    start, end : array_like
        Frame start and end times (minutes after injection).
    k2_ref : float
        Reference-region efflux ``k2'`` (/min), e.g. from :func:`estimate_k2_ref`.
    t_star : float
        First frame start (minutes) included in the fit; default 0.
    weights : array_like or None
        Frame weights (weighted least squares); default uniform.

    Returns
    -------
    KineticFit
        ``bpnd = -(γ1/γ2 + 1)``, ``k2 = γ1``, ``r1 = γ1 / k2'``, ``k2a = -γ2``, ``rss``.

    Raises
    ------
    InputError
        On malformed inputs, ``k2_ref`` not > 0, or fewer than 3 frames from ``t_star``.
    """
    s, e = _frames(start, end)
    r, y, single = _tacs(cr, ct, s.size)
    k2r = _positive("k2_ref", k2_ref)
    w = _weights(weights, s.size)
    use = _used_frames(s, w, t_star, 2, "mrtm2")
    mat = frame_mean_integral_matrix(s, e)
    a = (mat @ r + r / k2r)[use, None]
    v = (mat @ y)[use]
    coef, g2, rss = _fwl(a, v, y[use], np.sqrt(w[use]))
    g1 = coef[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        bp = -(g1 / g2 + 1.0)
    zero = _degenerate(y, use, "mrtm2")
    out = [bp, g1 / k2r, g1.copy(), -g2, np.full(g1.shape, k2r), rss]
    for arr in out:
        arr[zero] = np.nan
    return _fit("mrtm2", single, float(s[use][0]), out[0], out[1], out[2], out[3], out[4],
                out[5], _nan((y.shape[1],)))


def estimate_k2_ref(ct_high: Any, cr: Any, start: Any, end: Any, *, t_star: float = 0.0,
                    weights: Any = None) -> float:
    """Estimate ``k2'`` for MRTM2: the median ``γ1/γ3`` of MRTM fits of high-binding TACs.

    Parameters
    ----------
    ct_high : array_like
        TAC(s) of high-binding regions or voxels, (``n_frames``,) or (``n_frames``, k).
    cr : array_like
        Frame-mean reference TAC, (``n_frames``,).
    start, end : array_like
        Frame start and end times (minutes after injection).
    t_star : float
        Passed to :func:`mrtm`.
    weights : array_like or None
        Passed to :func:`mrtm`.

    Returns
    -------
    float
        ``k2'`` (/min).

    Raises
    ------
    InputError
        If no fit gives a finite positive ``k2'``.
    """
    fit = mrtm(ct_high, cr, start, end, t_star=t_star, weights=weights)
    k = np.atleast_1d(fit.k2_ref)
    good = k[np.isfinite(k) & (k > 0)]
    if good.size == 0:
        raise InputError(f"estimate_k2_ref: no MRTM fit of the {k.size} high-binding TAC(s) "
                         f"gave a finite k2' > 0 (found {k.tolist()[:5]})")
    if good.size < k.size:
        logger.warning("estimate_k2_ref: %d of %d MRTM fits gave no finite k2' > 0 and were "
                       "ignored", k.size - good.size, k.size)
    return float(np.median(good))


# ----------------------------------------------------------------------------- Logan
def _logan_xy(y: np.ndarray, r: np.ndarray, mat: np.ndarray,
              k2_ref: float | None) -> tuple[np.ndarray, np.ndarray]:
    num_x = mat @ r if k2_ref is None else mat @ r + r / k2_ref
    with np.errstate(divide="ignore", invalid="ignore"):
        return num_x[:, None] / y, (mat @ y) / y


def logan_t_star(ct: Any, cr: Any, start: Any, end: Any, k2_ref: float | None = None, *,
                 max_rel_residual: float = LOGAN_MAX_REL_RESIDUAL,
                 min_frames: int = 3) -> float:
    """Choose the Logan ``t*``: PMOD's "max err" rule, on one (regional) TAC.

    ``t*`` is the start of the earliest frame ``k`` such that the least-squares line
    through the Logan plot points of frames ``k..n-1`` (at least ``min_frames``) deviates
    from every one of them by less than ``max_rel_residual`` (default 10 %) of the point's
    ordinate ``∫C_T / C_T``.

    Parameters
    ----------
    ct : array_like
        One target TAC (``n_frames``,); for (``n_frames``, k) the mean over columns is
        used (a high-binding region gives the most conservative ``t*``).
    cr : array_like
        Frame-mean reference TAC, (``n_frames``,).
    start, end : array_like
        Frame start and end times (minutes after injection).
    k2_ref : float or None
        Reference efflux ``k2'`` (/min); None for the plot without ``k2'``.
    max_rel_residual : float
        Largest accepted relative deviation from the line.
    min_frames : int
        Fewest frames in the linear part (>= 3).

    Returns
    -------
    float
        ``t*`` in minutes (a frame start).

    Raises
    ------
    InputError
        On malformed inputs, or if no frame satisfies the rule.
    """
    s, e = _frames(start, end)
    r, y, _ = _tacs(cr, ct, s.size)
    if not (0 < max_rel_residual < 1):
        raise InputError(f"max_rel_residual: expected a fraction in (0, 1), found "
                         f"{max_rel_residual!r}")
    if int(min_frames) < 3 or int(min_frames) > s.size:
        raise InputError(f"min_frames: expected 3 <= min_frames <= {s.size} (frames), found "
                         f"{min_frames!r}")
    k2r = None if k2_ref is None else _positive("k2_ref", k2_ref)
    tac = y.mean(axis=1)
    mat = frame_mean_integral_matrix(s, e)
    x, yy = _logan_xy(tac[:, None], r, mat, k2r)
    x, yy = x[:, 0], yy[:, 0]
    for k in range(s.size - int(min_frames) + 1):
        xs, ys = x[k:], yy[k:]
        if not (np.isfinite(xs).all() and np.isfinite(ys).all() and (tac[k:] > 0).all()):
            continue
        slope, icpt = np.polyfit(xs, ys, 1)
        dev = np.abs(ys - (slope * xs + icpt)) / np.abs(ys)
        if dev.max() < max_rel_residual:
            return float(s[k])
    raise InputError(f"logan_t_star: the Logan plot is not linear within "
                     f"{max_rel_residual:.0%} over any last {min_frames}+ frames")


def logan_ref(ct: Any, cr: Any, start: Any, end: Any, k2_ref: float | None = None, *,
              t_star: float | None = None, weights: Any = None) -> KineticFit:
    """Fit the Logan reference-tissue plot (Logan et al. 1996); ``BP_ND = DVR - 1``.

    Parameters
    ----------
    ct : array_like
        Frame-mean target TAC(s), (``n_frames``,) or (``n_frames``, ``n_voxels``).
    cr : array_like
        Frame-mean reference TAC, (``n_frames``,).
    start, end : array_like
        Frame start and end times (minutes after injection).
    k2_ref : float or None
        Reference efflux ``k2'`` (/min); None for the variant without ``k2'``
        (abscissa ``∫C_R / C_T``, valid once ``C_R / C_T`` is constant).
    t_star : float or None
        Start (minutes) of the linear part; None: :func:`logan_t_star` on the mean of
        the target columns.
    weights : array_like or None
        Frame weights of the line fit; default uniform.

    Returns
    -------
    KineticFit
        ``bpnd`` (= slope - 1), ``intercept``, ``rss`` of the plot, ``k2_ref`` as given;
        ``r1``, ``k2``, ``k2a`` are NaN. Voxels with ``C_T <= 0`` in a fitted frame get NaN.

    Raises
    ------
    InputError
        On malformed inputs, ``k2_ref`` not > 0, or fewer than 3 frames from ``t*``.
    """
    s, e = _frames(start, end)
    r, y, single = _tacs(cr, ct, s.size)
    k2r = None if k2_ref is None else _positive("k2_ref", k2_ref)
    w = _weights(weights, s.size)
    if t_star is None:
        t_star = logan_t_star(y, r, s, e, k2r)
        logger.info("logan_ref: t* = %g min (max err rule, %.0f%%)", t_star,
                    100 * LOGAN_MAX_REL_RESIDUAL)
    use = _used_frames(s, w, t_star, 2, "logan")
    mat = frame_mean_integral_matrix(s, e)
    x, yy = _logan_xy(y, r, mat, k2r)
    bad = ~np.all(y[use] > 0, axis=0)
    x[:, bad] = 1.0
    yy[:, bad] = 1.0
    coef, slope, rss = _fwl(np.ones((int(use.sum()), 1)), x[use], yy[use], np.sqrt(w[use]))
    icpt = coef[0]
    if bad.any():
        logger.warning("logan: %d voxel(s) have C_T <= 0 in a frame after t* = %g min; "
                       "their BPND is NaN", int(bad.sum()), t_star)
    out = [slope - 1.0, _nan(slope.shape), _nan(slope.shape), _nan(slope.shape),
           np.full(slope.shape, np.nan if k2r is None else k2r), rss]
    for arr in (out[0], out[5], icpt):
        arr[bad] = np.nan
    return _fit("logan", single, float(s[use][0]), out[0], out[1], out[2], out[3], out[4],
                out[5], icpt)


# ------------------------------------------------------------------- parametric maps
def parametric_map(data4d: Any, mask: Any, start: Any, end: Any, ref_tac: Any,
                   model: str = "srtm", *, chunk_size: int = CHUNK_VOXELS,
                   **kwargs: Any) -> dict[str, np.ndarray]:
    """Fit a reference-tissue model voxel-wise to a 4-D dynamic image.

    Voxels are gathered in blocks of ``chunk_size`` (fancy indexing, so a Fortran-ordered
    array is never copied whole), fitted with matrix products and written back.

    Parameters
    ----------
    data4d : array_like
        Dynamic image (x, y, z, ``n_frames``), decay-corrected frame means.
    mask : array_like of bool
        (x, y, z); voxels to fit.
    start, end : array_like
        Frame start and end times (minutes after injection).
    ref_tac : array_like
        Frame-mean reference TAC, (``n_frames``,).
    model : {"srtm", "mrtm", "mrtm2", "logan"}
        The model; ``kwargs`` go to :func:`srtm`, :func:`mrtm`, :func:`mrtm2` (needs
        ``k2_ref``) or :func:`logan_ref`.
    chunk_size : int
        Voxels per block.
    **kwargs
        Model options (``weights``, ``theta``, ``t_star``, ``k2_ref`` ...). For Logan
        with ``t_star=None`` the rule runs once on the mean TAC of the mask.

    Returns
    -------
    dict of str to numpy.ndarray
        3-D float64 maps ``bpnd``, ``r1``, ``k2``, ``k2a``, ``k2_ref``, ``rss``,
        ``intercept``, ``at_bound`` (1.0 where the SRTM ``θ`` is at the grid edge), NaN
        outside the mask, and ``t_star`` (0-d).

    Raises
    ------
    InputError
        On an unknown model, shapes that do not match, an empty mask or the errors of
        the model.
    """
    if model not in MODELS:
        import difflib

        near = difflib.get_close_matches(str(model), MODELS, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise InputError(f"model: expected one of {list(MODELS)}, found {model!r}{hint}")
    if not hasattr(data4d, "shape") or len(data4d.shape) != 4:
        raise InputError(f"data4d: expected a 4-D array (x, y, z, frames), found shape "
                         f"{getattr(data4d, 'shape', None)}")
    m = np.asarray(mask)
    if m.shape != tuple(data4d.shape[:3]):
        raise InputError(f"mask: expected shape {tuple(data4d.shape[:3])} (the image grid), "
                         f"found {m.shape}")
    s, e = _frames(start, end)
    if data4d.shape[3] != s.size:
        raise InputError(f"data4d: {data4d.shape[3]} frames but the frame times give "
                         f"{s.size}")
    if int(chunk_size) < 1:
        raise InputError(f"chunk_size: expected >= 1, found {chunk_size!r}")
    coords = np.nonzero(m.astype(bool))
    n_vox = coords[0].size
    if n_vox == 0:
        raise InputError("mask: no voxel is selected")
    fits: dict[str, Callable[..., KineticFit]] = {"srtm": srtm, "mrtm": mrtm, "mrtm2": mrtm2,
                                                  "logan": logan_ref}
    fit_fn = fits[model]
    if model == "logan" and kwargs.get("t_star") is None:
        mean = np.zeros(s.size)
        for c0 in range(0, n_vox, int(chunk_size)):
            c = tuple(ix[c0:c0 + int(chunk_size)] for ix in coords)
            mean += np.asarray(data4d[c], dtype=np.float64).sum(axis=0)
        kwargs["t_star"] = logan_t_star(mean / n_vox, ref_tac, s, e, kwargs.get("k2_ref"))
        logger.info("parametric_map: Logan t* = %g min from the mask's mean TAC",
                    kwargs["t_star"])
    if model == "srtm":
        kwargs["warn"] = False
    names = ("bpnd", "r1", "k2", "k2a", "k2_ref", "rss", "intercept", "at_bound")
    flat = {k: np.full(n_vox, np.nan) for k in names}
    t_star = np.nan
    for c0 in range(0, n_vox, int(chunk_size)):
        c = tuple(ix[c0:c0 + int(chunk_size)] for ix in coords)
        block = np.asarray(data4d[c], dtype=np.float64).T  # (frames, voxels)
        fit = fit_fn(block, ref_tac, s, e, **kwargs)
        for k, v in fit.as_dict().items():
            flat[k][c0:c0 + block.shape[1]] = v
        t_star = fit.t_star
    n_bound = int(np.nansum(flat["at_bound"]))
    if n_bound:
        logger.warning("parametric_map: the SRTM theta of %d of %d voxels is at the edge of "
                       "the grid (reference-like voxels, or widen `theta`); see the "
                       "'at_bound' map", n_bound, n_vox)
    out: dict[str, np.ndarray] = {}
    for k in names:
        vol = np.full(m.shape, np.nan)
        vol[coords] = flat[k]
        out[k] = vol
    out["t_star"] = np.asarray(t_star)
    return out
