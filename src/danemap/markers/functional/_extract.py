"""Streaming extraction of atlas voxels and region means (the ALFF kernel is ``_alff``).

The BOLD file is decompressed (``isal``) a few volumes at a time straight into a reused
buffer; from each block only the atlas voxels are gathered (sorted by region), so the
full 4D array is never materialised. Region means are the atlas's one region-mean kernel
(:func:`danemap.atlas.block_means`) over the gathered ``(T, N_atlas)`` matrix, accumulated
in float64. Integer data with
``scl_slope``/``scl_inter`` are gathered raw (exact in float32) and scaled afterwards,
which is exact because means and ALFF are linear in the data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from danemap.atlas import block_means, voxel_order
from danemap.errors import InputError

__all__ = ["AtlasVoxels", "gather_from_array", "gather_from_file", "voxel_order"]

_BLOCK_BYTES = 32 * 2**20


@dataclass
class AtlasVoxels:
    """Atlas voxel time series gathered from one run, sorted by region."""

    data: np.ndarray  # (T, N) float32/float64, raw units (before slope/inter)
    starts: np.ndarray  # (R,) offset of each region's first column
    counts: np.ndarray  # (R,) voxels per region
    slope: float
    inter: float

    def region_means(self) -> np.ndarray:
        """Region mean time series ``(T, R)`` in float64, NaN columns for empty regions."""
        out = block_means(self.data, self.starts, self.counts)
        if self.slope != 1.0 or self.inter != 0.0:
            out = out * self.slope + self.inter
        return out


def _work_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    exact32 = (dtype.kind in "iu" and dtype.itemsize <= 2) or dtype == np.float32
    return np.dtype(np.float32) if exact32 else np.dtype(np.float64)


def gather_from_array(data: np.ndarray, order: np.ndarray, starts: np.ndarray,
                      counts: np.ndarray, slope: float = 1.0,
                      inter: float = 0.0) -> AtlasVoxels:
    """Gather atlas voxels from an in-memory 4D array.

    Parameters
    ----------
    data : ndarray (X, Y, Z, T)
        The BOLD data (raw stored values when ``slope``/``inter`` are given).
    order, starts, counts : ndarray
        From :func:`voxel_order`.
    slope, inter : float
        Scaling applied to region means afterwards (``value * slope + inter``).

    Returns
    -------
    AtlasVoxels
        ``(T, N)`` voxel time series (float32 when exact, else float64), sorted by region.
    """
    n_t = data.shape[3]
    flat = data.reshape(-1, n_t, order="F")
    work = _work_dtype(data.dtype)
    out = np.empty((n_t, order.size), dtype=work)
    step = max(1, _BLOCK_BYTES // max(1, flat.shape[0] * data.dtype.itemsize))
    for t0 in range(0, n_t, step):
        t1 = min(n_t, t0 + step)
        out[t0:t1] = flat[order, t0:t1].T
    return AtlasVoxels(out, starts, counts, slope, inter)


def gather_from_file(path: str | os.PathLike[str], header: Any, order: np.ndarray,
                     starts: np.ndarray, counts: np.ndarray) -> AtlasVoxels:
    """Stream a ``.nii``/``.nii.gz`` file and gather atlas voxels block by block.

    Parameters
    ----------
    path : path-like
        The 4D NIfTI file (single file, header already validated).
    header : nibabel.Nifti1Header
        Its header (shape, dtype with byte order, ``vox_offset``, scaling).
    order, starts, counts : ndarray
        From :func:`voxel_order`.

    Returns
    -------
    AtlasVoxels
        ``(T, N)`` voxel time series in raw units, with the header's slope/intercept.

    Raises
    ------
    InputError
        The file is truncated or its compressed stream is corrupt (gzip, zlib or isal
        errors alike); the message names the file.
    """
    p = Path(path)
    shape = tuple(int(s) for s in header.get_data_shape())
    n_vox = int(np.prod(shape[:3]))
    n_t = int(np.prod(shape[3:])) if len(shape) > 3 else 1
    dtype = header.get_data_dtype()
    slope, inter = header.get_slope_inter()
    slope = 1.0 if slope is None or not np.isfinite(slope) or slope == 0 else float(slope)
    inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    vox_offset = int(header["vox_offset"])
    vol_bytes = n_vox * dtype.itemsize
    step = max(1, min(n_t, _BLOCK_BYTES // vol_bytes))
    buf = bytearray(step * vol_bytes)
    mv = memoryview(buf)
    work = _work_dtype(dtype.newbyteorder("="))
    out = np.empty((n_t, order.size), dtype=work)
    with open(p, "rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        if magic == b"\x1f\x8b":
            from isal import igzip_threaded

            # decompression runs in a background thread, overlapping the voxel gather
            stream: Any = igzip_threaded.open(raw, "rb", threads=1)
        else:
            stream = raw
        try:
            stream.seek(vox_offset) if stream is raw else _skip(stream, vox_offset, p.name)
            t0 = 0
            while t0 < n_t:
                k = min(step, n_t - t0)
                need = k * vol_bytes
                got = _readinto_full(stream, mv[:need])
                if got < need:
                    raise InputError(
                        f"{p.name}: file is truncated: volume {t0 + got // vol_bytes} of "
                        f"{n_t} is incomplete ({got} of {need} bytes read)"
                    )
                block = np.frombuffer(buf, dtype=dtype, count=k * n_vox).reshape(k, n_vox)
                out[t0:t0 + k] = block[:, order]
                t0 += k
            if stream is not raw:  # read to the end, where gzip checks its CRC and size
                while _readinto_full(stream, mv):
                    pass
        except InputError:
            raise
        except Exception as exc:
            if not _is_stream_error(exc):
                raise
            from danemap.io._nifti import describe_gzip_error

            # truncation, a corrupt stream and trailing garbage are told apart
            raise InputError(f"{p.name}: {describe_gzip_error(exc, p)}") from exc
        finally:
            if stream is not raw:
                stream.close()
    return AtlasVoxels(out, starts, counts, slope, inter)


def _is_stream_error(exc: BaseException) -> bool:
    """Return True for what a truncated or corrupt (gzip/deflate) stream raises.

    ``isal.igzip_lib.IsalError`` subclasses neither ``OSError`` nor ``ValueError`` (and
    its ``__module__`` is ``igzip_lib``), so it is tested for explicitly as well.
    """
    from isal import igzip_lib

    from danemap.io import is_gzip_error

    # the isal stub types IsalError as an instance, hence getattr
    isal_error: type[BaseException] = getattr(igzip_lib, "IsalError")  # noqa: B009
    return isinstance(exc, isal_error) or is_gzip_error(exc)


def _skip(stream: Any, n: int, name: str) -> None:
    left = n
    while left > 0:
        chunk = stream.read(min(left, 2**20))
        if not chunk:
            raise InputError(f"{name}: file is truncated before the voxel data (vox_offset {n})")
        left -= len(chunk)


def _readinto_full(stream: Any, view: memoryview) -> int:
    got = 0
    total = len(view)
    while got < total:
        n = stream.readinto(view[got:])
        if not n:
            break
        got += n
    return got
