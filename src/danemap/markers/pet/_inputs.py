"""PET/SPECT inputs: the BIDS ``pet/*_pet.nii[.gz]`` images and their timing.

BIDS has no SPECT modality yet. danemap reads SPECT in the PET-BIDS layout:
``sub-XX/pet/sub-XX_trc-<tracer>_pet.nii.gz`` with a ``_pet.json`` holding at least
``TracerName`` (``FP-CIT``, ``ioflupane``...); ``"Modality": "SPECT"`` may say what it
is. A static image (one frame, e.g. DaTscan 3-4 h after injection) needs no timing; a
dynamic series needs ``FrameTimesStart`` and ``FrameDuration`` (seconds, one per frame,
relative to ``TimeZero``) and ``TimeZero``; ``InjectionStart`` (seconds from TimeZero,
default 0) sets the time origin of the kinetic models.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from danemap.errors import InputError

if TYPE_CHECKING:
    from danemap.io import BIDSFile, SessionData

__all__ = ["PetFrames", "PetInput", "pet_inputs", "read_timing"]

_TIME = re.compile(r"^\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?$")
#: Frames may overlap, or start before the injection, by this much (s): rounding in the
#: scanner's export.
_TOLERANCE_S = 0.5


@dataclass(frozen=True)
class PetFrames:
    """Frame timing of a dynamic series, in seconds from the injection.

    Attributes
    ----------
    start_s, duration_s : numpy.ndarray
        Frame starts and durations.
    """

    start_s: np.ndarray
    duration_s: np.ndarray

    @property
    def n(self) -> int:
        """Number of frames."""
        return int(self.start_s.size)

    @property
    def start_min(self) -> np.ndarray:
        """Frame starts in minutes."""
        return self.start_s / 60.0

    @property
    def end_min(self) -> np.ndarray:
        """Frame ends in minutes."""
        return (self.start_s + self.duration_s) / 60.0

    @property
    def mid_min(self) -> np.ndarray:
        """Frame mid-times in minutes."""
        return (self.start_s + self.duration_s / 2.0) / 60.0


@dataclass(frozen=True)
class PetInput:
    """One PET/SPECT image of a session.

    Attributes
    ----------
    session : SessionData
        The participant's session.
    file : BIDSFile
        The image with its merged sidecar metadata.
    tracer : str
        ``TracerName`` (else the ``trc`` entity).
    n_frames : int
        Frames (1 for a static image).
    frames : PetFrames or None
        Timing of a dynamic series (None for a static image).
    """

    session: SessionData
    file: BIDSFile
    tracer: str
    n_frames: int
    frames: PetFrames | None

    @property
    def path(self) -> Path:
        """The image file."""
        return self.file.path

    @property
    def dynamic(self) -> bool:
        """Whether the image is a dynamic series."""
        return self.frames is not None

    def __str__(self) -> str:
        return self.file.path.name


def _numbers(meta: dict[str, Any], key: str, path: Path, n: int) -> np.ndarray:
    value = meta.get(key)
    if value is None:
        raise InputError(f"{path}: {key}: a dynamic series of {n} frames needs {key} in its "
                         "_pet.json (one value per frame, seconds), found none")
    values = value if isinstance(value, list) else [value]
    try:
        arr = np.asarray([float(v) for v in values], dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: {key}: expected numbers (seconds), found {value!r}") \
            from exc
    if arr.size != n:
        raise InputError(f"{path}: {key}: expected {n} values (one per frame of the image), "
                         f"found {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{path}: {key}: expected finite numbers, found {value!r}")
    return arr


def read_timing(meta: dict[str, Any], n_frames: int, path: str | Path) -> PetFrames | None:
    """Validate a PET sidecar's frame timing against the image's frame count.

    Parameters
    ----------
    meta : dict
        The merged ``_pet.json`` metadata.
    n_frames : int
        Frames of the image (its 4th dimension; 1 for a 3-D image).
    path : str or Path
        The image, for messages.

    Returns
    -------
    PetFrames or None
        Timing relative to the injection; None for a static image.

    Raises
    ------
    InputError
        A dynamic series without ``FrameTimesStart``/``FrameDuration``, with lengths that
        disagree with the frame count, non-positive durations, frames out of order or
        overlapping, without a valid ``TimeZero``, or with frames before the injection;
        a static image whose timing lists hold more than one value.
    """
    p = Path(path)
    if n_frames == 1:
        for key in ("FrameTimesStart", "FrameDuration"):
            value = meta.get(key)
            if isinstance(value, list) and len(value) > 1:
                raise InputError(f"{p}: {key}: the image has 1 frame but the sidecar lists "
                                 f"{len(value)} frames")
        return None
    start = _numbers(meta, "FrameTimesStart", p, n_frames)
    duration = _numbers(meta, "FrameDuration", p, n_frames)
    if np.any(duration <= 0):
        i = int(np.flatnonzero(duration <= 0)[0])
        raise InputError(f"{p}: FrameDuration: expected positive durations, found "
                         f"{duration[i]:g} s at frame {i}")
    ends = start + duration
    bad = np.flatnonzero(start[1:] < ends[:-1] - _TOLERANCE_S)
    if bad.size:
        i = int(bad[0]) + 1
        raise InputError(f"{p}: FrameTimesStart: frame {i} starts at {start[i]:g} s, before "
                         f"frame {i - 1} ends ({ends[i - 1]:g} s); expected frames in time "
                         "order, not overlapping")
    zero = meta.get("TimeZero")
    if not isinstance(zero, str) or not _TIME.match(zero.strip()):
        raise InputError(f"{p}: TimeZero: a dynamic series needs the clock time its frame "
                         f"times count from (hh:mm:ss), found {zero!r}")
    inj = meta.get("InjectionStart", 0.0)
    try:
        inj_s = float(inj)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{p}: InjectionStart: expected seconds from TimeZero, found "
                         f"{inj!r}") from exc
    if not math.isfinite(inj_s):
        raise InputError(f"{p}: InjectionStart: expected a finite number, found {inj!r}")
    scan = meta.get("ScanStart")
    if isinstance(scan, int | float) and not math.isfinite(float(scan)):
        raise InputError(f"{p}: ScanStart: expected a finite number of seconds from "
                         f"TimeZero, found {scan!r}")
    if isinstance(scan, int | float) and abs(float(scan) - start[0]) > max(
            _TOLERANCE_S, float(duration[0])):
        raise InputError(f"{p}: ScanStart {float(scan):g} s disagrees with the first frame's "
                         f"start ({start[0]:g} s); both count from TimeZero {zero}")
    rel = start - inj_s
    if rel[0] < -_TOLERANCE_S:
        raise InputError(f"{p}: the first frame starts {-rel[0]:g} s before the injection "
                         f"(FrameTimesStart[0] = {start[0]:g} s, InjectionStart = {inj_s:g} "
                         f"s from TimeZero {zero}); expected frames after the injection")
    return PetFrames(np.clip(rel, 0.0, None), duration)


def pet_inputs(session: SessionData, max_bytes: float | None = None) -> list[PetInput]:
    """Return the session's PET/SPECT images, each with its tracer and timing.

    Parameters
    ----------
    session : SessionData
        One participant's session, from :func:`danemap.io.discover`.
    max_bytes : float or None
        Header check: refuse an image whose data would exceed this.

    Returns
    -------
    list of PetInput

    Raises
    ------
    InputError
        An image without a tracer name (neither ``TracerName`` nor a ``trc`` entity; a
        ``TracerName`` that is not a string), of
        a dimensionality other than 3 or 4, or with invalid timing (:func:`read_timing`).
    """
    from danemap.io import load_nifti_header

    out = []
    for f in session.get_files("pet/pet"):
        hdr = load_nifti_header(f.path, expect_ndim=(3, 4), max_bytes=max_bytes)
        shape = tuple(int(s) for s in hdr.get_data_shape())
        n_frames = shape[3] if len(shape) == 4 else 1
        meta = f.metadata or {}
        name = meta.get("TracerName")
        if name is not None and not isinstance(name, str):
            raise InputError(f"{f.path}: TracerName: expected the tracer's name as a string "
                             f"in the _pet.json, found {name!r}")
        tracer = str(name or f.entities.get("trc") or "").strip()
        if not tracer:
            raise InputError(f"{f.path}: TracerName: expected the tracer in the _pet.json "
                             "(or a trc-<label> entity in the file name), found none")
        out.append(PetInput(session, f, tracer, n_frames, read_timing(meta, n_frames, f.path)))
    return out
