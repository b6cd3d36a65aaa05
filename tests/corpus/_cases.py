"""The bad-input corpus: every case, its input (built in code) and its expected outcome.

This module is the single list of the corpus (:data:`CASES`); nothing here is committed
as a binary. Each :class:`Case` has a ``build`` function that writes its input into a
temporary folder:

* a **unit** case writes one file (or a tiny dataset) and returns a thunk that calls a
  public reader (:func:`danemap.io.load_nifti`, :func:`danemap.io.read_participants`, the
  confounds, events and PET readers, the atlas);
* a **cli** case receives a hard-linked copy of a small simulated BIDS dataset (2
  participants, fMRIPrep-style derivatives at 3 mm: resting state with 60 volumes, or
  for ``base="task"`` the MID task with its events), damages it, and returns the
  :class:`Call` that ``danemap.cli.main`` runs end to end (in a subprocess).

Its expectation is one of :class:`Raises` (an ``InputError`` whose message holds given
words), :class:`Works` (success, possibly with a documented warning), :class:`Fails` (a
CLI run that fails with given words in ``participant_status.tsv`` or on stderr) or
:class:`Rejected` (a CLI run that fails, or succeeds with the run flagged for exclusion).
A word may be a tuple of alternatives. ``xfail`` names the file whose fix the case waits
for.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from tests._compare import same_voxels

Words = tuple[str | tuple[str, ...], ...]

SUB = "sub-01"
FUNC = Path("derivatives/fmriprep/sub-01/func")
STEM = "sub-01_task-rest"
BOLD = FUNC / f"{STEM}_space-MNI152NLin2009cAsym_res-3_desc-preproc_bold.nii.gz"
BOLD_JSON = FUNC / f"{STEM}_space-MNI152NLin2009cAsym_res-3_desc-preproc_bold.json"
CONFOUNDS = FUNC / f"{STEM}_desc-confounds_timeseries.tsv"
N_VOLUMES = 60


# --------------------------------------------------------------------------- expectations
@dataclass(frozen=True)
class Raises:
    """An ``InputError`` (and no other exception) whose message holds every word."""

    words: Words
    absent: tuple[str, ...] = ()


@dataclass(frozen=True)
class Works:
    """Success. Unit: ``check(result)`` holds; ``warns``: a DanemapWarning holds the words.

    CLI: exit code 0 and status ok (``warns``: the words are on stderr).
    """

    check: Callable[[Any], bool] | None = None
    warns: Words = ()


@dataclass(frozen=True)
class Fails:
    """A CLI run that fails: its exit code is one of ``codes``; the words are in the
    participant's ``participant_status.tsv`` row (its stage and error, ``where="status"``)
    or on stderr."""

    words: Words
    where: str = "status"
    codes: tuple[int, ...] = (1, 2)
    absent: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rejected:
    """A CLI run whose participant fails (with the words) or is flagged for exclusion."""

    words: Words


Expect = Raises | Works | Fails | Rejected


@dataclass(frozen=True)
class Call:
    """What a CLI case runs: ``danemap BIDS_DIR OUT participant --participant-label 01``."""

    args: tuple[str, ...] = ()
    bids_dir: Path | None = None  # default: the damaged copy
    label: bool = True  # add --participant-label 01


@dataclass(frozen=True)
class Case:
    """One corpus case."""

    name: str
    kind: str  # "unit" or "cli"
    build: Callable[..., Any]
    expect: Expect
    xfail: str | None = None
    doc: str = ""
    timeout_s: int | None = None  # None: the runner's default
    base: str = "rest"  # CLI: the simulated dataset copied, "rest" or "task" (MID task)


CASES: list[Case] = []


def case(name: str, kind: str, expect: Expect, xfail: str | None = None,
         timeout_s: int | None = None, base: str = "rest",
         ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated build function as a case."""
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        assert all(c.name != name for c in CASES), name
        CASES.append(Case(name, kind, fn, expect, xfail, (fn.__doc__ or "").strip(),
                          timeout_s, base))
        return fn
    return deco


# --------------------------------------------------------------------------- file helpers
def replace(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` without touching a hard-linked original."""
    if path.exists() or path.is_symlink():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8", newline="")
    else:
        path.write_bytes(data)
    return path


def nifti_bytes(shape: tuple[int, ...] = (4, 5, 6), dtype: str = "<f4", nifti2: bool = False,
                seed: int = 0) -> bytes:
    """A valid single-file NIfTI (uncompressed bytes) with random data."""
    rng = np.random.default_rng(seed)
    data = (rng.normal(size=shape) * 100).astype(dtype)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    klass = nib.Nifti2Image if nifti2 else nib.Nifti1Image
    return bytes(klass(data, affine).to_bytes())


def patch(blob: bytes, offset: int, fmt: str, *values: Any) -> bytes:
    """``blob`` with ``values`` packed at ``offset`` (little-endian ``fmt``)."""
    out = bytearray(blob)
    struct.pack_into("<" + fmt, out, offset, *values)
    return bytes(out)


# NIfTI-1 field offsets
DIM, PIXDIM, VOX_OFFSET, SCL_SLOPE, SCL_INTER, DATATYPE, MAGIC = 40, 76, 108, 112, 116, 70, 344


def _load(path: Path, **kw: Any) -> Callable[[], Any]:
    from danemap.io import load_nifti

    return lambda: load_nifti(path, **kw)


def _nifti_case(name: str, expect: Expect, blob: bytes | Callable[[], bytes],
                suffix: str = ".nii", xfail: str | None = None, doc: str = "",
                **load_kw: Any) -> None:
    def build(tmp: Path) -> Callable[[], Any]:
        data = blob() if callable(blob) else blob
        return _load(replace(tmp / f"{name}{suffix}", data), **load_kw)
    build.__doc__ = doc
    case(name, "unit", expect, xfail)(build)


# --------------------------------------------------------------------------- NIfTI cases
_VALID = nifti_bytes()
_VALID_BIG = nifti_bytes((20, 20, 20))


def _same_as_nibabel(blob: bytes) -> Callable[[Any], bool]:
    ref = np.asanyarray(nib.Nifti1Image.from_bytes(blob).dataobj)
    return lambda img: same_voxels(img.dataobj, ref)


_nifti_case("nifti_truncated_data", Raises(("nifti_truncated_data.nii", "truncated")),
            _VALID_BIG[:20000], doc="a .nii cut in its data")
_nifti_case("nifti_gz_truncated", Raises(("nifti_gz_truncated.nii.gz", "truncated")),
            lambda: gzip.compress(_VALID_BIG)[:3000], ".nii.gz", doc="a .nii.gz cut short")
_nifti_case("nifti_gz_trailing_garbage",
            Raises(("nifti_gz_trailing_garbage.nii.gz", "trailing garbage", "complete"),
                   absent=("truncated",)),
            lambda: gzip.compress(_VALID_BIG) + b"garbage" * 8, ".nii.gz",
            doc="complete gzip data followed by bytes that are not gzip")
_nifti_case("nifti_gz_crc", Raises(("nifti_gz_crc.nii.gz", "CRC")),
            lambda: (lambda b: bytes(b[:-8]) + bytes([b[-8] ^ 0xFF]) + bytes(b[-7:]))(
                gzip.compress(_VALID)), ".nii.gz", doc="a gzip whose CRC does not match")
_nifti_case("nifti_named_gz_not_gzip", Raises(("nifti_named_gz_not_gzip.nii.gz", "not gzip")),
            _VALID, ".nii.gz", doc="an uncompressed NIfTI named .nii.gz")
_nifti_case("nifti_empty_file", Raises(("nifti_empty_file.nii", "empty")), b"",
            doc="a 0-byte file")
_nifti_case("nifti_not_nifti", Raises(("nifti_not_nifti.nii", "not a NIfTI", "sizeof_hdr")),
            b"this is a text file, not an image\n" * 20, doc="text named .nii")
_nifti_case("nifti_wrong_magic", Raises(("nifti_wrong_magic.nii", "magic")),
            patch(_VALID, MAGIC, "4s", b"abc\x00"), doc="magic 'abc' instead of 'n+1'")
_nifti_case("nifti_bad_dim0", Raises(("nifti_bad_dim0.nii", "dim[0]")),
            patch(_VALID, DIM, "h", 9), doc="dim[0] = 9 dimensions")
_nifti_case("nifti_zero_dim", Raises(("nifti_zero_dim.nii", "dim[2]", "0")),
            patch(_VALID, DIM + 4, "h", 0), doc="dim[2] = 0")
_nifti_case("nifti_negative_dim", Raises(("nifti_negative_dim.nii", "dim[1]", "-5")),
            patch(_VALID, DIM + 2, "h", -5), doc="dim[1] = -5")
_nifti_case("nifti_huge_dims", Raises(("nifti_huge_dims.nii", "exceeds the limit")),
            patch(patch(_VALID, DIM, "4h", 3, 30000, 30000, 30000), DATATYPE, "hh", 16, 32),
            doc="a header claiming 30000^3 float32 (98 TiB): refused from the header")
_nifti_case("nifti_huge_dims_gz", Raises(("nifti_huge_dims_gz.nii.gz", "gzip cannot compress")),
            lambda: gzip.compress(patch(patch(_VALID, DIM, "4h", 3, 1000, 1000, 1000),
                                        DATATYPE, "hh", 2, 8)), ".nii.gz",
            doc="a .nii.gz claiming 1 GB of uint8 (under the cap) in a few hundred bytes")
_nifti_case("nifti_zero_pixdim", Raises(("nifti_zero_pixdim.nii", "pixdim[1]")),
            patch(_VALID, PIXDIM + 4, "f", 0.0), doc="pixdim[1] = 0")
_nifti_case("nifti_negative_pixdim", Raises(("nifti_negative_pixdim.nii", "pixdim[2]")),
            patch(_VALID, PIXDIM + 8, "f", -3.0), doc="pixdim[2] = -3")
_nifti_case("nifti_nan_pixdim", Raises(("nifti_nan_pixdim.nii", "pixdim[3]", "nan")),
            patch(_VALID, PIXDIM + 12, "f", float("nan")), doc="pixdim[3] = NaN")
_nifti_case("nifti_nan_scale",
            Works(check=_same_as_nibabel(patch(_VALID, SCL_SLOPE, "ff", float("nan"), 5.0))),
            patch(_VALID, SCL_SLOPE, "ff", float("nan"), 5.0),
            doc="scl_slope = NaN: unscaled data, as nibabel (which writes NaN itself) reads it")
_nifti_case("nifti_nan_intercept", Raises(("nifti_nan_intercept.nii", "scl_inter")),
            patch(_VALID, SCL_SLOPE, "ff", 2.0, float("nan")),
            doc="scl_slope = 2 with scl_inter = NaN")
_nifti_case("nifti_vox_offset_past_end", Raises(("nifti_vox_offset_past_end.nii", "vox_offset",
                                                 "truncated")),
            patch(_VALID, VOX_OFFSET, "f", 1_000_000.0), doc="vox_offset beyond the file")
_nifti_case("nifti_vox_offset_inside_header", Raises(("nifti_vox_offset_inside_header.nii",
                                                      "vox_offset", "100")),
            patch(_VALID, VOX_OFFSET, "f", 100.0), doc="vox_offset = 100, inside the header")
_nifti_case("nifti_vox_offset_fractional", Raises(("nifti_vox_offset_fractional.nii",
                                                   "vox_offset", "whole number")),
            patch(_VALID, VOX_OFFSET, "f", 352.5), doc="vox_offset = 352.5")
_nifti_case("nifti_vox_offset_huge", Raises(("nifti_vox_offset_huge.nii", "vox_offset")),
            patch(_VALID, VOX_OFFSET, "f", 3e9), doc="vox_offset = 3e9 (past any extension)")
_nifti_case("nifti_unsupported_datatype", Raises(("nifti_unsupported_datatype.nii",
                                                  "datatype", "complex64")),
            patch(_VALID, DATATYPE, "hh", 32, 64), doc="datatype complex64")
_nifti_case("nifti_singular_affine", Raises(("nifti_singular_affine.nii", "invertible")),
            patch(patch(_VALID, 252, "hh", 0, 1), 280, "12f", *([0.0] * 12)),
            doc="sform_code 1 with an all-zero sform")
_nifti_case("nifti2_truncated_header", Raises(("nifti2_truncated_header.nii", "truncated")),
            lambda: nifti_bytes(nifti2=True)[:400], doc="a NIfTI-2 file cut inside its header")
_nifti_case("nifti2_eol_damaged", Raises(("nifti2_eol_damaged.nii", "eol_check", "EOL")),
            lambda: patch(nifti_bytes(nifti2=True), 8, "4B", 12, 10, 26, 10),
            doc="a NIfTI-2 magic whose EOL bytes a text-mode transfer changed (found by "
                "the fuzzer: nibabel's HeaderDataError escaped)")
_nifti_case("nifti_magic_version_mismatch",
            Raises(("nifti_magic_version_mismatch.nii", "must be 'n+2'", "NIfTI-2")),
            lambda: patch(nifti_bytes(nifti2=True), 4, "4s", b"n+1\x00"),
            doc="a NIfTI-2 header (sizeof_hdr 540) with the NIfTI-1 magic 'n+1' (fuzzer)")
_nifti_case("nifti_4d_where_3d_expected", Raises(("nifti_4d_where_3d_expected.nii",
                                                  "expected a 3D", "4D")),
            nifti_bytes((4, 5, 6, 3)), expect_ndim=3, doc="a 3-volume 4D image, 3D expected")
_nifti_case("nifti_3d_where_4d_expected", Raises(("nifti_3d_where_4d_expected.nii",
                                                  "expected a 4D", "3D")),
            _VALID, expect_ndim=4, doc="a 3D image where a 4D series is expected")


# --------------------------------------------------------------------------- TSV readers
def _tsv_case(name: str, expect: Expect, text: str | bytes, reader: str,
              xfail: str | None = None, doc: str = "", **kw: Any) -> None:
    def build(tmp: Path) -> Callable[[], Any]:
        fname = {"confounds": "sub-01_task-rest_desc-confounds_timeseries.tsv",
                 "events": "sub-01_task-mid_events.tsv",
                 "participants": "participants.tsv"}[reader]
        path = replace(tmp / name / fname, text)
        if reader == "confounds":
            from danemap.markers.functional._confounds import read_confounds

            return lambda: read_confounds(path)
        if reader == "events":
            from danemap.markers.task._events import read_events

            return lambda: read_events(path, n_volumes=100, tr=2.0,
                                       mapping={"gain": "gain", "neutral": "neutral"})
        from danemap.io import read_participants

        return lambda: read_participants(path, **kw)
    build.__doc__ = doc
    case(name, "unit", expect, xfail)(build)


_CONF = "trans_x\ttrans_y\tframewise_displacement\n"
_CONF_ROWS = "".join(f"{0.01 * i}\t{0.02 * i}\t{0.1 + 0.01 * i}\n" for i in range(1, 10))
_tsv_case("confounds_empty", Raises(("sub-01_task-rest_desc-confounds_timeseries.tsv",
                                     ("empty", "no column"))), "", "confounds",
          doc="a 0-byte confounds TSV")
_tsv_case("confounds_nan_first_rows",
          Works(check=lambda df: bool(np.isnan(df["framewise_displacement"].iloc[0])
                                      and df.shape == (10, 3))),
          _CONF + "0\t0\tn/a\n" + _CONF_ROWS, "confounds",
          doc="n/a in the first row, as fMRIPrep writes FD and derivatives")
_tsv_case("confounds_row_longer_than_header",
          Raises(("sub-01_task-rest_desc-confounds_timeseries.tsv", ("more cells", "fields",
                                                                      "columns"))),
          _CONF + "0\t0\t0\t9\n" + _CONF_ROWS, "confounds",
          doc="a data row with one cell more than the header (pandas would shift the "
              "columns silently; found by the fuzzer)")
_tsv_case("confounds_text_column",
          Raises(("sub-01_task-rest_desc-confounds_timeseries.tsv", "trans_y")),
          _CONF + "0\tabc\t0\n" + _CONF_ROWS, "confounds", doc="text in a confound column")

_EV = "onset\tduration\ttrial_type\n"
_tsv_case("events_missing_onset", Raises(("sub-01_task-mid_events.tsv", "onset", "missing")),
          "duration\ttrial_type\n2\tgain\n", "events", doc="no onset column")
_tsv_case("events_negative_duration",
          Raises(("sub-01_task-mid_events.tsv", "row 2", "duration", ">= 0")),
          _EV + "0\t2\tgain\n10\t-1\tneutral\n", "events", doc="a duration of -1 s")
_tsv_case("events_nan_onset", Raises(("sub-01_task-mid_events.tsv", "row 1", "onset", "n/a")),
          _EV + "n/a\t2\tgain\n10\t2\tneutral\n", "events", doc="an onset of n/a")
_tsv_case("events_row_longer_than_header",
          Raises(("sub-01_task-mid_events.tsv", "more cells than the header")),
          _EV + "0\t2\tgain\t7\n10\t2\tneutral\n", "events",
          doc="a row with 4 cells under a 3-column header (pandas would shift the columns)")
_tsv_case("events_empty", Raises(("sub-01_task-mid_events.tsv",)), "", "events",
          doc="a 0-byte events file")
_tsv_case("events_bom_crlf",
          Works(check=lambda df: df["trial_type"].tolist() == ["gain", "neutral"]),
          ("\ufeff" + _EV + "0\t2\tgain\n10\t2\tneutral\n").replace("\n", "\r\n"), "events",
          doc="an events file with a BOM and CRLF endings")

_PT = "participant_id\tgroup\tage\n"
_tsv_case("participants_bom",
          Works(check=lambda df: df["participant_id"].tolist() == ["sub-01", "sub-02"]),
          "\ufeff" + _PT + "sub-01\tADHD\t10\nsub-02\tTD\t11\n", "participants",
          doc="participants.tsv with a UTF-8 BOM")
_tsv_case("participants_crlf",
          Works(check=lambda df: df["group"].tolist() == ["ADHD", "TD"]
                and df["age"].tolist() == [10, 11]),
          (_PT + "sub-01\tADHD\t10\nsub-02\tTD\t11\n").replace("\n", "\r\n"), "participants",
          doc="participants.tsv with CRLF line endings")
_tsv_case("participants_duplicate_ids",
          Raises(("participants.tsv", "duplicate participant_id", "sub-01")),
          _PT + "sub-01\tADHD\t10\nsub-01\tTD\t11\n", "participants", doc="sub-01 twice")
_tsv_case("participants_missing_group_column",
          Raises(("participants.tsv", "missing column 'group'")),
          "participant_id\tage\nsub-01\t10\n", "participants", groups=("ADHD", "TD"),
          doc="no group column when groups are required")
_tsv_case("participants_row_longer_than_header",
          Raises(("participants.tsv", ("more cells", "fields", "columns"))),
          "participant_id\tparticipant_id\tparticipant_id\na\tb\t\t\na\tb", "participants",
          doc="a row longer than the header, in a table with repeated column names")
_tsv_case("participants_label_traversal",
          Raises(("participants.tsv", "invalid participant_id", "../../etc")),
          _PT + "sub-../../etc\tADHD\t10\n", "participants", doc="participant_id sub-../../etc")


@case("nifti_fifo", "unit", Raises(("nifti_fifo.nii", "not a regular file")), timeout_s=10)
def _nifti_fifo(tmp: Path) -> Callable[[], Any]:
    """A named pipe called .nii: opening it would block forever."""
    path = tmp / "nifti_fifo.nii"
    os.mkfifo(path)
    return _load(path)


@case("nifti_device", "unit", Raises(("nifti_device.nii.gz", "not a regular file")),
      timeout_s=10)
def _nifti_device(tmp: Path) -> Callable[[], Any]:
    """A link to /dev/zero called .nii.gz: a stream without end."""
    path = tmp / "nifti_device.nii.gz"
    os.symlink("/dev/zero", path)
    return _load(path)


@case("confounds_fifo", "unit",
      Raises(("sub-01_task-rest_desc-confounds_timeseries.tsv", "regular file")), timeout_s=10)
def _confounds_fifo(tmp: Path) -> Callable[[], Any]:
    """The confounds TSV is a named pipe."""
    from danemap.markers.functional._confounds import read_confounds

    path = tmp / "sub-01_task-rest_desc-confounds_timeseries.tsv"
    os.mkfifo(path)
    return lambda: read_confounds(path)


@case("participants_fifo", "unit", Raises(("participants.tsv", "regular file")), timeout_s=10)
def _participants_fifo(tmp: Path) -> Callable[[], Any]:
    """participants.tsv is a named pipe."""
    from danemap.io import read_participants

    path = tmp / "participants.tsv"
    os.mkfifo(path)
    return lambda: read_participants(path)


@case("events_fifo", "unit", Raises(("sub-01_task-mid_events.tsv",)), timeout_s=10)
def _events_fifo(tmp: Path) -> Callable[[], Any]:
    """The events TSV is a named pipe: refused, never opened."""
    from danemap.markers.task._events import read_events

    path = tmp / "sub-01_task-mid_events.tsv"
    os.mkfifo(path)
    return lambda: read_events(path, n_volumes=100, tr=2.0, mapping={"gain": "gain"})


@case("label_traversal", "unit", Raises(("not a valid BIDS label", "../../etc")))
def _label_traversal(tmp: Path) -> Callable[[], Any]:
    """validate_label('sub-../../etc')."""
    from danemap.io import validate_label

    return lambda: validate_label("sub-../../etc")


# --------------------------------------------------------------------------- PET and atlas
def _pet_dataset(tmp: Path, shape: tuple[int, ...], meta: dict[str, Any]) -> Any:
    from danemap.io import discover

    root = tmp / "pet_ds"
    (root / "sub-01" / "pet").mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "t", "BIDSVersion": "1.9.0"}))
    img = nib.Nifti1Image(np.ones(shape, np.float32), np.diag([3.0, 3.0, 3.0, 1.0]))
    nib.save(img, root / "sub-01" / "pet" / "sub-01_trc-FEPE2I_pet.nii.gz")
    (root / "sub-01" / "pet" / "sub-01_trc-FEPE2I_pet.json").write_text(json.dumps(meta))
    return discover(root).get("sub-01")


_DUR = [30.0] * 4 + [60.0] * 4
_TIMING = {"FrameTimesStart": [float(s) for s in np.r_[0.0, np.cumsum(_DUR)[:-1]]],
           "FrameDuration": _DUR, "TimeZero": "10:00:00"}


@case("pet_dynamic_without_frame_timing", "unit",
      Raises(("sub-01_trc-FEPE2I_pet.nii.gz", "FrameTimesStart", "8 frames")))
def _pet_no_timing(tmp: Path) -> Callable[[], Any]:
    """An 8-frame PET image whose sidecar has a tracer but no frame timing."""
    from danemap.markers.pet._inputs import pet_inputs

    session = _pet_dataset(tmp, (4, 4, 4, 8), {"TracerName": "FE-PE2I"})
    return lambda: pet_inputs(session)


@case("pet_frame_count_mismatch", "unit",
      Raises(("sub-01_trc-FEPE2I_pet.nii.gz", "expected 6 values")))
def _pet_mismatch(tmp: Path) -> Callable[[], Any]:
    """A 6-frame image with timing for 8 frames."""
    from danemap.markers.pet._inputs import pet_inputs

    session = _pet_dataset(tmp, (4, 4, 4, 6), {"TracerName": "FE-PE2I"} | _TIMING)
    return lambda: pet_inputs(session)


@case("pet_tracer_name_not_a_string", "unit",
      Raises(("sub-01_trc-FEPE2I_pet.nii.gz", "TracerName", "string")))
def _pet_tracer_type(tmp: Path) -> Callable[[], Any]:
    """TracerName 5 (a number) in the _pet.json."""
    from danemap.markers.pet._inputs import pet_inputs

    session = _pet_dataset(tmp, (4, 4, 4), {"TracerName": 5})
    return lambda: pet_inputs(session)


@case("pet_scan_start_infinite", "unit",
      Raises(("sub-01_trc-FEPE2I_pet.nii.gz", "ScanStart", "finite")))
def _pet_scan_inf(tmp: Path) -> Callable[[], Any]:
    """ScanStart Infinity (Python's json reads it) in a dynamic series' sidecar."""
    from danemap.markers.pet._inputs import pet_inputs

    session = _pet_dataset(tmp, (4, 4, 4, 8), {"TracerName": "FE-PE2I", "ScanStart":
                                               float("inf")} | _TIMING)
    return lambda: pet_inputs(session)


@case("pet_static_without_timing", "unit",
      Works(check=lambda items: len(items) == 1 and not items[0].dynamic))
def _pet_static(tmp: Path) -> Callable[[], Any]:
    """A static (3D) SPECT image needs no frame timing."""
    from danemap.markers.pet._inputs import pet_inputs

    session = _pet_dataset(tmp, (4, 4, 4), {"TracerName": "FP-CIT"})
    return lambda: pet_inputs(session)


def _shifted_grid(offset_mm: float) -> tuple[tuple[int, int, int], np.ndarray]:
    aff = np.diag([3.0, 3.0, 3.0, 1.0])
    aff[:3, 3] = offset_mm
    return (10, 10, 10), aff


@case("atlas_no_overlap", "unit",
      Raises(("sub-01_bold.nii.gz", "does not overlap atlas 'danemap'", "x 500..527")))
def _atlas_no_overlap(tmp: Path) -> Callable[[], Any]:
    """An image half a metre from the atlas: no region has a voxel on it."""
    from danemap.atlas import load_atlas

    shape, aff = _shifted_grid(500.0)
    img = nib.Nifti1Image(np.zeros(shape, np.float32), aff)
    img.set_filename(str(tmp / "sub-01_bold.nii.gz"))
    return lambda: load_atlas(3).resample_to(img)


@case("atlas_partial_overlap", "unit",
      Works(check=lambda a: bool(a.regions["empty"].any()), warns=("no voxel",)))
def _atlas_partial(tmp: Path) -> Callable[[], Any]:
    """A small field of view: the regions it misses are kept empty, with a warning."""
    from danemap.atlas import load_atlas

    aff = np.eye(4)
    aff[:3, 3] = (-40, 30, 20)
    return lambda: load_atlas(3).resample_to(((4, 4, 4), aff))


def _user_atlas(tmp: Path, table: str) -> Callable[[], Any]:
    from danemap.atlas import Atlas

    labels = np.zeros((4, 4, 4), dtype=np.int16)
    labels[:2] = 1
    img = replace(tmp / "atlas-x_res-3_dseg.nii", bytes(nib.Nifti1Image(labels, np.eye(4))
                                                        .to_bytes()))
    tsv = replace(tmp / "atlas-x_dseg.tsv", table)
    return lambda: Atlas.from_files(img, tsv, name="x")


@case("atlas_table_empty", "unit", Raises(("atlas-x_dseg.tsv", "empty")))
def _atlas_table_empty(tmp: Path) -> Callable[[], Any]:
    """A user atlas whose region table is a 0-byte file."""
    return _user_atlas(tmp, "")


@case("atlas_table_row_longer_than_header", "unit",
      Raises(("atlas-x_dseg.tsv", "more cells than the header")))
def _atlas_table_long_row(tmp: Path) -> Callable[[], Any]:
    """A region table row with a cell more than the header (pandas would shift it)."""
    return _user_atlas(tmp, "index\tname\n1\tcaudate_L\tDA\n")


@case("atlas_label_image_4d", "unit",
      Raises(("atlas-x_res-3_dseg.nii", "expected a 3D", "4D")))
def _atlas_4d(tmp: Path) -> Callable[[], Any]:
    """A 4D image with 2 volumes given as the atlas label image."""
    from danemap.atlas import Atlas

    img = replace(tmp / "atlas-x_res-3_dseg.nii", nifti_bytes((4, 4, 4, 2), dtype="<i2"))
    tsv = replace(tmp / "atlas-x_dseg.tsv", "index\tname\n1\tcaudate_L\n")
    return lambda: Atlas.from_files(img, tsv, name="x")


# --------------------------------------------------------------------------- CLI helpers
@lru_cache(maxsize=2)
def _base_bold(base: str) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(Path(base) / BOLD)
    return np.asarray(img.dataobj), img.affine


def write_bold(ds: Path, base: Path, data: np.ndarray | None = None, tr: float = 2.0,
               rel: Path = BOLD) -> Path:
    """Replace the participant's preprocessed BOLD by ``data`` (default: the base's)."""
    ref, affine = _base_bold(str(base))
    arr = ref if data is None else data
    img = nib.Nifti1Image(arr.astype(np.float32), affine)
    img.header.set_xyzt_units("mm", "sec")
    if arr.ndim == 4:
        img.header["pixdim"][4] = tr
    path = ds / rel
    replace(path, gzip.compress(img.to_bytes(), compresslevel=1))
    return path


def confounds_text(base: Path, n_rows: int | None = None) -> str:
    """The base confounds TSV, optionally cut to ``n_rows`` data rows."""
    lines = (base / CONFOUNDS).read_text().splitlines(keepends=True)
    return "".join(lines if n_rows is None else lines[:n_rows + 1])


def write_config(ds: Path, text: str) -> str:
    """Write a TOML config beside the dataset copy and return its path."""
    path = ds.parent / "config.toml"
    path.write_text(text)
    return str(path)


# --------------------------------------------------------------------------- CLI cases
@case("cli_baseline", "cli", Works())
def _cli_baseline(ds: Path, base: Path) -> Call:
    """The undamaged dataset: the harness must see a success."""
    return Call()


@case("cli_missing_confounds", "cli",
      Fails(("sub-01_task-rest_desc-confounds_timeseries.tsv", ("not found", "missing"))))
def _cli_missing_confounds(ds: Path, base: Path) -> Call:
    """sub-01's fMRIPrep confounds file deleted: an error, not a silent 'none' strategy."""
    (ds / CONFOUNDS).unlink()
    return Call()


@case("cli_missing_confounds_allowed", "cli", Rejected(("confounds",)))
def _cli_missing_confounds_allowed(ds: Path, base: Path) -> Call:
    """The same with [functional] allow_missing_confounds: a run flagged for exclusion."""
    (ds / CONFOUNDS).unlink()
    return Call(("--config", write_config(ds, "[functional]\nallow_missing_confounds = true\n")))


@case("cli_confounds_empty", "cli",
      Fails(("sub-01_task-rest_desc-confounds_timeseries.tsv", ("empty", "no column")),
            absent=("EmptyDataError",)))
def _cli_confounds_empty(ds: Path, base: Path) -> Call:
    """A 0-byte confounds TSV."""
    replace(ds / CONFOUNDS, "")
    return Call()


@case("cli_confounds_fewer_rows", "cli",
      Fails(("sub-01_task-rest_desc-confounds_timeseries.tsv", "50", "60")))
def _cli_confounds_fewer_rows(ds: Path, base: Path) -> Call:
    """50 confound rows for a 60-volume run."""
    replace(ds / CONFOUNDS, confounds_text(base, 50))
    return Call()


@case("cli_confounds_nan_first_rows", "cli", Works())
def _cli_confounds_nan_first_rows(ds: Path, base: Path) -> Call:
    """n/a in the first row of FD and every derivative column, as fMRIPrep writes them."""
    lines = confounds_text(base).splitlines()
    cols = lines[0].split("\t")
    first = lines[1].split("\t")
    for i, c in enumerate(cols):
        if c == "framewise_displacement" or "derivative" in c:
            first[i] = "n/a"
    replace(ds / CONFOUNDS, "\n".join([lines[0], "\t".join(first), *lines[2:]]) + "\n")
    return Call()


@case("cli_more_confounds_than_volumes", "cli",
      Rejected(("sub-01", ("degrees of freedom", "confound"))))
def _cli_more_confounds(ds: Path, base: Path) -> Call:
    """A 20-volume run with the simple strategy (about 30 regressors) and no filtering."""
    ref, _ = _base_bold(str(base))
    write_bold(ds, base, ref[..., :20])
    replace(ds / CONFOUNDS, confounds_text(base, 20))
    return Call(("--config", write_config(
        ds, "[functional]\nhigh_pass = 0.0\nlow_pass = 0.0\n")))


@case("cli_one_volume_bold", "cli",
      Fails(("desc-preproc_bold.nii.gz", "volume")))
def _cli_one_volume(ds: Path, base: Path) -> Call:
    """A 4D BOLD with a single volume (and one confound row)."""
    ref, _ = _base_bold(str(base))
    write_bold(ds, base, ref[..., :1])
    replace(ds / CONFOUNDS, confounds_text(base, 1))
    return Call()


@case("cli_bold_is_3d", "cli", Fails(("desc-preproc_bold.nii.gz", "4D", "3D")))
def _cli_bold_3d(ds: Path, base: Path) -> Call:
    """A 3D image where the 4D BOLD series is expected."""
    ref, _ = _base_bold(str(base))
    write_bold(ds, base, ref[..., 0])
    return Call()


@case("cli_all_zero_bold", "cli",
      Fails(("desc-preproc_bold.nii.gz", ("zero", "constant", "no signal"))))
def _cli_all_zero(ds: Path, base: Path) -> Call:
    """A BOLD series that is zero everywhere."""
    ref, _ = _base_bold(str(base))
    write_bold(ds, base, np.zeros_like(ref))
    return Call()


@case("cli_run_too_short_for_filter", "cli",
      Fails(("desc-preproc_bold.nii.gz", "30", "volumes"), absent=("padlen",)))
def _cli_short(ds: Path, base: Path) -> Call:
    """A 30-volume run: too short for the band-pass filter's padding."""
    ref, _ = _base_bold(str(base))
    write_bold(ds, base, ref[..., :30])
    replace(ds / CONFOUNDS, confounds_text(base, 30))
    return Call()


@case("cli_tr_disagreement", "cli",
      Fails(("desc-preproc_bold.json", "RepetitionTime", ("repetition-time",
                                                          "repetition_time"))))
def _cli_tr(ds: Path, base: Path) -> Call:
    """Header TR 2.0 s, sidecar RepetitionTime 2.5 s: the JSON file is named, with the fix."""
    meta = json.loads((base / BOLD_JSON).read_text()) | {"RepetitionTime": 2.5}
    replace(ds / BOLD_JSON, json.dumps(meta))
    return Call()


@case("cli_tr_disagreement_resolved", "cli", Works())
def _cli_tr_resolved(ds: Path, base: Path) -> Call:
    """The same, resolved with [functional] repetition_time = 2.0."""
    meta = json.loads((base / BOLD_JSON).read_text()) | {"RepetitionTime": 2.5}
    replace(ds / BOLD_JSON, json.dumps(meta))
    return Call(("--config", write_config(ds, "[functional]\nrepetition_time = 2.0\n")))


@case("cli_bold_gz_trailing_garbage", "cli",
      Fails(("desc-preproc_bold.nii.gz", "trailing garbage"), absent=("truncated",)))
def _cli_trailing(ds: Path, base: Path) -> Call:
    """Complete BOLD gzip data followed by non-gzip bytes."""
    replace(ds / BOLD, (base / BOLD).read_bytes() + b"\x00garbage" * 16)
    return Call()


@case("cli_bold_truncated", "cli", Fails(("desc-preproc_bold.nii.gz", "truncated")))
def _cli_truncated(ds: Path, base: Path) -> Call:
    """The BOLD .nii.gz cut at half its size."""
    data = (base / BOLD).read_bytes()
    replace(ds / BOLD, data[: len(data) // 2])
    return Call()


@case("cli_bold_huge_header", "cli", Fails(("desc-preproc_bold.nii.gz", "exceeds the limit")))
def _cli_huge(ds: Path, base: Path) -> Call:
    """A BOLD header claiming 30000^3 x 60 float32: refused before any allocation."""
    blob = patch(nifti_bytes((4, 4, 4, 60)), DIM, "5h", 4, 30000, 30000, 30000, 60)
    replace(ds / BOLD, gzip.compress(blob))
    return Call()


@case("cli_bold_is_a_fifo", "cli", Fails(("desc-preproc_bold.nii.gz", "not a regular file")),
      timeout_s=60)
def _cli_bold_fifo(ds: Path, base: Path) -> Call:
    """sub-01's BOLD is a named pipe: refused before it is opened, no hang."""
    (ds / BOLD).unlink()
    os.mkfifo(ds / BOLD)
    return Call()


@case("cli_confounds_is_a_fifo", "cli",
      Fails(("sub-01_task-rest_desc-confounds_timeseries.tsv", "regular file")), timeout_s=20)
def _cli_confounds_fifo(ds: Path, base: Path) -> Call:
    """sub-01's confounds TSV is a named pipe: the run must not hang."""
    (ds / CONFOUNDS).unlink()
    os.mkfifo(ds / CONFOUNDS)
    return Call()


@case("cli_bold_wrong_magic", "cli", Fails(("desc-preproc_bold.nii.gz", "magic")))
def _cli_magic(ds: Path, base: Path) -> Call:
    """A BOLD whose header magic is damaged."""
    ref, aff = _base_bold(str(base))
    img = nib.Nifti1Image(ref[..., :40], aff)
    replace(ds / BOLD, gzip.compress(patch(bytes(img.to_bytes()), MAGIC, "4s", b"xyz\x00"),
                                     compresslevel=1))
    replace(ds / CONFOUNDS, confounds_text(base, 40))
    return Call()


@case("cli_bold_negative_pixdim", "cli", Fails(("desc-preproc_bold.nii.gz", "pixdim[1]")))
def _cli_pixdim(ds: Path, base: Path) -> Call:
    """A BOLD with pixdim[1] = -3."""
    ref, aff = _base_bold(str(base))
    img = nib.Nifti1Image(ref[..., :40], aff)
    replace(ds / BOLD, gzip.compress(patch(bytes(img.to_bytes()), PIXDIM + 4, "f", -3.0),
                                     compresslevel=1))
    replace(ds / CONFOUNDS, confounds_text(base, 40))
    return Call()


def _participants(ds: Path, base: Path, text: str) -> None:
    replace(ds / "participants.tsv", text)


@case("cli_participants_bom", "cli", Works())
def _cli_bom(ds: Path, base: Path) -> Call:
    """participants.tsv with a UTF-8 BOM."""
    _participants(ds, base, "\ufeff" + (base / "participants.tsv").read_text())
    return Call()


@case("cli_participants_crlf", "cli", Works())
def _cli_crlf(ds: Path, base: Path) -> Call:
    """participants.tsv with CRLF line endings (and a BOM)."""
    text = (base / "participants.tsv").read_text().replace("\n", "\r\n")
    _participants(ds, base, "\ufeff" + text)
    return Call()


@case("cli_age_not_numeric", "cli", Works())
def _cli_age(ds: Path, base: Path) -> Call:
    """An age column the participant level never uses holds '89+' and '35-40'."""
    lines = (base / "participants.tsv").read_text().splitlines()
    col = lines[0].split("\t").index("age")
    rows = [lines[0]]
    for line, age in zip(lines[1:], ("89+", "35-40"), strict=False):
        cells = line.split("\t")
        cells[col] = age
        rows.append("\t".join(cells))
    _participants(ds, base, "\n".join(rows) + "\n")
    return Call()


@case("cli_participants_without_group_column", "cli", Works())
def _cli_no_group(ds: Path, base: Path) -> Call:
    """participants.tsv without its group column: the participant level does not need it."""
    lines = (base / "participants.tsv").read_text().splitlines()
    col = lines[0].split("\t").index("group")
    rows = ["\t".join(c for i, c in enumerate(line.split("\t")) if i != col) for line in lines]
    _participants(ds, base, "\n".join(rows) + "\n")
    return Call()


@case("cli_label_traversal", "cli",
      Fails(("not a valid BIDS label", "../../etc"), where="stderr", codes=(2,)))
def _cli_label(ds: Path, base: Path) -> Call:
    """--participant-label sub-../../etc."""
    return Call(("--participant-label", "sub-../../etc"), label=False)


@case("cli_subject_folder_traversal_name", "cli", Works(warns=("sub-..",)))
def _cli_bad_folder(ds: Path, base: Path) -> Call:
    """A folder named 'sub-..evil' beside the real ones: skipped with a warning."""
    (ds / "sub-..evil").mkdir()
    return Call()


@case("cli_symlink_file_outside", "cli",
      Fails((("outside", "symlink", "link"),), where="stderr"))
def _cli_symlink_file(ds: Path, base: Path) -> Call:
    """sub-01's BOLD is a symbolic link to a file outside the dataset."""
    outside = ds.parent / "elsewhere" / BOLD.name
    outside.parent.mkdir()
    os.link(base / BOLD, outside)
    (ds / BOLD).unlink()
    os.symlink(outside, ds / BOLD)
    return Call()


@case("cli_symlink_subject_outside", "cli",
      Fails((("outside", "symlink", "link"), "sub-01"), where="stderr"))
def _cli_symlink_subject(ds: Path, base: Path) -> Call:
    """derivatives/fmriprep/sub-01 is a symbolic link to a folder outside the dataset."""
    import shutil

    outside = ds.parent / "elsewhere" / "sub-01"
    shutil.copytree(ds / FUNC.parent, outside, copy_function=os.link)
    shutil.rmtree(ds / FUNC.parent)
    os.symlink(outside, ds / FUNC.parent, target_is_directory=True)
    return Call()


@case("cli_symlink_loop", "cli", Works())
def _cli_symlink_loop(ds: Path, base: Path) -> Call:
    """A link inside sub-01's folder that points back to the dataset root: no hang."""
    os.symlink(ds, ds / FUNC / "loop", target_is_directory=True)
    os.symlink(ds / "sub-02", ds / "sub-01-again-link")
    return Call()


@case("cli_dangling_symlink", "cli",
      Fails(("desc-preproc_bold.nii.gz", ("not found", "dangling", "symlink", "link"))))
def _cli_dangling(ds: Path, base: Path) -> Call:
    """sub-01's BOLD is a link to a file that does not exist."""
    (ds / BOLD).unlink()
    os.symlink(ds / "nowhere.nii.gz", ds / BOLD)
    return Call()


@case("cli_fmriprep_dir_as_bids_dir", "cli", Works())
def _cli_fmriprep_root(ds: Path, base: Path) -> Call:
    """An fMRIPrep output folder (DatasetType: derivative) given as BIDS_DIR."""
    return Call(bids_dir=ds / "derivatives" / "fmriprep")


@case("cli_raw_bold_only", "cli", Fails(("raw", "fMRIPrep")))
def _cli_raw_only(ds: Path, base: Path) -> Call:
    """Raw BOLD but no fMRIPrep output: the error says raw BOLD was found."""
    import shutil

    shutil.rmtree(ds / "derivatives" / "fmriprep")
    write_bold(ds, base, rel=Path("sub-01/func/sub-01_task-rest_bold.nii.gz"))
    replace(ds / "sub-01/func/sub-01_task-rest_bold.json", json.dumps(
        {"RepetitionTime": 2.0, "TaskName": "rest"}))
    return Call()


@case("cli_bad_atlas_path", "cli",
      Fails(("no_such_atlas_dseg.nii.gz",), where="stderr", codes=(2,)))
def _cli_bad_atlas(ds: Path, base: Path) -> Call:
    """--atlas names a file that does not exist: checked up front, exit 2."""
    return Call(("--atlas", str(ds.parent / "no_such_atlas_dseg.nii.gz")))


@case("cli_atlas_no_overlap", "cli",
      Fails(("desc-preproc_bold.nii.gz", "does not overlap atlas 'far'", "world mm")))
def _cli_atlas_far(ds: Path, base: Path) -> Call:
    """A user atlas whose label image lies 1 m away from the BOLD field of view."""
    from danemap.atlas import write_atlas

    folder = ds.parent / "atlas"
    paths = write_atlas(folder, 3)
    img = nib.load(paths["dseg"])
    aff = img.affine.copy()
    aff[:3, 3] += 1000.0
    far = nib.Nifti1Image(np.asarray(img.dataobj), aff)
    nib.save(far, folder / "atlas-far_res-3_dseg.nii.gz")
    os.link(paths["tsv"], folder / "atlas-far_dseg.tsv")
    os.link(paths["networks"], folder / "atlas-far_networks.json")
    return Call(("--atlas", str(folder / "atlas-far_res-3_dseg.nii.gz")))


@case("cli_pet_without_frame_timing", "cli",
      Fails(("sub-01_trc-FEPE2I_pet.nii.gz", "FrameTimesStart", "8 frames")))
def _cli_pet_no_timing(ds: Path, base: Path) -> Call:
    """An 8-frame PET series on the BOLD grid whose _pet.json has no frame timing."""
    mask = next((ds / FUNC).glob("*_desc-brain_mask.nii.gz"))
    ref = nib.load(mask)
    rng = np.random.default_rng(0)
    img = nib.Nifti1Image(rng.random((*ref.shape[:3], 8), dtype=np.float32), ref.affine)
    pet = ds / "sub-01" / "pet"
    pet.mkdir(parents=True)
    replace(pet / "sub-01_trc-FEPE2I_pet.nii.gz", gzip.compress(img.to_bytes(), compresslevel=1))
    replace(pet / "sub-01_trc-FEPE2I_pet.json", json.dumps({"TracerName": "FE-PE2I"}))
    return Call(("--markers", "pet"))


EVENTS = Path("sub-01/func/sub-01_task-mid_events.tsv")


def _events(ds: Path, base: Path, edit: Callable[[list[list[str]]], None]) -> Call:
    rows = [line.split("\t") for line in (base / EVENTS).read_text().splitlines()]
    edit(rows)
    replace(ds / EVENTS, "\n".join("\t".join(r) for r in rows) + "\n")
    return Call(("--markers", "task"))


@case("cli_events_missing_onset", "cli",
      Fails(("sub-01_task-mid_events.tsv", "onset", "missing")), base="task")
def _cli_events_onset(ds: Path, base: Path) -> Call:
    """The MID events file without its onset column."""
    return _events(ds, base, lambda rows: [r.pop(0) for r in rows])


@case("cli_events_negative_duration", "cli",
      Fails(("sub-01_task-mid_events.tsv", "row 2", "duration", ">= 0")), base="task")
def _cli_events_duration(ds: Path, base: Path) -> Call:
    """A duration of -2 s in the second event."""
    return _events(ds, base, lambda rows: rows[2].__setitem__(1, "-2"))


@case("cli_events_nan_onset", "cli",
      Fails(("sub-01_task-mid_events.tsv", "row 1", "onset", "n/a")), base="task")
def _cli_events_nan(ds: Path, base: Path) -> Call:
    """The first event's onset is n/a."""
    return _events(ds, base, lambda rows: rows[1].__setitem__(0, "n/a"))
