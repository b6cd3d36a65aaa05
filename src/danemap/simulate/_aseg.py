"""FreeSurfer-style ``stats/aseg.stats`` files with planted ENIGMA-sized volume effects.

The raw-T1w simulator measures the atlas regions; this one writes what FreeSurfer 7 would
have written after ``recon-all`` (the ``mri_segstats`` table of the 45 standard aseg
structures, the ``# Measure`` lines with ``eTIV``), so the FreeSurfer-style path, the GLM
with ICV and the ENIGMA-ADHD comparison can be checked on a cohort of any size in seconds.

Model: ``log V_r = log base_r + b_r log(ICV / ICV_0) + d_r * sd * [ADHD] + e``, with
``e ~ N(0, sd^2)`` per region and participant, an allometric ICV slope ``b_r = 0.7`` and
``ICV ~ ICV_0 exp(N(0, icv_sd^2))`` (``ICV_0`` 1.5 L; the ICV itself unchanged by group).
``d_r`` is the ENIGMA-ADHD all-ages d of the structure (Hoogman et al. 2017, as
:data:`ENIGMA_D`), so the planted effect is d on the ICV-adjusted log volume. Partial-
volume correction is mimicked by ``Volume_mm3 = NVoxels x 0.98`` (rounded voxel counts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ASEG_STRUCTURES", "ENIGMA_D", "aseg_stats_text", "simulate_aseg_volumes",
           "write_freesurfer_subject"]

#: (SegId, StructName, typical adult volume in mm3) of FreeSurfer 7's aseg.stats table.
ASEG_STRUCTURES: tuple[tuple[int, str, float], ...] = (
    (4, "Left-Lateral-Ventricle", 7800.0), (5, "Left-Inf-Lat-Vent", 330.0),
    (7, "Left-Cerebellum-White-Matter", 14500.0), (8, "Left-Cerebellum-Cortex", 52000.0),
    (10, "Left-Thalamus", 7600.0), (11, "Left-Caudate", 3500.0),
    (12, "Left-Putamen", 4900.0), (13, "Left-Pallidum", 2000.0),
    (14, "3rd-Ventricle", 900.0), (15, "4th-Ventricle", 1600.0),
    (16, "Brain-Stem", 21000.0), (17, "Left-Hippocampus", 4100.0),
    (18, "Left-Amygdala", 1650.0), (24, "CSF", 1100.0),
    (26, "Left-Accumbens-area", 560.0), (28, "Left-VentralDC", 4000.0),
    (30, "Left-vessel", 15.0), (31, "Left-choroid-plexus", 600.0),
    (43, "Right-Lateral-Ventricle", 7400.0), (44, "Right-Inf-Lat-Vent", 300.0),
    (46, "Right-Cerebellum-White-Matter", 14300.0), (47, "Right-Cerebellum-Cortex", 52500.0),
    (49, "Right-Thalamus", 7400.0), (50, "Right-Caudate", 3600.0),
    (51, "Right-Putamen", 4950.0), (52, "Right-Pallidum", 1950.0),
    (53, "Right-Hippocampus", 4250.0), (54, "Right-Amygdala", 1750.0),
    (58, "Right-Accumbens-area", 580.0), (60, "Right-VentralDC", 4000.0),
    (62, "Right-vessel", 20.0), (63, "Right-choroid-plexus", 650.0),
    (72, "5th-Ventricle", 0.0), (77, "WM-hypointensities", 1400.0),
    (78, "Left-WM-hypointensities", 0.0), (79, "Right-WM-hypointensities", 0.0),
    (80, "non-WM-hypointensities", 0.0), (81, "Left-non-WM-hypointensities", 0.0),
    (82, "Right-non-WM-hypointensities", 0.0), (85, "Optic-Chiasm", 200.0),
    (251, "CC_Posterior", 950.0), (252, "CC_Mid_Posterior", 500.0),
    (253, "CC_Central", 500.0), (254, "CC_Mid_Anterior", 520.0),
    (255, "CC_Anterior", 880.0),
)

#: ENIGMA-ADHD all-ages Cohen's d (ICV-corrected) by structure (Hoogman et al. 2017).
ENIGMA_D = {"Accumbens-area": -0.15, "Amygdala": -0.19, "Caudate": -0.11,
            "Hippocampus": -0.11, "Putamen": -0.14, "Pallidum": 0.0, "Thalamus": -0.03}

ICV0_MM3 = 1.5e6
ICV_SLOPE = 0.7
PV_FACTOR = 0.98


def simulate_aseg_volumes(group: str, rng: np.random.Generator, *, sd: float = 0.1,
                          icv_sd: float = 0.1, effect_scale: float = 1.0,
                          d: Mapping[str, float] | None = None
                          ) -> tuple[dict[str, float], float]:
    """Draw one participant's aseg volumes and eTIV (see the module notes).

    Parameters
    ----------
    group : {"TD", "ADHD"}
        ADHD volumes move by ``d * effect_scale * sd`` in log volume.
    rng : numpy.random.Generator
        Random stream.
    sd : float
        Between-participant SD of the ICV-adjusted log volume.
    icv_sd : float
        SD of log ICV.
    effect_scale : float
        Multiplies every planted d.
    d : mapping or None
        Planted d by structure without hemisphere (default :data:`ENIGMA_D`).

    Returns
    -------
    volumes : dict
        StructName -> Volume_mm3.
    etiv : float
        Estimated total intracranial volume (mm3).
    """
    planted = ENIGMA_D if d is None else d
    icv_log = float(rng.normal(0.0, icv_sd))
    vols = {}
    for _, name, base in ASEG_STRUCTURES:
        stem = name.split("-", 1)[1] if name.startswith(("Left-", "Right-")) else name
        shift = planted.get(stem, 0.0) * effect_scale * sd if group == "ADHD" else 0.0
        logv = np.log(max(base, 1e-9)) + ICV_SLOPE * icv_log + shift + rng.normal(0.0, sd)
        vols[name] = float(np.exp(logv)) if base > 0 else 0.0
    return vols, float(ICV0_MM3 * np.exp(icv_log))


def aseg_stats_text(volumes: Mapping[str, float], etiv: float, subject: str) -> str:
    """Return the text of a FreeSurfer 7 ``stats/aseg.stats`` holding these volumes.

    Parameters
    ----------
    volumes : mapping
        StructName -> Volume_mm3 (every name of :data:`ASEG_STRUCTURES`).
    etiv : float
        eTIV in mm3.
    subject : str
        The FreeSurfer subject name.

    Returns
    -------
    str
    """
    brainseg = etiv * 0.78
    measures = [
        ("BrainSeg", "BrainSegVol", "Brain Segmentation Volume", brainseg, "mm^3"),
        ("BrainSegNotVent", "BrainSegVolNotVent",
         "Brain Segmentation Volume Without Ventricles", brainseg * 0.98, "mm^3"),
        ("VentricleChoroidVol", "VentricleChoroidVol",
         "Volume of ventricles and choroid plexus", brainseg * 0.015, "mm^3"),
        ("lhCortex", "lhCortexVol", "Left hemisphere cortical gray matter volume",
         brainseg * 0.205, "mm^3"),
        ("rhCortex", "rhCortexVol", "Right hemisphere cortical gray matter volume",
         brainseg * 0.206, "mm^3"),
        ("Cortex", "CortexVol", "Total cortical gray matter volume", brainseg * 0.411, "mm^3"),
        ("SubCortGray", "SubCortGrayVol", "Subcortical gray matter volume",
         brainseg * 0.05, "mm^3"),
        ("TotalGray", "TotalGrayVol", "Total gray matter volume", brainseg * 0.55, "mm^3"),
        ("SupraTentorial", "SupraTentorialVol", "Supratentorial volume", brainseg * 0.87,
         "mm^3"),
        ("Mask", "MaskVol", "Mask Volume", etiv * 1.1, "mm^3"),
        ("BrainSegVol-to-eTIV", "BrainSegVol-to-eTIV", "Ratio of BrainSegVol to eTIV",
         brainseg / etiv, "unitless"),
        ("MaskVol-to-eTIV", "MaskVol-to-eTIV", "Ratio of MaskVol to eTIV", 1.1, "unitless"),
        ("EstimatedTotalIntraCranialVol", "eTIV", "Estimated Total Intracranial Volume",
         etiv, "mm^3"),
    ]
    cols = ("Index", "SegId", "NVoxels", "Volume_mm3", "StructName", "normMean",
            "normStdDev", "normMin", "normMax", "normRange")
    units = ("NA", "NA", "unitless", "mm^3", "NA", "MR", "MR", "MR", "MR", "MR")
    head = [
        "# Title Segmentation Statistics ",
        "# ",
        "# generating_program mri_segstats",
        "# cvs_version 7.4.1",
        "# cmdline mri_segstats --seed 1234 --seg mri/aseg.mgz --sum stats/aseg.stats "
        "--pv mri/norm.mgz --empty --brainmask mri/brainmask.mgz --brain-vol-from-seg "
        "--excludeid 0 --excl-ctxgmwm --supratent --subcortgray --in mri/norm.mgz "
        "--in-intensity-name norm --in-intensity-units MR --etiv --surf-wm-vol "
        "--surf-ctx-vol --totalgray --euler --ctab $FREESURFER_HOME/ASegStatsLUT.txt "
        f"--subject {subject}",
        "# sysname  Linux",
        "# machine  x86_64",
        "# user     danemap-sim",
        "# anatomy_type volume",
        "# ",
        "# SUBJECTS_DIR /simulated/freesurfer",
        f"# subjectname {subject}",
        *(f"# Measure {a}, {b}, {c}, {v:.6f}, {u}" for a, b, c, v, u in measures),
        "# SegVolFile mri/aseg.mgz ",
        "# ColorTable $FREESURFER_HOME/ASegStatsLUT.txt ",
        "# PVVolFile  mri/norm.mgz ",
        "# Excluding Cortical Gray and White Matter",
        "# ExcludeSegId 0 2 3 41 42 ",
        "# VoxelVolume_mm3 1 ",
        f"# TableCol  1 ColHeader {cols[0]} ",
    ]
    for k, (c, u) in enumerate(zip(cols[1:], units[1:], strict=True), start=2):
        head.append(f"# TableCol {k:2d} ColHeader {c} ")
        head.append(f"# TableCol {k:2d} Units     {u} ")
    head += [f"# NRows {len(ASEG_STRUCTURES)} ", f"# NTableCols {len(cols)} ",
             "# ColHeaders  " + " ".join(cols) + " "]
    rows = []
    for i, (seg, name, _) in enumerate(ASEG_STRUCTURES, start=1):
        vol = float(volumes[name])
        nvox = round(vol / PV_FACTOR)
        mean = 80.0 if "Ventricle" not in name and name != "CSF" else 35.0
        rows.append(f"{i:3d} {seg:4d} {nvox:9d} {vol:12.1f}  {name:<32s} {mean:10.4f} "
                    f"{8.5:10.4f} {20.0:10.4f} {110.0:10.4f} {90.0:10.4f} ")
    return "\n".join([*head, *rows]) + "\n"


def write_freesurfer_subject(out: Path, sub: str, group: str, seed: Sequence[int], *,
                             effect_scale: float = 1.0, sd: float = 0.1,
                             d: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Write ``out/derivatives/freesurfer/sub-XX/stats/aseg.stats``; return its truth.

    Parameters
    ----------
    out : Path
        The BIDS dataset.
    sub : str
        ``sub-XX``.
    group : {"TD", "ADHD"}
        Diagnostic group.
    seed : sequence of int
        Seed of the participant's random stream.
    effect_scale, sd, d
        See :func:`simulate_aseg_volumes`.

    Returns
    -------
    dict
        ``volume_mm3`` (by StructName) and ``etiv_mm3``.
    """
    from danemap.simulate._common import write_bytes

    rng = np.random.default_rng(list(seed))
    vols, etiv = simulate_aseg_volumes(group, rng, sd=sd, effect_scale=effect_scale, d=d)
    text = aseg_stats_text(vols, etiv, sub)
    write_bytes(out / "derivatives" / "freesurfer" / sub / "stats" / "aseg.stats",
                text.encode())
    return {"volume_mm3": vols, "etiv_mm3": etiv}
