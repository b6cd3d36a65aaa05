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


def usable_columns(ts: np.ndarray) -> np.ndarray:
    """Columns that are finite everywhere and not constant."""
    finite = np.isfinite(ts).all(axis=0)
    out = finite.copy()
    if finite.any():
        out[finite] = np.ptp(ts[:, finite], axis=0) > 0
    return out


def connectivity(ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Correlation and partial correlation from the empirical covariance.

    Equals ``ConnectivityMeasure(kind=..., cov_estimator=EmpiricalCovariance())`` on the
    usable columns; unusable (empty/constant) regions get NaN rows and columns. The
    partial correlation is NaN when the covariance is singular (fewer kept volumes than
    usable regions).
    """
    n_t, n_r = ts.shape
    good = usable_columns(ts)
    corr = np.full((n_r, n_r), np.nan)
    part = np.full((n_r, n_r), np.nan)
    if good.sum() == 0:
        return corr, part
    x = ts[:, good]
    xc = x - x.mean(axis=0)
    cov = xc.T @ xc / n_t
    d = 1.0 / np.sqrt(np.diag(cov))
    c = cov * d[:, None] * d[None, :]
    np.fill_diagonal(c, 1.0)
    corr[np.ix_(good, good)] = c
    if n_t > good.sum():
        try:
            prec = np.linalg.inv(cov)
        except np.linalg.LinAlgError:
            prec = None
        if prec is not None and np.all(np.isfinite(prec)):
            dp = 1.0 / np.sqrt(np.diag(prec))
            pc = -prec * dp[:, None] * dp[None, :]
            np.fill_diagonal(pc, 1.0)
            part[np.ix_(good, good)] = pc
    else:
        log.warning("partial correlation needs more volumes (%d) than usable regions (%d); "
                    "it is NaN", n_t, int(good.sum()))
    return corr, part


def fisher_z(r: np.ndarray) -> np.ndarray:
    """``arctanh(r)`` with the diagonal (r = 1) set to NaN."""
    z = np.arctanh(np.clip(r, -1 + 1e-12, 1 - 1e-12))
    if z.ndim == 2 and z.shape[0] == z.shape[1]:
        np.fill_diagonal(z, np.nan)
    return z


def network_scores(corr: np.ndarray, names: Sequence[str], n_voxels: Sequence[int] | None,
                   networks: Mapping[str, Sequence[tuple[str, str]]]) -> pd.DataFrame:
    """Mean within-network Fisher z per network, with edge and voxel bookkeeping.

    An edge is dropped (and listed) when either region is empty or its time series is
    unusable; the score is the mean Fisher z of the remaining edges (NaN if none).
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
                regions[n] = None if n_voxels is None else int(n_voxels[index[n]])
            val = z[index[a], index[b]]
            if np.isfinite(val):
                zs.append(float(val))
            else:
                dropped.append(f"{a}__{b}")
        counts = [v for v in regions.values() if v is not None]
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
            "n_voxels_total": int(sum(counts)) if counts else None,
            "n_voxels_min": int(min(counts)) if counts else None,
            "small_regions": ";".join(small),
            "region_voxels": ";".join(f"{n}={v}" for n, v in regions.items()),
        })
        if dropped:
            log.info("network %s: dropped %d of %d edges with empty/unusable regions: %s",
                     net, len(dropped), len(pairs), ", ".join(dropped))
    return pd.DataFrame(rows)


def vectorise(mat: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Upper triangle (no diagonal) as ``{"A__B": value}`` in row-major order."""
    iu = np.triu_indices(len(names), k=1)
    return {f"{names[int(i)]}__{names[int(j)]}": float(mat[i, j])
            for i, j in zip(*iu, strict=True)}
