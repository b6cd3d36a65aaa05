"""Safe NIfTI loading: every header field is checked before any voxel is read.

The loader parses the header from the first bytes of the file (streamed through
the fast ``isal`` gzip decompressor for ``.nii.gz``), validates it, and only
then allocates one array of exactly the declared size and decompresses the data
straight into it. Corrupt or truncated files never leak a raw traceback from
nibabel, zlib, gzip or isal: they raise :class:`~danemap.errors.InputError`
naming the file and the problem.

Design choices
--------------
* ``expect_ndim=3`` accepts a 4D image with a single volume and squeezes it to
  3D, exactly as nilearn's ``check_niimg_3d`` does. A 3D image is never promoted
  to 4D for ``expect_ndim=4`` (nilearn raises ``DimensionError`` there too).
* The affine is the one nibabel would choose (``get_best_affine``: sform if
  ``sform_code > 0``, else qform if ``qform_code > 0``, else the voxel-size
  affine). It must be finite and invertible.
* Data scaling follows nibabel: when ``scl_slope``/``scl_inter`` are set (slope
  finite, non-zero, and ``(slope, inter) != (1, 0)``) the data are scaled and
  returned as float64 (``get_fdata`` semantics); otherwise the on-disk dtype is
  kept (float32 stays float32, int32 stays int32) in native byte order.
* For ``.nii.gz`` the declared data size is compared with the compressed file
  size: deflate cannot compress better than 1032:1, so a header that declares
  more than that is rejected as truncated before anything is allocated.
* An unset ``vox_offset`` (0) without header extensions is read as the end of the
  header (352 for NIfTI-1, 544 for NIfTI-2), where the data of such a file are.
  This is the one place where the data differ from nibabel's, which reads from
  byte 0 and returns the header bytes as voxels.
* gzip damage is named for what it is (:func:`describe_gzip_error`): a stream cut
  short ("truncated"), a failed CRC/length check ("corrupt"), or bytes that are not
  gzip after complete image data ("trailing garbage"). Zero padding and further
  gzip members after the image are accepted, as gzip readers (and nibabel) do.
* nibabel's own header checks (magic of the wrong NIfTI version, a NIfTI-2
  ``eol_check`` damaged by a text-mode transfer) are made here first, so that its
  ``HeaderDataError`` never escapes.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from danemap.errors import InputError

if TYPE_CHECKING:
    import nibabel as nib

__all__ = ["DEFAULT_MAX_BYTES", "describe_gzip_error", "load_nifti", "load_nifti_header",
           "write_nifti"]

#: Default cap on the declared data size of one image (4 GiB); the run
#: configuration's ``run.max_nifti_gib`` is the same number in GiB.
DEFAULT_MAX_BYTES = 4 * 2**30

_GZIP_MAGIC = b"\x1f\x8b"
_MAX_DEFLATE_RATIO = 1032  # theoretical maximum compression ratio of deflate
_CHUNK = 16 * 2**20  # bytes decompressed per readinto call
_MAX_VOX_OFFSET = 64 * 2**20  # extensions larger than 64 MiB are not plausible

# NIfTI datatype code -> numpy type (native order; byte order applied later).
_SUPPORTED_DTYPES: dict[int, np.dtype[Any]] = {
    2: np.dtype(np.uint8),
    4: np.dtype(np.int16),
    8: np.dtype(np.int32),
    16: np.dtype(np.float32),
    64: np.dtype(np.float64),
    256: np.dtype(np.int8),
    512: np.dtype(np.uint16),
    768: np.dtype(np.uint32),
    1024: np.dtype(np.int64),
    1280: np.dtype(np.uint64),
}
_UNSUPPORTED_NAMES = {
    0: "unknown (0)",
    1: "binary (1)",
    32: "complex64 (32)",
    128: "RGB24 (128)",
    1536: "float128 (1536)",
    1792: "complex128 (1792)",
    2048: "complex256 (2048)",
    2304: "RGBA32 (2304)",
}


class _Layout:
    """What the header says about where and how the data are stored."""

    def __init__(self, header: Any, shape: tuple[int, ...], dtype: np.dtype[Any],
                 vox_offset: int, nbytes: int, affine: np.ndarray) -> None:
        self.header = header
        self.shape = shape
        self.dtype = dtype  # with the file's byte order
        self.vox_offset = vox_offset
        self.nbytes = nbytes
        self.affine = affine
        self.is_gz = False


def _fail(name: str, msg: str) -> InputError:
    return InputError(f"{name}: {msg}")


def _as_path(path: str | os.PathLike[str]) -> Path:
    try:
        return Path(path)
    except TypeError as exc:
        raise InputError(
            f"NIfTI path must be a str or os.PathLike, found {type(path).__name__}"
        ) from exc


def _open(path: Path) -> tuple[BinaryIO, bool, int]:
    """Open ``path`` for reading; return (stream, is_gzip, size on disk)."""
    name = path.name
    if not path.exists():
        raise _fail(str(path), "file not found")
    if path.is_dir():
        raise _fail(str(path), "is a directory, expected a .nii or .nii.gz file")
    lower = name.lower()
    if not (lower.endswith(".nii") or lower.endswith(".nii.gz")):
        raise _fail(name, "expected a .nii or .nii.gz file name")
    try:
        st = path.stat()
    except OSError as exc:
        raise _fail(name, f"cannot be opened ({exc.strerror or exc})") from exc
    if not stat.S_ISREG(st.st_mode):
        # a FIFO or a device would block or never end: refuse it before opening it
        raise _fail(name, "is not a regular file (a pipe, socket or device); expected a "
                          ".nii or .nii.gz file")
    size = st.st_size
    try:
        raw = open(path, "rb")  # returned to the caller, closed there
    except OSError as exc:
        raise _fail(name, f"cannot be opened ({exc.strerror or exc})") from exc
    if size == 0:
        raw.close()
        raise _fail(name, "file is empty (0 bytes)")
    magic = raw.read(2)
    raw.seek(0)
    is_gz = magic == _GZIP_MAGIC
    if lower.endswith(".gz") and not is_gz:
        raw.close()
        raise _fail(name, "named .gz but is not gzip-compressed "
                          f"(first bytes {magic!r}, expected {_GZIP_MAGIC!r})")
    if not is_gz:
        return raw, False, size
    raw.close()
    from isal import igzip

    try:
        stream = igzip.open(path, "rb")
    except OSError as exc:
        raise _fail(name, f"cannot be opened ({exc.strerror or exc})") from exc
    return stream, True, size


def _read_exact(stream: BinaryIO, n: int, name: str, what: str,
                path: Path | None = None) -> bytes:
    data = _guarded_read(stream, n, name, path)
    if len(data) < n:
        raise _fail(name, f"file is truncated: {what} needs {n} bytes, found {len(data)}")
    return data


def is_gzip_error(exc: BaseException) -> bool:
    """Return True if ``exc`` is what a truncated or corrupt (gzip) stream raises.

    Covers ``OSError``/``EOFError``/``ValueError``/``struct.error`` and the errors of
    isal and zlib, which do not subclass ``OSError`` (e.g. ``isal.igzip_lib.IsalError``).
    """
    if isinstance(exc, OSError | EOFError | ValueError | struct.error):
        return True
    # isal's IsalError lives in the module "igzip_lib"; zlib.error in "zlib"
    return type(exc).__module__.startswith(("isal", "igzip_lib", "zlib", "gzip"))


def _gzip_members(path: Path) -> tuple[int, int, bytes]:
    """Scan a gzip file's members with zlib.

    Only called on an error path, to say what follows the valid gzip data.

    Returns
    -------
    tuple
        The bytes decompressed from the complete members at the start of the file, how
        many bytes follow them that do not start another member (-1: a member is
        corrupt or truncated), and the first 544 decompressed bytes (the header).
    """
    import zlib

    total = 0
    head = bytearray()
    with open(path, "rb") as f:
        pending = b""
        while True:
            d = zlib.decompressobj(wbits=31)
            data = pending or f.read(_CHUNK)
            if data[:2] != _GZIP_MAGIC:
                return total, len(data) + len(f.read()), bytes(head)
            member = 0
            while True:
                try:
                    out = d.decompress(data, _CHUNK)
                    while True:
                        member += len(out)
                        if len(head) < 544:
                            head += out[:544 - len(head)]
                        # at the end of the member zlib may keep the bytes after it in
                        # unconsumed_tail too (and return nothing for them, forever)
                        if not d.unconsumed_tail or d.eof:
                            break
                        out = d.decompress(d.unconsumed_tail, _CHUNK)
                except zlib.error:
                    return total, -1, bytes(head)
                if d.eof:
                    break
                data = f.read(_CHUNK)
                if not data:
                    return total, -1, bytes(head)  # a truncated member
            total += member
            pending = d.unused_data
            if not pending:
                pending = f.read(_CHUNK)
                if not pending:
                    return total, 0, bytes(head)
            if pending.strip(b"\x00") == b"":
                rest = f.read()
                if rest.strip(b"\x00") == b"":
                    return total, 0, bytes(head)  # zero padding, which readers skip
                pending += rest


def _declared_size(head: bytes) -> int | None:
    """Bytes (vox_offset + data) a decompressed NIfTI header declares; None if unknown."""
    import nibabel as nib

    for klass, size in ((nib.Nifti1Header, 348), (nib.Nifti2Header, 540)):
        for endian in "<>":
            if len(head) >= size and struct.unpack(endian + "i", head[:4])[0] == size:
                try:
                    hdr = klass(head[:size], endianness=endian, check=False)
                    n = int(np.prod(hdr.get_data_shape(), dtype=np.float64))
                    return int(hdr["vox_offset"]) + n * hdr.get_data_dtype().itemsize
                except Exception:  # a header too damaged to say; the caller says less
                    return None
    return None


def describe_gzip_error(exc: BaseException, path: str | os.PathLike[str] | None = None,
                        needed: int | None = None) -> str:
    """Say what a decompression error means: truncation, corruption or trailing data.

    For every reader of ``.nii.gz`` files (the functional family streams BOLD voxels
    itself): ``f"{name}: {describe_gzip_error(exc, path)}"`` is the message.

    Parameters
    ----------
    exc : BaseException
        What the gzip reader raised (gzip, zlib or isal; see :func:`is_gzip_error`).
    path : Path or None
        The file, scanned again (with zlib) when the error is "not a gzipped file",
        which a reader raises for bytes after the end of a complete gzip member.
    needed : int or None
        Bytes the header declares (vox_offset + data), to say whether the image data
        were complete before the trailing bytes; None: read from the file's header.

    Returns
    -------
    str
        One sentence: "file is truncated: ...", "trailing garbage after the gzip
        stream: ...", "corrupt gzip stream: the CRC/length check ... failed" or
        "corrupt gzip stream (...)", ending with the reader's own message.
    """
    text = str(exc)
    low = text.lower()
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    cut = isinstance(exc, EOFError) or "ended before" in low or "end-of-stream" in low
    alien = "not a gzipped file" in low or "bad magic" in low or "invalid magic" in low
    if path is not None and (cut or alien):
        # what follows the complete members decides: garbage, a cut member, or nothing
        decompressed, trailing, head = _gzip_members(Path(path))
        if needed is None:
            needed = _declared_size(head)
        if needed is not None and decompressed >= needed and trailing != 0:
            if trailing > 0:
                return (f"trailing garbage after the gzip stream: the image data are "
                        f"complete (the header declares {needed} bytes), but {trailing} "
                        f"bytes that are not gzip data follow them ({detail}); remove "
                        "them, e.g. by re-compressing the image")
            return (f"corrupt gzip stream: the image data are complete (the header "
                    f"declares {needed} bytes), but the gzip member that follows them is "
                    f"truncated or corrupt ({detail})")
        if needed is not None and trailing > 0:
            return (f"file is truncated and has trailing garbage: its gzip data hold "
                    f"{decompressed} bytes where the header declares {needed}, and "
                    f"{trailing} bytes that are not gzip data follow them ({detail})")
    if cut:
        return (f"file is truncated: the gzip stream ends before its end-of-stream marker "
                f"({detail})")
    if alien:
        return f"corrupt gzip stream: data that are not gzip follow a member ({detail})"
    if "crc" in low or "length" in low:
        return (f"corrupt gzip stream: the CRC/length check of the decompressed data "
                f"failed ({detail})")
    return f"corrupt gzip stream ({detail})"


def _guarded_read(stream: BinaryIO, n: int, name: str, path: Path | None = None) -> bytes:
    """Read up to ``n`` bytes, turning decompression errors into InputError."""
    try:
        return stream.read(n)
    except Exception as exc:
        if is_gzip_error(exc):
            raise _fail(name, describe_gzip_error(exc, path)) from exc
        raise


def _parse_header(stream: BinaryIO, name: str, path: Path | None = None,
                  ) -> tuple[Any, bytes]:
    """Read and parse the fixed header; return (nibabel header, header bytes)."""
    import nibabel as nib

    first = _guarded_read(stream, 348, name, path)
    if len(first) < 4:
        raise _fail(name, f"file is truncated: only {len(first)} bytes, "
                          "a NIfTI header needs 348")
    le = struct.unpack("<i", first[:4])[0]
    be = struct.unpack(">i", first[:4])[0]
    if 348 in (le, be):
        klass: Any = nib.Nifti1Header
        size = 348
        endian = "<" if le == 348 else ">"
    elif 540 in (le, be):
        klass = nib.Nifti2Header
        size = 540
        endian = "<" if le == 540 else ">"
    else:
        raise _fail(name, f"not a NIfTI file: header field sizeof_hdr is {le} "
                          "(expected 348 for NIfTI-1 or 540 for NIfTI-2)")
    if len(first) < 348:
        raise _fail(name, f"file is truncated: only {len(first)} bytes, "
                          f"a NIfTI header needs {size}")
    if size > 348:
        first += _read_exact(stream, size - 348, name, "the NIfTI-2 header", path)
    ext_flag = _read_exact(stream, 4, name, "the header extension flag", path)
    blob = first + ext_flag
    try:
        hdr = klass(first, endianness=endian, check=False)
    except Exception as exc:  # nibabel HeaderDataError, ValueError...
        raise _fail(name, f"header cannot be parsed ({exc})") from exc
    magic = bytes(hdr["magic"]).rstrip(b"\x00")
    if magic not in (b"n+1", b"n+2"):
        hint = " (a .hdr/.img pair; load the pair with nibabel)" if magic in (
            b"ni1", b"ni2") else ""
        raise _fail(name, f"header field magic must be 'n+1' or 'n+2' for a single-file "
                          f"NIfTI, found {magic!r}{hint}")
    version, want = ("NIfTI-1", b"n+1") if size == 348 else ("NIfTI-2", b"n+2")
    if magic != want:
        raise _fail(name, f"header field magic must be {want.decode()!r} for a {version} "
                          f"header (sizeof_hdr {size}), found {magic!r}")
    if size == 540:
        eol = tuple(int(x) for x in hdr["eol_check"])
        if eol not in ((0, 0, 0, 0), (13, 10, 26, 10)):
            raise _fail(name, f"header field eol_check (bytes 8-11 of the NIfTI-2 magic) must "
                              f"be 13, 10, 26, 10 (or zeros), found {', '.join(map(str, eol))}:"
                              " the file was probably damaged by a text-mode (EOL) conversion")
    return hdr, blob


def _check_header(hdr: Any, blob: bytes, name: str, compressed_size: int | None,
                  file_size: int, max_bytes: float) -> tuple[tuple[int, ...], np.dtype[Any],
                                                             int, int, np.ndarray]:
    """Validate the header; return (shape, file dtype, vox_offset, nbytes, affine)."""
    dim = [int(d) for d in hdr["dim"]]
    ndim = dim[0]
    if not 1 <= ndim <= 7:
        raise _fail(name, f"header field dim[0] (number of dimensions) must be 1..7, "
                          f"found {ndim}")
    for i in range(1, ndim + 1):
        if dim[i] < 1:
            raise _fail(name, f"header field dim[{i}] must be >= 1, found {dim[i]}")
    shape = tuple(dim[1:ndim + 1])

    pixdim = [float(p) for p in hdr["pixdim"]]
    for i in range(1, min(ndim, 3) + 1):
        if not (np.isfinite(pixdim[i]) and pixdim[i] > 0):
            raise _fail(name, f"header field pixdim[{i}] must be finite and > 0, "
                              f"found {pixdim[i]}")

    code = int(hdr["datatype"])
    if code not in _SUPPORTED_DTYPES:
        label = _UNSUPPORTED_NAMES.get(code, f"unknown ({code})")
        supported = ", ".join(str(d) for d in _SUPPORTED_DTYPES.values())
        raise _fail(name, f"header field datatype must be a supported numeric type "
                          f"({supported}), found {label}")
    dtype = _SUPPORTED_DTYPES[code].newbyteorder(hdr.endianness)

    nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if nbytes > max_bytes:
        raise _fail(name, f"declared data size {_fmt_bytes(nbytes)} (shape {shape}, "
                          f"{dtype.name}) exceeds the limit of {_fmt_bytes(max_bytes)}; "
                          "raise max_bytes (config run.max_nifti_gib) if this is intended")

    vox_offset_f = float(hdr["vox_offset"])
    min_offset = len(blob)
    if not np.isfinite(vox_offset_f) or vox_offset_f != int(vox_offset_f):
        raise _fail(name, f"header field vox_offset must be a whole number, found "
                          f"{vox_offset_f}")
    vox_offset = int(vox_offset_f)
    if blob[-4:-3] == b"\x00" and vox_offset == 0:
        vox_offset = min_offset  # nibabel tolerates an unset offset without extensions
    if not min_offset <= vox_offset <= _MAX_VOX_OFFSET:
        raise _fail(name, f"header field vox_offset must be between {min_offset} and "
                          f"{_MAX_VOX_OFFSET}, found {vox_offset}")

    needed = vox_offset + nbytes
    if compressed_size is None:
        if file_size < needed:
            raise _fail(name, f"file is truncated: the header declares {needed} bytes "
                              f"(vox_offset {vox_offset} + {nbytes} data bytes), "
                              f"the file has {file_size}")
    elif needed > compressed_size * _MAX_DEFLATE_RATIO + 4096:
        raise _fail(name, f"file is truncated or the header is corrupt: it declares "
                          f"{_fmt_bytes(needed)} of data but the compressed file has only "
                          f"{_fmt_bytes(compressed_size)} (gzip cannot compress more than "
                          f"{_MAX_DEFLATE_RATIO}:1)")

    try:
        affine = np.asarray(hdr.get_best_affine(), dtype=np.float64)
    except Exception as exc:  # nibabel raises on invalid quaternions
        raise _fail(name, f"header affine cannot be computed ({exc})") from exc
    source = ("sform (srow_x/y/z)" if int(hdr["sform_code"]) > 0 else
              "qform (quatern_b/c/d, qoffset)" if int(hdr["qform_code"]) > 0 else
              "pixdim")
    if not np.all(np.isfinite(affine)):
        raise _fail(name, f"header affine from the {source} must be finite, found "
                          f"{_fmt_affine(affine)}")
    det = float(np.linalg.det(affine[:3, :3]))
    if not np.isfinite(det) or abs(det) < 1e-12:
        raise _fail(name, f"header affine from the {source} must be invertible, found "
                          f"a singular matrix (det {det:.3g}) {_fmt_affine(affine)}")
    return shape, dtype, vox_offset, nbytes, affine


def _fmt_bytes(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} bytes"


def _fmt_affine(affine: np.ndarray) -> str:
    return np.array2string(affine[:3], precision=3, separator=", ").replace("\n", "")


def _max_bytes(max_bytes: float | None) -> float:
    if max_bytes is None:
        return DEFAULT_MAX_BYTES
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int | float) or not (
            max_bytes > 0):
        raise InputError(f"max_bytes must be a positive number of bytes, found {max_bytes!r}")
    return float(max_bytes)


def _expected_ndims(expect_ndim: int | tuple[int, ...] | None) -> tuple[int, ...] | None:
    if expect_ndim is None:
        return None
    values = (expect_ndim,) if isinstance(expect_ndim, int) else tuple(expect_ndim)
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 7
                         for v in values):
        raise InputError(f"expect_ndim must be an int 1..7 or a tuple of them, "
                         f"found {expect_ndim!r}")
    return values


def _check_ndim(shape: tuple[int, ...], expected: tuple[int, ...] | None,
                name: str) -> bool:
    """Check the dimensionality; return True if a single-volume 4D must be squeezed."""
    if expected is None or len(shape) in expected:
        return False
    if 3 in expected and len(shape) == 4 and shape[3] == 1:
        return True  # nilearn's check_niimg_3d squeezes a single-volume 4D image
    want = " or ".join(f"{n}D" for n in expected)
    raise _fail(name, f"expected a {want} image, found a {len(shape)}D image of shape {shape}")


def _inspect(path: str | os.PathLike[str], max_bytes: float | None,
             ) -> tuple[Path, BinaryIO, _Layout]:
    """Open the file, parse and validate the header; leave the stream at the data."""
    p = _as_path(path)
    cap = _max_bytes(max_bytes)
    stream, is_gz, size = _open(p)
    name = p.name
    try:
        hdr, blob = _parse_header(stream, name, p)
        shape, dtype, vox_offset, nbytes, affine = _check_header(
            hdr, blob, name, size if is_gz else None, size, cap)
        if vox_offset > len(blob):
            ext = _read_exact(stream, vox_offset - len(blob), name,
                              "the header extensions", p)
            blob += ext
        hdr_size = 540 if len(hdr.binaryblock) == 540 else 348
        if blob[hdr_size:hdr_size + 1] != b"\x00" and vox_offset > hdr_size + 4:
            try:
                full = type(hdr).from_fileobj(io.BytesIO(blob), check=False)
                hdr.extensions = full.extensions
            except Exception as exc:  # malformed extension blocks
                raise _fail(name, f"header extensions are corrupt ({exc})") from exc
        layout = _Layout(hdr, shape, dtype, vox_offset, nbytes, affine)
        layout.is_gz = is_gz
        return p, stream, layout
    except BaseException:
        stream.close()
        raise


def load_nifti_header(
    path: str | os.PathLike[str],
    expect_ndim: int | tuple[int, ...] | None = None,
    max_bytes: float | None = None,
) -> nib.Nifti1Header:
    """Read and validate a NIfTI header without reading any voxel data.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.nii`` or ``.nii.gz`` file (NIfTI-1 or NIfTI-2, single file).
    expect_ndim : int, tuple of int or None
        Accepted numbers of dimensions, e.g. ``3``, ``4`` or ``(3, 4)``. A 4D image
        with one volume passes ``expect_ndim=3`` (nilearn squeezes it).
    max_bytes : int, float or None
        Cap on the declared data size in bytes (default 4 GiB). From the run
        configuration: ``config.run.max_nifti_gib * 2**30``.

    Returns
    -------
    nibabel.Nifti1Header
        The header (``Nifti2Header`` for NIfTI-2 files), in the file's byte order.

    Raises
    ------
    InputError
        If the file is missing, not a NIfTI, truncated (where detectable from
        its size), or any header field is invalid.
    """
    p, stream, layout = _inspect(path, max_bytes)
    stream.close()
    _check_ndim(layout.shape, _expected_ndims(expect_ndim), p.name)
    return layout.header


def load_nifti(
    path: str | os.PathLike[str],
    expect_ndim: int | tuple[int, ...] | None = None,
    max_bytes: float | None = None,
) -> nib.Nifti1Image:
    """Load a NIfTI image safely: validate the header, then read the data in memory.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.nii`` or ``.nii.gz`` file (NIfTI-1 or NIfTI-2, single file).
    expect_ndim : int, tuple of int or None
        Accepted numbers of dimensions, e.g. ``3``, ``4`` or ``(3, 4)``. A 4D image
        with a single volume is squeezed to 3D when 3 is accepted and 4 is not
        (nilearn's ``check_niimg_3d`` behaviour).
    max_bytes : int, float or None
        Cap on the declared data size in bytes (default 4 GiB). From the run
        configuration: ``config.run.max_nifti_gib * 2**30``.

    Returns
    -------
    nibabel.Nifti1Image
        The image (``Nifti2Image`` for NIfTI-2 files) with its data loaded in
        memory in native byte order: the on-disk dtype when the header sets no
        scaling, float64 (``get_fdata`` semantics) when ``scl_slope``/``scl_inter``
        are set. The affine is nibabel's best affine; the header is kept.

    Raises
    ------
    InputError
        If the file is missing, not a NIfTI, truncated or corrupt, or any header
        field is invalid. The message names the file and the problem.
    """
    import nibabel as nib

    p, stream, layout = _inspect(path, max_bytes)
    name = p.name
    with stream:
        squeeze = _check_ndim(layout.shape, _expected_ndims(expect_ndim), name)
        buf = np.empty(layout.nbytes, dtype=np.uint8)
        view = memoryview(buf.data)
        got = 0
        try:
            while got < layout.nbytes:
                n = stream.readinto(view[got:got + _CHUNK])  # type: ignore[attr-defined]
                if not n:
                    break
                got += n
        except Exception as exc:
            if is_gzip_error(exc):
                raise _fail(name, describe_gzip_error(
                    exc, p, layout.vox_offset + layout.nbytes)) from exc
            raise
        if got == layout.nbytes and layout.is_gz:
            _drain(stream, p, layout.vox_offset + layout.nbytes)
        if got < layout.nbytes:
            raise _fail(name, f"file is truncated: the header declares {layout.nbytes} data "
                              f"bytes, only {got} could be read")
    hdr = layout.header
    data = buf.view(layout.dtype)
    if not data.dtype.isnative:
        data.byteswap(inplace=True)
    data = data.view(layout.dtype.newbyteorder("="))
    if hdr.endianness != _NATIVE:
        hdr = hdr.as_byteswapped(_NATIVE)
    data = data.reshape(layout.shape, order="F")

    try:
        slope, inter = hdr.get_slope_inter()
    except Exception as exc:  # valid slope with a non-finite intercept
        raise _fail(name, f"header field scl_inter must be finite when scl_slope is set "
                          f"({exc})") from exc
    if slope is not None and (slope, inter) != (1.0, 0.0):
        data = data.astype(np.float64) * slope + inter
        # the header now describes the scaled float64 array (saving it is exact)
        hdr = hdr.copy()
        hdr.set_data_dtype(np.float64)
        hdr.set_slope_inter(np.nan, np.nan)

    if squeeze:
        data = data[..., 0]
    klass = nib.Nifti2Image if isinstance(hdr, nib.Nifti2Header) else nib.Nifti1Image
    try:
        img = klass(data, layout.affine, hdr)
    except Exception as exc:  # nibabel's own header checks (HeaderDataError)
        if not type(exc).__module__.startswith("nibabel"):
            raise
        raise _fail(name, f"header refused by nibabel's checks ({exc})") from exc
    img.set_filename(str(p))
    return img


_NATIVE = "<" if sys.byteorder == "little" else ">"


def _drain(stream: BinaryIO, path: Path, needed: int) -> None:
    """Read a gzip stream to its end, so that its CRC and length are verified."""
    try:
        while stream.read(_CHUNK):
            pass
    except Exception as exc:
        if is_gzip_error(exc):
            raise _fail(path.name, describe_gzip_error(exc, path, needed)) from exc
        raise


def write_nifti(img: Any, path: str | os.PathLike[str]) -> Path:
    """Write a NIfTI image atomically; ``.nii.gz`` is compressed with isal (mtime 0).

    The same image gives the same bytes, so a rerun leaves identical files.

    Parameters
    ----------
    img : nibabel.Nifti1Image or nibabel.Nifti2Image
        The image.
    path : str or os.PathLike
        Destination ending in ``.nii`` or ``.nii.gz``.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InputError
        If ``path`` ends in neither.
    """
    from isal import igzip

    from danemap.io._derivatives import atomic_write_bytes

    dest = Path(path)
    if not dest.name.endswith((".nii", ".nii.gz")):
        raise InputError(f"write_nifti: path must end in .nii or .nii.gz, found {dest.name}")
    blob = img.to_bytes()
    if dest.name.endswith(".gz"):
        blob = igzip.compress(blob, compresslevel=1, mtime=0)
    dest.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(dest, blob)
