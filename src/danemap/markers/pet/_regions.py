"""PET/SPECT regions on top of the danemap atlas, reference regions and tracer defaults.

A *PET region* is a union of atlas regions (by stem, per hemisphere), optionally cut by a
coronal plane:

=====================  =============================================================
``caudate``            ``Caudate``
``putamen``            ``Putamen``
``putamen_anterior``   ``Putamen`` voxels with MNI y >= ``split_y_mm`` (pre-commissural)
``putamen_posterior``  ``Putamen`` voxels with MNI y <  ``split_y_mm`` (post-commissural)
``accumbens``          ``NAcc``
``striatum``           ``Caudate`` + ``Putamen`` + ``NAcc``
``thalamus``           ``Thalamus``
``locus_coeruleus``    ``LC``
=====================  =============================================================

Any other atlas region stem (``"DLPFC"``, ``"LC"``) or full name (``"Vermis"``) is a PET
region too, matched case-insensitively, so a user atlas works through the same code.

The anterior/posterior putamen split follows the pre-/post-commissural division of the
striatum used in PET (Martinez et al. 2003, J Cereb Blood Flow Metab 23:285): the
boundary is the coronal plane through the anterior commissure, which in MNI space is
close to y = 0 (the MNI origin lies at the anterior commissure); ``split_y_mm`` moves it.

Reference regions (pooled over both hemispheres): ``occipital`` (the DaTscan default of
the EANM procedure guideline, Darcourt et al. 2010, Eur J Nucl Med Mol Imaging 37:443),
``cerebellum`` (the cerebellar hemispheres, vermis excluded), ``caudate`` (the NET
reference: the striatum is nearly devoid of NET; Hesse et al. 2017), any atlas region
name or stem, or a mask (a NIfTI path or a nibabel image; voxels > 0).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from danemap.errors import InputError

__all__ = [
    "PET_REGIONS",
    "REFERENCE_REGIONS",
    "TRACERS",
    "PetRegion",
    "PetRegionSet",
    "TracerDefaults",
    "pet_region_set",
    "reference_mask",
    "tracer_defaults",
]

#: PET region name -> (atlas stems, subdivision of their voxels: None, "anterior" or
#: "posterior" of the coronal plane ``split_y_mm``).
PET_REGIONS: Mapping[str, tuple[tuple[str, ...], str | None]] = MappingProxyType({
    "caudate": (("Caudate",), None),
    "putamen": (("Putamen",), None),
    "putamen_anterior": (("Putamen",), "anterior"),
    "putamen_posterior": (("Putamen",), "posterior"),
    "accumbens": (("NAcc",), None),
    "striatum": (("Caudate", "Putamen", "NAcc"), None),
    "thalamus": (("Thalamus",), None),
    "locus_coeruleus": (("LC",), None),
})

#: Named reference regions -> atlas stems (pooled over both hemispheres).
REFERENCE_REGIONS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "occipital": ("Occipital",),
    "cerebellum": ("Cerebellum",),
    "caudate": ("Caudate",),
})

_STRIATAL = ("caudate", "putamen", "putamen_anterior", "putamen_posterior", "accumbens",
             "striatum")


@dataclass(frozen=True)
class TracerDefaults:
    """The default reference and target regions of one tracer.

    Attributes
    ----------
    name : str
        Canonical tracer name (``"FP-CIT"``).
    target : str
        The transporter it binds (``"DAT"`` or ``"NET"``).
    reference : str
        Default reference region (a key of :data:`REFERENCE_REGIONS`).
    regions : tuple of str
        Default target regions (PET region names).
    aliases : tuple of str
        Lower-case alphanumeric spellings that select it (``"datscan"``).
    fwhm_mm : float
        Default PSF FWHM (mm) for partial-volume correction: a typical reconstructed
        resolution of the modality (SPECT 10 mm, PET 5 mm); 0 for an unknown tracer
        (partial-volume correction then needs an explicit FWHM).
    high_binding : tuple of str
        Atlas region stems of high specific binding (the regions whose fits give
        ``k2'`` in MRTM/SRTM2-type kinetic models).
    source : str
        Where the defaults come from.
    known : bool
        False for the generic defaults of a tracer not in :data:`TRACERS`.
    """

    name: str
    target: str
    reference: str
    regions: tuple[str, ...]
    aliases: tuple[str, ...]
    fwhm_mm: float = 0.0
    high_binding: tuple[str, ...] = ()
    source: str = ""
    known: bool = True

    def describe(self) -> dict[str, Any]:
        """Return the defaults as a JSON-ready dictionary (for provenance sidecars)."""
        return {"Name": self.name, "Target": self.target, "Reference": self.reference,
                "Regions": list(self.regions), "FWHM_mm": self.fwhm_mm,
                "HighBinding": list(self.high_binding), "Source": self.source,
                "Known": self.known}


#: The tracer table; any other tracer works with explicit ``reference`` and ``regions``.
TRACERS: tuple[TracerDefaults, ...] = (
    TracerDefaults("FP-CIT", "DAT", "occipital", _STRIATAL,
                   ("fpcit", "datscan", "ioflupane"), 10.0, ("Caudate", "Putamen"),
                   "[123I]FP-CIT SPECT, occipital reference (EANM guideline, Darcourt 2010)"),
    TracerDefaults("PE2I", "DAT", "cerebellum", _STRIATAL, ("pe2i", "fepe2i"), 5.0,
                   ("Caudate", "Putamen"),
                   "[11C]PE2I / [18F]FE-PE2I PET, cerebellar reference (Sasaki 2012)"),
    TracerDefaults("MRB", "NET", "caudate", ("LC", "thalamus"),
                   ("mrb", "ssmrb", "methylreboxetine", "mener", "fmener", "menerd2",
                    "fmenerd2"), 5.0, ("Thalamus",),
                   "(S,S)-[11C]MRB / [18F]FMeNER-D2 PET, caudate reference (Hesse 2017)"),
)


def _tracer_key(name: str) -> str:
    s = name.lower()
    s = re.sub(r"\[\s*\d+\s*m?[a-z]{1,2}\s*\]", "", s)  # [123I], [11C], [99mTc]
    s = re.sub(r"^\s*\d+\s*m?[a-z]{1,2}[\s\-_]", "", s)  # 123I-FP-CIT
    s = s.replace("(s,s)", "ss")
    return re.sub(r"[^a-z0-9]", "", s)


def tracer_defaults(tracer: str) -> TracerDefaults:
    """Return the defaults of a tracer (generic ones for a tracer not in :data:`TRACERS`).

    Parameters
    ----------
    tracer : str
        Tracer name in any usual spelling: ``"FP-CIT"``, ``"[123I]FP-CIT"``,
        ``"DaTscan"``, ``"ioflupane"``, ``"FE-PE2I"``, ``"(S,S)-[11C]MRB"``,
        ``"FMeNER-D2"``; case, isotope and punctuation are ignored.

    Returns
    -------
    TracerDefaults
        For an unknown tracer: ``known=False``, the occipital reference, the striatal
        regions, no FWHM (0) and no high-binding regions; callers should say so.
    """
    key = _tracer_key(str(tracer))
    for t in TRACERS:
        if key in t.aliases or key == _tracer_key(t.name):
            return t
    return TracerDefaults(str(tracer), "", "occipital", _STRIATAL, (), 0.0, (),
                          "generic: tracer not in the danemap tracer table", known=False)


@dataclass(frozen=True)
class PetRegion:
    """One measured region: a set of partition labels.

    Attributes
    ----------
    name : str
        PET region name (``"putamen_anterior"``) or atlas stem.
    hemisphere : str
        ``"L"``, ``"R"``, ``"bilateral"`` (both hemispheres pooled) or ``"midline"``.
    parts : tuple of int
        Labels of :attr:`PetRegionSet.labels` that make up the region.
    """

    name: str
    hemisphere: str
    parts: tuple[int, ...]


@dataclass
class PetRegionSet:
    """A partition of the image grid with the target and reference regions on it.

    Attributes
    ----------
    labels : ndarray (X, Y, Z) of int32
        Every atlas region is one label (its atlas index); a putamen (or other) region cut
        by the coronal plane is two labels, a reference mask one more label that takes
        precedence; 0 elsewhere.
    part_names : dict of int to str
        Name of each label (``"Putamen_L_anterior"``, ``"reference_mask"``).
    targets : list of PetRegion
        Target regions, per hemisphere and pooled.
    reference : PetRegion
        The reference region (``hemisphere == "bilateral"``).
    reference_name : str
        How the reference was given (``"occipital"``, a mask path).
    affine : ndarray (4, 4)
        The grid's affine.
    split_y_mm : float
        The coronal plane of the anterior/posterior subdivisions.
    counts : dict of int to int
        Voxels of each label of ``part_names`` on the grid.
    """

    labels: np.ndarray
    part_names: dict[int, str]
    targets: list[PetRegion]
    reference: PetRegion
    reference_name: str
    affine: np.ndarray
    split_y_mm: float = 0.0
    counts: dict[int, int] = field(default_factory=dict)


def _by_stem(atlas: Any) -> dict[str, list[tuple[str, str, int]]]:
    """Lower-case stem -> [(hemisphere, name, index)] of the atlas regions."""
    out: dict[str, list[tuple[str, str, int]]] = {}
    for name, hemi, idx in zip(atlas.regions["name"], atlas.regions["hemisphere"],
                               atlas.regions["index"], strict=True):
        name = str(name)
        base = name[:-2] if hemi in ("L", "R") and name[-2:] in ("_L", "_R") else name
        out.setdefault(base.lower(), []).append((str(hemi), name, int(idx)))
        if base != name:
            out.setdefault(name.lower(), []).append((str(hemi), name, int(idx)))
    return out


def _lookup(stems: dict[str, list[tuple[str, str, int]]], stem: str,
            what: str) -> list[tuple[str, str, int]]:
    hit = stems.get(stem.lower())
    if not hit:
        options = sorted(set(PET_REGIONS) | set(stems))
        close = difflib.get_close_matches(stem.lower(), options, n=3)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise InputError(f"{what} {stem!r}: not a PET region ({', '.join(PET_REGIONS)}) nor "
                         f"a region of the atlas{hint}")
    return hit


def _mask_array(mask: Any, shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    import nibabel as nib

    from danemap.io import load_nifti

    what = f"reference mask {mask}" if isinstance(mask, str | os.PathLike) else (
        "reference mask image")
    img = load_nifti(mask, expect_ndim=3) if isinstance(mask, str | os.PathLike) else mask
    if not hasattr(img, "dataobj") or not hasattr(img, "affine"):
        raise InputError(f"{what}: expected a NIfTI path or image, found {type(img).__name__}")
    data = np.asarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{what}: expected a 3D mask, found shape {data.shape}")
    if data.shape != tuple(shape) or not np.allclose(img.affine, affine, atol=1e-4):
        import nibabel.processing as nproc

        src = nib.Nifti1Image((np.nan_to_num(data) > 0).astype(np.int16), img.affine)
        data = np.asarray(nproc.resample_from_to(src, (tuple(shape), affine), order=0,
                                                 mode="constant", cval=0).dataobj)
    return np.nan_to_num(np.asarray(data, dtype=float)) > 0


def pet_region_set(atlas: Any, *, regions: Sequence[str], reference: Any,
                   split_y_mm: float = 0.0) -> PetRegionSet:
    """Build the partition and the target/reference regions on the atlas grid.

    Parameters
    ----------
    atlas : Atlas
        The atlas on the image grid (``atlas.resample_to(img)``).
    regions : sequence of str
        Target regions: PET region names (see the module docstring), atlas stems or
        atlas region names (case-insensitive); may be empty (reference only).
    reference : str, path or nibabel image
        ``"occipital"``, ``"cerebellum"``, ``"caudate"``, an atlas region name or stem, or
        a mask (NIfTI path or image; voxels > 0, resampled to the grid by nearest
        neighbour when on another grid).
    split_y_mm : float
        MNI y (mm) of the coronal plane of the anterior/posterior subdivisions
        (default 0: the anterior commissure).

    Returns
    -------
    PetRegionSet

    Raises
    ------
    InputError
        On an unknown region or reference, or a target or reference region without a
        voxel on the grid.
    """
    if isinstance(regions, str):
        raise InputError(f"PET 'regions': expected a list of region names, found "
                         f"{regions!r}")
    labels = np.asarray(atlas.img.dataobj).astype(np.int32)
    affine = np.asarray(atlas.img.affine, dtype=float)
    stems = _by_stem(atlas)
    part_names = {int(i): str(n) for i, n in zip(atlas.regions["index"],
                                                 atlas.regions["name"], strict=True)}
    next_id = max(part_names, default=0) + 1
    split: dict[int, tuple[int, int]] = {}  # atlas index -> (anterior id, posterior id)

    def subdivide(idx: int) -> tuple[int, int]:
        nonlocal next_id
        if idx not in split:
            ijk = np.argwhere(labels == idx)
            y = (affine[:3, :3] @ ijk.T.astype(float) + affine[:3, 3:4])[1]
            ant, post = next_id, next_id + 1
            next_id += 2
            sel = tuple(ijk.T)
            labels[sel] = np.where(y >= split_y_mm, ant, post)
            part_names[ant] = f"{part_names[idx]}_anterior"
            part_names[post] = f"{part_names[idx]}_posterior"
            split[idx] = (ant, post)
        return split[idx]

    # reference first: a mask overrides the atlas labels under it
    ref_parts: list[int] = []
    if isinstance(reference, str) and not reference.lower().endswith((".nii", ".nii.gz")):
        ref_name = reference
        ref_stems = REFERENCE_REGIONS.get(reference.lower(), (reference,))
        for s in ref_stems:
            ref_parts += [i for _, _, i in _lookup(stems, s, "PET 'reference'")]
    elif isinstance(reference, str | os.PathLike) or hasattr(reference, "dataobj"):
        ref_name = str(reference) if isinstance(reference, str | os.PathLike) else "mask"
        if isinstance(reference, str | os.PathLike) and not Path(reference).is_file():
            raise InputError(f"PET 'reference': mask file {reference} does not exist")
        mask = _mask_array(reference, labels.shape, affine)
        ref_id = next_id
        next_id += 1
        labels[mask] = ref_id
        part_names[ref_id] = "reference_mask"
        ref_parts = [ref_id]
    else:
        raise InputError(f"PET 'reference': expected a region name or a mask (path or "
                         f"image), found {type(reference).__name__}")

    targets: list[PetRegion] = []
    for region in regions:
        stem_list, sub = PET_REGIONS.get(str(region).lower(), ((str(region),), None))
        name = str(region).lower() if str(region).lower() in PET_REGIONS else str(region)
        per_hemi: dict[str, list[int]] = {}
        for s in stem_list:
            for hemi, _, idx in _lookup(stems, s, "PET region"):
                ids = [idx] if sub is None else [subdivide(idx)[0 if sub == "anterior" else 1]]
                per_hemi.setdefault(hemi, []).extend(ids)
        for hemi in ("L", "R", "midline"):
            if hemi in per_hemi:
                targets.append(PetRegion(name, hemi, tuple(per_hemi[hemi])))
        if "L" in per_hemi and "R" in per_hemi:
            targets.append(PetRegion(name, "bilateral", tuple(per_hemi["L"] + per_hemi["R"])))
    # an atlas region subdivided for one target is the union of its two parts elsewhere
    def whole(parts: Sequence[int]) -> tuple[int, ...]:
        return tuple(x for p in parts for x in split.get(p, (p,)))

    targets = [PetRegion(t.name, t.hemisphere, whole(t.parts)) for t in targets]
    ref = PetRegion(ref_name, "bilateral", whole(ref_parts))

    counts = np.bincount(labels.ravel(), minlength=next_id)
    count_of = {i: int(counts[i]) for i in part_names}
    shape = labels.shape
    for reg in [*targets, ref]:
        n = sum(count_of[p] for p in reg.parts)
        if n == 0:
            kind = "reference region" if reg is ref else "PET region"
            raise InputError(
                f"{kind} {reg.name!r} ({reg.hemisphere}): no voxel on the image grid "
                f"{shape} (parts {[part_names[p] for p in reg.parts]}); check that the "
                "image is in MNI space and covers the region")
    return PetRegionSet(labels, part_names, targets, ref, ref_name, affine, float(split_y_mm),
                        count_of)


def reference_mask(atlas: Any, reference: Any, *, split_y_mm: float = 0.0) -> np.ndarray:
    """Return the reference region as a boolean mask on the atlas grid.

    Parameters
    ----------
    atlas : Atlas
        The atlas on the image grid.
    reference : str, path or nibabel image
        As for :func:`pet_region_set`.
    split_y_mm : float
        As for :func:`pet_region_set`.

    Returns
    -------
    ndarray (X, Y, Z) of bool

    Raises
    ------
    InputError
        On an unknown reference or one without a voxel on the grid.
    """
    rs = pet_region_set(atlas, regions=[], reference=reference, split_y_mm=split_y_mm)
    return np.isin(rs.labels, list(rs.reference.parts))
