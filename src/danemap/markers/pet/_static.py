"""Static PET/SPECT quantification: SUVR, SBR, putamen/caudate ratio, asymmetry, PVC.

For a region mean ``C_T`` and the reference mean ``C_R`` of one static image (a late,
pseudo-equilibrium frame or a SPECT scan):

* ``SUVR = C_T / C_R`` (the standardised uptake value ratio);
* ``SBR = C_T / C_R - 1`` (the specific binding ratio, an estimate of BP_ND at
  equilibrium when the reference has no specific binding);
* ``PC_ratio = SBR(putamen) / SBR(caudate)`` per hemisphere. It is SBR-based because
  the ratio of *specific* binding is what the anteroposterior (putamen-first) loss of
  dopaminergic terminals changes; a ratio of SUVRs carries the non-displaceable 1 in
  both terms and is compressed towards 1 (DaTQUANT and the EANM guideline report the
  putamen/caudate ratio of SBRs);
* ``asymmetry_index = 100 * |L - R| / ((L + R) / 2)`` on the SBR of each bilateral
  region (percent of the mean of the two sides).

With ``pvc="gtm"`` or ``pvc="rbv"`` the same measures are computed again from the
partial-volume corrected region means (:mod:`danemap.markers.pet._pvc`) and returned
beside the uncorrected rows. The PVC partition is every atlas region (the subdivided
ones as two), the reference mask if one is given, the rest of the brain (voxels above
half the reference mean: the half-maximum of the blurred brain edge, unless
``brain_mask`` is given) and the background. A region whose observed mean holds less
than :data:`MIN_SELF_RECOVERY` of its own activity (a 1-2 voxel LC at SPECT resolution)
gets a :class:`~danemap.errors.DanemapWarning`: its corrected value amplifies noise and
misregistration. :func:`rbv_image` returns the voxel-wise RBV image of the same partition.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from danemap._utils.logging import get_logger
from danemap.errors import InputError
from danemap.markers.pet._regions import PetRegionSet, pet_region_set, tracer_defaults

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["COLUMNS", "MEASURES", "MIN_SELF_RECOVERY", "PVC_METHODS", "quantify_static",
           "rbv_image", "static_measures"]

log = get_logger("pet")

#: Columns of the table :func:`quantify_static` returns, in order.
COLUMNS = ("region", "hemisphere", "measure", "value", "method", "reference", "pvc")
#: Values of its ``measure`` column.
MEASURES = ("SUVR", "SBR", "PC_ratio", "asymmetry_index")
#: Accepted ``pvc`` values (None: no correction).
PVC_METHODS = ("gtm", "rbv")
#: Below this fraction of its own activity in its observed mean (the GTM diagonal), a
#: region's corrected value is flagged (a 1-2 voxel LC at SPECT resolution: ~0.01).
MIN_SELF_RECOVERY = 0.1
#: Default target regions when neither ``tracer`` nor ``regions`` gives them.
_DEFAULT_REGIONS = ("caudate", "putamen", "putamen_anterior", "putamen_posterior",
                    "accumbens", "striatum")


def _image_data(img: Any) -> tuple[np.ndarray, np.ndarray, str]:
    from danemap.io import load_nifti

    what = str(img) if isinstance(img, str | os.PathLike) else (
        getattr(img, "get_filename", lambda: None)() or "image")
    if isinstance(img, str | os.PathLike):
        img = load_nifti(img)
    if not hasattr(img, "dataobj") or not hasattr(img, "affine"):
        raise InputError(f"quantify_static 'img': expected a NIfTI image or path, found "
                         f"{type(img).__name__}")
    data = np.asarray(img.dataobj, dtype=np.float64)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 4:
        raise InputError(f"{what}: static quantification needs a 3D image, found a 4D image "
                         f"of {data.shape[3]} frames; fit the kinetic models to a dynamic "
                         "series, or pass one (summed) frame")
    if data.ndim != 3:
        raise InputError(f"{what}: expected a 3D image, found shape {data.shape}")
    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        raise InputError(f"{what}: expected finite voxel values, found {bad} NaN/inf voxel(s) "
                         f"of {data.size}")
    return data, np.asarray(img.affine, dtype=float), what


def _on_grid(atlas: Any, shape: tuple[int, ...], affine: np.ndarray) -> Any:
    if tuple(atlas.shape) == tuple(shape) and np.allclose(atlas.img.affine, affine, atol=1e-4):
        return atlas
    return atlas.resample_to((shape, affine))


def _region_values(part_means: Mapping[int, float], rs: PetRegionSet
                   ) -> tuple[dict[tuple[str, str], float], float]:
    """Voxel-weighted means of the targets and the reference from per-label means."""
    def mean(parts: Sequence[int]) -> float:
        n = np.array([rs.counts[p] for p in parts], dtype=float)
        v = np.array([part_means[p] for p in parts], dtype=float)
        return float((n * v).sum() / n.sum())

    targets = {(r.name, r.hemisphere): mean(r.parts) for r in rs.targets}
    return targets, mean(rs.reference.parts)


def _part_means(data: np.ndarray, labels: np.ndarray) -> dict[int, float]:
    lab = labels.ravel()
    counts = np.bincount(lab)
    sums = np.bincount(lab, weights=data.ravel(), minlength=counts.size)
    return {int(i): float(sums[i] / counts[i]) for i in np.flatnonzero(counts)}


def static_measures(means: Mapping[tuple[str, str], float], reference_mean: float, *,
                    method: str = "uncorrected", reference: str = "") -> pd.DataFrame:
    """SUVR, SBR, putamen/caudate ratio and asymmetry index from region means.

    Parameters
    ----------
    means : mapping of (region, hemisphere) to float
        Region means; hemisphere ``"L"``, ``"R"``, ``"bilateral"`` or ``"midline"``.
    reference_mean : float
        Mean of the reference region (finite, > 0).
    method : str
        Value of the ``method`` column (``"uncorrected"``, ``"gtm"``, ``"rbv"``).
    reference : str
        Value of the ``reference`` column.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`. ``PC_ratio`` rows (putamen SBR / caudate SBR) for every
        hemisphere with both regions; ``asymmetry_index`` rows (hemisphere
        ``"bilateral"``) for every region with both sides. A ratio whose denominator is
        not positive is NaN (logged).

    Raises
    ------
    InputError
        If the reference mean is not finite and positive.
    """
    import pandas as pd

    ref = float(reference_mean)
    if not np.isfinite(ref) or ref <= 0:
        raise InputError(f"reference region {reference!r} ({method}): expected a finite mean "
                         f"> 0, found {ref!r}; a ratio to it is undefined")
    rows: list[tuple[str, str, str, float]] = []
    sbr: dict[tuple[str, str], float] = {}
    for (name, hemi), value in means.items():
        suvr = float(value) / ref
        sbr[(name, hemi)] = suvr - 1.0
        rows += [(name, hemi, "SUVR", suvr), (name, hemi, "SBR", suvr - 1.0)]
    for hemi in ("L", "R", "bilateral"):
        if ("putamen", hemi) in sbr and ("caudate", hemi) in sbr:
            den = sbr[("caudate", hemi)]
            if den > 0:
                val = sbr[("putamen", hemi)] / den
            else:
                val = float("nan")
                log.info("PC_ratio (%s, %s): caudate SBR %.4g <= 0; ratio set to NaN",
                            hemi, method, den)
            rows.append(("putamen_caudate", hemi, "PC_ratio", val))
    for name in dict.fromkeys(n for n, _ in sbr):
        if (name, "L") in sbr and (name, "R") in sbr:
            left, right = sbr[(name, "L")], sbr[(name, "R")]
            mid = (left + right) / 2.0
            if mid > 0:
                val = 100.0 * abs(left - right) / mid
            else:
                val = float("nan")
                log.info("asymmetry_index (%s, %s): mean SBR %.4g <= 0; set to NaN",
                            name, method, mid)
            rows.append((name, "bilateral", "asymmetry_index", val))
    df = pd.DataFrame(rows, columns=["region", "hemisphere", "measure", "value"])
    df["method"] = method
    df["reference"] = reference
    df["pvc"] = method != "uncorrected"
    return df.loc[:, list(COLUMNS)]


def _brain_labels(data: np.ndarray, rs: PetRegionSet, ref_mean: float,
                  brain_mask: Any) -> np.ndarray:
    """Return the PVC partition: region labels, rest of the brain, background (0)."""
    from danemap.markers.pet._regions import _mask_array

    if brain_mask is None:
        brain = data > 0.5 * ref_mean
    elif isinstance(brain_mask, np.ndarray):
        if brain_mask.shape != data.shape:
            raise InputError(f"quantify_static 'brain_mask': expected shape {data.shape}, "
                             f"found {brain_mask.shape}")
        brain = brain_mask.astype(bool)
    else:
        brain = _mask_array(brain_mask, data.shape, rs.affine)
    labels = rs.labels.copy()
    rest = max(rs.part_names) + 1
    labels[(labels == 0) & brain] = rest
    return labels


def _check_fwhm(fwhm_mm: Any, why: str) -> None:
    if fwhm_mm is None or not float(fwhm_mm) > 0:
        raise InputError(f"quantify_static 'fwhm_mm': {why} needs the PSF FWHM (> 0 mm) of "
                         f"the image, found {fwhm_mm!r}")


def _prepare(img: Any, atlas: Any, tracer: str | None, reference: Any,
             regions: Sequence[str] | None, split_y_mm: float
             ) -> tuple[np.ndarray, np.ndarray, str, PetRegionSet,
                        dict[tuple[str, str], float], float]:
    """Read the image, apply the tracer defaults, build the regions, check the reference."""
    data, affine, what = _image_data(img)
    defaults = tracer_defaults(tracer) if tracer is not None else None
    if defaults is not None and not defaults.known and (reference is None or regions is None):
        from danemap.markers.pet._regions import TRACERS

        log.warning("%s: tracer %r is not in the tracer table (%s); using the generic "
                    "defaults (occipital reference, striatal regions) where not given", what,
                    tracer, ", ".join(t.name for t in TRACERS))
    if reference is None:
        reference = defaults.reference if defaults else "occipital"
    if regions is None:
        regions = defaults.regions if defaults else _DEFAULT_REGIONS
    if isinstance(regions, str) or not regions:
        raise InputError(f"quantify_static 'regions': expected a non-empty list of region "
                         f"names, found {regions!r}")
    on_grid = _on_grid(atlas, data.shape, affine)
    rs = pet_region_set(on_grid, regions=list(regions), reference=reference,
                        split_y_mm=split_y_mm)
    means, ref_mean = _region_values(_part_means(data, rs.labels), rs)
    if not np.isfinite(ref_mean) or ref_mean <= 0:
        raise InputError(f"{what}: reference region {rs.reference_name!r} has mean "
                         f"{ref_mean!r}; expected a finite mean > 0")
    return data, affine, what, rs, means, ref_mean


def _pvc_parts(data: np.ndarray, affine: np.ndarray, rs: PetRegionSet, ref_mean: float,
               fwhm_mm: float, brain_mask: Any, what: str
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GTM on the PVC partition; warn about target regions the PSF barely sees."""
    import warnings

    from danemap.errors import DanemapWarning
    from danemap.markers.pet._pvc import gtm

    labels = _brain_labels(data, rs, ref_mean, brain_mask)
    ids, corrected, g = gtm(data, labels, affine, float(fwhm_mm))
    self_seen = dict(zip(ids.tolist(), np.diag(g).tolist(), strict=True))
    weak = sorted({f"{r.name} ({r.hemisphere}): {min(self_seen[p] for p in r.parts):.3f}"
                   for r in [*rs.targets, rs.reference]
                   if min(self_seen[p] for p in r.parts) < MIN_SELF_RECOVERY})
    if weak:
        msg = (f"{what}: GTM at {fwhm_mm} mm: the observed mean of these regions holds less "
               f"than {MIN_SELF_RECOVERY:.0%} of their own activity (G[i, i]), so their "
               f"corrected values amplify noise and misregistration: {'; '.join(weak)}")
        log.warning("%s", msg)
        warnings.warn(msg, DanemapWarning, stacklevel=3)
    return labels, ids, corrected


def quantify_static(
    img: Any,
    atlas: Any,
    *,
    tracer: str | None = None,
    reference: Any = None,
    regions: Sequence[str] | None = None,
    pvc: str | None = None,
    fwhm_mm: float | None = None,
    split_y_mm: float = 0.0,
    brain_mask: Any = None,
) -> pd.DataFrame:
    """Regional SUVR, SBR, putamen/caudate ratio and asymmetry of a static image.

    Parameters
    ----------
    img : nibabel image or path
        3D PET/SPECT image in MNI space (any grid; a 4D image with one frame is accepted).
    atlas : Atlas
        The danemap atlas (or a user atlas) in MNI space; resampled onto the image grid
        by nearest neighbour when its grid differs.
    tracer : str or None
        Tracer name (``"FP-CIT"``, ``"DaTscan"``, ``"PE2I"``, ``"MRB"``, ``"FMeNER-D2"``;
        see :data:`danemap.markers.pet._regions.TRACERS`); sets the default reference
        and regions. Any other tracer works the same way; give it ``reference`` and
        ``regions`` (without them the generic defaults are used, with a warning).
    reference : str, path, nibabel image or None
        Reference region: ``"occipital"``, ``"cerebellum"``, ``"caudate"``, an atlas
        region name or stem, or a mask. Default: the tracer's, else ``"occipital"``.
    regions : sequence of str or None
        Target regions (PET region names, atlas stems or names). Default: the tracer's,
        else the striatal set (caudate, putamen, anterior and posterior putamen,
        accumbens, striatum).
    pvc : {None, "gtm", "rbv"}
        Partial-volume correction; its rows are added beside the uncorrected ones.
    fwhm_mm : float or None
        Isotropic Gaussian PSF FWHM (mm) of the image; required with ``pvc``.
    split_y_mm : float
        MNI y of the anterior/posterior putamen plane (default 0, the anterior
        commissure).
    brain_mask : array, path, nibabel image or None
        Brain voxels for the PVC "rest of the brain" region; default: voxels above half
        the reference mean.

    Returns
    -------
    pandas.DataFrame
        Columns ``region, hemisphere, measure, value, method, reference, pvc``: for each
        target region and hemisphere (``L``, ``R``, ``bilateral`` pooled, ``midline``)
        ``SUVR`` and ``SBR``; ``PC_ratio`` (region ``putamen_caudate``) and
        ``asymmetry_index`` rows; ``method`` ``"uncorrected"``, plus ``"gtm"`` or
        ``"rbv"`` rows with ``pvc`` True when requested.

    Raises
    ------
    InputError
        On a 4D, non-finite or non-3D image, an empty ``regions``, an unknown region, a
        region without a voxel on the grid, a reference mean that is not finite and
        positive (uncorrected or corrected), an unknown ``pvc``, or ``pvc`` without a
        ``fwhm_mm`` > 0.
    """
    import pandas as pd

    if pvc is not None and pvc not in PVC_METHODS:
        raise InputError(f"quantify_static 'pvc': expected None or one of {list(PVC_METHODS)},"
                         f" found {pvc!r}")
    if pvc is not None:
        _check_fwhm(fwhm_mm, f"pvc={pvc!r}")
    data, affine, what, rs, means, ref_mean = _prepare(img, atlas, tracer, reference,
                                                       regions, split_y_mm)
    log.info("%s: static quantification, tracer %s, reference %s, %d regions%s", what,
             tracer, rs.reference_name, len(rs.targets),
             f", PVC {pvc} at {fwhm_mm} mm" if pvc else "")
    tables = [static_measures(means, ref_mean, reference=rs.reference_name)]
    if pvc is not None:
        from danemap.markers.pet._pvc import rbv

        assert fwhm_mm is not None
        labels, ids, corrected = _pvc_parts(data, affine, rs, ref_mean, float(fwhm_mm),
                                            brain_mask, what)
        if pvc == "gtm":
            part = {int(i): float(v) for i, v in zip(ids, corrected, strict=True)}
        else:
            image = rbv(data, labels, affine, float(fwhm_mm), region_ids=ids.tolist(),
                        corrected_means=corrected)
            part = _part_means(image, labels)
        pmeans, pref = _region_values(part, rs)
        tables.append(static_measures(pmeans, pref, method=pvc, reference=rs.reference_name))
    return pd.concat(tables, ignore_index=True)


def rbv_image(
    img: Any,
    atlas: Any,
    *,
    fwhm_mm: float,
    tracer: str | None = None,
    reference: Any = None,
    regions: Sequence[str] | None = None,
    split_y_mm: float = 0.0,
    brain_mask: Any = None,
) -> Any:
    """Return the RBV partial-volume corrected image (Thomas et al. 2011).

    The partition is that of :func:`quantify_static` with the same arguments, so the
    region means of this image are the ``"rbv"`` rows of ``quantify_static(...,
    pvc="rbv")``.

    Parameters
    ----------
    img : nibabel image or path
        3D image in MNI space.
    atlas : Atlas
        The atlas (resampled onto the image grid when needed).
    fwhm_mm : float
        Isotropic Gaussian PSF FWHM (mm), > 0.
    tracer, reference, regions, split_y_mm, brain_mask
        As for :func:`quantify_static`.

    Returns
    -------
    nibabel.Nifti1Image
        float32 corrected image on the grid of ``img`` (0 where no activity is modelled).

    Raises
    ------
    InputError
        As :func:`quantify_static`.
    """
    import nibabel as nib

    from danemap.markers.pet._pvc import rbv

    _check_fwhm(fwhm_mm, "RBV")
    data, affine, what, rs, _, ref_mean = _prepare(img, atlas, tracer, reference, regions,
                                                   split_y_mm)
    labels, ids, corrected = _pvc_parts(data, affine, rs, ref_mean, float(fwhm_mm),
                                        brain_mask, what)
    out = rbv(data, labels, affine, float(fwhm_mm), region_ids=ids.tolist(),
              corrected_means=corrected)
    return nib.Nifti1Image(out.astype(np.float32), affine)
