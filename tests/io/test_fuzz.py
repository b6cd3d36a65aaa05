"""Hypothesis fuzzing of the NIfTI header checks, the gzip reader and the TSV parsers.

Any exception other than :class:`~danemap.errors.InputError` fails a test. When
:func:`danemap.io.load_nifti` accepts a mutated file, its data must equal nibabel's
reading of the same file. The budget is fixed and the runs are derandomized (no example
database), so CI is reproducible and the file takes well under a minute on one core.
"""

from __future__ import annotations

import gzip
import struct
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests._compare import assert_same_voxels

from danemap.errors import DanemapWarning, InputError
from danemap.io import load_nifti, load_nifti_header, read_participants

FUZZ = settings(max_examples=400, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
FUZZ_SMALL = settings(FUZZ, max_examples=200)


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    """One scratch folder for the module (hypothesis reruns a test body many times)."""
    with tempfile.TemporaryDirectory(prefix="danemap-fuzz-") as d:
        yield Path(d)


def _valid(nifti2: bool = False, shape: tuple[int, ...] = (3, 4, 5, 2),
           dtype: str = "<i2") -> bytes:
    data = (np.arange(int(np.prod(shape))) % 97 - 40).astype(dtype).reshape(shape)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    klass = nib.Nifti2Image if nifti2 else nib.Nifti1Image
    return bytes(klass(data, affine).to_bytes())


VALID1 = _valid()
VALID2 = _valid(nifti2=True)

# (offset, struct format) of the fields mutated, per NIfTI version
FIELDS1 = {"sizeof_hdr": (0, "i"), "dim": (40, "8h"), "datatype": (70, "h"),
           "bitpix": (72, "h"), "pixdim": (76, "8f"), "vox_offset": (108, "f"),
           "scl_slope": (112, "f"), "scl_inter": (116, "f"), "qform_code": (252, "h"),
           "sform_code": (254, "h"), "quatern": (256, "6f"), "srow": (280, "12f"),
           "magic": (344, "4s")}
FIELDS2 = {"sizeof_hdr": (0, "i"), "magic": (4, "8s"), "datatype": (12, "h"),
           "bitpix": (14, "h"), "dim": (16, "8q"), "pixdim": (104, "8d"),
           "vox_offset": (168, "q"), "scl_slope": (176, "d"), "scl_inter": (184, "d"),
           "qform_code": (344, "i"), "sform_code": (348, "i"), "quatern": (352, "6d"),
           "srow": (400, "12d")}
DATATYPES = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 1024, 1280, 1536, 1792, 2304]

_float = st.one_of(st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.0, 1e-30, 1e30, 3.5,
                                    float("nan"), float("inf"), float("-inf")]),
                   st.floats(width=32, allow_nan=True, allow_infinity=True))


def _value(fmt: str) -> st.SearchStrategy[Any]:
    """A strategy for one field of struct format ``fmt`` (e.g. ``8h``, ``f``, ``4s``)."""
    n = int(fmt[:-1] or 1)
    code = fmt[-1]
    if code == "s":
        return st.one_of(st.sampled_from([b"n+1\x00", b"n+2\x00", b"ni1\x00", b"\x00" * 4,
                                          b"n+2\x00\r\n\x1a\n"]), st.binary(min_size=n,
                                                                            max_size=n))
    if code in "hiq":
        bits = {"h": 15, "i": 31, "q": 63}[code]
        small = st.integers(-3, 12)
        one = st.one_of(small, st.sampled_from(DATATYPES), st.integers(-2**bits, 2**bits - 1))
    else:
        one = _float
    return st.lists(one, min_size=n, max_size=n)


@st.composite
def _mutated(draw: st.DrawFn) -> tuple[bytes, str]:
    nifti2 = draw(st.booleans())
    blob = bytearray(VALID2 if nifti2 else VALID1)
    fields = FIELDS2 if nifti2 else FIELDS1
    for name in draw(st.lists(st.sampled_from(sorted(fields)), min_size=1, max_size=4,
                              unique=True)):
        offset, fmt = fields[name]
        value = draw(_value(fmt))
        endian = "<"
        if fmt.endswith("s"):
            struct.pack_into(f"{endian}{fmt}", blob, offset, value)
            continue
        if fmt[-1] in "hiq":
            bits = {"h": 16, "i": 32, "q": 64}[fmt[-1]]
            value = [(v + 2**(bits - 1)) % 2**bits - 2**(bits - 1) for v in value]
        struct.pack_into(f"{endian}{fmt}", blob, offset, *value)
    return bytes(blob), draw(st.sampled_from([".nii", ".nii.gz"]))


def _write(folder: Path, name: str, blob: bytes, suffix: str, compress: bool) -> Path:
    path = folder / f"{name}{suffix}"
    path.write_bytes(gzip.compress(blob, compresslevel=1) if compress else blob)
    return path


def _check_load(path: Path) -> None:
    """load_nifti raises InputError or returns nibabel's data; nothing else."""
    try:
        load_nifti_header(path)
    except InputError:
        pass
    try:
        img = load_nifti(path)
    except InputError:
        return
    ours = np.asanyarray(img.dataobj)
    assert ours.size * ours.itemsize <= 2**26  # the data fit in the small file
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ref = nib.load(path)
            theirs = np.asanyarray(ref.dataobj)
        except Exception:  # nibabel refuses what danemap reads: the checks differ, fine
            return
    if getattr(ref.dataobj, "offset", None) == 0:
        # nibabel reads an unset vox_offset as 0 and returns the header bytes as data;
        # danemap reads the data where they are, right after the header and its flag
        start = len(ref.header.binaryblock) + 4
        raw = np.frombuffer(_decompressed(path)[start:start + ours.nbytes],
                            dtype=ref.header.get_data_dtype())
        scaled = raw * float(ref.dataobj.slope) + float(ref.dataobj.inter)
        theirs = scaled.astype(ours.dtype).reshape(ours.shape, order="F")
    assert_same_voxels(ours, theirs)


def _decompressed(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


@FUZZ
@given(case=_mutated())
def test_mutated_header_fields(folder: Path, case: tuple[bytes, str]) -> None:
    blob, suffix = case
    _check_load(_write(folder, "mut", blob, suffix, suffix == ".nii.gz"))


@FUZZ_SMALL
@given(nifti2=st.booleans(), gz=st.booleans(), cut=st.integers(0, len(VALID2) + 64))
def test_truncated_files(folder: Path, nifti2: bool, gz: bool, cut: int) -> None:
    blob = VALID2 if nifti2 else VALID1
    data = gzip.compress(blob, compresslevel=1) if gz else blob
    path = folder / ("cut.nii.gz" if gz else "cut.nii")
    path.write_bytes(data[:cut])
    _check_load(path)


@FUZZ
@given(nifti2=st.booleans(), gz=st.booleans(),
       flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1,
                      max_size=6),
       tail=st.binary(max_size=40))
def test_random_byte_damage(folder: Path, nifti2: bool, gz: bool,
                            flips: list[tuple[int, int]], tail: bytes) -> None:
    blob = VALID2 if nifti2 else VALID1
    data = bytearray(gzip.compress(blob, compresslevel=1) if gz else blob)
    for pos, mask in flips:
        data[pos % len(data)] ^= mask
    path = folder / ("flip.nii.gz" if gz else "flip.nii")
    path.write_bytes(bytes(data) + tail)
    _check_load(path)


@FUZZ_SMALL
@given(body=st.binary(max_size=600), gzip_magic=st.booleans())
def test_random_bytes_as_a_nifti(folder: Path, body: bytes, gzip_magic: bool) -> None:
    path = folder / ("rand.nii.gz" if gzip_magic else "rand.nii")
    path.write_bytes((b"\x1f\x8b\x08\x00" if gzip_magic else b"") + body)
    _check_load(path)


@FUZZ_SMALL
@given(tail=st.one_of(st.binary(min_size=1, max_size=64),
                      st.sampled_from([b"\x1f\x8b", b"\x1f\x8b\x08\x00\x00", b"\x00" * 9])),
       second=st.booleans())
def test_gzip_trailing_data(folder: Path, tail: bytes, second: bool) -> None:
    extra = gzip.compress(tail) if second else tail
    path = folder / "tail.nii.gz"
    path.write_bytes(gzip.compress(VALID1, compresslevel=1) + extra)
    try:
        img = load_nifti(path)
    except InputError as exc:
        assert "tail.nii.gz" in str(exc)
        # the image data were complete: whatever follows them is never called truncation
        # of the image, unless it is itself the start of a (cut) gzip member
        if not extra.startswith(b"\x1f\x8b"):
            assert "trailing garbage" in str(exc), str(exc)
        return
    assert_same_voxels(img.dataobj, nib.Nifti1Image.from_bytes(VALID1).dataobj)


# --------------------------------------------------------------------------- TSV parsers
_TOKENS = ["\t", "\t", "\t", "\n", "\n", "\r\n", "\r", "\ufeff", '"', "'", "n/a", "N/A", "",
           " ", "NaN", "nan", "inf", "-inf", "1e400", "-1e400", "9" * 40, "0", "-0", "1.5",
           "-2", "3e-320", "0x1F", "1,5", "é", "ü", "日本", "\x00", "\u200b", "#", "sub-01",
           "sub-02", "sub-../../etc", "ADHD", "TD", "adhd", "89+", "35-40", "gain",
           "neutral", "loss", "a\tb", "\\"]
_COLUMNS = ["participant_id", "group", "age", "sex", "onset", "duration", "trial_type",
            "framewise_displacement", "trans_x", "csf", "white_matter", "global_signal",
            "rot_z", "", "participant_id"]


@st.composite
def _tsv_text(draw: st.DrawFn, columns: list[str]) -> bytes:
    header = draw(st.lists(st.sampled_from(columns), min_size=0, max_size=6))
    n_rows = draw(st.integers(0, 6))
    lines = ["\t".join(header)]
    for _ in range(n_rows):
        cells = draw(st.lists(st.one_of(st.sampled_from(_TOKENS),
                                        st.text(max_size=6),
                                        st.floats(allow_nan=True).map(repr)),
                              min_size=0, max_size=len(header) + 2))
        lines.append("\t".join(cells))
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    text = draw(st.sampled_from(["", "\ufeff"])) + eol.join(lines)
    text += draw(st.sampled_from(["", eol, eol * 3]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-16", "latin-1"]))
    data = text.encode(encoding, errors="replace")
    if draw(st.booleans()):
        data += draw(st.binary(max_size=8))
    return data


def _write_tsv(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


@FUZZ
@given(data=_tsv_text(_COLUMNS), with_groups=st.booleans())
def test_participants_parser(folder: Path, data: bytes, with_groups: bool) -> None:
    path = _write_tsv(folder, "participants.tsv", data)
    try:
        df = read_participants(path, groups=("ADHD", "TD") if with_groups else None)
    except InputError as exc:
        assert "participants.tsv" in str(exc)
        return
    assert df.columns[0] == "participant_id"
    assert all(isinstance(v, str) and v.startswith("sub-") for v in df["participant_id"])


@FUZZ
@given(data=_tsv_text(_COLUMNS))
def test_confounds_parser(folder: Path, data: bytes) -> None:
    from danemap.markers.functional._confounds import read_confounds

    path = _write_tsv(folder, "sub-01_task-rest_desc-confounds_timeseries.tsv", data)
    try:
        df = read_confounds(path)
    except InputError as exc:
        assert "confounds_timeseries.tsv" in str(exc)
        return
    assert all(df[c].dtype == np.float64 for c in df.columns)


@FUZZ
@given(data=_tsv_text(_COLUMNS + ["onset", "duration", "trial_type"] * 3))
def test_events_parser(folder: Path, data: bytes) -> None:
    from danemap.markers.task._events import read_events

    path = _write_tsv(folder, "sub-01_task-mid_events.tsv", data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DanemapWarning)
            table = read_events(path, n_volumes=50, tr=2.0,
                                mapping={"gain": "gain", "loss": "loss"},
                                ignore=("neutral",))
    except InputError as exc:
        assert "events.tsv" in str(exc)
        return
    assert np.all(np.isfinite(table["onset"])) and np.all(table["duration"] >= 0)
    assert set(table["trial_type"]) <= {"gain", "loss"}


# --------------------------------------------------------------------------- found bugs
# Reproducers the fuzzers found (those in parsers owned elsewhere stay xfail until fixed).
def test_participants_row_longer_than_header(folder: Path) -> None:
    path = _write_tsv(folder, "participants.tsv",
                      b"participant_id\tparticipant_id\tparticipant_id\na\tb\t\t\na\tb")
    with pytest.raises(InputError, match=r"(?s)participants\.tsv.*same column more than once"):
        read_participants(path)
    path.write_bytes(b"participant_id\tgroup\nsub-01\tADHD\textra\n")
    with pytest.raises(InputError, match=r"(?s)participants\.tsv.*more cells than the 2 columns"):
        read_participants(path)


def test_confounds_row_longer_than_header(folder: Path) -> None:
    from danemap.markers.functional._confounds import read_confounds

    path = _write_tsv(folder, "sub-01_task-rest_desc-confounds_timeseries.tsv",
                      b"trans_x\ttrans_y\n1\t2\t3\n")
    with pytest.raises(InputError, match=r"confounds_timeseries\.tsv"):
        read_confounds(path)


def test_events_row_longer_than_header(folder: Path) -> None:
    from danemap.markers.task._events import read_events

    path = _write_tsv(folder, "sub-01_task-mid_events.tsv",
                      b"onset\tduration\ttrial_type\n0\t2\tgain\t9\n")
    with pytest.raises(InputError, match=r"events\.tsv: a row has more cells than the header"):
        read_events(path, n_volumes=50, tr=2.0, mapping={"gain": "gain"})


@pytest.mark.parametrize(("offset", "fmt", "value", "match"), [
    (8, "4B", (12, 10, 26, 10), "eol_check"),
    (4, "4s", (b"n+1\x00",), r"must be 'n\+2' for a NIfTI-2 header"),
])
def test_nifti2_magic_damage_found_by_the_fuzzer(folder: Path, offset: int, fmt: str,
                                                 value: tuple[Any, ...], match: str) -> None:
    # nibabel's HeaderDataError used to escape from load_nifti for both
    blob = bytearray(VALID2)
    struct.pack_into("<" + fmt, blob, offset, *value)
    path = folder / "n2.nii"
    path.write_bytes(bytes(blob))
    with pytest.raises(InputError, match=match):
        load_nifti(path)
    with pytest.raises(InputError, match=match):
        load_nifti_header(path)


# --------------------------------------------------------------------------- PET sidecars
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=True)
    | st.text(max_size=8) | st.sampled_from(["10:00:00", "25:61", "n/a", "inf", "1e400"]),
    lambda children: st.lists(children, max_size=9) | st.dictionaries(st.text(max_size=3),
                                                                     children, max_size=3),
    max_leaves=12)
_TIMING_KEYS = ["FrameTimesStart", "FrameDuration", "TimeZero", "InjectionStart", "ScanStart",
                "TracerName"]


@FUZZ
@given(meta=st.dictionaries(st.sampled_from(_TIMING_KEYS), _json, max_size=6),
       n_frames=st.integers(1, 9))
def test_pet_timing_parser(meta: dict[str, Any], n_frames: int) -> None:
    from danemap.markers.pet._inputs import read_timing

    try:
        frames = read_timing(meta, n_frames, "sub-01_trc-X_pet.nii.gz")
    except InputError as exc:
        assert "sub-01_trc-X_pet.nii.gz" in str(exc)
        return
    if frames is not None:
        assert frames.n == n_frames > 1
        assert np.all(np.isfinite(frames.start_s)) and np.all(frames.duration_s > 0)


# --------------------------------------------------------------------------- atlas tables
_ATLAS_COLUMNS = ["index", "name", "hemisphere", "system", "group", "source_labels",
                  "network", "index", "name", ""]
_ATLAS_LABELS = np.zeros((4, 4, 4), dtype=np.int16)
_ATLAS_LABELS[:2, :2, :2] = 1
_ATLAS_LABELS[2:, 2:, 2:] = 2


@FUZZ_SMALL
@given(data=_tsv_text(_ATLAS_COLUMNS))
def test_user_atlas_region_table(folder: Path, data: bytes) -> None:
    from danemap.atlas import Atlas

    path = _write_tsv(folder, "atlas-x_dseg.tsv", data)
    img = nib.Nifti1Image(_ATLAS_LABELS, np.eye(4))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DanemapWarning)  # labels missing from the table
            atlas = Atlas.from_files(img, path, name="x")
    except InputError as exc:
        assert "atlas-x_dseg.tsv" in str(exc) or "label image" in str(exc)
        return
    assert len(atlas.regions) >= 1 and atlas.regions["index"].between(1, 32767).all()


def test_user_atlas_region_table_damage(folder: Path) -> None:
    from danemap.atlas import Atlas

    img = nib.Nifti1Image(_ATLAS_LABELS, np.eye(4))
    for data, match in ((b"", "the file is empty"),
                        (b"index\tname\n1\tA\t2\n", "more cells than the header"),
                        (b"index\tname\tname\n1\tA\tB\n", "same column more than once"),
                        (b"index\tname\n" + b"9" * 40 + b"\tA\n", "positive integers")):
        path = _write_tsv(folder, "atlas-x_dseg.tsv", data)
        with pytest.raises(InputError, match=match):
            Atlas.from_files(img, path, name="x")
