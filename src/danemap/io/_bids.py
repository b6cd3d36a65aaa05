"""Light-weight BIDS discovery (raw data, fMRIPrep, FreeSurfer/FastSurfer, SynthSeg).

This is deliberately not pybids: it walks the few folders danemap reads and
returns plain dataclasses.

Conventions
-----------
* A missing ``dataset_description.json`` is logged as a warning (many
  hand-made or converted datasets lack it), a malformed one is an error.
* JSON sidecars follow the BIDS inheritance principle, kept simple: sidecars
  with the same suffix whose entities are a subset of the file's entities are
  collected from the dataset root, the subject folder, the session folder and
  the datatype folder, and merged in that order (the nearest one wins). So a
  top-level ``task-rest_bold.json`` applies to every rest run unless a
  sidecar next to the file overrides a key.
* Discovery is generic: it knows no modality. Every raw NIfTI is indexed by
  ``"<datatype>/<suffix>"`` (:attr:`SessionData.files`, with metadata), and every file of a
  derivative tool's participant folder by tool name (:attr:`SessionData.derivatives`, paths
  only: no sidecar is read until a family asks, with :func:`bids_file`). Marker families
  pick what they need (the functional family pairs raw BOLD runs with fMRIPrep outputs,
  :func:`danemap.markers.functional.functional_runs`).
* ``derivatives`` may be ``None`` (look in
  ``<bids_dir>/derivatives/{fmriprep,freesurfer,fastsurfer,synthseg}``), a
  folder (a derivatives root if it holds one of those sub-folders, otherwise
  the fMRIPrep output itself), a mapping ``{"fmriprep": path, ...}``, or a sequence
  of folders (``--derivatives`` repeated; the first to provide a tool wins). Given
  folders override ``<bids_dir>/derivatives`` per tool: a tool they do not provide is
  still looked for there.
* A **derivative dataset** as ``bids_dir`` (``"DatasetType": "derivative"`` in its
  ``dataset_description.json``, such as an fMRIPrep output folder; or, with a warning, a
  folder without ``DatasetType`` whose ``sub-*/func`` folders hold fMRIPrep's
  ``*_desc-preproc_bold`` images, which raw data never has) is read as the output
  of the tool that made it (``GeneratedBy[0].Name``: FreeSurfer, FastSurfer or SynthSeg;
  anything else is taken as fMRIPrep), not as raw data: its ``sub-*`` folders are that
  tool's participant folders, and its ``freesurfer``, ``fastsurfer``, ``synthseg`` (or
  ``sourcedata/<tool>``) sub-folders are those tools' outputs.
* **Unsafe names and links.** A ``sub-*`` folder whose label is not letters and digits
  only is skipped with a warning. A symbolic link that leads outside the dataset (a
  ``sub-*`` folder, a datatype folder or a data file resolving outside ``bids_dir``, or
  outside its derivative tool's folder) is skipped with a warning naming the link and
  its target; a participant requested by label whose folder was skipped is an
  :class:`~danemap.errors.InputError` saying why. Links that stay inside (DataLad's
  annexed files) are followed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from danemap._utils.logging import get_logger
from danemap.errors import InputError
from danemap.io._derivatives import read_json
from danemap.io._participants import closest, read_participants, validate_label

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BIDSDataset",
    "BIDSFile",
    "SessionData",
    "bids_file",
    "discover",
    "parse_entities",
]

logger = get_logger("io")

_DERIVATIVE_TOOLS = ("fmriprep", "freesurfer", "fastsurfer", "synthseg")
_NII = (".nii", ".nii.gz")


def _escapes(path: Path, *tops: Path) -> Path | None:
    """Return where ``path`` really leads when that is outside every ``tops`` (else ``None``).

    The folders are compared resolved, so a dataset reached through a link is not
    "outside". A dangling link is not "outside" either: it is kept, with a warning, so
    that the reader names the missing file (a DataLad file not fetched yet).
    """
    real = path.resolve()
    if path.is_symlink() and not real.exists():
        logger.warning("%s is a symbolic link to %s, which does not exist (a DataLad file "
                       "not fetched yet? run 'datalad get')", path, real)
        return None
    return None if any(real.is_relative_to(t.resolve()) for t in tops) else real


def _warn_escape(what: str, path: Path, target: Path, top: Path) -> None:
    logger.warning("%s %s is a symbolic link to %s, outside %s; skipped (danemap reads "
                   "only files inside the dataset)", what, path, target, top)


def parse_entities(filename: str | os.PathLike[str]) -> dict[str, str]:
    """Split a BIDS file name into its entities, suffix and extension.

    Parameters
    ----------
    filename : str or os.PathLike
        A file name or path, e.g. ``sub-01_ses-1_task-rest_run-1_bold.nii.gz``.

    Returns
    -------
    dict
        Entity key -> label in file-name order (``{"sub": "01", "ses": "1", ...}``),
        plus ``"suffix"`` (``"bold"``) and ``"extension"`` (``".nii.gz"``) when
        present. Parts that are not ``key-value`` pairs are ignored.
    """
    name = Path(filename).name
    stem, dot, ext = name.partition(".")
    parts = stem.split("_")
    out: dict[str, str] = {}
    for part in parts[:-1]:
        key, sep, value = part.partition("-")
        if sep and key and value:
            out[key] = value
    last = parts[-1] if parts else ""
    if "-" in last:
        key, _, value = last.partition("-")
        if key and value:
            out[key] = value
    elif last:
        out["suffix"] = last
    if dot:
        out["extension"] = "." + ext
    return out


@dataclass
class BIDSFile:
    """One data file with its parsed entities and merged JSON metadata."""

    path: Path
    entities: dict[str, str]
    metadata: dict[str, Any] = field(default_factory=dict)
    sidecars: list[Path] = field(default_factory=list)

    @property
    def sidecar(self) -> Path | None:
        """The nearest JSON sidecar (or ``None``)."""
        return self.sidecars[-1] if self.sidecars else None


@dataclass
class SessionData:
    """Everything found for one participant and session.

    Discovery knows no modality; marker families take what they consume from two indexes.

    Attributes
    ----------
    participant : str
        ``sub-XX``.
    session : str or None
        ``ses-YY``, or ``None`` for a participant without sessions.
    files : dict
        Every raw NIfTI of the session by ``"<datatype>/<suffix>"`` (``"anat/T1w"``,
        ``"func/bold"``, ``"pet/pet"``, ``"dwi/dwi"``...), as :class:`BIDSFile` with the
        merged sidecar metadata. Families declare the pairs they consume
        (:attr:`danemap.markers.base.MarkerFamily.modalities`), so data that no family
        consumes is found and reported, not skipped silently.
    derivatives : dict
        Derivative tool (``"fmriprep"``, ``"freesurfer"``, ``"fastsurfer"``, ``"synthseg"``)
        -> every file of this participant under the tool's folder, sorted: those under
        ``<tool>/sub-XX`` except other sessions' ``ses-*`` sub-folders, and those under
        ``<tool>/sub-XX_ses-YY`` (FreeSurfer's per-session naming). Every tool discovery
        resolved has a key, with an empty list when it holds nothing for this participant.
        Paths only; :meth:`bids_file` reads a file's sidecars when a family needs them.
    derivative_roots : dict
        Tool -> its folder (the root of the sidecar inheritance chain of its files).
    root : Path or None
        The BIDS dataset folder.
    aseg_stats : Path or None
        FreeSurfer/FastSurfer ``stats/aseg.stats``.
    synthseg : list of Path
        The participant's SynthSeg CSVs. ``aseg_stats`` and ``synthseg`` keep their
        dedicated fields until the structural family takes them over from
        :attr:`derivatives`.
    """

    participant: str
    session: str | None
    files: dict[str, list[BIDSFile]] = field(default_factory=dict)
    derivatives: dict[str, list[Path]] = field(default_factory=dict)
    derivative_roots: dict[str, Path] = field(default_factory=dict)
    root: Path | None = None
    aseg_stats: Path | None = None
    synthseg: list[Path] = field(default_factory=list)

    def get_files(self, modality: str) -> list[BIDSFile]:
        """Return the raw files of one ``"<datatype>/<suffix>"`` pair (empty if none)."""
        return self.files.get(modality, [])

    def bids_file(self, path: str | os.PathLike[str]) -> BIDSFile:
        """Return a raw or derivative file with its sidecar chain (see :func:`bids_file`).

        The chain starts at the deepest of :attr:`root` and :attr:`derivative_roots` that
        holds ``path`` (the file's own folder alone when none does).
        """
        p = Path(path)
        roots = [r for r in (self.root, *self.derivative_roots.values())
                 if r is not None and p.is_relative_to(r)]
        return bids_file(p, max(roots, key=lambda r: len(r.parts)) if roots else p.parent)

    @property
    def modalities(self) -> list[str]:
        """The ``"<datatype>/<suffix>"`` pairs with at least one raw file, sorted."""
        return sorted(k for k, v in self.files.items() if v)


@dataclass
class BIDSDataset:
    """The result of :func:`discover`.

    Attributes
    ----------
    root : Path
        The BIDS dataset folder.
    participants : list of str
        Selected participants (``sub-XX``), sorted.
    sessions : dict
        ``sub-XX`` -> list of ``ses-YY`` (empty when the dataset has no sessions).
    data : dict
        ``(sub-XX, ses-YY or None)`` -> :class:`SessionData`.
    participants_table : pandas.DataFrame or None
        The validated ``participants.tsv``, if present.
    derivatives : dict
        Tool name -> folder for the derivatives found (``fmriprep``, ...).
    description : dict
        Content of ``dataset_description.json`` (empty when missing).
    synthseg_tables : list of Path
        SynthSeg CSVs not attributable to one participant (multi-subject tables).
    """

    root: Path
    participants: list[str]
    sessions: dict[str, list[str]]
    data: dict[tuple[str, str | None], SessionData]
    participants_table: pd.DataFrame | None = None
    derivatives: dict[str, Path] = field(default_factory=dict)
    description: dict[str, Any] = field(default_factory=dict)
    synthseg_tables: list[Path] = field(default_factory=list)

    def get(self, participant: str, session: str | None = None) -> SessionData:
        """Return the data of one participant (and session).

        Parameters
        ----------
        participant : str
            ``"01"`` or ``"sub-01"``.
        session : str or None
            ``"1"`` or ``"ses-1"``; ``None`` for datasets without sessions, or to
            take the only session.

        Returns
        -------
        SessionData
        """
        sub = "sub-" + validate_label(participant, "participant")
        if sub not in self.sessions:
            raise InputError(_unknown("participant", sub, self.participants))
        sessions = self.sessions[sub]
        if session is None:
            if len(sessions) > 1:
                raise InputError(f"participant {sub} has sessions {sessions}; pass session")
            ses = sessions[0] if sessions else None
        else:
            ses = "ses-" + validate_label(session, "session")
            if ses not in sessions:
                raise InputError(_unknown(f"session of {sub}", ses, sessions))
        return self.data[(sub, ses)]

    def __iter__(self) -> Any:
        """Iterate over the :class:`SessionData` in participant/session order."""
        return iter(self.data.values())


def _unknown(what: str, value: str, existing: Iterable[str]) -> str:
    existing = list(existing)
    hint = closest(value, existing)
    text = f"{what} '{value}' not found in the dataset"
    if hint:
        text += f"; closest existing: {', '.join(hint)}"
    elif existing:
        shown = ", ".join(existing[:10]) + (" ..." if len(existing) > 10 else "")
        text += f"; existing: {shown}"
    return text


def _select(requested: Iterable[str] | str | None, existing: list[str], entity: str,
            prefix: str, skipped: Mapping[str, str] | None = None) -> list[str]:
    if requested is None:
        return existing
    if isinstance(requested, str):
        requested = [requested]
    out = []
    for label in requested:
        full = prefix + validate_label(label, entity)
        if skipped and full in skipped:
            raise InputError(f"{entity} label '{full}': its folder was skipped because "
                             f"{skipped[full]}")
        if full not in existing:
            raise InputError(_unknown(f"{entity} label", full, existing))
        if full not in out:
            out.append(full)
    return sorted(out)


def _raw_nii_by_suffix(folder: Path, top: Path) -> dict[str, list[Path]]:
    """Every NIfTI of a datatype folder, by its BIDS suffix (the last ``_`` part).

    Files (or the folder) that link outside ``top`` are skipped with a warning.
    """
    out: dict[str, list[Path]] = {}
    if not folder.is_dir():
        return out
    target = _escapes(folder, top)  # a linked datatype (or session) folder
    if target is not None:
        _warn_escape("folder", folder, target, top)
        return out
    for p in sorted(folder.iterdir()):
        ext = next((e for e in _NII if p.name.endswith(e)), None)
        if (p.is_file() or p.is_symlink()) and ext and "_" in p.name:
            target = _escapes(p, top) if p.is_symlink() else None
            if target is not None:
                _warn_escape("data file", p, target, top)
                continue
            out.setdefault(p.name[: -len(ext)].rsplit("_", 1)[1], []).append(p)
    return out


def _sidecar_chain(file: Path, entities: dict[str, str], dirs: list[Path]) -> list[Path]:
    """JSON sidecars applying to ``file`` by inheritance, farthest first."""
    suffix = entities.get("suffix")
    own = {k: v for k, v in entities.items() if k not in ("suffix", "extension")}
    chain: list[Path] = []
    for folder in dirs:
        if not folder.is_dir():
            continue
        level: list[tuple[int, Path]] = []
        for js in sorted(folder.glob(f"*{suffix}.json")):
            ents = parse_entities(js.name)
            keys = {k: v for k, v in ents.items() if k not in ("suffix", "extension")}
            if ents.get("suffix") == suffix and all(own.get(k) == v for k, v in keys.items()):
                level.append((len(keys), js))
        # within one folder, fewer entities = more general = applied first
        chain.extend(js for _, js in sorted(level, key=lambda t: t[0]))
    return chain


def bids_file(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> BIDSFile:
    """Parse a file's entities and merge its JSON sidecars by inheritance.

    Parameters
    ----------
    path : str or os.PathLike
        A data file (raw or derivative).
    root : str or os.PathLike
        The dataset (or derivative tool) folder above it: sidecars are looked for in every
        folder from ``root`` down to the file's own (see the module docstring).

    Returns
    -------
    BIDSFile

    Raises
    ------
    InputError
        If ``path`` is not under ``root``, or a sidecar is malformed.
    """
    p, top = Path(path), Path(root)
    try:
        rel = p.parent.relative_to(top)
    except ValueError:
        raise InputError(f"bids_file: {p} is not under the dataset folder {top}") from None
    dirs = [top]
    for part in rel.parts:
        dirs.append(dirs[-1] / part)
    ents = parse_entities(p.name)
    chain = _sidecar_chain(p, ents, dirs)
    meta: dict[str, Any] = {}
    for js in chain:
        meta.update(read_json(js, "JSON sidecar"))
    return BIDSFile(path=p, entities=ents, metadata=meta, sidecars=chain)


def _resolve_derivatives(root: Path, derivatives: str | os.PathLike[str]
                         | Mapping[str, str | os.PathLike[str]]
                         | Sequence[str | os.PathLike[str]] | None) -> dict[str, Path]:
    found: dict[str, Path] = {}
    if isinstance(derivatives, Sequence) and not isinstance(derivatives, str):
        # several folders (``--derivatives`` repeated): the first to provide a tool wins
        for folder in derivatives:
            for tool, path in _resolve_derivatives(root, folder).items():
                found.setdefault(tool, path)
        return found
    if isinstance(derivatives, Mapping):
        for tool, folder in derivatives.items():
            if tool not in _DERIVATIVE_TOOLS:
                hint = closest(tool, _DERIVATIVE_TOOLS, n=1)
                raise InputError(f"derivatives: unknown tool '{tool}'"
                                 + (f"; did you mean '{hint[0]}'?" if hint else
                                    f"; expected one of {', '.join(_DERIVATIVE_TOOLS)}"))
            p = Path(folder)
            if not p.is_dir():
                raise InputError(f"derivatives: {tool} folder {p} does not exist")
            found[tool] = p
        return found
    if derivatives is None:
        base = root / "derivatives"
    else:
        base = Path(derivatives)
        if not base.is_dir():
            raise InputError(f"derivatives folder {base} does not exist"
                             + (" (it is a file)" if base.exists() else "")
                             + ": expected an fMRIPrep output folder, or a folder holding "
                             f"{', '.join(_DERIVATIVE_TOOLS)} sub-folders")
        if not any((base / t).is_dir() for t in _DERIVATIVE_TOOLS):
            # one tool's output: the tool its dataset_description.json names, else the
            # folder's own name (".../freesurfer"), else fMRIPrep
            desc_file = base / "dataset_description.json"
            desc = read_json(desc_file, "dataset description") if desc_file.is_file() else {}
            if desc.get("DatasetType") == "derivative":
                return _derivative_dataset(base, desc)
            name = base.resolve().name.casefold()
            return {name if name in _DERIVATIVE_TOOLS else "fmriprep": base}
    for tool in _DERIVATIVE_TOOLS:
        if (base / tool).is_dir():
            found[tool] = base / tool
    return found


def _derivative_dataset(root: Path, description: Mapping[str, Any]) -> dict[str, Path]:
    """Return the tool folders of a derivative dataset given as ``bids_dir``."""
    generated = description.get("GeneratedBy")
    name = ""
    if isinstance(generated, list) and generated and isinstance(generated[0], Mapping):
        name = str(generated[0].get("Name", "")).casefold()
    tool = next((t for t in _DERIVATIVE_TOOLS[1:] if t in name), "fmriprep")
    found = {tool: root}
    for other in _DERIVATIVE_TOOLS:
        for sub in (root / other, root / "sourcedata" / other):
            if other not in found and sub.is_dir():
                found[other] = sub
    return found


def _looks_like_fmriprep(root: Path) -> bool:
    """Whether ``root``'s participant folders hold fMRIPrep BOLD outputs (never raw data)."""
    patterns = ("sub-*/func/*_desc-preproc_bold.nii*", "sub-*/ses-*/func/*_desc-preproc_bold.nii*")
    return any(next(iter(root.glob(pattern)), None) is not None for pattern in patterns)


def _participant_files(folder: Path, sub: str, ses: str | None,
                       root: Path | None = None) -> list[Path]:
    """Return every file of one participant (and session) under a derivative tool's folder.

    Files that link outside ``folder`` (and outside the dataset ``root`` holding it) are
    skipped with a warning (linked folders are not walked into).
    """
    tops = (folder,) if root is None or not folder.is_relative_to(root) else (folder, root)
    out: list[Path] = []
    own = [folder / sub] + ([folder / f"{sub}_{ses}"] if ses else [])
    for top in own:
        if not top.is_dir():
            continue
        target = _escapes(top, *tops)
        if target is not None:
            _warn_escape("participant folder", top, target, tops[-1])
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            if ses and Path(dirpath) == folder / sub:  # other sessions' folders are theirs
                dirnames[:] = [d for d in dirnames if not d.startswith("ses-") or d == ses]
            for f in filenames:
                p = Path(dirpath) / f
                target = _escapes(p, *tops) if p.is_symlink() else None
                if target is not None:
                    _warn_escape("derivative file", p, target, tops[-1])
                    continue
                out.append(p)
    return sorted(out)


def _session_folders(subdir: Path) -> list[str]:
    """Return the ``ses-*`` folders of a participant whose labels are valid, sorted.

    Others (``ses-1 2``, ``ses-..x``) are skipped with a warning.
    """
    out = []
    for p in sorted(subdir.glob("ses-*")):
        if not p.is_dir():
            continue
        try:
            validate_label(p.name, "session")
        except InputError:
            logger.warning("session folder %s: %r is not a valid session label (letters and "
                           "digits only); skipped", p, p.name)
            continue
        out.append(p.name)
    return out


def _subject_folders(top: Path, what: str,
                     root: Path | None = None) -> tuple[set[str], dict[str, str]]:
    """Return the safe ``sub-*`` folders of ``top``, and why each unsafe one was skipped.

    A folder may link anywhere inside ``top``, or inside the dataset ``root`` holding it.
    """
    tops = (top,) if root is None or not top.is_relative_to(root) else (top, root)
    safe: set[str] = set()
    skipped: dict[str, str] = {}
    for p in top.glob("sub-*"):
        if not p.is_dir():
            continue
        try:
            validate_label(p.name, "participant")
        except InputError:
            if "_" not in p.name:  # sub-XX_ses-YY is FreeSurfer's per-session naming
                logger.warning("%s folder %s: %r is not a valid participant label (letters "
                               "and digits only); skipped", what, p, p.name)
                skipped[p.name] = "its name is not a valid BIDS label"
            continue
        target = _escapes(p, *tops)
        if target is not None:
            _warn_escape(f"{what} participant folder", p, target, tops[-1])
            skipped[p.name] = (f"its folder {p} is a symbolic link to {target}, outside "
                               f"{tops[-1]}")
            continue
        safe.add(p.name)
    return safe, skipped


def _aseg(derivs: dict[str, Path], sub: str, ses: str | None) -> Path | None:
    for tool in ("freesurfer", "fastsurfer"):
        if tool not in derivs:
            continue
        names = ([f"{sub}_{ses}"] if ses else []) + [sub]
        for n in names:
            p = derivs[tool] / n / "stats" / "aseg.stats"
            if p.is_file():
                return p
    return None


def discover(
    bids_dir: str | os.PathLike[str],
    participant_label: Iterable[str] | str | None = None,
    session_label: Iterable[str] | str | None = None,
    derivatives: str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]]
    | Sequence[str | os.PathLike[str]] | None = None,
) -> BIDSDataset:
    """Find the raw data and derivatives of a BIDS dataset.

    Parameters
    ----------
    bids_dir : str or os.PathLike
        The BIDS dataset folder.
    participant_label : str, iterable of str or None
        Participants to keep (``"01"`` or ``"sub-01"``); ``None`` keeps all.
    session_label : str, iterable of str or None
        Sessions to keep (``"1"`` or ``"ses-1"``); ``None`` keeps all.
    derivatives : path, mapping, sequence of paths or None
        Where the derivatives are (see the module docstring); with several folders, the
        first that provides a tool is used for it.

    Returns
    -------
    BIDSDataset
        Participants, sessions and, per participant/session, every raw NIfTI with its
        metadata, every derivative file by tool, ``aseg.stats`` and SynthSeg tables.

    Raises
    ------
    InputError
        If ``bids_dir`` does not exist, a label is invalid or not in the dataset
        (the closest existing labels are listed), a requested participant's folder was
        skipped as unsafe (a link outside the dataset), a derivatives folder does not
        exist, the ids of ``participants.tsv`` are invalid (only they are checked here:
        the other columns are the group level's), or a JSON file is malformed.

    Notes
    -----
    A derivative dataset (``"DatasetType": "derivative"``, e.g. fMRIPrep's output folder)
    is read as the output of its tool, not as raw data; symbolic links leading outside the
    dataset are skipped with a warning (see the module docstring).
    """
    root = Path(bids_dir)
    if not root.is_dir():
        raise InputError(f"BIDS folder {root} does not exist or is not a folder")
    description: dict[str, Any] = {}
    desc_file = root / "dataset_description.json"
    if desc_file.is_file():
        description = read_json(desc_file, "dataset description")
    else:
        logger.warning("%s: no dataset_description.json; continuing, but this is not a "
                       "valid BIDS dataset", root)

    derivative_dataset = description.get("DatasetType") == "derivative"
    if "DatasetType" not in description and _looks_like_fmriprep(root):
        logger.warning("%s holds fMRIPrep outputs (*_desc-preproc_bold) in its sub-*/func "
                       "folders but no dataset_description.json saying \"DatasetType\": "
                       "\"derivative\"; read as fMRIPrep output", root)
        derivative_dataset = True
    # folders given by the caller win, tool by tool, over those found in the dataset
    derivs = _resolve_derivatives(root, derivatives) if derivatives is not None else {}
    found = (_derivative_dataset(root, description) if derivative_dataset
             else _resolve_derivatives(root, None))
    for tool, folder in found.items():
        derivs.setdefault(tool, folder)
    if derivative_dataset:
        logger.info("%s is a derivative dataset: read as %s", root,
                    ", ".join(f"{t} output {f}" for t, f in derivs.items()))
    # participants with raw data, plus those with only fMRIPrep outputs (a dataset whose raw
    # images were not shared, or a derivative dataset); their sessions are read from the
    # fMRIPrep folder
    raw_folders, skipped = (set(), {}) if derivative_dataset else _subject_folders(root, "raw")
    deriv_folders: set[str] = set()
    if "fmriprep" in derivs:
        deriv_folders, more = _subject_folders(derivs["fmriprep"], "fMRIPrep", root)
        skipped = {**more, **skipped}
    if derivative_dataset and "fmriprep" not in derivs:
        deriv_folders, skipped = _subject_folders(root, "derivative")
    folders = sorted(raw_folders | deriv_folders)
    skipped = {k: v for k, v in skipped.items() if k not in folders}

    def subject_dir(sub: str) -> Path:
        if sub in raw_folders:
            return root / sub
        return derivs["fmriprep"] / sub if "fmriprep" in derivs else root / sub

    table = None
    tsv = root / "participants.tsv"
    if tsv.is_file():
        # the participant level needs the ids only: covariates (age...) are the group
        # level's to check, against the columns it uses
        table = read_participants(tsv, age_column=None)
        listed = list(table["participant_id"])
        no_folder = sorted(set(listed) - set(folders))
        if no_folder:
            logger.warning("%s lists %d participant(s) without a folder: %s", tsv,
                           len(no_folder), ", ".join(no_folder))
        not_listed = sorted(set(folders) - set(listed))
        if not_listed:
            logger.warning("%d participant folder(s) missing from %s: %s",
                           len(not_listed), tsv, ", ".join(not_listed))
    if not folders:
        tools = [t for t in _DERIVATIVE_TOOLS if (root / t).is_dir()]
        raise InputError(f"BIDS folder {root} has no sub-* participant folders"
                         + (f" it can read (skipped: {', '.join(sorted(skipped))})"
                            if skipped else "")
                         + (f"; it holds {', '.join(tools)}: give the raw dataset as "
                            f"BIDS_DIR and --derivatives {root}, or the tool's own folder "
                            f"(e.g. {root / tools[0]}) as BIDS_DIR" if tools else ""))
    participants = _select(participant_label, folders, "participant", "sub-", skipped)

    synthseg_by_sub: dict[str, list[Path]] = {}
    synthseg_tables: list[Path] = []
    if "synthseg" in derivs:
        for csv in sorted(derivs["synthseg"].rglob("*.csv")):
            sub_part = next((part for part in (*csv.relative_to(derivs["synthseg"]).parts[:-1],
                                               *csv.name.split("_"))
                             if part.startswith("sub-")), None)
            if sub_part is None:
                synthseg_tables.append(csv)
            else:
                synthseg_by_sub.setdefault(sub_part.split(".")[0], []).append(csv)

    sessions: dict[str, list[str]] = {}
    data: dict[tuple[str, str | None], SessionData] = {}
    own_sessions = {sub: _session_folders(subject_dir(sub)) for sub in participants}
    all_sessions = sorted({ses for names in own_sessions.values() for ses in names})
    if session_label is not None and not all_sessions:
        raise InputError(f"session_label given but {root} has no ses-* folders")
    wanted = _select(session_label, all_sessions, "session", "ses-") if all_sessions else []
    for sub in participants:
        subdir = subject_dir(sub)
        own = own_sessions[sub]
        ses_list: list[str | None] = [s for s in own if s in wanted] if own else [None]
        if not ses_list:
            logger.info("%s has none of the selected sessions; skipped", sub)
            continue
        sessions[sub] = [s for s in ses_list if s is not None]
        for ses in ses_list:
            base = subdir / ses if ses else subdir
            item = SessionData(participant=sub, session=ses, root=root,
                               derivative_roots=dict(derivs))
            if sub in raw_folders:
                for folder in sorted(d for d in base.iterdir() if d.is_dir()
                                     and not d.name.startswith("ses-")):
                    for suffix, paths in _raw_nii_by_suffix(folder, root).items():
                        item.files[f"{folder.name}/{suffix}"] = [
                            bids_file(p, root) for p in paths]
            item.derivatives = {tool: _participant_files(folder, sub, ses, root)
                                for tool, folder in derivs.items()}
            item.aseg_stats = _aseg(derivs, sub, ses)
            item.synthseg = [c for c in synthseg_by_sub.get(sub, [])
                             if ses is None or ses in c.parts or f"_{ses}_" in c.name
                             or not any(part.startswith("ses-") for part in c.parts)]
            data[(sub, ses)] = item
    participants = [sub for sub in participants if sub in sessions]
    return BIDSDataset(root=root, participants=participants, sessions=sessions, data=data,
                       participants_table=table, derivatives=derivs, description=description,
                       synthseg_tables=synthseg_tables)
