"""Dynamic PET: regional TACs, regional BP_ND by every reference-tissue model, and a map.

Regional TACs are the frame means over each atlas region (resampled onto the image grid,
nearest neighbour). The reference TAC is the mean over the reference region. ``k2'`` for
MRTM2 and Logan is estimated by MRTM on the tracer's high-binding regions
(:func:`~danemap.markers.pet._kinetics.estimate_k2_ref`; Ichise et al. 2003). The voxel-wise
map of ``map_model`` covers the brain (every atlas voxel and the MNI152 brain mask).

The fitted curves (:func:`fitted_curves`) are the frame-mean model TACs of the regional
fits: SRTM's ``R1 C_R + (k2 - R1 k2a) C_R ⊗ exp(-k2a t)`` (Gunn et al. 1997), computed with
the same exact frame-mean basis as the fit; MRTM2's parameters (``R1``, ``k2``, ``k2a``)
describe the same one-tissue target, drawn by the same formula. Logan's plot has no TAC
model (it fits the integrals from ``t*`` on), so it has no fitted curve.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from danemap._utils.logging import get_logger
from danemap.errors import InputError

if TYPE_CHECKING:
    from danemap.atlas import Atlas
    from danemap.markers.pet._inputs import PetFrames

__all__ = ["DynamicResult", "fitted_curves", "quantify_dynamic", "regional_tacs"]

log = get_logger("markers.pet")

MODELS = ("srtm", "mrtm2", "logan")
#: The models whose parameters give a model TAC (Logan's plot does not).
CURVE_MODELS = ("srtm", "mrtm2")


@dataclass
class DynamicResult:
    """Regional BP_ND, TACs and the parametric map of one dynamic series.

    Attributes
    ----------
    table : pandas.DataFrame
        ``region, hemisphere, measure, value, method, reference, pvc`` (``measure``
        ``BPND`` or ``R1``; ``method`` the model).
    tacs : pandas.DataFrame
        ``frame_start_min, frame_end_min``, the reference TAC and one column per region.
    maps : dict
        ``{"bpnd": 3-D array, "r1": ...}`` of ``map_model`` (NaN outside the brain).
    k2_ref : float
        The ``k2'`` used by MRTM2 and Logan (/min).
    t_star : dict
        Model -> first frame time used (minutes).
    fits : pandas.DataFrame or None
        The fitted model TACs (:func:`fitted_curves`): ``frame_start_min, frame_end_min,
        frame_mid_min`` and one ``<region>__<model>`` column per fitted region and model
        of :data:`CURVE_MODELS` (None when no such model ran).
    """

    table: pd.DataFrame
    tacs: pd.DataFrame
    maps: dict[str, np.ndarray]
    k2_ref: float
    t_star: dict[str, float] = field(default_factory=dict)
    fits: pd.DataFrame | None = None


def fitted_curves(fits: dict[str, Any], names: Sequence[str], cr: np.ndarray,
                  start: np.ndarray, end: np.ndarray) -> pd.DataFrame | None:
    """Return the frame-mean model TACs of the regional fits (module notes).

    Parameters
    ----------
    fits : dict
        Model -> :class:`~danemap.markers.pet._kinetics.KineticFit` over the regions
        ``names`` (in that order); models outside :data:`CURVE_MODELS` are skipped.
    names : sequence of str
        The fitted regions.
    cr : numpy.ndarray
        The frame-mean reference TAC.
    start, end : numpy.ndarray
        Frame start and end times (minutes after injection).

    Returns
    -------
    pandas.DataFrame or None
        ``frame_start_min, frame_end_min, frame_mid_min`` and one ``<region>__<model>``
        column per region whose fit has finite ``R1``, ``k2`` and ``k2a > 0`` (the others
        are left out and logged); None when no model of :data:`CURVE_MODELS` was fitted.
    """
    from danemap.markers.pet import _kinetics as kin

    start = np.asarray(start, dtype=np.float64)
    end = np.asarray(end, dtype=np.float64)
    cols: dict[str, np.ndarray] = {}
    ran = False
    for model, fit in fits.items():
        if model not in CURVE_MODELS:
            continue
        ran = True
        r1, k2, k2a = (np.atleast_1d(np.asarray(x, dtype=np.float64))
                       for x in (fit.r1, fit.k2, fit.k2a))
        good = np.isfinite(r1) & np.isfinite(k2) & np.isfinite(k2a) & (k2a > 0)
        if not good.all():
            log.info("dynamic PET: no %s fitted curve for %d region(s) without a finite "
                     "fit (%s)", model, int((~good).sum()),
                     ", ".join(n for n, g in zip(names, good, strict=True) if not g)[:200])
        if not good.any():
            continue
        basis = kin.srtm_basis(start, end, cr, k2a[good])  # (n_frames, n_good)
        curve = r1[good] * cr[:, None] + (k2[good] - r1[good] * k2a[good]) * basis
        for j, n in enumerate(n for n, g in zip(names, good, strict=True) if g):
            cols[f"{n}__{model}"] = curve[:, j]
    if not ran:
        return None
    return pd.DataFrame({"frame_start_min": start, "frame_end_min": end,
                         "frame_mid_min": (start + end) / 2.0, **cols})


def regional_tacs(data: np.ndarray, labels: np.ndarray, indices: Sequence[int]
                  ) -> np.ndarray:
    """Return the frame means of each region, (n_frames, n_regions); NaN for empty ones.

    Parameters
    ----------
    data : numpy.ndarray
        (x, y, z, n_frames).
    labels : numpy.ndarray
        (x, y, z) integer labels on the same grid.
    indices : sequence of int
        The label values, in output order.
    """
    lab = labels.ravel()
    n = int(max(int(lab.max()), max(indices))) + 1
    counts = np.bincount(lab, minlength=n).astype(float)
    flat = data.reshape(-1, data.shape[-1])
    sums = np.stack([np.bincount(lab, weights=flat[:, k], minlength=n)
                     for k in range(flat.shape[1])])
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[None, :]
    return means[:, list(indices)]


def quantify_dynamic(img: Any, atlas: Atlas, frames: PetFrames, *, reference: np.ndarray,
                     reference_name: str, high_binding: Sequence[str],
                     models: Sequence[str] = MODELS, map_model: str = "srtm",
                     brain: np.ndarray | None = None) -> DynamicResult:
    """Fit every reference-tissue model to the regional TACs, and one model voxel-wise.

    Parameters
    ----------
    img : nibabel.Nifti1Image
        4-D series in MNI space (decay-corrected frame means).
    atlas : Atlas
        The atlas, already on the image grid (:meth:`Atlas.resample_to`).
    frames : PetFrames
        Frame timing.
    reference : numpy.ndarray of bool
        The reference region on the image grid.
    reference_name : str
        Its name (for the table).
    high_binding : sequence of str
        Atlas regions whose MRTM fits give ``k2'`` (the striatum for DAT).
    models : sequence of {"srtm", "mrtm2", "logan"}
        The models of the regional table.
    map_model : str
        The model of the voxel-wise map (one of :data:`MODELS`).
    brain : numpy.ndarray of bool or None
        Voxels of the map (default: every atlas voxel).

    Returns
    -------
    DynamicResult

    Raises
    ------
    InputError
        Unknown models, an empty reference region, or no usable high-binding region.
    """
    from danemap.markers.pet import _kinetics as kin

    unknown = [m for m in (*models, map_model) if m not in MODELS]
    if unknown:
        raise InputError(f"pet.models: expected some of {list(MODELS)}, found {unknown}")
    data = np.asarray(img.dataobj, dtype=np.float64)
    labels = np.asarray(atlas.img.dataobj)
    if data.ndim != 4 or data.shape[:3] != labels.shape:
        raise InputError(f"dynamic PET: expected a 4-D series on the atlas grid "
                         f"{labels.shape}, found shape {data.shape}")
    if not reference.any():
        raise InputError(f"dynamic PET: the reference region {reference_name!r} has no voxel "
                         "on the image grid")
    names = atlas.names
    idx = atlas.regions["index"].to_numpy()
    start, end = frames.start_min, frames.end_min
    ct = regional_tacs(data, labels, idx)
    with np.errstate(invalid="ignore"):
        cr = np.nanmean(data[reference], axis=0)
    if not np.all(np.isfinite(cr)):
        raise InputError(f"dynamic PET: the reference region {reference_name!r} has no finite "
                         "value in some frame")
    ok = np.all(np.isfinite(ct), axis=0)
    k2_ref = float("nan")
    if {"mrtm2", "logan"} & {*models, map_model}:  # the models that need k2'
        high = [i for i, n in enumerate(names) if n.rsplit("_", 1)[0] in high_binding and ok[i]]
        if not high:
            raise InputError(f"dynamic PET: none of the high-binding regions "
                             f"{list(high_binding)} has voxels on the image grid, so k2' for "
                             "MRTM2/Logan cannot be estimated; set [pet] models = ['srtm']")
        k2_ref = kin.estimate_k2_ref(ct[:, high], cr, start, end)
    hemis = atlas.regions["hemisphere"].to_numpy()
    rows: list[dict[str, Any]] = []
    t_star: dict[str, float] = {}
    fits = {}
    for model in dict.fromkeys((*models, map_model)):
        if model == "srtm":
            fit = kin.srtm(ct[:, ok], cr, start, end, warn=False)
        elif model == "mrtm2":
            fit = kin.mrtm2(ct[:, ok], cr, start, end, k2_ref)
        else:
            fit = kin.logan_ref(ct[:, ok], cr, start, end, k2_ref)
        fits[model] = fit
        t_star[model] = float(fit.t_star)
        if model not in models:
            continue
        for measure, values in (("BPND", fit.bpnd), ("R1", fit.r1)):
            if not np.any(np.isfinite(values)):
                continue  # Logan has no R1
            full = np.full(len(names), np.nan)
            full[ok] = values
            rows += [{"region": n, "hemisphere": h, "measure": measure, "value": v,
                      "method": model, "reference": reference_name, "pvc": False}
                     for n, h, v in zip(names, hemis, full, strict=True)]
    mask = (labels > 0) if brain is None else (brain | (labels > 0))
    mask &= np.all(np.isfinite(data), axis=-1)
    kw: dict[str, Any] = {"k2_ref": k2_ref} if map_model != "srtm" else {}
    if map_model == "logan":
        kw["t_star"] = t_star["logan"]
    maps = kin.parametric_map(data, mask, start, end, cr, model=map_model, **kw)
    tacs = pd.DataFrame({"frame_start_min": start, "frame_end_min": end,
                         f"reference_{reference_name}": cr,
                         **{n: ct[:, i] for i, n in enumerate(names)}})
    curves = fitted_curves({m: f for m, f in fits.items() if m in models},
                           [n for n, g in zip(names, ok, strict=True) if g], cr, start, end)
    log.info("dynamic PET: %d frames, k2' = %.4f /min; map by %s", frames.n, k2_ref, map_model)
    return DynamicResult(pd.DataFrame(rows), tacs,
                         {k: v for k, v in maps.items() if k in ("bpnd", "r1")}, k2_ref,
                         t_star, curves)
