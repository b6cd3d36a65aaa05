"""Tests of the safe NIfTI loader on malformed and valid files built in tmp_path."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from tests._compare import assert_same_voxels, same_voxels

from danemap.config import Config
from danemap.errors import InputError
from danemap.io import load_nifti, load_nifti_header

AFFINE = np.array([[-3.0, 0, 0, 90], [0, 3, 0, -126], [0, 0, 3, -72], [0, 0, 0, 1]])


def _img(shape=(4, 5, 6), dtype="<f4", endian="<", seed=0):
    rng = np.random.default_rng(seed)
    data = (rng.normal(size=shape) * 100).astype(np.dtype(dtype).newbyteorder(endian))
    hdr = nib.Nifti1Header(endianness=endian)
    hdr.set_data_dtype(data.dtype)
    return nib.Nifti1Image(data, AFFINE, hdr)


def _save(img, path: Path) -> Path:
    nib.save(img, path)
    return path


def _raw_bytes(img) -> bytes:
    """Uncompressed single-file NIfTI bytes for ``img``."""
    return img.to_bytes()


def _patch(raw: bytes, offset: int, fmt: str, *values) -> bytes:
    buf = bytearray(raw)
    struct.pack_into(fmt, buf, offset, *values)
    return bytes(buf)


def _write(path: Path, raw: bytes) -> Path:
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


# --------------------------------------------------------------------- valid files


@pytest.mark.parametrize("dtype", ["f4", "i4", "i2", "u1", "f8"])
@pytest.mark.parametrize("endian", ["<", ">"])
def test_round_trip_matches_nibabel(tmp_path, dtype, endian):
    img = _img(dtype=dtype, endian=endian)
    path = _save(img, tmp_path / "x.nii.gz")
    ref = nib.load(path)
    out = load_nifti(path)
    data = np.asanyarray(out.dataobj)
    assert isinstance(data, np.ndarray)  # loaded, not a proxy
    assert data.dtype == np.dtype(dtype)  # same type, native byte order
    assert data.dtype.isnative
    np.testing.assert_array_equal(out.get_fdata(), ref.get_fdata())
    np.testing.assert_array_equal(out.affine, ref.affine)
    assert out.header.endianness == ("<" if np.little_endian else ">")


def test_plain_nii_and_header_only(tmp_path):
    img = _img(shape=(3, 4, 5, 2), endian=">")
    path = _save(img, tmp_path / "bold.nii")
    out = load_nifti(path, expect_ndim=4)
    np.testing.assert_array_equal(out.get_fdata(), nib.load(path).get_fdata())
    hdr = load_nifti_header(path)
    assert hdr.get_data_shape() == (3, 4, 5, 2)
    assert hdr.get_data_dtype() == np.dtype(">f4")


def test_scaled_int16_uses_fdata_semantics(tmp_path):
    raw = _patch(_raw_bytes(_img(dtype="i2")), 112, "<ff", 0.5, 10.0)
    path = _write(tmp_path / "scaled.nii.gz", raw)
    out = load_nifti(path)
    data = np.asanyarray(out.dataobj)
    assert data.dtype == np.float64
    np.testing.assert_allclose(data, nib.load(path).get_fdata(), rtol=0, atol=0)
    # the scaled image saves and reloads without a second scaling
    _save(out, tmp_path / "again.nii")
    np.testing.assert_array_equal(nib.load(tmp_path / "again.nii").get_fdata(), data)


def test_unit_slope_keeps_int_dtype(tmp_path):
    raw = _patch(_raw_bytes(_img(dtype="i4")), 112, "<ff", 1.0, 0.0)
    out = load_nifti(_write(tmp_path / "unit.nii", raw))
    assert np.asanyarray(out.dataobj).dtype == np.int32


def test_expect_ndim_squeezes_single_volume_like_nilearn(tmp_path):
    path = _save(_img(shape=(3, 4, 5, 1)), tmp_path / "one.nii.gz")
    out = load_nifti(path, expect_ndim=3)
    assert out.shape == (3, 4, 5)
    assert load_nifti(path, expect_ndim=(3, 4)).shape == (3, 4, 5, 1)
    assert load_nifti_header(path, expect_ndim=3).get_data_shape() == (3, 4, 5, 1)


def test_extensions_are_kept(tmp_path):
    img = _img()
    img.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"danemap comment"))
    path = _save(img, tmp_path / "ext.nii.gz")
    out = load_nifti(path)
    assert len(out.header.extensions) == 1
    np.testing.assert_array_equal(out.get_fdata(), img.get_fdata())


def test_nifti2(tmp_path):
    data = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    path = tmp_path / "n2.nii.gz"
    nib.save(nib.Nifti2Image(data, AFFINE), path)
    out = load_nifti(path)
    assert isinstance(out, nib.Nifti2Image)
    np.testing.assert_array_equal(out.get_fdata(), data)


# ------------------------------------------------------------------ malformed files


def test_missing_and_directory(tmp_path):
    with pytest.raises(InputError, match=r"file not found"):
        load_nifti(tmp_path / "nope.nii.gz")
    (tmp_path / "d.nii").mkdir()
    with pytest.raises(InputError, match=r"is a directory"):
        load_nifti(tmp_path / "d.nii")


def test_wrong_extension(tmp_path):
    p = tmp_path / "x.img"
    p.write_bytes(b"abc")
    with pytest.raises(InputError, match=r"x.img: expected a .nii or .nii.gz"):
        load_nifti(p)


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.nii.gz"
    p.touch()
    with pytest.raises(InputError, match=r"empty.nii.gz: file is empty \(0 bytes\)"):
        load_nifti(p)


def test_not_gzip_but_gz(tmp_path):
    p = tmp_path / "fake.nii.gz"
    p.write_bytes(_raw_bytes(_img()))
    with pytest.raises(InputError, match=r"fake.nii.gz: named .gz but is not gzip-compressed"):
        load_nifti(p)


def test_truncated_gz(tmp_path):
    full = gzip.compress(_raw_bytes(_img(shape=(20, 20, 20))))
    p = tmp_path / "trunc.nii.gz"
    p.write_bytes(full[: len(full) // 2])
    with pytest.raises(InputError, match=r"trunc.nii.gz: (corrupt|file is truncated)") as err:
        load_nifti(p)
    assert err.value.__cause__ is not None or "truncated" in str(err.value)


def test_truncated_gz_header(tmp_path):
    full = gzip.compress(_raw_bytes(_img()))
    p = tmp_path / "tiny.nii.gz"
    p.write_bytes(full[:30])
    with pytest.raises(InputError, match=r"tiny.nii.gz: (corrupt|file is truncated)"):
        load_nifti(p)


def test_corrupt_gz_crc(tmp_path):
    full = bytearray(gzip.compress(_raw_bytes(_img())))
    full[-6] ^= 0xFF  # damage the CRC32 of the trailer
    p = tmp_path / "crc.nii.gz"
    p.write_bytes(bytes(full))
    with pytest.raises(InputError, match=r"crc.nii.gz: corrupt") as err:
        load_nifti(p)
    assert err.value.__cause__ is not None


def test_garbage_header(tmp_path):
    p = _write(tmp_path / "garbage.nii", bytes(range(256)) * 4)
    with pytest.raises(InputError, match=r"garbage.nii: not a NIfTI file: header field sizeof_hdr"):
        load_nifti(p)


def test_bad_magic(tmp_path):
    raw = bytearray(_raw_bytes(_img()))
    raw[344:348] = b"ni1\x00"
    with pytest.raises(InputError, match=r"header field magic .* found b'ni1'"):
        load_nifti(_write(tmp_path / "magic.nii", bytes(raw)))


@pytest.mark.parametrize("value, shown", [(-2.0, "-2.0"), (np.nan, "nan"), (0.0, "0.0")])
def test_bad_pixdim(tmp_path, value, shown):
    raw = _patch(_raw_bytes(_img()), 76 + 4 * 2, "<f", value)  # pixdim[2]
    p = _write(tmp_path / "sub-01_bold.nii.gz", raw)
    with pytest.raises(InputError, match=rf"sub-01_bold.nii.gz: header field pixdim\[2\] must "
                                         rf"be finite and > 0, found {shown}"):
        load_nifti(p)


def test_singular_sform(tmp_path):
    img = _img()
    img.header.set_sform(np.zeros((4, 4)), code=1)
    raw = _raw_bytes(img)
    raw = _patch(raw, 280, "<12f", *([0.0] * 12))  # srow_x/y/z all zero
    with pytest.raises(InputError, match=r"affine from the sform .* must be invertible"):
        load_nifti(_write(tmp_path / "sing.nii.gz", raw))


def test_rank_deficient_sform(tmp_path):
    raw = _patch(_raw_bytes(_img()), 254, "<h", 2)  # sform_code
    raw = _patch(raw, 280, "<4f", -3.0, 0.0, 0.0, 90.0)  # srow_x
    raw = _patch(raw, 296, "<4f", -3.0, 0.0, 0.0, 10.0)  # srow_y parallel to srow_x
    with pytest.raises(InputError, match=r"rank.nii: header affine from the sform .* singular "
                                         r"matrix \(det 0\)"):
        load_nifti(_write(tmp_path / "rank.nii", raw))


def test_non_finite_affine(tmp_path):
    raw = _raw_bytes(_img())
    raw = _patch(raw, 252, "<h", 1)  # qform_code
    raw = _patch(raw, 254, "<h", 0)  # sform_code 0 -> the qform is used
    raw = _patch(raw, 268, "<f", np.inf)  # qoffset_x
    with pytest.raises(InputError, match=r"affine from the qform .* must be finite"):
        load_nifti(_write(tmp_path / "inf.nii.gz", raw))


def test_huge_declared_gz_raises_before_allocating(tmp_path):
    img = _img(dtype="i2")
    raw = _raw_bytes(img)[:352]
    raw = _patch(raw, 40, "<8h", 3, 1000, 1000, 1000, 1, 1, 1, 1)  # 10^9 voxels, 2 GB
    p = _write(tmp_path / "huge.nii.gz", raw)
    with pytest.raises(InputError, match=r"huge.nii.gz: file is truncated or the header is "
                                         r"corrupt: it declares 1.86 GiB"):
        load_nifti(p)


def test_declared_size_over_cap(tmp_path):
    raw = _patch(_raw_bytes(_img(dtype="f8"))[:352], 40, "<8h", 3, 1000, 1000, 1000, 1, 1, 1, 1)
    p = _write(tmp_path / "cap.nii", raw)
    with pytest.raises(InputError, match=r"declared data size 7.45 GiB .* exceeds the limit of "
                                         r"4 GiB"):
        load_nifti(p)
    small = _save(_img(), tmp_path / "small.nii.gz")
    with pytest.raises(InputError, match=r"exceeds the limit of 100 bytes"):
        load_nifti(small, max_bytes=100)
    with pytest.raises(InputError, match=r"max_bytes must be a positive number"):
        load_nifti(small, max_bytes=-1)
    # the run configuration gives the cap in GiB (a float)
    cfg = Config().updated({"run": {"max_nifti_gib": 1e-7}})
    with pytest.raises(InputError, match=r"480 bytes .* exceeds the limit of 107 bytes"):
        load_nifti(small, max_bytes=cfg.run.max_nifti_gib * 2**30)
    assert load_nifti(small, max_bytes=Config().run.max_nifti_gib * 2**30).shape == (4, 5, 6)


def test_truncated_uncompressed(tmp_path):
    raw = _raw_bytes(_img(shape=(10, 10, 10)))
    p = _write(tmp_path / "short.nii", raw[:-100])
    with pytest.raises(InputError, match=r"short.nii: file is truncated: the header declares "
                                         r"4352 bytes .* the file has 4252"):
        load_nifti(p)
    with pytest.raises(InputError, match=r"file is truncated"):
        load_nifti_header(p)


def test_unsupported_datatype(tmp_path):
    raw = _patch(_raw_bytes(_img()), 70, "<hh", 32, 64)  # complex64
    with pytest.raises(InputError, match=r"header field datatype must be a supported numeric "
                                         r"type .* found complex64 \(32\)"):
        load_nifti(_write(tmp_path / "cplx.nii", raw))
    raw = _patch(_raw_bytes(_img()), 70, "<h", 1234)
    with pytest.raises(InputError, match=r"found unknown \(1234\)"):
        load_nifti(_write(tmp_path / "unk.nii", raw))


def test_dim_zero(tmp_path):
    raw = _patch(_raw_bytes(_img()), 42 + 2 * 2, "<h", 0)  # dim[3] = 0
    with pytest.raises(InputError, match=r"header field dim\[3\] must be >= 1, found 0"):
        load_nifti(_write(tmp_path / "dim0.nii.gz", raw))


def test_bad_ndim(tmp_path):
    raw = _patch(_raw_bytes(_img()), 40, "<h", 9)
    with pytest.raises(InputError, match=r"dim\[0\] \(number of dimensions\) must be 1..7, "
                                         r"found 9"):
        load_nifti(_write(tmp_path / "ndim.nii", raw))


def test_wrong_ndim(tmp_path):
    p3 = _save(_img(shape=(3, 4, 5)), tmp_path / "t1.nii.gz")
    p4 = _save(_img(shape=(3, 4, 5, 6)), tmp_path / "bold.nii.gz")
    with pytest.raises(InputError, match=r"t1.nii.gz: expected a 4D image, found a 3D image"):
        load_nifti(p3, expect_ndim=4)
    with pytest.raises(InputError, match=r"bold.nii.gz: expected a 3D image, found a 4D image "
                                         r"of shape \(3, 4, 5, 6\)"):
        load_nifti(p4, expect_ndim=3)
    with pytest.raises(InputError, match=r"expect_ndim must be an int"):
        load_nifti(p4, expect_ndim=(3, 9))


def test_bad_vox_offset(tmp_path):
    raw = _patch(_raw_bytes(_img()), 108, "<f", 100.0)
    with pytest.raises(InputError, match=r"vox_offset must be between 352 .* found 100"):
        load_nifti(_write(tmp_path / "off.nii", raw))


def test_non_finite_intercept(tmp_path):
    raw = _patch(_raw_bytes(_img(dtype="i2")), 112, "<ff", 2.0, np.inf)
    with pytest.raises(InputError, match=r"scl_inter must be finite"):
        load_nifti(_write(tmp_path / "inter.nii", raw))


def test_is_gzip_error_covers_isal_and_zlib():
    import zlib

    from isal import igzip_lib

    from danemap.io._nifti import is_gzip_error

    assert is_gzip_error(igzip_lib.IsalError("bad block"))
    assert is_gzip_error(zlib.error("bad"))
    assert is_gzip_error(EOFError())
    assert not is_gzip_error(KeyError("x"))


def test_deflate_corrupted_right_after_the_gzip_header(tmp_path):
    path = tmp_path / "early.nii.gz"
    raw = nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)).to_bytes()
    data = bytearray(gzip.compress(raw))
    data[10:18] = b"\x00" * 8  # the deflate stream starts after the 10-byte gzip header
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"early\.nii\.gz: corrupt gzip stream"):
        load_nifti_header(path)


@pytest.mark.parametrize("shape", [(2, 3, 4), (20, 20, 20)])
def test_gz_trailing_garbage_is_named_as_such(tmp_path, shape):
    # a small image: the reader hits the garbage while it reads the header (read-ahead)
    p = tmp_path / "tail.nii.gz"
    p.write_bytes(gzip.compress(_raw_bytes(_img(shape=shape))) + b"garbage" * 10)
    with pytest.raises(InputError, match=r"tail\.nii\.gz: trailing garbage after the gzip "
                                         r"stream: the image data are complete") as err:
        load_nifti(p)
    assert "70 bytes" in str(err.value)
    assert "truncated" not in str(err.value)


def test_gz_trailing_garbage_after_a_member_larger_than_a_read_chunk(tmp_path, monkeypatch):
    # zlib keeps the bytes after a member in unconsumed_tail when its output is capped:
    # the scan of the members must end there, not loop forever (a hang on a real BOLD)
    import danemap.io._nifti as nifti_mod

    monkeypatch.setattr(nifti_mod, "_CHUNK", 4096)
    # a compressible image: one read chunk holds the whole member and the garbage, and
    # decompresses to many capped outputs
    raw = _raw_bytes(nib.Nifti1Image(np.zeros((20, 20, 20), np.float32), AFFINE))
    p = tmp_path / "big.nii.gz"
    p.write_bytes(gzip.compress(raw) + b"\x00garbage" * 16)
    assert p.stat().st_size < 4096 < len(raw)
    import concurrent.futures

    pool = concurrent.futures.ThreadPoolExecutor(1)
    scan = pool.submit(nifti_mod._gzip_members, p)
    try:  # a regression hangs: fail it after 30 s instead
        decompressed, trailing, _ = scan.result(timeout=30)
    finally:
        pool.shutdown(wait=False)
    assert (decompressed, trailing) == (len(raw), 128)


def test_gz_zero_padding_and_second_member_are_accepted(tmp_path):
    img = _img()
    for tail in (b"\x00" * 64, gzip.compress(b"extra")):
        p = tmp_path / "pad.nii.gz"
        p.write_bytes(gzip.compress(_raw_bytes(img)) + tail)
        assert_same_voxels(load_nifti(p).dataobj, img.dataobj)


def test_gz_short_member_then_garbage_is_truncated(tmp_path):
    raw = _raw_bytes(_img(shape=(20, 20, 20)))
    p = tmp_path / "short.nii.gz"
    p.write_bytes(gzip.compress(raw[:10000]) + b"garbage")
    with pytest.raises(InputError, match=r"short\.nii\.gz: file is truncated"):
        load_nifti(p)


def test_gz_crc_and_length_damage_named(tmp_path):
    full = gzip.compress(_raw_bytes(_img()))
    for pos, what in ((-8, "CRC"), (-2, "CRC/length")):
        data = bytearray(full)
        data[pos] ^= 0xFF
        p = tmp_path / "crc.nii.gz"
        p.write_bytes(bytes(data))
        with pytest.raises(InputError, match=rf"crc\.nii\.gz: corrupt gzip stream: the "
                                             rf".*{what}.* check"):
            load_nifti(p)


def test_describe_gzip_error_for_other_readers(tmp_path):
    # the functional family streams BOLD voxels with its own reader and words errors so
    from isal import igzip

    from danemap.io._nifti import describe_gzip_error

    raw = _raw_bytes(_img(shape=(20, 20, 20)))
    p = tmp_path / "tail.nii.gz"
    p.write_bytes(gzip.compress(raw) + b"junk" * 5)
    with pytest.raises(Exception) as err, igzip.open(p, "rb") as f:
        while f.read(4096):
            pass
    text = describe_gzip_error(err.value, p)
    assert text.startswith("trailing garbage after the gzip stream: the image data are "
                           f"complete (the header declares {len(raw)} bytes), but 20 bytes")
    assert describe_gzip_error(EOFError("Compressed file ended before the end-of-stream "
                                        "marker was reached")).startswith("file is truncated")


@pytest.mark.parametrize("klass", [nib.Nifti1Image, nib.Nifti2Image])
def test_unset_vox_offset_reads_the_data_after_the_header(tmp_path, klass):
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    blob = bytearray(klass(data, np.eye(4)).to_bytes())
    offset, fmt = (108, "<f") if klass is nib.Nifti1Image else (168, "<q")
    struct.pack_into(fmt, blob, offset, 0)
    p = tmp_path / "zero.nii"
    p.write_bytes(bytes(blob))
    assert_same_voxels(load_nifti(p).dataobj, data)
    # nibabel reads from byte 0 here: the header bytes come back as voxels
    assert not same_voxels(nib.load(p).dataobj, data)


def test_a_pipe_or_device_is_refused_before_it_is_opened(tmp_path):
    import os

    fifo = tmp_path / "pipe.nii"
    os.mkfifo(fifo)
    dev = tmp_path / "dev.nii.gz"
    os.symlink("/dev/zero", dev)
    for p in (fifo, dev):  # opening the pipe for reading would block this test forever
        with pytest.raises(InputError, match=rf"{p.name}: is not a regular file"):
            load_nifti(p)
        with pytest.raises(InputError, match="not a regular file"):
            load_nifti_header(p)
