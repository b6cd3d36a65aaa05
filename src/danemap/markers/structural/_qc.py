"""QC figure of the raw-T1w path: the T1w with the warped atlas outlines through the striatum."""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np

__all__ = ["write_qc_figure"]

STRIATUM = ("Caudate", "Putamen", "NAcc")


def write_qc_figure(t1w_img: Any, labels_img: Any, path: str | os.PathLike[str],
                    region_indices: Any = None) -> None:
    """Write a PNG: axial and coronal T1w slices through the striatum with label outlines.

    Parameters
    ----------
    t1w_img : nibabel.Nifti1Image
        The (bias-corrected) T1w in native space.
    labels_img : nibabel.Nifti1Image
        The warped atlas labels on the same grid (:attr:`T1wResult.labels_img`).
    path : path-like
        The PNG to write (atomically, through :func:`danemap.io.atomic_write_bytes`).
    region_indices : sequence of int or None
        Labels whose centroid sets the slices (default: every non-zero label's voxels
        weighted equally; pass the striatal indices for striatal slices).

    Raises
    ------
    InputError
        When the two images do not share a grid or the labels are empty.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from scipy import ndimage

    from danemap.errors import InputError
    from danemap.io import atomic_write_bytes

    t1 = np.asarray(t1w_img.dataobj, dtype=np.float32)
    lab = np.asarray(labels_img.dataobj).astype(np.int32)
    if t1.shape[:3] != lab.shape[:3]:
        raise InputError(f"labels_img: expected the T1w's grid {t1.shape[:3]}, found "
                         f"{lab.shape[:3]}")
    sel = lab > 0 if region_indices is None else np.isin(lab, list(region_indices))
    if not sel.any():
        raise InputError("labels_img: no labelled voxel to centre the QC slices on")
    cz = np.asarray(ndimage.center_of_mass(sel))
    lo, hi = np.percentile(t1[t1 > 0], [1, 99.5]) if np.any(t1 > 0) else (0.0, 1.0)
    fig, axes = plt.subplots(2, 3, figsize=(9, 6), dpi=90)
    for row, axis in enumerate((2, 1)):  # axial (k), coronal (j)
        ext = np.flatnonzero(sel.any(axis=tuple(a for a in range(3) if a != axis)))
        for col, q in enumerate((0.3, 0.5, 0.7)):
            k = round(ext[0] + q * (ext[-1] - ext[0])) if ext.size else int(cz[axis])
            img = np.take(t1, k, axis=axis).T
            lb = np.take(lab, k, axis=axis).T
            ax = axes[row, col]
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, origin="lower")
            edges = (lb != ndimage.grey_erosion(lb, size=3)) & (lb > 0)
            over = np.ma.masked_where(~edges, lb)
            ax.imshow(over, cmap="tab20", origin="lower", interpolation="nearest",
                      vmin=0, vmax=max(int(lab.max()), 1))
            ax.set_title(f"{'axial' if axis == 2 else 'coronal'} {k}", fontsize=8)
            ax.axis("off")
    fig.suptitle("danemap raw-T1w QC: warped atlas outlines", fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
