"""Which structural input of a session the family uses, in order of preference.

A session may hold several: FreeSurfer/FastSurfer ``stats/aseg.stats``, a SynthSeg volume
CSV, a ``*_dseg.nii.gz`` label image (fMRIPrep's ``desc-aseg_dseg``) and a raw BIDS T1w.
The first kind of ``[structural] inputs`` that the session has wins; the others are named
in the log, never used silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from danemap._utils.logging import get_logger
from danemap.errors import ConfigError

if TYPE_CHECKING:
    from danemap.io import SessionData

__all__ = ["INPUT_KINDS", "StructuralInput", "structural_inputs"]

log = get_logger("markers.structural")

#: The input kinds, in the default order of preference.
INPUT_KINDS = ("aseg", "synthseg", "dseg", "t1w")

#: ``space`` entities of a dseg whose voxels are the participant's own (volumes in a
#: template space are normalised, not the participant's).
_NATIVE_SPACES = (None, "T1w", "orig")


@dataclass(frozen=True)
class StructuralInput:
    """The one input of a session the family measures.

    Attributes
    ----------
    session : SessionData
        The participant's session.
    kind : str
        One of :data:`INPUT_KINDS`.
    path : pathlib.Path
        The file.
    others : tuple of str
        The other kinds the session also has (not used).
    """

    session: SessionData
    kind: str
    path: Path
    others: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.kind}:{self.path.name}"


def _dseg(session: SessionData) -> Path | None:
    from danemap.io import parse_entities

    found = []
    for tool in sorted(session.derivatives):
        for p in session.derivatives[tool]:
            if not p.name.endswith(("_dseg.nii.gz", "_dseg.nii")):
                continue
            ents = parse_entities(p.name)
            if ents.get("space") in _NATIVE_SPACES:
                found.append(p)
    # fMRIPrep's FreeSurfer-derived aseg first, then any other native label image
    found.sort(key=lambda p: ("desc-aseg" not in p.name, str(p)))
    return found[0] if found else None


def _candidates(session: SessionData) -> dict[str, Path]:
    out: dict[str, Path] = {}
    if session.aseg_stats is not None:
        out["aseg"] = session.aseg_stats
    if session.synthseg:
        out["synthseg"] = session.synthseg[0]
    dseg = _dseg(session)
    if dseg is not None:
        out["dseg"] = dseg
    t1w = session.get_files("anat/T1w")
    if t1w:
        out["t1w"] = t1w[0].path
        if len(t1w) > 1:
            log.info("%s: %d T1w images; the structural markers use %s", session.participant,
                     len(t1w), t1w[0].path.name)
    return out


def structural_inputs(session: SessionData, preference: list[str] | tuple[str, ...]
                      ) -> list[StructuralInput]:
    """Return the session's preferred structural input (an empty list when it has none).

    Parameters
    ----------
    session : SessionData
        One participant's session, from :func:`danemap.io.discover`.
    preference : sequence of str
        Kinds of :data:`INPUT_KINDS` in order of preference (``[structural] inputs``).

    Returns
    -------
    list of StructuralInput
        At most one item: one volume set per session.

    Raises
    ------
    ConfigError
        If ``preference`` is empty or names an unknown kind.
    """
    unknown = [k for k in preference if k not in INPUT_KINDS]
    if unknown or not preference:
        raise ConfigError(f"structural.inputs: expected a non-empty list of "
                          f"{list(INPUT_KINDS)}, found {list(preference)}")
    found = _candidates(session)
    for kind in preference:
        if kind in found:
            others = tuple(k for k in found if k != kind)
            if others:
                log.info("%s: structural volumes from %s (%s); also found, not used: %s",
                         session.participant, kind, found[kind].name, ", ".join(others))
            return [StructuralInput(session, kind, found[kind], others)]
    return []
