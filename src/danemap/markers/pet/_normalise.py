"""Spatial normalisation of a PET/SPECT image to MNI152NLin2009cAsym.

Three routes, chosen per image:

1. **Already in MNI space**: used as it is. ``[pet] space = "MNI"`` says so; ``"auto"``
   (the default) takes an image whose sform code is 4 (MNI152), whose file name carries a
   ``space-MNI152*`` entity, or whose axis-aligned grid spans the MNI152 box
   (x -90..90, y -126..90, z -72..108 mm, within one voxel): the layout of SPM/FSL
   normalised images and of group templates.
2. **With the participant's T1w**: ANTsPy registers the PET mean image rigidly (Mattes MI)
   to the T1w, then applies the structural family's T1w -> MNI transforms
   (:func:`danemap.markers.structural.cached_t1w_transforms`), which are computed once per
   T1w and cached in the work folder.
3. **Without a T1w**: an affine registration (Mattes MI) to a tracer template: the user's
   ``[pet] template`` (``--pet-template``), else one synthesised from the atlas (the
   tracer's high-binding regions at a typical BP_ND on a unit brain, blurred by 8 mm FWHM).

The result is resampled onto the 2 mm MNI grid (91 x 109 x 91; PET resolution is 4-10 mm,
so a finer grid adds memory, not information), frame by frame with linear interpolation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from danemap._utils.logging import get_logger
from danemap.errors import InputError

if TYPE_CHECKING:
    from danemap.atlas import Atlas

__all__ = ["MNI_BOX", "Normalised", "in_mni", "normalise_to_mni", "tracer_template"]

log = get_logger("markers.pet")

#: The MNI152 box (mm, RAS): lower and upper voxel-centre corners of the 1 mm template grid.
MNI_BOX = (np.array([-90.0, -126.0, -72.0]), np.array([90.0, 90.0, 108.0]))
SPACES = ("auto", "MNI", "native")
GRID_MM = 2
TEMPLATE_FWHM_MM = 8.0

#: Typical BP_ND of the high-binding regions used for a synthesised template.
_TEMPLATE_BINDING = {
    "DAT": {"Caudate": 3.0, "Putamen": 3.5, "NAcc": 2.0},
    "NET": {"Thalamus": 0.6, "LC": 1.0},
}


@dataclass
class Normalised:
    """A PET/SPECT image in MNI space and how it got there.

    Attributes
    ----------
    img : nibabel.Nifti1Image
        3-D or 4-D image in MNI152NLin2009cAsym.
    route : str
        ``"mni"`` (used as it is), ``"t1w"`` (rigid to the T1w, then T1w -> MNI) or
        ``"template"`` (affine to a tracer template).
    qc : dict
        ``similarity`` (Pearson r of the normalised mean image and the template or the T1w
        image in the brain) and the template used.
    """

    img: Any
    route: str
    qc: dict[str, Any] = field(default_factory=dict)


def in_mni(img: Any, name: str = "", setting: str = "auto") -> bool:
    """Tell whether a PET image is already in MNI space (see the module notes).

    Parameters
    ----------
    img : nibabel image
        The image (only its header is read).
    name : str
        Its file name (a ``space-MNI152*`` entity counts).
    setting : {"auto", "MNI", "native"}
        ``[pet] space``.

    Returns
    -------
    bool
    """
    if setting not in SPACES:
        raise InputError(f"pet.space: expected one of {list(SPACES)}, found {setting!r}")
    if setting != "auto":
        return setting == "MNI"
    if "space-MNI152" in name:
        return True
    hdr = img.header
    if int(hdr["sform_code"]) == 4:
        return True
    aff = img.affine
    zooms = np.abs(np.diag(aff)[:3])
    if not np.allclose(aff[:3, :3], np.diag(np.diag(aff)[:3]), atol=1e-4 * zooms.max()):
        return False
    shape = np.asarray(img.shape[:3])
    corners = np.stack([aff[:3, 3], aff[:3, 3] + np.diag(aff)[:3] * (shape - 1)])
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    return bool(np.all(np.abs(lo - MNI_BOX[0]) <= zooms) and np.all(np.abs(hi - MNI_BOX[1])
                                                                    <= zooms))


def _mni_grid() -> tuple[tuple[int, int, int], np.ndarray]:
    from danemap.atlas import mni_grid

    return mni_grid(GRID_MM)


def tracer_template(family: str, atlas: Atlas) -> Any:
    """Synthesise a tracer template on the 2 mm MNI grid from the atlas.

    Parameters
    ----------
    family : {"DAT", "NET", ""}
        The tracer's target (from the tracer table); other values give a plain brain.
    atlas : Atlas
        The DA/NE atlas (its regions define the high-binding areas).

    Returns
    -------
    nibabel.Nifti1Image
        Unit non-displaceable uptake in the brain plus ``BP_ND`` in the high-binding
        regions, blurred by :data:`TEMPLATE_FWHM_MM`.
    """
    import nibabel as nib
    from scipy import ndimage

    shape, affine = _mni_grid()
    labels = np.asarray(atlas.resample_to(
        nib.Nifti1Image(np.zeros(shape, np.float32), affine)).img.dataobj)
    brain = _mni_brain(shape, affine) | (labels > 0)
    img = brain.astype(np.float64)
    binding = _TEMPLATE_BINDING.get(family, {})
    for name, idx in zip(atlas.names, atlas.regions["index"], strict=True):
        stem = name.rsplit("_", 1)[0]
        if stem in binding:
            img[labels == idx] += binding[stem]
    sigma = TEMPLATE_FWHM_MM / (2.0 * np.sqrt(2.0 * np.log(2.0))) / GRID_MM
    return nib.Nifti1Image(ndimage.gaussian_filter(img, sigma).astype(np.float32), affine)


def _mni_brain(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    import nibabel as nib
    from nilearn.datasets import load_mni152_brain_mask
    from nilearn.image import resample_to_img

    ref = nib.Nifti1Image(np.zeros(shape, np.float32), affine)
    mask = resample_to_img(load_mni152_brain_mask(resolution=GRID_MM), ref,
                           interpolation="nearest", force_resample=True, copy_header=True)
    return np.asarray(mask.get_fdata() > 0.5)


def _to_ants(ants: Any, data: np.ndarray, affine: np.ndarray) -> Any:
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(data, np.float32), affine)
    img.header.set_xyzt_units("mm", "sec")  # ANTs warns on 'unknown' units
    return ants.from_nibabel_nifti(img)


def _mean_image(data: np.ndarray, durations: np.ndarray | None) -> np.ndarray:
    if data.ndim == 3:
        return data
    w = np.ones(data.shape[3]) if durations is None else np.asarray(durations, float)
    return np.tensordot(data, w / w.sum(), axes=([3], [0]))


def _corr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    x, y = a[mask].astype(float), b[mask].astype(float)
    if x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def normalise_to_mni(img: Any, *, name: str, atlas: Atlas, setting: str = "auto",
                     durations: np.ndarray | None = None,
                     t1w_to_mni: tuple[Any, list[str]] | None = None,
                     template: Any = None, tracer_family: str = "",
                     work_dir: Path | None = None) -> Normalised:
    """Bring a PET/SPECT image into MNI space (see the module notes for the routes).

    Parameters
    ----------
    img : nibabel.Nifti1Image
        3-D image or 4-D series.
    name : str
        Its file name (for messages and the ``space-`` entity).
    atlas : Atlas
        The DA/NE atlas (for a synthesised template).
    setting : {"auto", "MNI", "native"}
        ``[pet] space``.
    durations : numpy.ndarray or None
        Frame durations (the registration uses the duration-weighted mean image).
    t1w_to_mni : (T1w image, transforms) or None
        The participant's T1w (nibabel image) and its T1w -> MNI forward transforms
        (ANTs order); None: no T1w route.
    template : nibabel image, path or None
        The tracer template (``[pet] template``); None: synthesised.
    tracer_family : str
        ``"DAT"``, ``"NET"`` or ``""`` (for the synthesised template).
    work_dir : Path or None
        Folder for ANTs's transform files.

    Returns
    -------
    Normalised
    """
    if in_mni(img, name, setting):
        return Normalised(img, "mni", {"space": "MNI152 (header or [pet] space)"})
    import tempfile

    import nibabel as nib

    from danemap.io import load_nifti
    from danemap.markers.structural._ants import _ants

    ants = _ants()
    data = np.asarray(img.dataobj, dtype=np.float32)
    shape, affine = _mni_grid()
    fixed_grid = _to_ants(ants, np.zeros(shape, np.float32), affine)
    moving = _to_ants(ants, _mean_image(data, durations), img.affine)
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="danemap-pet-", dir=work_dir) as tmp:
        if t1w_to_mni is not None:
            t1w_img, to_mni = t1w_to_mni
            t1 = _to_ants(ants, np.asarray(t1w_img.dataobj), t1w_img.affine)
            reg = ants.registration(t1, moving, type_of_transform="Rigid",
                                    aff_metric="mattes", outprefix=f"{tmp}/rigid_")
            transforms = [*to_mni, *reg["fwdtransforms"]]
            route, target = "t1w", "T1w (rigid), then the T1w -> MNI152 transforms"
            ref_img = None
        else:
            tpl: Any = (tracer_template(tracer_family, atlas) if template is None else
                        template if not isinstance(template, str | Path)
                        else load_nifti(template, expect_ndim=3))
            fixed = _to_ants(ants, np.asarray(tpl.dataobj), tpl.affine)
            reg = ants.registration(fixed, moving, type_of_transform="Affine",
                                    aff_metric="mattes", outprefix=f"{tmp}/affine_")
            transforms = list(reg["fwdtransforms"])
            route = "template"
            target = "user template" if template is not None else \
                f"synthesised {tracer_family or 'brain'} template"
            ref_img = tpl
        frames = [data] if data.ndim == 3 else [data[..., k] for k in range(data.shape[3])]
        out = []
        for frame in frames:
            mov = _to_ants(ants, frame, img.affine)
            warped = ants.apply_transforms(fixed_grid, mov, transformlist=transforms,
                                           interpolator="linear")
            out.append(ants.to_nibabel_nifti(warped).get_fdata(dtype=np.float32))
    arr = out[0] if data.ndim == 3 else np.stack(out, axis=-1)
    result = nib.Nifti1Image(arr.astype(np.float32), affine)
    result.header.set_sform(affine, code=4)
    qc: dict[str, Any] = {"target": target}
    if ref_img is not None:
        brain = _mni_brain(shape, affine)
        ref = nib.Nifti1Image(np.asarray(ref_img.dataobj, np.float32), ref_img.affine)
        from nilearn.image import resample_to_img

        ref_r = resample_to_img(ref, nib.Nifti1Image(np.zeros(shape, np.float32), affine),
                                force_resample=True, copy_header=True).get_fdata()
        qc["similarity"] = _corr(_mean_image(arr, durations), ref_r, brain)
    log.info("%s: normalised to MNI152 via %s", name, target)
    return Normalised(result, route, qc)
