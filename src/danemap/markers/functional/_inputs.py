"""The functional family's inputs: raw BOLD runs paired with their fMRIPrep outputs.

Discovery (:func:`danemap.io.discover`) knows no modality: it indexes the raw BOLD images
(``session.get_files("func/bold")``) and every fMRIPrep file of the participant
(``session.derivatives["fmriprep"]``). :func:`functional_runs` pairs them:

* fMRIPrep outputs are matched to raw runs by the ``sub``, ``ses``, ``task`` and ``run``
  entities, in the ``<fmriprep>/sub-XX[/ses-YY]/func`` folder. A run's ``preproc`` is the
  ``space-<space>_desc-preproc_bold`` image (``res-2`` preferred, then no ``res``, then the
  lowest other), its ``mask`` the ``desc-brain_mask`` in that space whose ``res`` matches
  the image's, its ``confounds`` the ``desc-confounds_timeseries.tsv``.
* Fallback inputs (``FuncRun.fallback`` says which was used, and the participant level
  logs it): when a run has no ``space-<space>_desc-preproc_bold`` image, a BOLD in
  another MNI152 space from the same fMRIPrep folder stands in (``desc-preproc``
  preferred); when there is no fMRIPrep output at all, a raw ``*_bold.nii[.gz]`` with
  ``<same stem>_desc-confounds_timeseries.tsv`` beside it is taken as an already
  preprocessed 4D image in MNI space.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from danemap.io import BIDSFile, parse_entities

if TYPE_CHECKING:
    from danemap.io import SessionData

__all__ = ["DEFAULT_SPACE", "FuncRun", "functional_runs"]

#: Template space of the fMRIPrep outputs the functional family reads.
DEFAULT_SPACE = "MNI152NLin2009cAsym"
_NII = (".nii", ".nii.gz")

_Key = tuple[str, str, str, str]


@dataclass
class FuncRun:
    """One functional run: raw BOLD and its fMRIPrep outputs (any may be missing).

    ``fallback`` is ``None`` when ``preproc`` is fMRIPrep's
    ``space-<space>_desc-preproc_bold`` image, otherwise it says which other 4D image
    stands in for it (see :func:`functional_runs`).
    """

    entities: dict[str, str]
    bold: BIDSFile | None = None
    preproc: BIDSFile | None = None
    confounds: BIDSFile | None = None
    mask: BIDSFile | None = None
    fallback: str | None = None


def functional_runs(session: SessionData, space: str = DEFAULT_SPACE) -> list[FuncRun]:
    """Pair one session's raw BOLD runs with their fMRIPrep outputs.

    Parameters
    ----------
    session : SessionData
        One participant-session from :func:`danemap.io.discover`.
    space : str
        Template space of the fMRIPrep outputs to use.

    Returns
    -------
    list of FuncRun
        Every run with a raw BOLD or an fMRIPrep output, sorted by ``sub``, ``ses``,
        ``task``, ``run`` when fMRIPrep has a ``func`` folder for the session (raw order
        otherwise); ``preproc`` is ``None`` for a run with no usable image (see the
        module docstring for the fallbacks).

    Raises
    ------
    InputError
        If a JSON sidecar is malformed.
    """
    bold = session.get_files("func/bold")
    if "fmriprep" in session.derivatives:
        runs = _fmriprep_runs(session, bold, space)
    else:
        runs = [FuncRun(entities=_key_entities(b.entities), bold=b) for b in bold]
    for run in runs:
        _raw_fallback(run, session)
    return runs


def _run_key(ents: Mapping[str, str]) -> _Key:
    return (ents.get("sub", ""), ents.get("ses", ""), ents.get("task", ""),
            ents.get("run", ""))


def _res_rank(ents: Mapping[str, str], preferred: str | None) -> tuple[int, str]:
    res = ents.get("res")
    if res == preferred:
        return (0, "")
    if res is None:
        return (1, "")
    return (2, res)


def _key_entities(ents: Mapping[str, str]) -> dict[str, str]:
    return {k: ents[k] for k in ("sub", "ses", "task", "run") if k in ents}


def _func_files(session: SessionData) -> list[Path] | None:
    """Return the files of fMRIPrep's ``sub-XX[/ses-YY]/func`` folder (None: no folder)."""
    sub, ses = session.participant, session.session
    root = session.derivative_roots.get("fmriprep")
    files = session.derivatives.get("fmriprep", [])
    if root is not None:
        folder = root / sub / ses / "func" if ses else root / sub / "func"
        return [p for p in files if p.parent == folder] if folder.is_dir() else None
    # a hand-made SessionData without roots: match the folder by its names
    want = (sub, ses, "func") if ses else (sub, "func")
    found = [p for p in files if p.parent.parts[-len(want):] == want]
    return found or None


def _fmriprep_runs(session: SessionData, raw: list[BIDSFile], space: str) -> list[FuncRun]:
    runs: dict[_Key, FuncRun] = {}
    for b in raw:
        runs.setdefault(_run_key(b.entities), FuncRun(entities=_key_entities(b.entities)))
        runs[_run_key(b.entities)].bold = b
    func = _func_files(session)
    if func is None:
        return list(runs.values())
    preproc: dict[_Key, list[BIDSFile]] = {}
    other_mni: dict[_Key, list[BIDSFile]] = {}
    masks: dict[_Key, list[BIDSFile]] = {}
    for p in func:
        ents = parse_entities(p.name)
        key = _run_key(ents)
        if "task" not in ents:
            continue
        ext = ents.get("extension")
        if (ents.get("suffix") == "bold" and ents.get("desc") == "preproc"
                and ents.get("space") == space and ext in _NII):
            preproc.setdefault(key, []).append(session.bids_file(p))
        elif (ents.get("suffix") == "bold" and ents.get("space", "").startswith("MNI152")
                and ext in _NII):
            other_mni.setdefault(key, []).append(session.bids_file(p))
        elif ents.get("suffix") == "mask" and ents.get("desc") == "brain" and ents.get(
                "space") == space and ext in _NII:
            masks.setdefault(key, []).append(BIDSFile(p, ents))
        elif ents.get("suffix") == "timeseries" and ents.get("desc") == "confounds" and (
                ext == ".tsv"):
            run = runs.setdefault(key, FuncRun(entities=_key_entities(ents)))
            run.confounds = session.bids_file(p)
    for key, files in preproc.items():
        run = runs.setdefault(key, FuncRun(entities=_key_entities(files[0].entities)))
        run.preproc = min(files, key=lambda f: _res_rank(f.entities, "2"))
    for key, files in other_mni.items():
        run = runs.setdefault(key, FuncRun(entities=_key_entities(files[0].entities)))
        if run.preproc is None:  # e.g. only space-MNI152NLin6Asym outputs
            run.preproc = min(files, key=lambda f: (f.entities.get("desc") != "preproc",
                                                    _res_rank(f.entities, "2"), f.path.name))
            run.fallback = (f"{run.preproc.path.name}: no space-{space}_desc-preproc_bold "
                            "image; this MNI152 BOLD is used instead")
    for key, files in masks.items():
        run = runs.setdefault(key, FuncRun(entities=_key_entities(files[0].entities)))
        want = run.preproc.entities.get("res") if run.preproc else "2"
        run.mask = min(files, key=lambda f: _res_rank(f.entities, want))
    return [runs[k] for k in sorted(runs)]


def _raw_fallback(run: FuncRun, session: SessionData) -> None:
    """Use a raw BOLD as the preprocessed image when a confounds TSV sits beside it.

    This is the fallback for data preprocessed outside fMRIPrep and stored as a plain
    4D NIfTI in MNI space with ``<same stem>_desc-confounds_timeseries.tsv`` next to it.
    """
    if run.preproc is not None or run.bold is None:
        return
    stem = run.bold.path.name.split(".")[0].removesuffix("_bold")
    tsv = run.bold.path.with_name(f"{stem}_desc-confounds_timeseries.tsv")
    if not tsv.is_file():
        return
    run.preproc = run.bold
    run.confounds = run.confounds or session.bids_file(tsv)
    run.fallback = (f"{run.bold.path.name}: no fMRIPrep output; the BOLD image itself is "
                    f"used with {tsv.name} and is assumed to be in MNI152 space")
