"""The one region-mean kernel every marker family uses.

Voxels are first put in region order once (:func:`voxel_order`); a region mean is then the
sum of one contiguous block of columns (:func:`block_means`). The functional family streams
a BOLD run's atlas voxels into that order and averages every time point at once; a 3D
image (T1w, PET) is the one-row case (:func:`danemap.atlas.region_means`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["block_means", "voxel_order"]


def voxel_order(labels: np.ndarray, region_labels: np.ndarray,
                mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat (Fortran-order) voxel indices sorted by region, region starts and counts.

    Parameters
    ----------
    labels : ndarray (X, Y, Z) of int
        Label image on the image grid.
    region_labels : ndarray (R,) of int
        Label value of each region, in output order.
    mask : ndarray (X, Y, Z) of bool or None
        Voxels to use (e.g. a brain mask); voxels outside are ignored.

    Returns
    -------
    order : ndarray (N,) of intp
        Fortran-order flat indices of the atlas voxels, grouped by region (output order).
    starts : ndarray (R,) of intp
        Column of each region's first voxel in ``order``.
    counts : ndarray (R,) of int64
        Voxels per region (0 for empty regions).
    """
    flat = np.asarray(labels).ravel(order="F").astype(np.int64)
    if mask is not None:
        flat = np.where(np.asarray(mask).ravel(order="F") != 0, flat, 0)
    lut = np.full(max(int(flat.max(initial=0)), int(region_labels.max(initial=0))) + 1, -1,
                  dtype=np.int64)
    lut[region_labels] = np.arange(region_labels.size)
    lut[0] = -1
    pos = lut[flat]
    sel = np.flatnonzero(pos >= 0)
    order = sel[np.argsort(pos[sel], kind="stable")]
    counts = np.bincount(pos[sel], minlength=region_labels.size).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.intp)
    return order.astype(np.intp), starts, counts


def block_means(data: Any, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mean of each region's block of columns, for every row.

    Parameters
    ----------
    data : ndarray (T, N)
        Values with the voxels in region order (:func:`voxel_order`), any float dtype.
    starts, counts : ndarray (R,)
        First column and number of columns of each region.

    Returns
    -------
    ndarray (T, R) of float64
        Region means; NaN columns for empty regions.

    Notes
    -----
    One pairwise float64 sum per region's block: about 3x faster than ``np.add.reduceat``
    with a dtype cast, and no less accurate.
    """
    data = np.asarray(data)
    out = np.full((data.shape[0], counts.size), np.nan)
    nz = counts > 0
    if nz.any():
        sums = np.column_stack([data[:, s:s + c].sum(axis=1, dtype=np.float64)
                                for s, c in zip(starts[nz], counts[nz], strict=True)])
        out[:, nz] = sums / counts[nz]
    return out
