"""Partial-volume correction of PET/SPECT images: GTM (Rousset 1998) and RBV (Thomas 2011).

Both methods model the image as the true, piecewise-constant activity of a *partition* of
the grid (every voxel belongs to exactly one region: the target regions, the reference,
the rest of the brain and the background), blurred by a known point-spread function
(PSF). The PSF here is an isotropic Gaussian of full width at half maximum ``fwhm_mm``,
sampled per axis with sigma ``fwhm / sqrt(8 ln 2) / voxel size``, truncated at 4 sigma,
with zero activity outside the field of view (``scipy.ndimage.gaussian_filter``,
``mode="constant"``), the same PSF as :mod:`danemap.simulate`.

* **GTM** (geometric transfer matrix; Rousset, Ma & Evans 1998, J Nucl Med 39:904):
  the regional spread function of region ``i`` is its blurred indicator ``RSF_i``;
  ``G[j, i]`` is the mean of ``RSF_i`` over region ``j``, the fraction of region ``i``'s
  true activity that the observed mean of region ``j`` sees. The observed region means
  ``t`` satisfy ``t = G T``; the corrected means are ``T = lstsq(G, t)``.
* **RBV** (region-based voxel-wise correction; Thomas et al. 2011, Eur J Nucl Med Mol
  Imaging 38:1104): with the synthetic image ``S = sum_i T_i chi_i`` painted from the GTM
  values, ``corrected = observed * S / (PSF * S)``, one blur of ``S``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from danemap.errors import InputError

__all__ = ["TRUNCATE", "gtm", "psf_sigma_vox", "rbv", "transfer_matrix"]

#: Truncation of the Gaussian PSF, in sigmas (``scipy.ndimage.gaussian_filter``).
TRUNCATE = 4.0


def psf_sigma_vox(fwhm_mm: float, affine: np.ndarray) -> np.ndarray:
    """Per-axis Gaussian sigma, in voxels, of an isotropic PSF.

    Parameters
    ----------
    fwhm_mm : float
        Full width at half maximum of the PSF, in mm (0: no blur).
    affine : ndarray (4, 4)
        Voxel-to-world affine of the grid; the voxel sizes are the norms of its columns.

    Returns
    -------
    ndarray (3,)
        ``fwhm_mm / sqrt(8 ln 2) / voxel_size`` per axis.

    Raises
    ------
    InputError
        If ``fwhm_mm`` is negative or not finite, or the affine is not a 4x4 with
        non-zero voxel sizes.
    """
    fwhm = float(fwhm_mm)
    if not np.isfinite(fwhm) or fwhm < 0:
        raise InputError(f"PSF 'fwhm_mm': expected a finite FWHM >= 0 in mm, found {fwhm_mm!r}")
    aff = np.asarray(affine, dtype=float)
    if aff.shape != (4, 4):
        raise InputError(f"PSF 'affine': expected a 4x4 matrix, found shape {aff.shape}")
    zooms = np.sqrt((aff[:3, :3] ** 2).sum(axis=0))
    if not np.all(zooms > 0):
        raise InputError(f"PSF 'affine': voxel sizes must be > 0, found {zooms.tolist()}")
    return fwhm / np.sqrt(8.0 * np.log(2.0)) / zooms


def _blur(data: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    if not np.any(sigma > 0):
        return np.asarray(data, dtype=np.float64)
    return ndimage.gaussian_filter(np.asarray(data, dtype=np.float64), sigma, mode="constant",
                                   cval=0.0, truncate=TRUNCATE)


def _check_inputs(img_data: Any, labels: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    img = np.asarray(img_data, dtype=np.float64)
    lab = np.asarray(labels)
    if img.ndim != 3:
        raise InputError(f"{what} 'img_data': expected a 3D image, found shape {img.shape}")
    if lab.shape != img.shape:
        raise InputError(f"{what} 'labels': expected the image shape {img.shape}, found "
                         f"{lab.shape}")
    if not np.issubdtype(lab.dtype, np.integer):
        raise InputError(f"{what} 'labels': expected an integer label array, found dtype "
                         f"{lab.dtype}")
    bad = int(np.count_nonzero(~np.isfinite(img)))
    if bad:
        raise InputError(f"{what} 'img_data': expected finite values, found {bad} NaN/inf "
                         "voxel(s)")
    return img, lab


def _dense(lab: np.ndarray, region_ids: Sequence[int] | None,
           what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Region ids, the dense column of every voxel, and the voxel count per region."""
    present = np.unique(lab)
    if region_ids is None:
        ids = present.astype(np.int64)
    else:
        ids = np.asarray(region_ids, dtype=np.int64)
        if ids.ndim != 1 or np.unique(ids).size != ids.size:
            raise InputError(f"{what} 'region_ids': expected distinct integers, found "
                             f"{ids.tolist()}")
        missing = sorted(set(present.tolist()) - set(ids.tolist()))
        if missing:
            raise InputError(f"{what} 'region_ids': every voxel must belong to a region "
                             f"(the whole brain and the background included); label(s) "
                             f"{missing} occur in 'labels' but not in 'region_ids'")
    lo = int(min(ids.min(), present.min()))
    lut = np.full(int(max(ids.max(), present.max())) - lo + 1, -1, dtype=np.int64)
    lut[ids - lo] = np.arange(ids.size)
    col = lut[lab.astype(np.int64) - lo]
    counts = np.bincount(col.ravel(), minlength=ids.size)
    empty = ids[counts == 0].tolist()
    if empty:
        raise InputError(f"{what} 'labels': region(s) {empty} have no voxel on the grid")
    return ids, col, counts


def transfer_matrix(labels: np.ndarray, affine: np.ndarray, fwhm_mm: float,
                    region_ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Geometric transfer matrix of a partition.

    Parameters
    ----------
    labels : ndarray (X, Y, Z) of int
        The partition: every distinct value is one region (0 included).
    affine : ndarray (4, 4)
        Voxel-to-world affine.
    fwhm_mm : float
        Isotropic Gaussian PSF FWHM in mm.
    region_ids : sequence of int or None
        Region order (every label value present must be listed); sorted label values if
        None.

    Returns
    -------
    region_ids : ndarray (R,) of int64
    G : ndarray (R, R)
        ``G[j, i]``: mean over region ``j`` of the blurred indicator of region ``i``.

    Notes
    -----
    Each indicator is blurred on its bounding box grown by the kernel radius (clipped at
    the grid edge), which gives the same values as blurring the whole grid (the indicator
    is zero elsewhere and the kernel is truncated), at a fraction of the cost for the
    small regions.
    """
    lab = np.asarray(labels)
    if lab.ndim != 3 or not np.issubdtype(lab.dtype, np.integer):
        raise InputError(f"transfer_matrix 'labels': expected a 3D integer array, found "
                         f"shape {lab.shape} dtype {lab.dtype}")
    sigma = psf_sigma_vox(fwhm_mm, affine)
    ids, col, counts = _dense(lab, region_ids, "transfer_matrix")
    return ids, _transfer(col, counts, sigma)


def _transfer(col: np.ndarray, counts: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    n = counts.size
    radius = np.array([int(TRUNCATE * s + 0.5) for s in sigma])
    boxes = ndimage.find_objects(col + 1, max_label=n)
    g = np.zeros((n, n))
    for i, box in enumerate(boxes):
        assert box is not None  # every region has voxels (checked in _dense)
        sl = tuple(slice(max(b.start - r, 0), min(b.stop + r, dim))
                   for b, r, dim in zip(box, radius, col.shape, strict=True))
        sub = col[sl]
        rsf = _blur((sub == i).astype(np.float64), sigma)
        g[:, i] = np.bincount(sub.ravel(), weights=rsf.ravel(), minlength=n)
    return g / counts[:, None]


def gtm(img_data: Any, labels: Any, affine: np.ndarray, fwhm_mm: float, *,
        region_ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Partial-volume corrected region means by the geometric transfer matrix.

    Parameters
    ----------
    img_data : array-like (X, Y, Z)
        Observed image (finite values).
    labels : array-like (X, Y, Z) of int
        A partition of the whole grid: every distinct value, 0 included, is one region.
        Give the brain outside the regions of interest and the background their own
        labels, so that their activity is modelled rather than leaking into the regions.
    affine : ndarray (4, 4)
        Voxel-to-world affine (sets the voxel size of the PSF).
    fwhm_mm : float
        Isotropic Gaussian PSF FWHM in mm (0: no blur, G is the identity).
    region_ids : sequence of int or None
        Order of the regions in the outputs (all label values present); sorted values if
        None.

    Returns
    -------
    region_ids : ndarray (R,) of int64
        Label value of each region.
    corrected_means : ndarray (R,)
        The true region values ``T`` solving ``G T = t`` in the least-squares sense.
    G : ndarray (R, R)
        The transfer matrix: ``G[j, i]`` is the fraction of region ``i``'s activity in
        the observed mean of region ``j``.

    Raises
    ------
    InputError
        If the image is not 3D or not finite, the labels do not match it, a listed region
        has no voxel, or the FWHM is invalid.
    """
    img, lab = _check_inputs(img_data, labels, "gtm")
    sigma = psf_sigma_vox(fwhm_mm, affine)
    ids, col, counts = _dense(lab, region_ids, "gtm")
    g = _transfer(col, counts, sigma)
    observed = np.bincount(col.ravel(), weights=img.ravel(), minlength=ids.size) / counts
    corrected = np.linalg.lstsq(g, observed, rcond=None)[0]
    return ids, corrected, g


def rbv(img_data: Any, labels: Any, affine: np.ndarray, fwhm_mm: float, *,
        region_ids: Sequence[int] | None = None,
        corrected_means: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """Region-based voxel-wise partial-volume correction (Thomas et al. 2011).

    Parameters
    ----------
    img_data : array-like (X, Y, Z)
        Observed image (finite values).
    labels : array-like (X, Y, Z) of int
        The partition of :func:`gtm`.
    affine : ndarray (4, 4)
        Voxel-to-world affine.
    fwhm_mm : float
        Isotropic Gaussian PSF FWHM in mm.
    region_ids : sequence of int or None
        Order of ``corrected_means``; see :func:`gtm`.
    corrected_means : sequence of float or None
        GTM values per region (from :func:`gtm` with the same ``region_ids``); computed
        here if None.

    Returns
    -------
    ndarray (X, Y, Z) of float64
        ``img * S / (PSF * S)`` with ``S`` the GTM synthetic image; 0 where the blurred
        synthetic image is not positive (background of zero activity).
    """
    img, lab = _check_inputs(img_data, labels, "rbv")
    if corrected_means is None:
        ids, values, _ = gtm(img, lab, affine, fwhm_mm, region_ids=region_ids)
    else:
        ids, _, _ = _dense(lab, region_ids, "rbv")
        values = np.asarray(corrected_means, dtype=np.float64)
        if values.shape != ids.shape:
            raise InputError(f"rbv 'corrected_means': expected {ids.size} values (one per "
                             f"region), found shape {values.shape}")
    _, col, _ = _dense(lab, ids.tolist(), "rbv")
    synth = values[col]
    blurred = _blur(synth, psf_sigma_vox(fwhm_mm, affine))
    tiny = 1e-12 * max(float(np.abs(blurred).max()), 1e-300)
    ok = blurred > tiny
    out = np.zeros_like(img)
    out[ok] = img[ok] * synth[ok] / blurred[ok]
    return out
