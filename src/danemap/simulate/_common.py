"""Helpers shared by the simulator's modalities: seeding, grids, masks, writing."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from danemap.errors import InputError

# Stream identifiers, so each (participant, modality) gets an independent, order-free
# random stream from one seed.
STREAMS = {"cohort": 0, "func": 1, "pet": 2, "anat": 3, "dynpet": 4, "site": 5, "task": 6}

PFC_STEMS = ("DLPFC", "VLPFC", "OFC", "mPFC", "ACC")
STRIATAL_STEMS = ("Caudate", "Putamen", "NAcc")


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """Return an independent generator for ``seed`` and a tuple of integer keys."""
    return np.random.default_rng([int(seed), *[int(k) for k in keys]])


def stem(name: str) -> str:
    """Region name without its hemisphere suffix (``Caudate_L`` -> ``Caudate``)."""
    for suffix in ("_L", "_R"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def check_resolution(resolution: int) -> int:
    """Validate a simulation resolution (2 or 3 mm)."""
    if resolution not in (2, 3):
        raise InputError(f"resolution: expected 2 or 3 (mm), found {resolution!r}")
    return int(resolution)


def atlas_arrays(atlas: Any) -> tuple[np.ndarray, np.ndarray, list[str], list[int]]:
    """Return (labels, affine, names, indices) of the non-empty atlas regions.

    Regions with no voxel on the grid are left out (they cannot carry a signal).
    """
    img = atlas.img
    labels = np.asarray(img.dataobj).astype(np.int32)
    if labels.ndim != 3:
        raise InputError(f"atlas.img: expected a 3D label image, found shape {labels.shape}")
    present = set(np.unique(labels).tolist())
    names: list[str] = []
    indices: list[int] = []
    for idx, name in zip(atlas.regions["index"], atlas.regions["name"], strict=True):
        if int(idx) in present and int(idx) != 0:
            names.append(str(name))
            indices.append(int(idx))
    if not names:
        raise InputError("atlas.img: no region of atlas.regions has a voxel on the grid")
    return labels, np.asarray(img.affine, dtype=float), names, indices


def resample_to_grid(data: np.ndarray, src_affine: np.ndarray, shape: tuple[int, ...],
                     affine: np.ndarray, order: int = 1) -> np.ndarray:
    """Resample ``data`` (on ``src_affine``) onto ``(shape, affine)``; outside is 0."""
    from scipy import ndimage

    mapping = np.linalg.solve(src_affine, affine)  # target voxel -> source voxel
    return ndimage.affine_transform(
        np.asarray(data, dtype=np.float64), mapping[:3, :3], offset=mapping[:3, 3],
        output_shape=shape, order=order, mode="constant", cval=0.0,
    )


@functools.lru_cache(maxsize=4)
def _template(resolution: int, shape: tuple[int, ...],
              affine_bytes: bytes) -> tuple[np.ndarray, np.ndarray]:
    """MNI152 T1 template and brain mask from nilearn's packaged files, on the grid."""
    import nibabel as nib

    from danemap._utils.optional import find_optional

    # The file behind nilearn.datasets.load_mni152_template (packaged, no download); read
    # directly because importing nilearn.datasets costs more than a second.
    folder = find_optional("nilearn", purpose="the MNI152 template")[0]
    path = folder / "datasets" / "data" / (
        "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
    tpl: Any = nib.load(path)
    affine = np.frombuffer(affine_bytes).reshape(4, 4)
    t1 = resample_to_grid(np.asarray(tpl.dataobj), tpl.affine, shape, affine, order=1)
    t1 = np.clip(t1, 0.0, None)
    from scipy import ndimage

    mask = ndimage.binary_fill_holes(t1 > 0.2 * t1.max())
    mask = ndimage.binary_opening(mask, iterations=1)
    t1.setflags(write=False)
    mask.setflags(write=False)
    return t1, mask


def template_and_mask(labels: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """T1 template (float) and brain mask (bool, containing every atlas voxel) on the grid."""
    res = round(abs(float(affine[0, 0])))
    t1, mask = _template(res, labels.shape, np.ascontiguousarray(affine, dtype=float).tobytes())
    return t1, np.asarray(mask | (labels > 0))


def nifti_bytes(data: np.ndarray, affine: np.ndarray, *, dtype: Any = np.float32,
                zooms: tuple[float, ...] | None = None) -> bytes:
    """Gzip-compressed NIfTI-1 bytes (isal, mtime 0: identical bytes for identical data).

    The header is built by nibabel; the voxel data is written directly in Fortran order
    (faster than nibabel's array writer, same file).
    """
    import nibabel as nib
    from isal import igzip

    arr = np.asarray(data, dtype=np.dtype(dtype).newbyteorder("<"))
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(arr.dtype)
    hdr.set_data_shape(arr.shape)
    hdr.set_xyzt_units("mm", "sec")
    hdr.set_qform(affine, code=1)
    hdr.set_sform(affine, code=1)
    if zooms is not None:
        hdr.set_zooms(zooms)
    hdr["vox_offset"] = 352
    hdr["scl_slope"] = np.nan
    hdr["scl_inter"] = np.nan
    blob = hdr.binaryblock + b"\x00" * 4 + arr.tobytes(order="F")
    return igzip.compress(blob, compresslevel=1, mtime=0)


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` atomically through :func:`danemap.io.atomic_write_bytes`."""
    from danemap.io import atomic_write_bytes

    atomic_write_bytes(path, data)


def json_text(obj: Any) -> str:
    """Deterministic JSON text (sorted keys, floats rounded by :func:`to_jsonable`)."""
    import json

    return json.dumps(to_jsonable(obj), indent=2, sort_keys=True, allow_nan=False) + "\n"


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays and tuples to plain JSON types (NaN -> None)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.bool_ | bool):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        value = float(obj)
        return None if not np.isfinite(value) else round(value, 10)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: Path, obj: Any) -> None:
    """Write deterministic JSON atomically."""
    write_bytes(path, json_text(obj).encode("utf-8"))
