"""T1w images with planted regional volume changes, and the matching warped atlas labels.

The deformation is the flow of a stationary velocity field ``v = grad(phi)`` whose divergence
is ``rho_r`` (the planted log volume factor) inside every atlas region ``r``, 0 in unlabelled
brain tissue, and a small constant outside the brain that balances the total (Poisson
equation solved by FFT). A region is carried along by its own flow, so its volume changes by
``exp(rho_r)`` exactly in the continuum while unlabelled tissue keeps its volume; the field is
continuous (a smooth push/pull of the surroundings, no tearing). A global scaling about the
brain centroid then sets the ICV.

Boundary moves of a few tenths of a millimetre are below a voxel, so the labels are not
warped by nearest neighbour (which would ignore them) but as the arg-max of the Gaussian-
smoothed one-hot maps (sigma 1 voxel) evaluated at the pulled-back positions; the template
labels are the same arg-max at the grid points. A short fixed-point loop corrects ``rho`` per
region until the voxel counts of the warped labels realise the intended factors (within
``CALIBRATION_TOL`` in log volume for regions of at least ``CALIBRATION_MIN_MM3``), so the
written dseg files are exact truth and match the planted factors. The same mapping warps the
MNI152 template (linear interpolation) and the brain mask (nearest neighbour).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from danemap.atlas._aal3 import COLIN27_T1
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

SMOOTH_VOX = 1.0  # Gaussian sigma (voxels) of the one-hot maps that define label boundaries
MARGIN_VOX = 4
TINY_PEAK = 0.7
JITTER = 0.25
JITTER_SMOOTH_VOX = 1.5
CALIBRATION_TOL = 0.008  # log volume
CALIBRATION_MIN_MM3 = 1000.0
CALIBRATION_ITER = 6
CALIBRATION_GAIN = 0.8


@functools.lru_cache(maxsize=4)
def _soft_maps(label_bytes: bytes, shape: tuple[int, ...],
               indices: tuple[int, ...]) -> tuple[list[tuple[int, np.ndarray, np.ndarray]],
                                                  np.ndarray]:
    """Smoothed one-hot crops ``(index, lower corner, crop)`` and template labels; cached."""
    from scipy import ndimage

    labels = np.frombuffer(label_bytes, dtype=np.int32).reshape(shape)
    objs = ndimage.find_objects(labels)
    rng = np.random.default_rng(20240601)  # fixed: the same jitter for every subject
    maps = []
    for i in indices:
        sl = objs[i - 1]
        lo = np.array([max(s.start - MARGIN_VOX, 0) for s in sl])
        hi = np.array([min(s.stop + MARGIN_VOX, shape[k]) for k, s in enumerate(sl)])
        crop = labels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] == i
        sm = ndimage.gaussian_filter(crop.astype(np.float64), SMOOTH_VOX, mode="constant")
        # Tiny nuclei (a few voxels) never reach 0.5 once smoothed: scale their peak to
        # TINY_PEAK, so they keep about their voxel count (a Gaussian at 0.7 x peak beats
        # the background within ~0.8 voxel of the peak).
        peak = float(sm.max())
        if 0.0 < peak < 0.5:
            sm *= TINY_PEAK / peak
            sm.setflags(write=False)
            maps.append((i, lo, sm))
            continue
        # Atlas boundaries on lattice planes would flip a whole face of voxels at once when
        # moved by half a voxel; a smooth random jitter (largest at the boundary) makes them
        # wavy at the sub-voxel scale, so voxel counts follow sub-voxel moves smoothly.
        noise = ndimage.gaussian_filter(rng.standard_normal(sm.shape), JITTER_SMOOTH_VOX)
        noise *= JITTER / max(float(noise.std()), 1e-12)
        sm = sm + noise * 4.0 * np.clip(sm, 0.0, 1.0) * (1.0 - np.clip(sm, 0.0, 1.0))
        sm.setflags(write=False)
        maps.append((i, lo, sm))
    grid = np.indices(shape, dtype=np.float64).reshape(3, -1)
    base = _soft_labels(maps, grid).reshape(shape)
    base.setflags(write=False)
    return maps, base


def _selections(maps: list[tuple[int, np.ndarray, np.ndarray]],
                pts: np.ndarray) -> list[np.ndarray]:
    """Per map, the indices of ``pts`` (3, n) inside its crop (reused for nearby points)."""
    out = []
    for _, lo, sm in maps:
        hi = lo + np.array(sm.shape) - 1
        out.append(np.flatnonzero(np.all((pts >= lo[:, None]) & (pts <= hi[:, None]), axis=0)))
    return out


def _soft_labels(maps: list[tuple[int, np.ndarray, np.ndarray]], pts: np.ndarray,
                 sels: list[np.ndarray] | None = None) -> np.ndarray:
    """Arg-max label of the smoothed one-hot maps at voxel positions ``pts`` (3, n).

    ``sels`` (from :func:`_selections` on positions within a voxel of ``pts``) saves the
    crop tests; positions just outside a crop read its (near-zero) edge.
    """
    from scipy import ndimage

    if sels is None:
        sels = _selections(maps, pts)
    n = pts.shape[1]
    best = np.zeros(n)
    total = np.zeros(n)
    lab = np.zeros(n, dtype=np.int16)
    for (i, lo, sm), sel in zip(maps, sels, strict=True):
        if sel.size == 0:
            continue
        val = ndimage.map_coordinates(sm, pts[:, sel] - lo[:, None], order=1, mode="nearest")
        total[sel] += val
        up = val > best[sel]
        best[sel[up]] = val[up]
        lab[sel[up]] = i
    lab[best <= 1.0 - total] = 0
    return lab


def _velocity(rho: np.ndarray, zooms: np.ndarray) -> np.ndarray:
    """Velocity (voxels per unit time, shape (3, *rho.shape)) with divergence ``rho`` (1/time).

    ``v = grad(phi)``, ``laplacian(phi) = rho`` solved spectrally; ``rho`` must sum to 0.
    """
    from scipy import fft

    shape = rho.shape
    pshape = tuple(fft.next_fast_len(s + 2 * MARGIN_VOX, real=True) for s in shape)
    rh = fft.rfftn(rho, s=pshape, workers=1)
    ks = [2.0 * np.pi * fft.fftfreq(n, d=float(z)) for n, z in zip(pshape[:-1], zooms[:-1],
                                                                   strict=True)]
    ks.append(2.0 * np.pi * fft.rfftfreq(pshape[-1], d=float(zooms[-1])))
    kk = np.meshgrid(*ks, indexing="ij", sparse=True)
    k2 = kk[0] ** 2 + kk[1] ** 2 + kk[2] ** 2
    k2[0, 0, 0] = 1.0
    ph = -rh / k2
    ph[0, 0, 0] = 0.0
    out = np.empty((3, *shape))
    for a in range(3):
        v = fft.irfftn(1j * kk[a] * ph, s=pshape, workers=1)
        out[a] = v[: shape[0], : shape[1], : shape[2]] / float(zooms[a])
    return out


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

    maps, base = _soft_maps(labels.tobytes(), labels.shape, tuple(indices))
    nlab = int(labels.max()) + 1
    idx = np.asarray(indices)
    base_n = np.bincount(base.ravel(), minlength=nlab)[idx].astype(float)
    target = np.array([logf[n] for n in names]) + icv_log  # log(realised / template)
    big = base_n * voxvol >= CALIBRATION_MIN_MM3
    # Output grid y = S(x) with S the ICV scaling about the brain centroid. The flow is run
    # in the output frame (S conjugates it to a flow whose divergence is rho(S^-1 y)), so
    # src = S^-1(y - w(y)) (first order inverse of a sub-voxel flow; calibrated below).
    grid = np.indices(labels.shape, dtype=np.float64).reshape(3, -1)
    c_brain = np.asarray(ndimage.center_of_mass(mask))[:, None]
    shrink = float(np.exp(-icv_log / 3.0))
    back = c_brain + (grid - c_brain) * shrink
    near = tuple(np.clip(np.rint(back[k]).astype(np.int64), 0, labels.shape[k] - 1)
                 for k in range(3))
    base_s = base[near].reshape(labels.shape)
    inside = (mask[near].reshape(labels.shape)) | (base_s > 0)
    outside = ~inside
    sels = _selections(maps, back)

    drive = target - icv_log  # divergence per region, corrected below
    lut = np.zeros(nlab)
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for _ in range(CALIBRATION_ITER):
        lut[idx] = drive
        rho = lut[base_s]
        rho[outside] = -rho[inside].sum() / max(int(outside.sum()), 1)
        w = _velocity(rho, zooms).reshape(3, -1)
        src_k = c_brain + (grid - w - c_brain) * shrink
        lab_k = _soft_labels(maps, src_k, sels)
        counts = np.bincount(lab_k, minlength=nlab)[idx].astype(float)
        err = target - np.log(np.maximum(counts, 0.5) / np.maximum(base_n, 1.0))
        worst = float(np.max(np.abs(err[big]))) if np.any(big) else 0.0
        if best is None or worst < best[0]:
            best = (worst, src_k, lab_k)
        if worst < CALIBRATION_TOL:
            break
        drive = np.clip(drive + CALIBRATION_GAIN * err, target - icv_log - 0.5,
                        target - icv_log + 0.5)
    assert best is not None
    _, src, lab_flat = best

    t1w = ndimage.map_coordinates(t1, src, order=1, mode="constant", cval=0.0)
    mask_w = ndimage.map_coordinates(mask.astype(np.uint8), src, order=0, mode="constant")
    t1w = t1w.reshape(labels.shape)
    lab_w = lab_flat.reshape(labels.shape).astype(np.int16)
    mask_w = mask_w.reshape(labels.shape).astype(bool) | (lab_w > 0)
    t1w = np.clip(t1w * 1000.0 + rng.normal(0.0, 10.0, t1w.shape), 0.0, None) * intensity_scale

    final = np.bincount(lab_w.ravel(), minlength=nlab)
    truth = {
        "group": group,
        "icv_log_factor": icv_log,
        "icv_mm3": float(mask_w.sum() * voxvol),
        "template_icv_mm3": float(mask.sum() * voxvol),
        "volume_bias_log": volume_bias_log,
        "intensity_scale": intensity_scale,
        "log_volume_factor": logf,
        "intended_volume_factor": {n: float(np.exp(t)) for n, t in zip(names, target,
                                                                       strict=True)},
        "intended_volume_mm3": {n: float(b * voxvol * np.exp(t))
                                for n, b, t in zip(names, base_n, target, strict=True)},
        "volume_mm3": {n: float(final[i] * voxvol) for n, i in zip(names, indices, strict=True)},
        "template_volume_mm3": {n: float(b * voxvol) for n, b in zip(names, base_n,
                                                                     strict=True)},
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
        Per region: log volume factor, intended volume factor (``exp(log factor + ICV
        log factor)``), template, intended and realised volume (mm3: voxel count of the
        warped labels x voxel volume); ICV (warped brain mask) and its log factor. The
        realised volumes of regions of at least 1000 mm3 match the intended ones within
        about 1% (calibrated, see the module notes).
    """
    import nibabel as nib

    eff = SimulationEffects() if effects is None else effects
    t1w, lab, affine, truth = t1w_arrays(atlas, seed, group, eff, volume_bias_log,
                                         intensity_scale, log_volume_factors)
    return (nib.Nifti1Image(t1w.astype(np.float32), affine),
            nib.Nifti1Image(lab, affine), truth)


def anat_subject(out: Path, sub: str, row: dict[str, Any], site: dict[str, Any], atlas: Any,
                 idx: int, seed: int, res: int, eff: SimulationEffects,
                 base: str = "mni152", realistic: bool | None = None) -> dict[str, Any]:
    """Write one participant's T1w and warped labels; return their truth.

    ``realistic`` (default: true for the Colin27 base, false for MNI152, whose legacy
    output stays byte-identical) selects :func:`realistic_t1w_arrays`: head pose, bias
    field, Rician noise and site contrast; the T1w is then not in MNI space and its labels
    are written as ``{sub}_dseg.nii.gz`` (the T1w's own grid).
    """
    if base not in ANAT_BASES:
        raise InputError(f"anat_base: expected one of {list(ANAT_BASES)}, found {base!r}")
    real = (base == "colin27") if realistic is None else bool(realistic)
    zooms = (float(res),) * 3
    if real:
        t1w, lab, affine, truth = realistic_t1w_arrays(
            atlas, [seed, STREAMS["anat"], idx], row["group"], eff, base,
            site["volume_bias_log"], site["t1_intensity_scale"],
            site_contrast(dict(site, name=row.get("site", "site-1")), seed))
        note = (f"{'Colin27' if base == 'colin27' else 'MNI152 2009 template'} brain warped by a "
                "planted deformation, in a random head pose (NOT in MNI space), with a bias "
                "field, Rician noise and a site contrast")
        dseg_name = f"{sub}_dseg.nii.gz"
    else:
        t1w, lab, affine, truth = t1w_arrays(
            atlas, [seed, STREAMS["anat"], idx], row["group"], eff,
            site["volume_bias_log"], site["t1_intensity_scale"],
        )
        note = "MNI152 2009c template warped by a planted deformation; already in MNI space"
        dseg_name = f"{sub}_space-MNI152NLin2009cAsym_res-{res}_dseg.nii.gz"
    write_bytes(out / sub / "anat" / f"{sub}_T1w.nii.gz", nifti_bytes(t1w, affine, zooms=zooms))
    write_json(out / sub / "anat" / f"{sub}_T1w.json", {
        "Manufacturer": "danemap simulator", "MagneticFieldStrength": 3,
        "MRAcquisitionType": "3D", "PulseSequenceType": "MPRAGE (simulated)",
        "Note": note,
    })
    dseg = out / "derivatives" / "danemap-sim" / sub / "anat" / dseg_name
    write_bytes(dseg, nifti_bytes(lab, affine, dtype=np.int16, zooms=zooms))
    keep = ("icv_mm3", "icv_log_factor", "log_volume_factor", "volume_mm3",
            "intended_volume_mm3", "intended_volume_factor", "dseg_volume_mm3", "pose",
            "contrast", "base")
    return {k: truth[k] for k in keep if k in truth}


def anat_summary(per: dict[str, Any], eff: SimulationEffects) -> dict[str, Any]:
    """Cohort-level structural truth: planted d and realised group means."""
    first = next(iter(per.values()))["anat"]
    names = list(first["volume_mm3"])
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
        "deformation": ("flow of a stationary velocity field whose divergence is each region's "
                        "log volume factor (0 in unlabelled tissue), then global scaling for "
                        "ICV; labels are the arg-max of Gaussian-smoothed (sigma "
                        f"{SMOOTH_VOX} voxel) one-hot maps, and the per-region divergence is "
                        "calibrated until the label voxel counts realise the intended factors "
                        f"(|log error| < {CALIBRATION_TOL} for regions >= "
                        f"{CALIBRATION_MIN_MM3:g} mm3, at most {CALIBRATION_ITER} passes, "
                        "best pass kept)"),
        "intended_definition": ("intended_volume_mm3 = template volume x intended_volume_factor"
                                " = template x exp(log_volume_factor + icv_log_factor)"),
        "volume_definition": (
            "voxel count of the warped atlas labels x voxel volume (mm3)" if "pose" not in first
            else "sum over the written T1w's voxels of each atlas region's indicator "
                 "interpolated linearly at the voxel's source position x voxel volume (mm3), "
                 "in the written T1w's grid; dseg_volume_mm3: voxel count of the written dseg"),
        "base": first.get("base", "mni152"),
        "realised_volume_group_mean_mm3": means,
        "labels": "derivatives/danemap-sim/sub-*/anat/*_dseg.nii.gz",
    }


def group_difference_pct(volumes: Mapping[str, Mapping[str, float]],
                         groups: Mapping[str, str], regions: Sequence[str]) -> float:
    """ADHD vs TD difference of regional volumes in %, averaged over regions.

    Parameters
    ----------
    volumes : mapping
        ``{participant: {region: volume}}`` (recovered or true), every participant of the
        comparison.
    groups : mapping
        ``{participant: "ADHD" or "TD"}`` for those participants.
    regions : sequence of str
        Regions to average over.

    Returns
    -------
    float
        Mean over ``regions`` of ``100 * (ADHD mean / TD mean - 1)``; NaN without regions.
    """
    out = []
    for r in regions:
        means = {k: np.mean([v[r] for s, v in volumes.items() if groups[s] == k])
                 for k in ("ADHD", "TD")}
        out.append(100.0 * (means["ADHD"] / means["TD"] - 1.0))
    return float(np.mean(out)) if out else float("nan")


# --- Realistic T1w: a real base brain, head pose, bias field, Rician noise, site contrast ---

#: Colin27 (Holmes 1998) single-subject T1 of the Debian package mricron-data; AAL (and so the
#: danemap atlas) was drawn on it.
COLIN27_PATH = COLIN27_T1
COLIN27_BRAIN_PATH = Path("/usr/share/mricron/templates/ch2bet.nii.gz")
ANAT_BASES = ("mni152", "colin27")
POSE_MAX_DEG = 8.0  # uniform in [-8, 8] degrees about each axis
POSE_MAX_MM = 8.0  # uniform in [-8, 8] mm along each axis
BIAS_AMPLITUDE = 0.15  # peak-to-centre log amplitude of the smooth bias field
BIAS_SMOOTH_MM = 40.0
RICIAN_SIGMA = 0.02  # noise SD relative to the WM intensity (1000)
SITE_CONTRAST_SD = 0.08  # SD of the per-site intensity exponent around 1


def _colin27(shape: tuple[int, ...], affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Colin27 T1 (WM about 1) and its brain mask (ch2bet > 0, filled) on the grid."""
    import nibabel as nib
    from scipy import ndimage

    from danemap.simulate._common import resample_to_grid

    if not COLIN27_PATH.is_file() or not COLIN27_BRAIN_PATH.is_file():
        raise InputError(
            f"anat_base 'colin27': {COLIN27_PATH} (or {COLIN27_BRAIN_PATH.name}) is missing; "
            "install the Debian package mricron-data (apt-get install mricron-data)")
    t1: Any = nib.load(COLIN27_PATH)
    bet: Any = nib.load(COLIN27_BRAIN_PATH)
    data = resample_to_grid(np.asarray(t1.dataobj), t1.affine, shape, affine, order=1)
    brain = resample_to_grid(np.asarray(bet.dataobj) > 0, bet.affine, shape, affine, order=1)
    mask = ndimage.binary_fill_holes(brain >= 0.5)
    wm = float(np.percentile(data[mask], 90))
    return np.clip(data / wm, 0.0, None), np.asarray(mask)


def _rigid(rng: np.random.Generator, centre: np.ndarray,
           zooms: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, list[float]]]:
    """Voxel-space rigid map output -> frame (matrix, offset) and the drawn pose."""
    ang = np.deg2rad(rng.uniform(-POSE_MAX_DEG, POSE_MAX_DEG, 3))
    shift = rng.uniform(-POSE_MAX_MM, POSE_MAX_MM, 3)
    cx, cy, cz = np.cos(ang)
    sx, sy, sz = np.sin(ang)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    rot = rz @ ry @ rx  # in mm space; voxels are isotropic on the atlas grid
    z = np.diag(zooms)
    m = np.linalg.inv(z) @ rot @ z
    off = centre + np.linalg.solve(z, shift) - m @ centre
    pose = {"rotation_deg": np.rad2deg(ang).tolist(), "translation_mm": shift.tolist()}
    return m, off, pose


def _bias_field(rng: np.random.Generator, shape: tuple[int, ...], zooms: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    f = ndimage.gaussian_filter(rng.standard_normal(shape), BIAS_SMOOTH_MM / zooms,
                                mode="wrap")
    f *= BIAS_AMPLITUDE / max(float(np.abs(f).max()), 1e-12)
    return np.asarray(np.exp(f))


def site_contrast(site: Any, seed: int) -> float:
    """Intensity exponent of a site (``t1_contrast`` of the site dict, else drawn).

    Parameters
    ----------
    site : dict or str
        The site's dict (``t1_contrast`` used when present) or its name (``site-2``).
    seed : int
        Master seed (the draw depends on it and the site number only).

    Returns
    -------
    float
        ``gamma``: the written intensity is ``(T1 / WM) ** gamma``.
    """
    if isinstance(site, dict) and "t1_contrast" in site:
        return float(site["t1_contrast"])
    name = site.get("name", "site-1") if isinstance(site, dict) else str(site)
    k = int(name.rsplit("-", 1)[-1]) if name.rsplit("-", 1)[-1].isdigit() else 0
    rng = np.random.default_rng([int(seed), STREAMS["anat"], 10_000 + k])
    return float(np.exp(rng.normal(0.0, SITE_CONTRAST_SD)))


def region_volumes_interp(labels: np.ndarray, src: np.ndarray, indices: Sequence[int],
                          voxvol: float) -> dict[int, float]:
    """Volume (mm3) of each region sampled at ``src`` (3, n): sum of interpolated indicators.

    Each region's indicator (on the ``labels`` grid) is interpolated linearly at the source
    position of every written voxel (within the region's bounding box), summed and
    multiplied by the voxel volume.
    """
    from scipy import ndimage

    objs = ndimage.find_objects(labels)
    out = {}
    for i in indices:
        sl = objs[i - 1]
        lo = np.array([max(s.start - 1, 0) for s in sl])
        hi = np.array([min(s.stop + 1, labels.shape[k]) for k, s in enumerate(sl)])
        crop = (labels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] == i).astype(np.float64)
        sel = np.all((src >= lo[:, None] - 1) & (src <= hi[:, None]), axis=0)
        val = ndimage.map_coordinates(crop, src[:, sel] - lo[:, None], order=1,
                                      mode="constant", cval=0.0)
        out[int(i)] = float(val.sum() * voxvol)
    return out


def realistic_t1w_arrays(atlas: Any, seed: int | Sequence[int], group: str,
                         eff: SimulationEffects, base: str = "colin27",
                         volume_bias_log: float = 0.0, intensity_scale: float = 1.0,
                         contrast: float = 1.0,
                         log_volume_factors: Mapping[str, float] | None = None,
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Simulate a T1w on a real base brain in a random head pose: (t1, labels, affine, truth).

    The base (Colin27 or the MNI152 template) is deformed by the divergence flow of the
    module notes (one first-order step, no calibration: the truth is measured), then by a
    random rigid head pose (:data:`POSE_MAX_DEG`, :data:`POSE_MAX_MM`), multiplied by a
    smooth bias field, raised to the site ``contrast`` exponent and given Rician noise.

    The truth is measured in the written T1w's grid: ``volume_mm3`` is the sum over written
    voxels of each atlas region's indicator interpolated linearly at the voxel's source
    position, x voxel volume; ``dseg_volume_mm3`` is the voxel count of the written
    (nearest-label) dseg; ``icv_mm3`` the same interpolated volume of the base brain mask.
    """
    from scipy import ndimage

    if group not in ("TD", "ADHD"):
        raise InputError(f"group: expected 'TD' or 'ADHD', found {group!r}")
    if base not in ANAT_BASES:
        raise InputError(f"anat_base: expected one of {list(ANAT_BASES)}, found {base!r}")
    rng = np.random.default_rng(seed)
    labels, affine, names, indices = atlas_arrays(atlas)
    if base == "colin27":
        t1, mask = _colin27(labels.shape, affine)
    else:
        t1, mask = template_and_mask(labels, affine)
        t1 = t1 / float(np.percentile(t1[mask], 90))
    mask = np.asarray(mask | (labels > 0))
    logf = _log_factors(names, eff, group, rng, volume_bias_log)
    if log_volume_factors is not None:
        unknown = sorted(set(log_volume_factors) - set(names))
        if unknown:
            raise InputError(
                f"log_volume_factors: unknown region(s) {unknown}; atlas regions are {names}")
        logf.update({k: float(v) for k, v in log_volume_factors.items()})
    icv_log = float(rng.normal(0.0, eff.icv_sd))
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    voxvol = float(np.prod(zooms))
    shape = labels.shape
    nlab = int(labels.max()) + 1
    lut = np.zeros(nlab)
    lut[np.asarray(indices)] = [logf[n] for n in names]
    rho = lut[labels]
    outside = ~mask
    rho[outside] = -rho[mask].sum() / max(int(outside.sum()), 1)
    w = _velocity(rho, zooms)  # voxels, in the template frame
    c_brain = np.asarray(ndimage.center_of_mass(mask))
    m, off, pose = _rigid(rng, c_brain, zooms)
    grid = np.indices(shape, dtype=np.float64).reshape(3, -1)
    frame = m @ grid + off[:, None]  # posed output voxel -> template-frame voxel (scaled)
    shrink = float(np.exp(-icv_log / 3.0))
    frame = c_brain[:, None] + (frame - c_brain[:, None]) * shrink  # ICV scaling
    wf = np.stack([ndimage.map_coordinates(w[a], frame, order=1, mode="nearest")
                   for a in range(3)])
    src = frame - wf
    data = ndimage.map_coordinates(t1, src, order=1, mode="constant", cval=0.0).reshape(shape)
    lab_w = ndimage.map_coordinates(labels, src, order=0, mode="constant",
                                    cval=0).reshape(shape).astype(np.int16)
    vols = region_volumes_interp(labels, src, indices, voxvol)
    icv = float(ndimage.map_coordinates(mask.astype(np.float64), src, order=1, mode="constant",
                                        cval=0.0).sum() * voxvol)
    bias = _bias_field(rng, shape, zooms)
    signal = np.clip(data, 0.0, None) ** float(contrast) * bias * 1000.0 * intensity_scale
    sigma = RICIAN_SIGMA * 1000.0 * intensity_scale
    noisy = np.hypot(signal + rng.normal(0.0, sigma, shape), rng.normal(0.0, sigma, shape))
    counts = np.bincount(lab_w.ravel(), minlength=nlab)
    tpl_n = np.bincount(labels.ravel(), minlength=nlab)
    truth = {
        "group": group,
        "base": base,
        "pose": pose,
        "contrast": float(contrast),
        "icv_log_factor": icv_log,
        "icv_mm3": icv,
        "template_icv_mm3": float(mask.sum() * voxvol),
        "volume_bias_log": volume_bias_log,
        "intensity_scale": intensity_scale,
        "log_volume_factor": logf,
        "intended_volume_factor": {n: float(np.exp(logf[n] + icv_log)) for n in names},
        "intended_volume_mm3": {n: float(tpl_n[i] * voxvol * np.exp(logf[n] + icv_log))
                                for n, i in zip(names, indices, strict=True)},
        "volume_mm3": {n: vols[i] for n, i in zip(names, indices, strict=True)},
        "dseg_volume_mm3": {n: float(counts[i] * voxvol) for n, i in zip(names, indices,
                                                                          strict=True)},
        "template_volume_mm3": {n: float(tpl_n[i] * voxvol) for n, i in zip(names, indices,
                                                                            strict=True)},
    }
    return noisy.astype(np.float32), lab_w, affine, truth
