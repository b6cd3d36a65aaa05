"""Connectivity matrices, Fisher z and network scores (NaN-aware)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from danemap._utils.logging import get_logger

__all__: list[str] = []

log = get_logger("markers.functional")

#: Regions with fewer voxels than this are flagged ``small`` in the network table.
SMALL_REGION_VOXELS = 5


#: A correlation matrix whose smallest eigenvalue is below this fraction of its largest is
#: treated as singular (partial correlation NaN): float64 inversion loses ~all digits there.
_SINGULAR_RTOL = 1e-10


def usable_columns(ts: np.ndarray) -> np.ndarray:
    """Columns that are finite everywhere and not constant."""
    finite = np.isfinite(ts).all(axis=0)
    out = finite.copy()
    if finite.any():
        out[finite] = np.ptp(ts[:, finite], axis=0) > 0
    return out


def connectivity(ts: np.ndarray, partial: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Correlation and partial correlation from the empirical covariance.

    Equals ``ConnectivityMeasure(kind=..., cov_estimator=EmpiricalCovariance())`` on the
    usable columns; unusable (empty/constant) regions get NaN rows and columns. The
    partial correlation is NaN when the covariance is singular (fewer kept volumes than
    usable regions).

    Parameters
    ----------
    ts : ndarray (T, R)
        Denoised region time series (NaN columns for empty regions).
    partial : bool
        Compute the partial correlation (inverts the covariance).

    Returns
    -------
    corr : ndarray (R, R)
        Pearson correlation, diagonal 1; NaN rows/columns for unusable regions.
    partial : ndarray (R, R) or None
        Partial correlation (from the precision matrix), diagonal 1; all NaN when the
        covariance is singular; None when ``partial`` is false.
    """
    n_t, n_r = ts.shape
    good = usable_columns(ts)
    corr = np.full((n_r, n_r), np.nan)
    part = np.full((n_r, n_r), np.nan) if partial else None
    if good.sum() == 0:
        return corr, part
    x = ts[:, good]
    xc = x - x.mean(axis=0)
    cov = xc.T @ xc / n_t
    d = 1.0 / np.sqrt(np.diag(cov))
    c = cov * d[:, None] * d[None, :]
    np.fill_diagonal(c, 1.0)
    corr[np.ix_(good, good)] = c
    if part is None:
        return corr, part
    if n_t <= good.sum():
        log.warning("partial correlation needs more volumes (%d) than usable regions (%d); "
                    "it is NaN", n_t, int(good.sum()))
        return corr, part
    # Denoising removes degrees of freedom (confounds, filter band), so the covariance can
    # be singular with more volumes than regions; its inverse would then be noise.
    eig = np.linalg.eigvalsh(c)
    if eig[0] <= _SINGULAR_RTOL * eig[-1]:
        log.warning("partial correlation: the covariance of the %d usable regions is "
                    "singular (smallest/largest eigenvalue %.1e): the denoised series have "
                    "fewer degrees of freedom than regions; it is NaN. Keep more volumes, "
                    "regress fewer confounds or use fewer regions", int(good.sum()),
                    max(eig[0], 0.0) / eig[-1])
        return corr, part
    prec = np.linalg.inv(cov)
    dp = 1.0 / np.sqrt(np.diag(prec))
    pc = -prec * dp[:, None] * dp[None, :]
    np.fill_diagonal(pc, 1.0)
    part[np.ix_(good, good)] = pc
    return corr, part


def fisher_z(r: np.ndarray) -> np.ndarray:
    """``arctanh(r)`` with the diagonal (r = 1) set to NaN."""
    z = np.arctanh(np.clip(r, -1 + 1e-12, 1 - 1e-12))
    if z.ndim == 2 and z.shape[0] == z.shape[1]:
        np.fill_diagonal(z, np.nan)
    return z


def _known_count(value: Any) -> int | None:
    """Return a voxel count as int, or None when unknown (None or NaN)."""
    if value is None:
        return None
    v = float(value)
    return None if not np.isfinite(v) else int(v)


def network_scores(corr: np.ndarray, names: Sequence[str],
                   n_voxels: Sequence[int | float | None] | None,
                   networks: Mapping[str, Sequence[tuple[str, str]]]) -> pd.DataFrame:
    """Mean within-network Fisher z per network, with edge and voxel bookkeeping.

    An edge is dropped (and listed) when either region is empty or its time series is
    unusable; the score is the mean Fisher z of the remaining edges (NaN if none).

    Parameters
    ----------
    corr : ndarray (R, R)
        Correlation matrix (NaN rows/columns for unusable regions).
    names : sequence of str
        Region names, in the order of ``corr``.
    n_voxels : sequence of int, float or None, or None
        Voxel count per region (same order); None or NaN entries are unknown counts
        (precomputed time series), None: every count unknown.
    networks : mapping of str to sequence of (str, str)
        ``{network: [(region_a, region_b), ...]}``.

    Returns
    -------
    pandas.DataFrame
        One row per network: ``network``, ``mean_z``, ``mean_r``, ``n_edges``,
        ``n_edges_planned``, ``n_edges_dropped``, ``dropped_edges``, ``n_regions``,
        ``n_voxels_total`` and ``n_voxels_min`` (nullable integers, missing when any
        region's count is unknown), ``small_regions`` (regions with a known count under
        ``SMALL_REGION_VOXELS``) and ``region_voxels`` (``name=count``, ``name=n/a``
        when unknown).
    """
    index = {n: i for i, n in enumerate(names)}
    z = fisher_z(corr)
    rows: list[dict[str, Any]] = []
    for net, pairs in networks.items():
        zs: list[float] = []
        dropped: list[str] = []
        regions: dict[str, int | None] = {}
        for a, b in pairs:
            for n in (a, b):
                regions[n] = None if n_voxels is None else _known_count(n_voxels[index[n]])
            val = z[index[a], index[b]]
            if np.isfinite(val):
                zs.append(float(val))
            else:
                dropped.append(f"{a}__{b}")
        counts = [v for v in regions.values() if v is not None]
        all_known = len(counts) == len(regions) and bool(counts)
        small = sorted(n for n, v in regions.items() if v is not None and v < SMALL_REGION_VOXELS)
        mean_z = float(np.mean(zs)) if zs else float("nan")
        rows.append({
            "network": net,
            "mean_z": mean_z,
            "mean_r": float(np.tanh(mean_z)),
            "n_edges": len(zs),
            "n_edges_planned": len(pairs),
            "n_edges_dropped": len(dropped),
            "dropped_edges": ";".join(dropped),
            "n_regions": len(regions),
            "n_voxels_total": sum(counts) if all_known else None,
            "n_voxels_min": min(counts) if all_known else None,
            "small_regions": ";".join(small),
            "region_voxels": ";".join(f"{n}={'n/a' if v is None else v}"
                                      for n, v in regions.items()),
        })
        if dropped:
            log.info("network %s: dropped %d of %d edges with empty/unusable regions: %s",
                     net, len(dropped), len(pairs), ", ".join(dropped))
    out = pd.DataFrame(rows, columns=_NETWORK_TABLE_COLUMNS)
    return out.astype({"n_voxels_total": "Int64", "n_voxels_min": "Int64"})


_NETWORK_TABLE_COLUMNS = ["network", "mean_z", "mean_r", "n_edges", "n_edges_planned",
                          "n_edges_dropped", "dropped_edges", "n_regions", "n_voxels_total",
                          "n_voxels_min", "small_regions", "region_voxels"]


def vectorise(mat: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Upper triangle (no diagonal) as ``{"A__B": value}`` in row-major order.

    Parameters
    ----------
    mat : ndarray (R, R)
        Square matrix.
    names : sequence of str
        Region names labelling its rows and columns.

    Returns
    -------
    dict of str to float
        ``{f"{names[i]}__{names[j]}": mat[i, j]}`` for ``i < j``.
    """
    iu = np.triu_indices(len(names), k=1)
    return {f"{names[int(i)]}__{names[int(j)]}": float(mat[i, j])
            for i, j in zip(*iu, strict=True)}
