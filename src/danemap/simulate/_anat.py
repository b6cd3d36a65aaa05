"""T1w images with planted regional volume changes, and the matching warped atlas labels.

A smooth backward deformation changes chosen region volumes: every voxel belongs to the
Voronoi cell of its nearest atlas region ``r`` (distance transform), and is mapped to
``c_r + (x - c_r) / s_r`` (radial scaling about the region centroid, linear factor
``s_r = f_r ** (1/3)`` for a volume factor ``f_r``) with a weight that is 1 inside the region
and its first millimetres, and tapers smoothly (cosine) to 0 within ``TAPER_MM``; a global
scaling about the brain centroid sets the ICV. The same mapping warps the MNI152 template
(linear interpolation), the atlas labels and the brain mask (nearest neighbour), so the
realised volumes (voxel count x voxel volume) are exact truth for a segmentation.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from danemap.errors import InputError
from danemap.simulate._common import (
    STREAMS,
    atlas_arrays,
    nifti_bytes,
    stem,
    template_and_mask,
    write_bytes,
    write_json,
)
from danemap.simulate._effects import SimulationEffects

CORE_MM = 3.0
TAPER_MM = 9.0


@functools.lru_cache(maxsize=4)
def _voronoi(label_bytes: bytes, shape: tuple[int, ...],
             zooms: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest region label, deformation weight and centroid (per label value); cached."""
    from scipy import ndimage

    labels = np.frombuffer(label_bytes, dtype=np.int32).reshape(shape)
    dist, nearest = ndimage.distance_transform_edt(labels == 0, sampling=zooms,
                                                   return_indices=True)
    near_lab = labels[tuple(nearest)]
    weight = np.where(dist <= CORE_MM, 1.0, 0.5 * (1.0 + np.cos(
        np.pi * np.clip((dist - CORE_MM) / TAPER_MM, 0.0, 1.0))))
    nlab = int(labels.max()) + 1
    present = [int(v) for v in np.unique(labels) if v != 0]
    centroid = np.zeros((nlab, 3))
    for v, com in zip(present, ndimage.center_of_mass(np.ones_like(labels), labels, present),
                      strict=True):
        centroid[v] = com
    for arr in (near_lab, weight, centroid):
        arr.setflags(write=False)
    return near_lab, weight, centroid


def _log_factors(names: Sequence[str], eff: SimulationEffects, group: str,
                 rng: np.random.Generator, bias: float) -> dict[str, float]:
    out = {}
    for n in names:
        d = eff.vol_d.get(stem(n), 0.0) * eff.effect_scale if group == "ADHD" else 0.0
        out[n] = float(d * eff.vol_subject_sd + rng.normal(0.0, eff.vol_subject_sd) + bias)
    return out


def t1w_arrays(atlas: Any, seed: int | Sequence[int], group: str, eff: SimulationEffects,
               volume_bias_log: float = 0.0, intensity_scale: float = 1.0,
               log_volume_factors: Mapping[str, float] | None = None,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Core of :func:`simulate_t1w`; returns (t1, labels, affine, truth)."""
    from scipy import ndimage

    if group not in ("TD", "ADHD"):
        raise InputError(f"group: expected 'TD' or 'ADHD', found {group!r}")
    rng = np.random.default_rng(seed)
    labels, affine, names, indices = atlas_arrays(atlas)
    t1, mask = template_and_mask(labels, affine)
    logf = _log_factors(names, eff, group, rng, volume_bias_log)
    if log_volume_factors is not None:
        unknown = sorted(set(log_volume_factors) - set(names))
        if unknown:
            raise InputError(
                f"log_volume_factors: unknown region(s) {unknown}; atlas regions are {names}"
            )
        logf.update({k: float(v) for k, v in log_volume_factors.items()})
    icv_log = float(rng.normal(0.0, eff.icv_sd))
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    voxvol = float(np.prod(zooms))

    near_lab, weight, centroid_all = _voronoi(labels.tobytes(), labels.shape,
                                              tuple(float(z) for z in zooms))
    nlab = int(labels.max()) + 1
    inv_lin = np.ones(nlab)  # 1 / linear factor, per label value
    centroid = np.zeros((nlab, 3))
    for n, i in zip(names, indices, strict=True):
        inv_lin[i] = np.exp(-logf[n] / 3.0)
        centroid[i] = centroid_all[i]

    grid = np.indices(labels.shape, dtype=np.float64).reshape(3, -1)
    c_brain = np.asarray(ndimage.center_of_mass(mask))[:, None]
    y = c_brain + (grid - c_brain) * np.exp(-icv_log / 3.0)
    yi = tuple(np.clip(np.rint(y[k]).astype(np.int64), 0, labels.shape[k] - 1) for k in range(3))
    r = near_lab[yi]
    w = weight[yi] * (1.0 - inv_lin[r])
    src = y - w * (y - centroid[r].T)

    t1w = ndimage.map_coordinates(t1, src, order=1, mode="constant", cval=0.0)
    lab_w = ndimage.map_coordinates(labels, src, order=0, mode="constant", cval=0)
    mask_w = ndimage.map_coordinates(mask.astype(np.uint8), src, order=0, mode="constant")
    t1w = t1w.reshape(labels.shape)
    lab_w = lab_w.reshape(labels.shape).astype(np.int16)
    mask_w = mask_w.reshape(labels.shape).astype(bool)
    t1w = np.clip(t1w * 1000.0 + rng.normal(0.0, 10.0, t1w.shape), 0.0, None) * intensity_scale

    counts = np.bincount(lab_w.ravel(), minlength=nlab)
    base = np.bincount(labels.ravel(), minlength=nlab)
    truth = {
        "group": group,
        "icv_log_factor": icv_log,
        "icv_mm3": float(mask_w.sum() * voxvol),
        "template_icv_mm3": float(mask.sum() * voxvol),
        "volume_bias_log": volume_bias_log,
        "intensity_scale": intensity_scale,
        "log_volume_factor": logf,
        "intended_volume_mm3": {n: float(base[i] * voxvol * np.exp(logf[n] + icv_log))
                                for n, i in zip(names, indices, strict=True)},
        "volume_mm3": {n: float(counts[i] * voxvol) for n, i in zip(names, indices, strict=True)},
        "template_volume_mm3": {n: float(base[i] * voxvol)
                                for n, i in zip(names, indices, strict=True)},
    }
    return t1w, lab_w, affine, truth


def simulate_t1w(atlas: Any, seed: int | Sequence[int] = 0, *, group: str = "TD",
                 effects: SimulationEffects | None = None, volume_bias_log: float = 0.0,
                 intensity_scale: float = 1.0,
                 log_volume_factors: Mapping[str, float] | None = None,
                 ) -> tuple[Any, Any, dict[str, Any]]:
    """Simulate one T1w image and its warped atlas labels with known regional volumes.

    Parameters
    ----------
    atlas : Atlas
        From :func:`danemap.atlas.load_atlas`; its grid is the output grid.
    seed : int or sequence of int
        Seed of :func:`numpy.random.default_rng`.
    group : {"TD", "ADHD"}
        ADHD regional log volumes move by ``vol_d * effect_scale * vol_subject_sd``.
    effects : SimulationEffects or None
        Planted d, between-subject SD, ICV SD (defaults if None).
    volume_bias_log : float
        Log-volume offset of every region (site effect).
    intensity_scale : float
        Multiplicative intensity scale (site effect).
    log_volume_factors : mapping or None
        ``{region: log volume factor}`` overriding the drawn factors of those regions.

    Returns
    -------
    t1w_img : nibabel.Nifti1Image
        Warped MNI152 template (float32), with Gaussian noise.
    dseg_img : nibabel.Nifti1Image
        Atlas labels warped by the same deformation (int16).
    truth : dict
        Per region: log volume factor, intended and realised volume (mm3: voxel count of
        the warped labels x voxel volume); ICV (warped brain mask) and its log factor.
    """
    import nibabel as nib

    eff = SimulationEffects() if effects is None else effects
    t1w, lab, affine, truth = t1w_arrays(atlas, seed, group, eff, volume_bias_log,
                                         intensity_scale, log_volume_factors)
    return (nib.Nifti1Image(t1w.astype(np.float32), affine),
            nib.Nifti1Image(lab, affine), truth)


def anat_subject(out: Path, sub: str, row: dict[str, Any], site: dict[str, Any], atlas: Any,
                 idx: int, seed: int, res: int, eff: SimulationEffects) -> dict[str, Any]:
    """Write one participant's T1w and warped labels; return their truth."""
    t1w, lab, affine, truth = t1w_arrays(
        atlas, [seed, STREAMS["anat"], idx], row["group"], eff,
        site["volume_bias_log"], site["t1_intensity_scale"],
    )
    zooms = (float(res),) * 3
    write_bytes(out / sub / "anat" / f"{sub}_T1w.nii.gz", nifti_bytes(t1w, affine, zooms=zooms))
    write_json(out / sub / "anat" / f"{sub}_T1w.json", {
        "Manufacturer": "danemap simulator", "MagneticFieldStrength": 3,
        "MRAcquisitionType": "3D", "PulseSequenceType": "MPRAGE (simulated)",
        "Note": "MNI152 2009c template warped by a planted deformation; already in MNI space",
    })
    dseg = (out / "derivatives" / "danemap-sim" / sub / "anat"
            / f"{sub}_space-MNI152NLin2009cAsym_res-{res}_dseg.nii.gz")
    write_bytes(dseg, nifti_bytes(lab, affine, dtype=np.int16, zooms=zooms))
    keep = ("icv_mm3", "icv_log_factor", "log_volume_factor", "volume_mm3",
            "intended_volume_mm3")
    return {k: truth[k] for k in keep}


def anat_summary(per: dict[str, Any], eff: SimulationEffects) -> dict[str, Any]:
    """Cohort-level structural truth: planted d and realised group means."""
    names = list(next(iter(per.values()))["anat"]["volume_mm3"])
    means: dict[str, dict[str, float | None]] = {}
    for n in names:
        means[n] = {}
        for grp in ("TD", "ADHD"):
            vals = [p["anat"]["volume_mm3"][n] for p in per.values() if p["group"] == grp]
            means[n][grp] = float(np.mean(vals)) if vals else None
    return {
        "planted_cohens_d": {n: eff.vol_d.get(stem(n), 0.0) * eff.effect_scale for n in names},
        "cohens_d_definition": ("ADHD minus TD mean of ICV-adjusted log regional volume "
                                "divided by vol_subject_sd"),
        "vol_subject_sd": eff.vol_subject_sd,
        "icv_sd": eff.icv_sd,
        "effect_scale": eff.effect_scale,
        "deformation": (f"Voronoi-cell radial scaling about region centroids (weight 1 up to "
                        f"{CORE_MM} mm from the region, cosine taper over {TAPER_MM} mm), then "
                        "global scaling for ICV"),
        "volume_definition": "voxel count of the warped atlas labels x voxel volume (mm3)",
        "realised_volume_group_mean_mm3": means,
        "labels": "derivatives/danemap-sim/sub-*/anat/*_dseg.nii.gz",
    }
