"""DAT SPECT ([123I]FP-CIT) and optional dynamic DAT PET (SRTM) with known binding.

The striatal DAT density map is built from the atlas labels and the ``dat_bp`` table of
:class:`SimulationEffects` (never from external template images). Static SPECT:
``C = ND * (1 + BP)`` (ND = 1 in the brain, 0 outside), blurred by a Gaussian PSF, Poisson
noise at ``spect_counts``, times a site calibration scale. The occipital reference has no
specific binding, so the true (un-blurred) specific binding ratio of a region is its BP
(``truth["true_sbr"]``). The expected SBR of a region is computed on the noise-free
blurred image: ``SBR = mean(region) / mean(occipital reference) - 1`` (partial volume
included), what an uncorrected analysis measures.

Striatal BP of an ADHD participant changes by :func:`dat_change_pct` percent: the group
effect ``dat_adhd_pct`` plus (``med_status == "stimulant"``) or minus (``"naive"``) the
medication modifier ``dat_med_pct``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from danemap.errors import InputError
from danemap.simulate._common import (
    STREAMS,
    STRIATAL_STEMS,
    atlas_arrays,
    nifti_bytes,
    stem,
    template_and_mask,
    write_bytes,
    write_json,
)
from danemap.simulate._effects import SimulationEffects

REFERENCE_STEM = "Occipital"
PET_FWHM_MM = 5.0
K2_REF = 0.2  # 1/min, efflux of the reference region (k2' of the SRTM)
K4 = 0.5  # 1/min, dissociation rate of the two-tissue targets (k3 = BP_ND k4)
NOISE = 0.15  # noise SD per sqrt(kBq/mL per minute of frame)


def _sigma_vox(fwhm_mm: float, affine: np.ndarray) -> np.ndarray:
    zooms = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    return fwhm_mm / np.sqrt(8.0 * np.log(2.0)) / zooms


def _blur(img: np.ndarray, fwhm_mm: float, affine: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    if fwhm_mm <= 0:
        return img.astype(np.float64)
    return ndimage.gaussian_filter(img.astype(np.float64), _sigma_vox(fwhm_mm, affine),
                                   mode="constant", cval=0.0, truncate=4.0)


#: Medication statuses of participants.tsv and the sign of the medication modifier.
MED_SIGN = {"stimulant": 1.0, "naive": -1.0}


def dat_change_pct(effects: SimulationEffects, group: str,
                   med_status: str | None = None) -> float:
    """Planted striatal BP change (percent, relative to TD) of one participant.

    Parameters
    ----------
    effects : SimulationEffects
        ``dat_adhd_pct`` and ``dat_med_pct``.
    group : {"TD", "ADHD"}
        Diagnostic group.
    med_status : {"stimulant", "naive"} or None
        ADHD medication history (participants.tsv); None or ``"n/a"``: unknown.

    Returns
    -------
    float
        0 for TD; ``dat_adhd_pct + dat_med_pct`` (stimulant), ``dat_adhd_pct -
        dat_med_pct`` (naive) or ``dat_adhd_pct`` (unknown) for ADHD.

    Raises
    ------
    InputError
        On another group or medication status.
    """
    _check_group(group)
    if med_status in (None, "", "n/a"):
        sign = 0.0
    elif med_status in MED_SIGN:
        sign = MED_SIGN[str(med_status)]
    else:
        raise InputError(f"med_status: expected one of {sorted(MED_SIGN)} or None, found "
                         f"{med_status!r}")
    if group != "ADHD":
        return 0.0
    return float(effects.dat_adhd_pct + sign * effects.dat_med_pct)


def subject_bp(names: Sequence[str], effects: SimulationEffects, group: str,
               striatal_factor: float, med_status: str | None = None) -> dict[str, float]:
    """Return the true BP_ND per region (``dat_bp``; striatum scaled by group and subject)."""
    out = {}
    adhd = 1.0 + dat_change_pct(effects, group, med_status) / 100.0
    for n in names:
        s = stem(n)
        bp = effects.dat_bp.get(s, effects.dat_bp_other)
        if s in STRIATAL_STEMS:
            bp *= adhd * striatal_factor
        out[n] = float(bp)
    return out


def measure_sbr(img: np.ndarray, labels: np.ndarray, names: Sequence[str],
                indices: Sequence[int]) -> dict[str, float]:
    """Specific binding ratio ``mean(region) / mean(occipital) - 1`` of every region."""
    ref_idx = [i for n, i in zip(names, indices, strict=True) if stem(n) == REFERENCE_STEM]
    if not ref_idx:
        raise InputError(
            f"atlas: no '{REFERENCE_STEM}_L/_R' reference region; found {list(names)}"
        )
    ref = float(img[np.isin(labels, ref_idx)].mean())
    return {n: float(img[labels == i].mean()) / ref - 1.0
            for n, i in zip(names, indices, strict=True)}


def _check_group(group: str) -> None:
    if group not in ("TD", "ADHD"):
        raise InputError(f"group: expected 'TD' or 'ADHD', found {group!r}")


def spect_arrays(atlas: Any, seed: int | Sequence[int], group: str, effects: SimulationEffects,
                 calibration_scale: float, noise: bool, med_status: str | None = None,
                 ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Core of :func:`simulate_dat_spect`; returns (image, affine, truth)."""
    _check_group(group)
    change = dat_change_pct(effects, group, med_status)
    if not calibration_scale > 0:
        raise InputError(f"calibration_scale: expected > 0, found {calibration_scale!r}")
    rng = np.random.default_rng(seed)
    labels, affine, names, indices = atlas_arrays(atlas)
    _, mask = template_and_mask(labels, affine)
    factor = float(np.exp(rng.normal(0.0, effects.dat_subject_sd_pct / 100.0)))
    bp = subject_bp(names, effects, group, factor, med_status)
    lut = np.zeros(int(labels.max()) + 1)
    for n, i in zip(names, indices, strict=True):
        lut[i] = bp[n]
    conc = mask * (1.0 + lut[labels])
    clean = _blur(conc, effects.spect_fwhm_mm, affine)
    expected = measure_sbr(clean, labels, names, indices)
    if noise:
        lam = np.clip(clean, 0.0, None) * effects.spect_counts
        img = rng.poisson(lam) / effects.spect_counts
    else:
        img = clean
    img = img * (1000.0 * calibration_scale)  # ND uptake ~1000 Bq/mL before calibration
    truth = {
        "group": group,
        "med_status": med_status if med_status not in ("", "n/a") else None,
        "dat_change_pct": change,
        "striatal_factor": factor,
        "calibration_scale": calibration_scale,
        "true_bp": bp,
        "true_sbr": dict(bp),
        "expected_sbr": expected,
        "reference": f"{REFERENCE_STEM}_L + {REFERENCE_STEM}_R",
        "fwhm_mm": effects.spect_fwhm_mm,
        "counts": effects.spect_counts,
    }
    return img, affine, truth


def simulate_dat_spect(atlas: Any, seed: int | Sequence[int] = 0, *, group: str = "TD",
                       effects: SimulationEffects | None = None,
                       calibration_scale: float = 1.0, noise: bool = True,
                       med_status: str | None = None) -> tuple[Any, dict[str, Any]]:
    """Simulate one static [123I]FP-CIT DAT SPECT image with known regional binding.

    Parameters
    ----------
    atlas : Atlas
        From :func:`danemap.atlas.load_atlas`; defines the grid and the DAT density map.
    seed : int or sequence of int
        Seed of :func:`numpy.random.default_rng`.
    group : {"TD", "ADHD"}
        ADHD changes striatal BP by ``effects.dat_adhd_pct`` percent, modified by
        ``med_status``.
    effects : SimulationEffects or None
        BP table, group and medication effects, between-subject SD, PSF and count level
        (defaults if None).
    calibration_scale : float
        Multiplicative scanner calibration (site effect); does not change SBR.
    noise : bool
        Add Poisson noise; if false the image is the noise-free blurred one, on which the
        SBR equals ``truth["expected_sbr"]``.
    med_status : {"stimulant", "naive"} or None
        Medication history of an ADHD participant: adds (stimulant) or subtracts (naive)
        ``effects.dat_med_pct`` percentage points; ignored for TD.

    Returns
    -------
    img : nibabel.Nifti1Image
        3D float32 image.
    truth : dict
        ``true_bp``, ``true_sbr`` (the un-blurred SBR, equal to BP) and ``expected_sbr``
        (on the blurred noise-free image) per region, the planted ``dat_change_pct``, the
        subject's striatal factor, the calibration scale and the noise settings.
    """
    import nibabel as nib

    eff = SimulationEffects() if effects is None else effects
    data, affine, truth = spect_arrays(atlas, seed, group, eff, calibration_scale, noise,
                                       med_status=med_status)
    return nib.Nifti1Image(data.astype(np.float32), affine), truth


def dynamic_arrays(atlas: Any, seed: int | Sequence[int], bp: dict[str, float],
                   calibration_scale: float) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """4D dynamic DAT PET: compartment-model frame means, blurred, with counting noise.

    The reference region (and the brain outside the regions) follows a one-tissue
    compartment model, every region a two-tissue model with ``k3 = BP_ND k4``, integrated
    exactly (:func:`danemap.simulate._kinetics.reference_target_tacs`, the Feng input
    function). Each frame is blurred by the PET PSF, and Gaussian noise with a variance
    proportional to the frame's counts (``C / duration``) is added.
    """
    from danemap.simulate._kinetics import FRAMES_11C, frame_times, reference_target_tacs

    rng = np.random.default_rng(seed)
    labels, affine, names, indices = atlas_arrays(atlas)
    _, mask = template_and_mask(labels, affine)
    durations = np.asarray(FRAMES_11C)
    start, end = frame_times(FRAMES_11C)
    r1 = np.array([1.1 if stem(n) in STRIATAL_STEMS else 1.0 for n in names])
    bpnd = np.array([bp[n] for n in names])
    ref, targets = reference_target_tacs(start, end, bpnd, r1=r1, k2_ref=K2_REF, k4=K4,
                                         target="2tcm")
    params = {n: {"BPND": float(b), "R1": float(r), "k2": float(r * K2_REF), "k4": K4}
              for n, b, r in zip(names, bpnd, r1, strict=True)}
    lut = np.zeros((int(labels.max()) + 1, len(durations)))
    lut[0] = ref  # brain outside the regions: non-displaceable, like the reference
    lut[list(indices)] = targets.T
    data = lut[labels] * mask[..., None]
    out = np.empty(data.shape, dtype=np.float32, order="F")
    for f in range(len(durations)):
        blurred = _blur(data[..., f], PET_FWHM_MM, affine)
        sd = NOISE * np.sqrt(np.clip(blurred, 0.0, None) * 60.0 / durations[f])
        noisy = blurred + sd * rng.standard_normal(blurred.shape)
        out[..., f] = noisy * 1000.0 * calibration_scale  # kBq/mL -> Bq/mL
    truth = {
        "model": ("two-tissue compartment targets (k3 = BP_ND k4), one-tissue reference "
                  "(occipital), Feng plasma input; frame means"),
        "k2_ref_per_min": K2_REF,
        "regions": params,
        "fwhm_mm": PET_FWHM_MM,
        "frame_times_start_s": (start * 60.0).tolist(),
        "frame_duration_s": durations.tolist(),
    }
    return out, affine, truth


def _pet_sidecar(tracer: str, radionuclide: str, starts: list[float], durations: list[float],
                 mode: str, recon: str) -> dict[str, Any]:
    return {
        "Manufacturer": "danemap simulator",
        "ManufacturersModelName": "synthetic",
        "Units": "Bq/mL",
        "TracerName": tracer,
        "TracerRadionuclide": radionuclide,
        "InjectedRadioactivity": 185.0,
        "InjectedRadioactivityUnits": "MBq",
        "InjectedMass": "n/a",
        "InjectedMassUnits": "n/a",
        "SpecificRadioactivity": "n/a",
        "SpecificRadioactivityUnits": "n/a",
        "ModeOfAdministration": "bolus",
        "TimeZero": "00:00:00",
        "ScanStart": starts[0],
        "InjectionStart": 0,
        "FrameTimesStart": starts,
        "FrameDuration": durations,
        "AcquisitionMode": mode,
        "ImageDecayCorrected": True,
        "ImageDecayCorrectionTime": 0,
        "ReconMethodName": recon,
        "ReconMethodParameterLabels": ["none"],
        "ReconMethodParameterUnits": ["none"],
        "ReconMethodParameterValues": [0],
        "ReconFilterType": "Gaussian",
        "ReconFilterSize": 0,
        "AttenuationCorrection": "simulated",
        "BodyPart": "Brain",
    }


def pet_subject(out: Path, sub: str, row: dict[str, Any], site: dict[str, Any], atlas: Any,
                idx: int, seed: int, eff: SimulationEffects, dynamic: bool) -> dict[str, Any]:
    """Write one participant's PET files and return their truth."""
    img, affine, truth = spect_arrays(atlas, [seed, STREAMS["pet"], idx], row["group"], eff,
                                      site["spect_calibration_scale"], noise=True,
                                      med_status=row.get("med_status"))
    base = out / sub / "pet"
    zooms = tuple(float(z) for z in np.sqrt((affine[:3, :3] ** 2).sum(0)))
    write_bytes(base / f"{sub}_trc-FPCIT_pet.nii.gz", nifti_bytes(img, affine, zooms=zooms))
    side = _pet_sidecar("FP-CIT", "I123", [10800.0], [1800.0], "static", "OSEM")
    side["Modality"] = "SPECT (stored as PET-BIDS)"
    write_json(base / f"{sub}_trc-FPCIT_pet.json", side)
    result: dict[str, Any] = {k: truth[k] for k in
                              ("med_status", "dat_change_pct", "striatal_factor",
                               "calibration_scale", "true_bp", "true_sbr", "expected_sbr")}
    if dynamic:
        data, affine, dyn = dynamic_arrays(atlas, [seed, STREAMS["dynpet"], idx],
                                           truth["true_bp"], site["spect_calibration_scale"])
        write_bytes(base / f"{sub}_trc-FEPE2I_pet.nii.gz",
                    nifti_bytes(data, affine, zooms=(*zooms, 1.0)))
        write_json(base / f"{sub}_trc-FEPE2I_pet.json", _pet_sidecar(
            "FE-PE2I", "F18", dyn["frame_times_start_s"], dyn["frame_duration_s"], "list mode",
            "3D-OSEM"))
        result["dynamic"] = {"true_bpnd": {n: p["BPND"] for n, p in dyn["regions"].items()},
                             "R1": {n: p["R1"] for n, p in dyn["regions"].items()},
                             "k2": {n: p["k2"] for n, p in dyn["regions"].items()}}
    return result


def pet_summary(per: dict[str, Any], eff: SimulationEffects, atlas: Any,
                dynamic: bool) -> dict[str, Any]:
    """Cohort-level PET truth: planted effects and group means of the expected SBR."""
    striatal = sorted({n for p in per.values() for n in p["pet"]["true_bp"]
                       if stem(n) in STRIATAL_STEMS})
    means: dict[str, Any] = {}
    for n in striatal:
        means[n] = {}
        for grp in ("TD", "ADHD"):
            vals = [p["pet"]["expected_sbr"][n] for p in per.values() if p["group"] == grp]
            means[n][grp] = float(np.mean(vals)) if vals else None
    change = [p["pet"]["dat_change_pct"] for p in per.values() if p["group"] == "ADHD"]
    true_means: dict[str, Any] = {}
    for n in striatal:
        true_means[n] = {}
        for grp in ("TD", "ADHD"):
            vals = [p["pet"]["true_sbr"][n] for p in per.values() if p["group"] == grp]
            true_means[n][grp] = float(np.mean(vals)) if vals else None
    statuses = [p["pet"].get("med_status") for p in per.values() if p["group"] == "ADHD"]
    sd_log = eff.dat_subject_sd_pct / 100.0
    out: dict[str, Any] = {
        "tracer": "FP-CIT (DAT SPECT)",
        "reference_region": f"{REFERENCE_STEM}_L + {REFERENCE_STEM}_R",
        "group_effect_pct": eff.dat_adhd_pct,
        "group_effect_regions": list(STRIATAL_STEMS),
        "medication_effect_pct": eff.dat_med_pct,
        "group_effect_pct_by_med_status": {
            "stimulant": eff.dat_adhd_pct + eff.dat_med_pct,
            "naive": eff.dat_adhd_pct - eff.dat_med_pct,
            "unknown": eff.dat_adhd_pct},
        "med_status_counts": {k: statuses.count(k) for k in ("stimulant", "naive")}
        | {"unknown": sum(s is None for s in statuses)},
        "group_effect_pct_realised": float(np.mean(change)) if change else None,
        "group_effect_definition": ("percent change of striatal BP (= true SBR) of ADHD "
                                    "relative to TD: dat_adhd_pct, plus dat_med_pct for "
                                    "med_status 'stimulant', minus for 'naive'; realised: "
                                    "the mean over this cohort's ADHD participants"),
        "true_sbr_definition": ("mean(region) / mean(occipital) - 1 of the un-blurred "
                                "concentration: equal to BP_ND in this model"),
        "cohens_d_log_bp": float(np.log1p(eff.dat_adhd_pct / 100.0) / sd_log)
        if sd_log > 0 else None,
        "cohens_d_note": "on log striatal BP, relative to the between-subject SD of log BP",
        "expected_sbr_definition": ("mean(region) / mean(occipital) - 1 on the noise-free "
                                    "PSF-blurred image (partial volume included)"),
        "fwhm_mm": eff.spect_fwhm_mm,
        "counts_per_nd_voxel": eff.spect_counts,
        "expected_sbr_group_mean": means,
        "true_sbr_group_mean": true_means,
        "literature_caveat": ("the sign of the ADHD DAT difference is not settled: lower in "
                              "drug-naive adults (Volkow 2009), 14 % higher on average and "
                              "higher with prior medication (Fusar-Poli 2012 meta-analysis)"),
    }
    if dynamic:
        from danemap.simulate._kinetics import FRAMES_11C

        out["dynamic"] = {"tracer": "FE-PE2I",
                          "model": ("two-tissue compartment targets (k3 = BP_ND k4), "
                                    "one-tissue reference"),
                          "reference_region": f"{REFERENCE_STEM}_L + {REFERENCE_STEM}_R",
                          "k2_ref_per_min": K2_REF, "k4_per_min": K4, "fwhm_mm": PET_FWHM_MM,
                          "frame_duration_s": list(FRAMES_11C)}
    return out
