"""The participant report, ``OUT/danemap/sub-XX.html``: one self-contained page per person.

Everything on the page is read from the participant level's outputs (TSV, JSON sidecars,
QC PNGs) and, where the group level ran, from ``group/stats/<table>/normative_z.tsv`` and
``summary.json``; nothing is recomputed. The only inputs read are those the outputs name
in their sidecars' ``Sources``: each is hashed (SHA-256) for the header, and a run's
fMRIPrep confounds give its framewise-displacement trace (the outputs record the summary
and the kept volumes, not the FD series). The BOLD mean is the functional family's
``desc-mean_bold`` output (older outputs: fMRIPrep's boldref or the BOLD itself, when still
there), and the kinetic fits of dynamic PET are its ``desc-fits_tacs.tsv``. A section whose
inputs are absent says what is missing and why; a section whose file is unreadable says it
failed, and why.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from danemap._utils.hashing import file_sha256
from danemap._utils.logging import get_logger
from danemap._utils.text import DISCLAIMER
from danemap.errors import DanemapError, InputError
from danemap.report._figures import PALETTE, figure, img_tag, nice_limit, png_file_tag
from danemap.report._html import Section, write_report

__all__ = ["write_participant_report", "write_participant_reports"]

log = get_logger("report")

#: The striatal regions of the PET bar chart, in order.
PET_REGIONS = ("caudate", "putamen", "putamen_anterior", "putamen_posterior")
#: |z| of the reference band ("typical range") of "Where this person sits".
BAND_Z = 2.0
#: The connectivity blocks outlined on the matrix (atlas network names).
OUTLINED_NETWORKS = ("frontostriatal", "lc_pfc")

_SUB = re.compile(r"^sub-[A-Za-z0-9]+$")


# --------------------------------------------------------------------------- reading


def _read_tsv(path: Path) -> Any:
    from danemap.io import read_tsv

    return read_tsv(path)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    from danemap.io import read_json

    return read_json(path, what)


def _sidecar(tsv: Path) -> dict[str, Any]:
    side = tsv.with_suffix(".json")
    return _read_json(side, "sidecar") if side.is_file() else {}


def _entities(path: Path) -> dict[str, str]:
    from danemap.io import parse_entities

    return parse_entities(path.name)


def _label(path: Path, keep: Sequence[str] = ("ses", "task", "run", "trc")) -> str:
    ents = _entities(path)
    return " ".join(f"{k}-{ents[k]}" for k in keep if k in ents) or path.name


def _sha256(path: Path, cache: dict[Path, str]) -> str:
    if path not in cache:
        cache[path] = file_sha256(path)
    return cache[path]


def _float(value: Any) -> float:
    """Return ``value`` as a float, NaN when it is not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _finite(value: Any) -> bool:
    return math.isfinite(_float(value))


def _guard(title: str, anchor: str, build: Callable[[], list[Section]]) -> list[Section]:
    """Build a section; an unreadable or malformed output becomes a FAILED section."""
    try:
        return build()
    except (DanemapError, OSError, KeyError, ValueError) as exc:
        log.warning("participant report: %s: %s", title, exc)
        return [Section(title, anchor=anchor, status="failed",
                        text=f"This section could not be drawn: {exc}")]


class _Outputs:
    """The files of one participant under the derivatives root (no computation)."""

    def __init__(self, root: Path, participant: str) -> None:
        self.root = root
        self.sub = participant
        self.dir = root / participant

    def glob(self, pattern: str) -> list[Path]:
        return sorted(self.dir.glob(pattern)) if self.dir.is_dir() else []

    @property
    def volumes(self) -> list[Path]:
        return self.glob("**/anat/*_desc-volumes_stats.tsv")

    @property
    def networks(self) -> list[Path]:
        return self.glob("**/func/*_desc-networks_stats.tsv")

    @property
    def motion(self) -> list[Path]:
        return self.glob("**/func/*_desc-qc_motion.json")

    @property
    def pet(self) -> list[Path]:
        return [p for p in self.glob("**/pet/*_stats.tsv")]

    @property
    def contrasts(self) -> list[Path]:
        return [p for p in self.glob("**/func/*_desc-contrasts_stats.tsv") if "_run-" not in
                p.name]

    def figure(self, kind: str) -> list[Path]:
        return self.glob(f"**/figures/*_desc-qc_{kind}.png")


def _status_row(root: Path, participant: str) -> dict[str, Any] | None:
    path = root / "logs" / "participant_status.tsv"
    if not path.is_file():
        return None
    table = _read_tsv(path)
    rows = table[table["participant_id"].astype(str) == participant]
    return None if rows.empty else rows.iloc[-1].to_dict()


# --------------------------------------------------------------------------- header


def _header(out: _Outputs, status: Mapping[str, Any] | None) -> list[Section]:
    import pandas as pd

    sidecars = sorted(p for p in out.glob("**/*.json")
                      if not p.name.endswith("_desc-qc_motion.json"))
    cache: dict[Path, str] = {}
    rows, seen = [], set()
    for side in sidecars:
        sources = _read_json(side, "sidecar").get("Sources") or []
        for src in sources if isinstance(sources, list) else [sources]:
            key = str(src)
            if key in seen:
                continue
            seen.add(key)
            path = Path(key)
            if not path.is_absolute() or not path.is_file():
                digest = ("not a file" if not path.is_absolute()
                          else "not found when the report was written")
            else:
                digest = _sha256(path, cache)
            rows.append({"input": key, "first used by": side.name.replace(".json", ""),
                         "SHA-256": digest})
    text = [f"Participant {out.sub}."]
    report_status: str | None = None
    if status is None:
        text.append("The participant level's status table (logs/participant_status.tsv) has "
                    "no row for this participant.")
        report_status = "missing"
    else:
        state = str(status.get("status"))
        text.append(f"Participant level: {state}"
                    + (f" in {_float(status['seconds']):.1f} s" if _finite(status.get("seconds"))
                       else "") + ".")
        if state == "failed":
            report_status = "failed"
            text.append(f"FAILED: {status.get('error')}. The sections below show what the "
                        "failed run left, if anything.")
    if not rows:
        text.append("No output of this participant names its inputs (no sidecar with "
                    "Sources): the inputs cannot be listed.")
    return [Section("Participant and inputs", anchor="header", text="\n\n".join(text),
                    table=pd.DataFrame(rows) if rows else None, status=report_status,
                    notes=["SHA-256 of each input file as it is now: a changed hash means the "
                           "input changed since these outputs were written."] if rows else [])]


# --------------------------------------------------------------------------- QC


def _fd_trace(motion: Path, qc: Mapping[str, Any]) -> tuple[str | None, str]:
    """Draw one run's FD trace with its censored volumes; return (img tag, caption)."""
    import numpy as np

    stem = motion.name.replace("_desc-qc_motion.json", "")
    ts = sorted(motion.parent.glob(f"{stem}_atlas-*_timeseries.tsv"))
    n = int(qc.get("n_volumes") or 0)
    kept: set[int] | None = None
    confounds: Path | None = None
    if ts:
        kept = {int(v) for v in _read_tsv(ts[0])["volume"].dropna()}
        srcs = _sidecar(ts[0]).get("Sources") or []
        confounds = next((Path(s) for s in srcs if str(s).endswith("_timeseries.tsv")
                          and "confounds" in str(s)), None)
    fd = None
    why = ""
    from_where = ""
    written = motion.with_name(f"{stem}_desc-fd_timeseries.tsv")
    if written.is_file():
        table = _read_tsv(written)
        if "framewise_displacement" not in table.columns:
            raise InputError(f"{written}: expected a framewise_displacement column, found "
                             f"{list(table.columns)[:8]}")
        fd = table["framewise_displacement"].to_numpy(float)
        n = n or len(fd)
        from_where = f" FD series from the outputs ({written.name})."
    elif confounds is not None and confounds.is_file():
        table = _read_tsv(confounds)
        if "framewise_displacement" in table.columns:
            fd = table["framewise_displacement"].to_numpy(float)
            n = n or len(fd)
            from_where = (f" FD series from the input {confounds.name} (the outputs have no "
                          f"{written.name}).")
        else:
            why = f"{confounds.name} has no framewise_displacement column"
    else:
        why = (f"the outputs have no {written.name} (older danemap versions recorded the FD "
               "summary only), and the run's confounds file "
               f"({confounds or 'not named in the time series sidecar'}) is not available")
    if not n:
        return None, "The run's QC JSON records no volume count; no trace can be drawn."
    censored = sorted(set(range(n)) - kept) if kept is not None else []
    thr = qc.get("fd_threshold")
    with figure(7.0, 2.2) as fig:
        ax = fig.add_subplot()
        if fd is not None:
            ax.plot(np.arange(len(fd)), fd, color=PALETTE["primary"], lw=1.2, label="FD")
            if _finite(thr):
                ax.axhline(_float(thr), color=PALETTE["flag"], ls="--", lw=1,
                           label=f"threshold {_float(thr):g} mm")
        for k, v in enumerate(censored):
            ax.axvspan(v - 0.5, v + 0.5, color=PALETTE["fail"], alpha=0.25, lw=0,
                       label="censored" if k == 0 else None)
        ax.set_xlim(-0.5, n - 0.5)
        ax.set_xlabel("volume")
        ax.set_ylabel("FD (mm)" if fd is not None else "")
        if fd is None:
            ax.set_yticks([])
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", frameon=False, ncol=3)
        ax.set_title(f"Framewise displacement, {_label(motion)}")
        tag = img_tag(fig, f"framewise displacement trace, {_label(motion)}")
    caption = (f"{len(censored)} of {n} volume(s) censored or dropped (red), "
               f"{qc.get('n_fd_over_threshold', 'n/a')} over the FD threshold; mean FD "
               f"{_float(qc['mean_fd']):.3f} mm." if _finite(qc.get("mean_fd")) else
               f"{len(censored)} of {n} volume(s) censored or dropped (red).")
    if kept is None:
        caption += " The time series TSV is missing, so the censored volumes are unknown."
    if fd is None:
        caption += f" No FD trace: {why}."
    return tag, caption + from_where


#: At most this many evenly spaced volumes enter the BOLD mean drawn (display only).
BOLD_MEAN_VOLUMES = 60


def _bold_source(ts: Path) -> Path | None:
    srcs = _sidecar(ts).get("Sources") or []
    return next((Path(str(s)) for s in srcs if str(s).endswith(("_bold.nii.gz", "_bold.nii"))),
                None)


def bold_mean_image(bold: Path) -> tuple[Any, str]:
    """Return the run's mean BOLD image and how it was obtained (display only).

    fMRIPrep's ``_boldref`` beside the preprocessed BOLD is used when present; otherwise
    the mean of at most :data:`BOLD_MEAN_VOLUMES` evenly spaced volumes of the BOLD.

    Parameters
    ----------
    bold : pathlib.Path
        The preprocessed BOLD the time series were extracted from.

    Returns
    -------
    image : nibabel.Nifti1Image
        A 3-D image on the BOLD's grid.
    how : str
        A phrase for the caption.

    Raises
    ------
    InputError
        When neither a boldref nor a readable 4-D BOLD exists.
    """
    import nibabel as nib
    import numpy as np

    img: Any
    for old in ("_desc-preproc_bold.nii.gz", "_desc-preproc_bold.nii"):
        if bold.name.endswith(old):
            ref = bold.with_name(bold.name[: -len(old)] + "_boldref.nii.gz")
            if ref.is_file():
                img = nib.load(ref)
                if len(img.shape) == 3:
                    return img, f"fMRIPrep's reference image ({ref.name})"
    try:
        img = nib.load(bold)
    except (OSError, ValueError, nib.filebasedimages.ImageFileError) as exc:
        raise InputError(f"{bold}: expected a readable BOLD image, found: {exc}") from exc
    if len(img.shape) != 4 or img.shape[3] < 1:
        raise InputError(f"{bold}: expected a 4-D BOLD series, found shape {img.shape}")
    n = img.shape[3]
    step = max(1, math.ceil(n / BOLD_MEAN_VOLUMES))
    data = np.asarray(img.dataobj[..., ::step], dtype=np.float32)
    mean = np.nanmean(data, axis=3)
    k = data.shape[3]
    return (nib.Nifti1Image(mean, img.affine),
            f"the mean of {k} of the {n} volumes of {bold.name}" if k < n else
            f"the mean of the {n} volumes of {bold.name}")


_MEAN_OUTPUT = re.compile(r"^(?P<stem>.+?)(_space-[A-Za-z0-9]+)?(_res-[A-Za-z0-9]+)?"
                          r"_desc-mean_bold\.nii(\.gz)?$")


def mean_bold_output(motion: Path) -> Path | None:
    """Return the run's mean BOLD among the outputs, or None when there is none.

    The functional family writes ``<run>[_space-<space>][_res-<res>]_desc-mean_bold.nii.gz``
    beside the run's ``<run>_desc-qc_motion.json``.

    Parameters
    ----------
    motion : pathlib.Path
        The run's motion QC JSON.

    Returns
    -------
    pathlib.Path or None
    """
    stem = motion.name.replace("_desc-qc_motion.json", "")
    found = [p for p in sorted(motion.parent.glob(f"{stem}_*desc-mean_bold.nii*"))
             if (m := _MEAN_OUTPUT.match(p.name)) and m.group("stem") == stem]
    return found[0] if found else None


def _load_mean_output(path: Path) -> tuple[Any, str]:
    from danemap.io import load_nifti

    img = load_nifti(path, expect_ndim=3)
    return img, f"the mean BOLD among the outputs ({path.name})"


def _bold_mean_figure(motion: Path) -> tuple[str | None, str]:
    """Draw one run's BOLD mean with the atlas contours; return (img tag, caption)."""
    import logging
    import warnings

    import numpy as np
    from scipy import ndimage

    from danemap.atlas import load_atlas

    stem = motion.name.replace("_desc-qc_motion.json", "")
    ts = sorted(motion.parent.glob(f"{stem}_atlas-*_timeseries.tsv"))
    if not ts:
        return None, (f"{_label(motion)}: no BOLD mean: the run has no time series TSV, so "
                      "its BOLD file is not known.")
    atlas = _entities(ts[0]).get("atlas", "")
    if atlas != "danemap":
        return None, (f"{_label(motion)}: no BOLD mean with contours: the atlas "
                      f"{atlas!r} is not the built-in one, and the run's atlas image is "
                      "not among the outputs.")
    written = mean_bold_output(motion)
    try:
        if written is not None:
            img, how = _load_mean_output(written)
        else:
            bold = _bold_source(ts[0])
            if bold is None:
                return None, (f"{_label(motion)}: no BOLD mean: the outputs have no "
                              f"{stem}_space-<space>_desc-mean_bold.nii.gz and the time "
                              "series sidecar names no BOLD source.")
            if not (bold.is_file() or bold.with_name(bold.name.replace(
                    "_desc-preproc_bold", "_boldref")).is_file()):
                return None, (f"{_label(motion)}: no BOLD mean: the outputs have no "
                              f"{stem}_space-<space>_desc-mean_bold.nii.gz (written by "
                              f"newer danemap versions) and the input {bold} is no longer "
                              "readable.")
            img, how = bold_mean_image(bold)
            how = (f"from the input, {how}, since the outputs have no "
                   f"{stem}_space-<space>_desc-mean_bold.nii.gz")
        atlas_log = logging.getLogger("danemap.atlas")
        level = atlas_log.level
        atlas_log.setLevel(logging.ERROR)  # empty regions on this grid: not a report problem
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                labels = np.asarray(load_atlas(2).resample_to(img).img.dataobj).astype(int)
        finally:
            atlas_log.setLevel(level)
    except InputError as exc:
        return None, f"{_label(motion)}: no BOLD mean: {exc}"
    mean = np.asarray(img.dataobj, dtype=np.float32)
    sel = labels > 0
    finite = mean[np.isfinite(mean) & (mean > 0)]
    lo, hi = np.percentile(finite, [1, 99.5]) if finite.size else (0.0, 1.0)
    with figure(9.0, 6.0) as fig:
        axes = fig.subplots(2, 3)
        for row, axis in enumerate((2, 1)):
            ext = np.flatnonzero(sel.any(axis=tuple(a for a in range(3) if a != axis)))
            for col, q in enumerate((0.3, 0.5, 0.7)):
                k = round(ext[0] + q * (ext[-1] - ext[0])) if ext.size else \
                    mean.shape[axis] // 2
                ax = axes[row, col]
                ax.imshow(np.take(mean, k, axis=axis).T, cmap="gray", vmin=lo, vmax=hi,
                          origin="lower")
                lb = np.take(labels, k, axis=axis).T
                edges = (lb != ndimage.grey_erosion(lb, size=3)) & (lb > 0)
                ax.imshow(np.ma.masked_where(~edges, lb), cmap="tab20", origin="lower",
                          interpolation="nearest", vmin=0, vmax=max(int(labels.max()), 1))
                ax.set_title(f"{'axial' if axis == 2 else 'coronal'} slice {k}")
                ax.set_axis_off()
        fig.suptitle(f"BOLD mean with the atlas contours, {_label(motion)}")
        tag = img_tag(fig, f"BOLD mean with atlas contours, {_label(motion)}")
    return tag, (f"{_label(motion)}: {how}, with the outlines of the danemap atlas "
                 "regions resampled to the BOLD grid (the BOLD is in MNI space); a "
                 "misregistered run shows outlines off the grey matter.")


def _exclusion(reason: Any, details: Sequence[str]) -> str:
    """Word a run's exclusion by its QC reason (``motion``, ``no confounds``)."""
    said = "; ".join(details)
    if reason == "no confounds":
        head = ("excluded: no confounds file, so the run was processed without confound "
                "regression or motion QC")
        # the recorded detail starts with "no confounds: ..." already
        return f"{head} ({said})" if said else head
    if reason in (None, "motion") or (isinstance(reason, float) and math.isnan(reason)):
        return f"excluded by motion QC: {said}" if said else "excluded by motion QC"
    return f"excluded ({reason}): {said}" if said else f"excluded ({reason})"


def _qc(out: _Outputs) -> list[Section]:
    import pandas as pd

    rows: list[dict[str, str]] = []
    t1_figs: list[str] = []
    t1_notes: list[str] = []
    fd_figs: list[str] = []
    fd_notes: list[str] = []
    pet_figs: list[str] = []
    pet_notes: list[str] = []
    # structural
    vols, t1_png = out.volumes, out.figure("T1w")
    if not vols:
        rows.append({"modality": "T1w (structural)", "status": "missing",
                     "details": "no regional volumes: the structural family did not run "
                                "for this participant (no T1w/aseg/SynthSeg input)"})
    for v in vols:
        flags = sorted({f for q in _read_tsv(v).get("qc", pd.Series(dtype=str)).dropna()
                        for f in str(q).split(";") if f})
        rows.append({"modality": f"T1w ({_label(v, ('ses',)) if '_ses-' in v.name else 'anat'})",
                     "status": "flag" if flags else "pass",
                     "details": ("flags: " + ", ".join(flags)) if flags else
                     "no automated flag; inspect the atlas contours"})
    for png in t1_png:
        tag = png_file_tag(png, f"T1w with the warped atlas contours, {png.name}")
        t1_figs.append(tag) if tag else t1_notes.append(f"{png.name} is not a readable PNG.")
    if vols and not t1_png:
        t1_notes.append("No T1w QC figure: the structural inputs were a segmentation "
                        "(aseg/SynthSeg/dseg), not a T1w registered here, so there is no "
                        "registration to show.")
    # functional
    motions = out.motion
    if not motions:
        rows.append({"modality": "BOLD (functional)", "status": "missing",
                     "details": "no functional QC: the functional family did not run for "
                                "this participant (no preprocessed BOLD input)"})
    for m in motions:
        qc = _read_json(m, "functional QC")
        reasons = [str(r) for r in qc.get("exclusion_reasons") or []]
        mean_fd = (f"mean FD {_float(qc['mean_fd']):.3f} mm" if _finite(qc.get("mean_fd"))
                   else "mean FD n/a")
        rows.append({"modality": f"BOLD ({_label(m)})",
                     "status": "flag" if qc.get("exclude") else "pass",
                     "details": (_exclusion(qc.get("qc_reason"), reasons) if
                                 qc.get("exclude") else
                                 f"{mean_fd}, {qc.get('pct_scrubbed', 'n/a')}% scrubbed")})
        tag, caption = _fd_trace(m, qc)
        if tag:
            fd_figs.append(tag)
        fd_notes.append(f"{_label(m)}: {caption}")
    bold_figs: list[str] = []
    bold_notes: list[str] = []
    for m in motions:
        tag, caption = _bold_mean_figure(m)
        if tag:
            bold_figs.append(tag)
        bold_notes.append(caption)
    # PET
    pets, pet_png = out.pet, out.figure("pet")
    if not pets:
        rows.append({"modality": "PET/SPECT", "status": "missing",
                     "details": "no PET/SPECT outputs: the PET family did not run for this "
                                "participant (no pet/ input)"})
    for p in pets:
        table = _read_tsv(p)
        main = table[table["region"].astype(str).isin(PET_REGIONS)
                     & table["measure"].astype(str).isin(["SBR", "BPND", "SUVR"])]
        bad = main[~main["value"].map(_finite)]
        neg = main[main["value"].map(_finite) & (main["value"].astype(float) <= 0)
                   & (main["measure"] != "SUVR")]
        details = []
        if len(bad):
            details.append(f"{len(bad)} striatal value(s) undefined")
        if len(neg):
            details.append(f"{len(neg)} striatal binding value(s) <= 0")
        rows.append({"modality": f"PET ({_label(p)})", "status": "flag" if details else "pass",
                     "details": "; ".join(details) or "striatal values defined and positive; "
                     "inspect the ROIs"})
    for png in pet_png:
        tag = png_file_tag(png, f"PET with the striatal ROIs, {png.name}")
        pet_figs.append(tag) if tag else pet_notes.append(f"{png.name} is not a readable PNG.")
    if pets and not pet_png:
        pet_notes.append("No PET QC figure was written.")
    flagged = [r["modality"] for r in rows if r["status"] == "flag"]
    present = [r for r in rows if r["status"] != "missing"]
    overall = "flag" if flagged else ("pass" if present else "missing")
    text = ("Quality control per modality. " + (
        f"FLAGGED: {', '.join(flagged)}." if flagged else
        "No automated flag." if present else "No modality has outputs for this participant."))
    sections = [Section("Quality control", anchor="qc", text=text, table=pd.DataFrame(rows),
                        status=overall, notes=[
                            "Registration overlays: the T1w figure shows the atlas warped "
                            "onto the T1w (its registration); the PET figure shows the PET "
                            "in MNI space with the atlas ROIs."] if vols or pets else [])]
    for title, anchor, figs, notes, have in (
            ("QC: T1w with the warped atlas contours", "qc-t1w", t1_figs, t1_notes, vols),
            ("QC: BOLD mean with the atlas contours", "qc-bold", bold_figs, bold_notes,
             motions),
            ("QC: framewise displacement", "qc-fd", fd_figs, fd_notes, motions),
            ("QC: PET with the striatal ROIs", "qc-pet", pet_figs, pet_notes, pets)):
        if have:
            sections.append(Section(title, anchor=anchor, figures=figs, notes=notes,
                                    status=None if figs else "missing",
                                    text="" if figs else "No figure: see below."))
    return sections


# --------------------------------------------------------------------------- normative z


def _manifest(root: Path) -> dict[str, dict[str, Any]]:
    path = root / "group" / "tables.json"
    if not path.is_file():
        return {}
    tables = _read_json(path, "group tables manifest").get("tables") or []
    return {str(t["name"]): dict(t) for t in tables if isinstance(t, Mapping) and "name" in t}


class _Normative:
    """One participant's normative z per group table, with the model's calibration."""

    def __init__(self, root: Path, participant: str, load: bool = True) -> None:
        self.stats = root / "group" / "stats"
        self.manifest: dict[str, dict[str, Any]] = {}
        self.z: dict[str, dict[str, float]] = {}
        self.scored: dict[str, str] = {}
        self.summary: dict[str, dict[str, Any]] = {}
        self.absent: dict[str, str] = {}
        if not load or not self.stats.is_dir():
            return
        self.manifest = _manifest(root)
        for folder in sorted(p for p in self.stats.iterdir() if p.is_dir()):
            name = folder.name
            summ = (_read_json(folder / "summary.json", "statistics summary")
                    if (folder / "summary.json").is_file() else {})
            norm = (summ.get("analyses") or {}).get("normative") or summ.get("normative")
            self.summary[name] = dict(norm) if isinstance(norm, Mapping) else {}
            path = folder / "normative_z.tsv"
            if not path.is_file():
                self.absent[name] = (f"failed: {self.summary[name].get('error')}"
                                     if self.summary[name].get("status") == "failed"
                                     else "not run")
                continue
            table = _read_tsv(path)
            rows = table[table["participant_id"].astype(str) == participant]
            if rows.empty:
                self.absent[name] = "this participant is not in the table"
                continue
            row = rows.iloc[0]
            self.scored[name] = str(row.get("scored"))
            skip = {"participant_id", "group", "scored", "n_extreme"}
            self.z[name] = {str(c): float(row[c]) for c in table.columns
                            if c not in skip and _finite(row[c])}

    def family_z(self, family: str) -> dict[str, float]:
        """Feature -> z over this family's tables (the first table naming a feature wins)."""
        out: dict[str, float] = {}
        for name, z in self.z.items():
            if (self.manifest.get(name) or {}).get("family") == family:
                for k, v in z.items():
                    out.setdefault(k, v)
        return out


def _percentile(z: float) -> float:
    return 50.0 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _where_sits(norm: _Normative, out: _Outputs) -> list[Section]:
    import pandas as pd

    title = "Where this person sits"
    if not norm.stats.is_dir():
        return [Section(title, anchor="normative", status="missing", text=(
            "The group level has not run on these outputs (no group/stats folder), so there "
            "is no normative model to place this person against."), notes=[DISCLAIMER])]
    if not norm.z:
        why = "; ".join(f"{k}: {v}" for k, v in sorted(norm.absent.items())) or "no tables"
        failed = any(v.startswith("failed") for v in norm.absent.values())
        return [Section(title, anchor="normative", status="failed" if failed else "missing",
                        text=("No normative z-score for this participant. Per table: "
                              f"{why}."), notes=[DISCLAIMER])]
    points = [(f"{name}: {feat}", z) for name, zs in norm.z.items() for feat, z in zs.items()]
    points.sort(key=lambda p: -abs(p[1]))
    shown = points[:40]
    lim, ticks = nice_limit(max([3.0, *(abs(z) for _, z in shown)]))
    with figure(7.0, 0.9 + 0.24 * len(shown)) as fig:
        ax = fig.add_subplot()
        ax.axvspan(-BAND_Z, BAND_Z, color=PALETTE["band"], lw=0,
                   label=f"reference band, |z| < {BAND_Z:g}")
        ax.axvline(0, color="#888888", lw=0.8)
        ys = list(range(len(shown)))[::-1]
        ax.scatter([z for _, z in shown], ys, color=[
            PALETTE["flag"] if abs(z) > BAND_Z else PALETTE["primary"] for _, z in shown],
            zorder=3, s=22)
        ax.set_yticks(ys, [label for label, _ in shown])
        ax.set_ylim(-0.7, len(shown) - 0.3)
        ax.set_xlim(-lim, lim)
        ax.set_xticks(ticks)
        ax.set_xlabel("normative z (0: as expected for age, sex and site)")
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
        tag = img_tag(fig, "normative z-scores of this participant on one axis")
    rows: list[dict[str, Any]] = []
    for name in sorted(norm.z):
        summ = norm.summary.get(name, {})
        cal = (summ.get("control_calibration") or {}).get("all") or {}
        small = bool(summ.get("small_reference"))
        rows.append({"table": name, "scored": norm.scored.get(name, "n/a"),
                     "features": len(norm.z[name]),
                     "calibration": ("SMALL REFERENCE: the z-scores are uncertain" if small
                                     else "reference large enough"),
                     "control z SD (nominal 1)": cal.get("sd"),
                     "controls |z|>2 (nominal 0.046)": cal.get("frac_extreme")})
    caption = (
        "Each point is one marker's deviation from what the normative model, fitted on the "
        "control participants, expects for this person's age, sex and site. z = 0 is the "
        f"expected value; the shaded band, |z| < {BAND_Z:g}, holds about 95% of the "
        "reference; z = -2 means lower than about 98% of the reference. Points outside the "
        "band are coloured. Many markers are shown, so a few points outside the band are "
        "expected by chance."
    )
    notes = [f"{len(points) - len(shown)} more marker(s) in normative_z.tsv."
             ] if len(points) > len(shown) else []
    notes.append("This is a research measurement, not a diagnosis. " + DISCLAIMER)
    small_refs = [str(r["table"]) for r in rows if str(r["calibration"]).startswith("SMALL")]
    status = "flag" if small_refs else None
    text = caption + ("\n\nCalibration: the reference of " + ", ".join(small_refs)
                      + " is small (too few controls for a stable model); read those "
                      "z-scores as rough." if small_refs else "")
    if norm.absent:
        text += "\n\nNot available: " + "; ".join(f"{k}: {v}" for k, v in
                                                  sorted(norm.absent.items())) + "."
    return [Section(title, anchor="normative", text=text, figures=[tag],
                    table=pd.DataFrame(rows), notes=notes, status=status)]


# --------------------------------------------------------------------------- structural


def _structural(out: _Outputs, norm: _Normative) -> list[Section]:
    vols = out.volumes
    if not vols:
        return [Section("Structural: regional volumes", anchor="structural", status="missing",
                        text="No regional volumes for this participant: the structural "
                             "family found no T1w, aseg, SynthSeg or dseg input.")]
    z = norm.family_z("structural")
    sections: list[Section] = []
    for v in vols:
        table = _read_tsv(v)
        side = _sidecar(v)
        cols = [c for c in ("region", "hemisphere", "volume_mm3", "gm_volume_mm3", "qc")
                if c in table.columns]
        show = table[cols].copy()
        has_z = bool(z) and show["region"].astype(str).isin(list(z)).any()
        if has_z:
            show["normative z"] = [z.get(str(r), float("nan")) for r in show["region"]]
            show["percentile"] = [_percentile(x) if _finite(x) else float("nan")
                                  for x in show["normative z"]]
        icv = side.get("ICV") or {}
        text = (f"Method: {side.get('Method', 'n/a')}. ICV: "
                + (f"{_float(icv['Value_mm3']) / 1e3:.0f} cm3 ({icv.get('Method', 'n/a')})."
                   if isinstance(icv, Mapping) and _finite(icv.get("Value_mm3")) else "n/a."))
        notes = [str(side["Note"])] if side.get("Note") else []
        notes.append("Percentile: the share of the reference (controls of the same age, sex "
                     "and site) expected below this volume, from the normative z."
                     if has_z else "No percentile: no normative model of the volumes "
                     "includes this participant (the group level did not run it, or it "
                     "failed; see 'Where this person sits').")
        sections.append(Section(f"Structural: regional volumes ({v.name.split('_desc-')[0]})",
                                anchor="structural" if not sections else "", text=text,
                                table=show, notes=notes))
    return sections


# --------------------------------------------------------------------------- functional


def _block(names: Sequence[str], pairs: Sequence[tuple[str, str]]) -> tuple[list[int], ...]:
    index = {n: i for i, n in enumerate(names)}
    rows = sorted({index[a] for a, b in pairs if a in index and b in index})
    cols = sorted({index[b] for a, b in pairs if a in index and b in index})
    return rows, cols


def _matrix_figure(conn: Any, title: str) -> str:
    import numpy as np
    from matplotlib.patches import Rectangle

    from danemap.atlas import NETWORKS

    names = [str(c) for c in conn.columns]
    mat = conn.to_numpy(float)
    colours = {"frontostriatal": PALETTE["primary"], "lc_pfc": PALETTE["secondary"]}
    with figure(6.6, 5.8) as fig:
        ax = fig.add_subplot()
        shown = np.where(np.eye(len(names), dtype=bool), np.nan, mat)
        im = ax.imshow(shown, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        for net in OUTLINED_NETWORKS:
            rows, cols = _block(names, NETWORKS.get(net, ()))
            if not rows or not cols:
                continue
            for r0, r1, c0, c1 in ((rows[0], rows[-1], cols[0], cols[-1]),
                                   (cols[0], cols[-1], rows[0], rows[-1])):
                ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0 + 1, r1 - r0 + 1,
                                       fill=False, lw=2, ec=colours[net],
                                       label=net if (r0, c0) == (rows[0], cols[0]) else None))
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
        cbar = fig.colorbar(im, ax=ax, shrink=0.7, ticks=[-1, -0.5, 0, 0.5, 1])
        cbar.set_label("correlation r")
        ax.set_title(title)
        return img_tag(fig, f"connectivity matrix, {title}")


def _functional(out: _Outputs, norm: _Normative) -> list[Section]:
    nets = out.networks
    if not nets:
        return [Section("Functional: DA/NE connectivity", anchor="functional", status="missing",
                        text="No functional outputs for this participant: the functional "
                             "family found no preprocessed BOLD run (fMRIPrep) or time "
                             "series.")]
    z = norm.family_z("functional")
    sections: list[Section] = []
    for n in nets:
        stem = n.name.replace("_desc-networks_stats.tsv", "")
        table = _read_tsv(n)
        cols = [c for c in ("network", "mean_z", "mean_r", "n_edges", "n_edges_planned",
                            "dropped_edges", "small_regions") if c in table.columns]
        show = table[cols].copy()
        if z and show["network"].astype(str).isin(list(z)).any():
            show["normative z"] = [z.get(str(r), float("nan")) for r in show["network"]]
        figures, notes = [], []
        conn_path = n.with_name(f"{stem}_desc-corr_connectivity.tsv")
        if conn_path.is_file():
            conn = _read_tsv(conn_path).set_index("region")
            figures.append(_matrix_figure(conn, _label(n)))
            notes.append("Outlined: the frontostriatal (PFC x striatum) and LC-PFC blocks "
                         "of the network scores (each is drawn in both triangles; the "
                         "networks pair regions of the same hemisphere). Grey: undefined.")
        else:
            notes.append(f"No correlation matrix ({conn_path.name} is missing).")
        dropped = table[table.get("n_edges_dropped", 0).fillna(0).astype(float) > 0] \
            if "n_edges_dropped" in table.columns else table.iloc[:0]
        if len(dropped):
            notes.append("Edges dropped (empty regions at this resolution): "
                         + "; ".join(f"{r.network}: {r.dropped_edges}"
                                     for r in dropped.itertuples()))
        sections.append(Section(
            f"Functional: DA/NE connectivity ({_label(n)})",
            anchor="functional" if not sections else "",
            text="Network scores: the mean Fisher z of the correlation over each network's "
                 "region pairs.", table=show, figures=figures, notes=notes))
    return sections


# --------------------------------------------------------------------------- PET


def _pet_figure(table: Any, measure: str, title: str) -> str | None:
    import numpy as np

    methods = [m for m in ("uncorrected", "gtm", "rbv") if m in set(table["method"])]
    regions = [r for r in PET_REGIONS if r in set(table["region"])]
    if not methods or not regions:
        return None
    hemis = [h for h in ("L", "R") if h in set(table["hemisphere"].astype(str))] or \
        ["bilateral"]
    colours = [PALETTE["primary"], PALETTE["secondary"], PALETTE["pass"]]
    with figure(7.4, 3.2) as fig:
        ax, ax2 = fig.subplots(1, 2, width_ratios=[3, 1.4])
        labels = [f"{r.replace('_', ' ')} {h}" for r in regions for h in hemis]
        x = np.arange(len(labels))
        w = 0.8 / len(methods)
        for k, m in enumerate(methods):
            vals = []
            for r in regions:
                for h in hemis:
                    sel = table[(table["region"] == r) & (table["hemisphere"].astype(str) == h)
                                & (table["measure"] == measure) & (table["method"] == m)]
                    vals.append(float(sel["value"].iloc[0]) if len(sel) else np.nan)
            ax.bar(x + (k - (len(methods) - 1) / 2) * w, vals, w, color=colours[k], label=m)
        ax.set_xticks(x, labels, rotation=45, ha="right")
        ax.set_ylabel(measure)
        ax.legend(frameon=False)
        ax.set_title(title)
        asym = table[(table["measure"] == "asymmetry_index") & table["region"].isin(regions)]
        if len(asym):
            x2 = np.arange(len(regions))
            for k, m in enumerate(methods):
                vals = [float(asym[(asym["region"] == r) & (asym["method"] == m)]["value"]
                              .iloc[0]) if len(asym[(asym["region"] == r)
                                                    & (asym["method"] == m)]) else np.nan
                        for r in regions]
                ax2.bar(x2 + (k - (len(methods) - 1) / 2) * w, vals, w, color=colours[k])
            ax2.axhline(0, color="#888888", lw=0.8)
            ax2.set_xticks(x2, [r.replace("_", " ") for r in regions], rotation=45, ha="right")
            ax2.set_title("asymmetry index")
        else:
            ax2.set_axis_off()
            ax2.text(0.5, 0.5, "no asymmetry\nin the outputs", ha="center", va="center",
                     transform=ax2.transAxes)
        return img_tag(fig, f"striatal {measure} bar chart, {title}")


def _tac_figure(path: Path) -> str:
    table = _read_tsv(path)
    mid = (table["frame_start_min"] + table["frame_end_min"]) / 2
    regions = [c for c in table.columns if c not in ("frame_start_min", "frame_end_min")]
    with figure(6.4, 3.2) as fig:
        ax = fig.add_subplot()
        for r in regions:
            ax.plot(mid, table[r], marker="o", ms=3, lw=1.2, label=r)
        ax.set_xlabel("time after injection (min)")
        ax.set_ylabel("activity (image units)")
        ax.legend(frameon=False, fontsize=7, ncol=2)
        ax.set_title(f"Regional TACs, {_label(path)}")
        return img_tag(fig, f"time-activity curves, {path.name}")


#: The regions (atlas name stems) whose fitted curves are drawn, in panel order.
FIT_REGIONS = ("Caudate", "Putamen", "NAcc")
#: At most this many fit panels.
MAX_FIT_PANELS = 6


def fits_path(tacs: Path) -> Path:
    """Return the fitted-curves file the PET family writes beside a TACs file."""
    return tacs.with_name(tacs.name.replace("_tacs.tsv", "_desc-fits_tacs.tsv"))


def _fit_figure(tacs_path: Path, fits_file: Path) -> tuple[str | None, str]:
    """Draw the measured TAC points with the fitted model curves, one panel per region."""
    tacs = _read_tsv(tacs_path)
    fits = _read_tsv(fits_file)
    missing = [c for c in ("frame_start_min", "frame_end_min") if c not in tacs.columns]
    if missing:
        raise InputError(f"{tacs_path}: expected the columns frame_start_min and "
                         f"frame_end_min, found {list(tacs.columns)[:8]}")
    mid = (tacs["frame_start_min"] + tacs["frame_end_min"]) / 2
    fmid = fits["frame_mid_min"] if "frame_mid_min" in fits.columns else \
        (fits["frame_start_min"] + fits["frame_end_min"]) / 2
    curves: dict[str, list[str]] = {}
    for col in fits.columns:
        if "__" in col:
            region, model = col.rsplit("__", 1)
            curves.setdefault(region, []).append(model)
    fitted = [r for r in curves if r in tacs.columns]
    order = [r for stem in FIT_REGIONS for r in fitted if r.rsplit("_", 1)[0] == stem]
    regions = (order or fitted)[:MAX_FIT_PANELS]
    if not regions:
        return None, (f"No fitted curves drawn: {fits_file.name} has no <region>__<model> "
                      f"column of a region of {tacs_path.name}.")
    ref = next((c for c in tacs.columns if str(c).startswith("reference")), None)
    ncol = min(3, len(regions))
    nrow = math.ceil(len(regions) / ncol)
    colours = [PALETTE["primary"], PALETTE["secondary"], PALETTE["pass"]]
    with figure(3.0 * ncol + 0.6, 2.6 * nrow + 0.9) as fig:
        axes = fig.subplots(nrow, ncol, squeeze=False)
        for k, ax in enumerate(axes.ravel()):
            if k >= len(regions):
                ax.set_axis_off()
                continue
            r = regions[k]
            if ref is not None:
                ax.plot(mid, tacs[ref], "s", ms=3, color=PALETTE["missing"],
                        label=f"{ref} (measured)")
            ax.plot(mid, tacs[r], "o", ms=4, color=PALETTE["text"], label="measured")
            for j, model in enumerate(curves[r]):
                ax.plot(fmid, fits[f"{r}__{model}"], ("-", "--", ":")[j % 3], lw=1.6,
                        color=colours[j % len(colours)], label=f"{model.upper()} fit")
            ax.set_title(r)
            ax.set_xlabel("time after injection (min)")
            if k % ncol == 0:
                ax.set_ylabel("activity (image units)")
        handles, names = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, names, loc="outside lower center", ncol=len(names),
                   frameon=False)
        fig.suptitle(f"Kinetic model fits over the TACs, {_label(tacs_path)}")
        tag = img_tag(fig, f"kinetic model fits over the time-activity curves, "
                           f"{tacs_path.name}")
    models = sorted({m.upper() for r in regions for m in curves[r]})
    return tag, (f"Fitted curves ({', '.join(models)}; from {fits_file.name}) over the "
                 f"measured frame means of {', '.join(regions)}; the grey squares are the "
                 "reference region. Logan's plot has no model TAC, so it has no curve.")


def _pet(out: _Outputs, norm: _Normative) -> list[Section]:
    import pandas as pd

    pets = out.pet
    if not pets:
        return [Section("PET/SPECT: striatal binding", anchor="pet", status="missing",
                        text="No PET/SPECT outputs for this participant: the PET family "
                             "found no pet/ image.")]
    sections: list[Section] = []
    for p in pets:
        table = _read_tsv(p)
        side = _sidecar(p)
        measures = set(table["measure"].astype(str))
        measure = next((m for m in ("SBR", "BPND", "SUVR") if m in measures), None)
        figures, notes = [], []
        if measure is not None:
            fig = _pet_figure(table, measure, _label(p))
            if fig:
                figures.append(fig)
        if not figures:
            notes.append("No striatal bar chart: the table has none of "
                         f"{', '.join(PET_REGIONS)} with SBR, BPND or SUVR.")
        wide = table.pivot_table(index=["region", "hemisphere"], columns=["measure", "method"],
                                 values="value", aggfunc="first", sort=False)
        wide.columns = [f"{m} ({meth})" for m, meth in wide.columns]
        wide = wide.reset_index()
        stem = p.name.split("_atlas-")[0]
        tac_files = [t for t in sorted(p.parent.glob(f"{stem}*_tacs.tsv"))
                     if "_desc-fits_" not in t.name]
        for tac in tac_files:
            figures.append(_tac_figure(tac))
            fit_file = fits_path(tac)
            if fit_file.is_file():
                try:
                    tag, caption = _fit_figure(tac, fit_file)
                except (DanemapError, OSError, KeyError, ValueError) as exc:
                    tag, caption = None, f"The fit figure could not be drawn: {exc}"
                if tag:
                    figures.append(tag)
                notes.append(caption)
            else:
                notes.append(f"No fitted curves: {fit_file.name} is missing (outputs of a "
                             "danemap version that wrote only the TACs and the fitted "
                             "BPND/R1); the kinetic results are the BPND/R1 values in the "
                             "table.")
        if not tac_files:
            notes.append("Static image: no time-activity curves (a dynamic series writes "
                         "_tacs.tsv).")
        psf = side.get("PSF_FWHM_mm")
        text = (f"Tracer {side.get('TracerName', 'n/a')}, reference region "
                f"{side.get('Reference', 'n/a')}, partial-volume correction "
                f"{side.get('PVC', 'none')}" + (f" (PSF {_float(psf):g} mm FWHM)"
                                                 if _finite(psf) else "") + ".")
        z = norm.family_z("pet")
        if z:
            notes.append("Normative z of the PET markers: " + ", ".join(
                f"{k} {v:+.2f}" for k, v in sorted(z.items())) + ".")
        sections.append(Section(f"PET/SPECT: striatal binding ({_label(p)})",
                                anchor="pet" if not sections else "", text=text,
                                table=pd.DataFrame(wide), figures=figures, notes=notes))
    return sections


# --------------------------------------------------------------------------- task


def _task(out: _Outputs) -> list[Section]:
    paths = out.contrasts
    if not paths:
        return [Section("Task fMRI: reward anticipation (MID)", anchor="task", status="missing",
                        text="No task-fMRI contrasts for this participant: the dataset has "
                             "no MID task run for them (or the task family did not run).")]
    sections: list[Section] = []
    for p in paths:
        table = _read_tsv(p)
        vs = table[table["region"].astype(str).str.startswith("NAcc")]
        show = vs if len(vs) else table
        cols = [c for c in ("contrast", "region", "effect", "t", "dof", "n_runs")
                if c in show.columns]
        sections.append(Section(
            f"Task fMRI: ventral striatum contrasts ({_label(p)})",
            anchor="task" if not sections else "", table=show[cols],
            text=("Ventral striatum (NAcc) contrasts of the first-level model, fixed effects "
                  "over runs." if len(vs) else "No NAcc region in the contrasts table; every "
                  "region is shown."), notes=[f"Every region is in {p.name}."]))
    return sections


# --------------------------------------------------------------------------- public API


def _provenance(root: Path) -> list[str]:
    desc_path = root / "dataset_description.json"
    if not desc_path.is_file():
        return ["No dataset_description.json: the version and configuration hash of the "
                "participant level are unknown."]
    desc = _read_json(desc_path, "dataset description")
    gen = next((g for g in desc.get("GeneratedBy") or [] if isinstance(g, Mapping)
                and g.get("Name") == "danemap"), {})
    when = _dt.datetime.fromtimestamp(desc_path.stat().st_mtime, tz=_dt.UTC)
    return [f"Outputs written by danemap {gen.get('Version', 'n/a')} on "
            f"{when:%Y-%m-%d %H:%M} UTC; configuration hash {gen.get('ConfigHash', 'n/a')}.",
            f"Report generated {_dt.datetime.now(tz=_dt.UTC):%Y-%m-%d %H:%M} UTC from "
            "the outputs alone."]


def write_participant_report(root: str | Path, participant: str) -> Path:
    """Write ``root/sub-XX.html`` from one participant's outputs (nothing recomputed).

    Parameters
    ----------
    root : path-like
        The derivatives folder (``OUT/danemap``).
    participant : str
        Participant label, ``sub-01`` or ``01``.

    Returns
    -------
    pathlib.Path
        The report.

    Raises
    ------
    InputError
        If ``participant`` is not a valid label, or the participant has neither an output
        folder nor a row in ``logs/participant_status.tsv``.
    """
    root = Path(root)
    sub = participant if str(participant).startswith("sub-") else f"sub-{participant}"
    if not _SUB.match(sub):
        raise InputError(f"participant report: {participant!r} is not a participant label "
                         "(expected sub-<alphanumeric> or <alphanumeric>)")
    out = _Outputs(root, sub)
    status = _status_row(root, sub)
    if not out.dir.is_dir() and status is None:
        raise InputError(f"participant report: {root} has no folder {sub}/ and "
                         "logs/participant_status.tsv has no row for it")
    sections = _guard("Participant and inputs", "header", lambda: _header(out, status))
    where = "Where this person sits"
    try:
        use = _Normative(root, sub)
        where_sections = _guard(where, "normative", lambda: _where_sits(use, out))
    except (DanemapError, OSError, KeyError, ValueError) as exc:
        log.warning("participant report: %s: %s", where, exc)
        use = _Normative(root, sub, load=False)
        where_sections = [Section(where, anchor="normative", status="failed",
                                  text=f"The group statistics could not be read: {exc}",
                                  notes=[DISCLAIMER])]
    sections += _guard("Quality control", "qc", lambda: _qc(out))
    sections += _guard("Structural: regional volumes", "structural",
                       lambda: _structural(out, use))
    sections += _guard("Functional: DA/NE connectivity", "functional",
                       lambda: _functional(out, use))
    sections += _guard("PET/SPECT: striatal binding", "pet", lambda: _pet(out, use))
    sections += _guard("Task fMRI: reward anticipation (MID)", "task", lambda: _task(out))
    sections += where_sections
    return write_report(root / f"{sub}.html", f"danemap participant report: {sub}", sections,
                        subtitle=str(root), meta=_provenance(root))


def _participants(root: Path) -> list[str]:
    subs = {p.name for p in root.glob("sub-*") if p.is_dir() and _SUB.match(p.name)}
    status = root / "logs" / "participant_status.tsv"
    if status.is_file():
        subs |= {str(s) for s in _read_tsv(status)["participant_id"].dropna()
                 if _SUB.match(str(s))}
    return sorted(subs)


def write_participant_reports(root: str | Path, n_jobs: int = 1) -> list[Path]:
    """Write the report of every participant under ``root`` (``OUT/danemap``).

    Parameters
    ----------
    root : path-like
        The derivatives folder; its ``sub-*`` folders and the participants of
        ``logs/participant_status.tsv`` (a failed participant may have no folder) get one
        report each.
    n_jobs : int
        Reports written at once, in worker processes (:func:`danemap.engine.run_many`).

    Returns
    -------
    list of pathlib.Path
        The reports, in participant order.

    Raises
    ------
    InputError
        If ``root`` holds no participant at all.
    DanemapError
        If a participant's report failed; the others are written first.
    """
    import functools

    from danemap.engine import run_many

    root = Path(root)
    subs = _participants(root)
    if not subs:
        raise InputError(f"participant reports: {root} has no sub-* folder and no "
                         "logs/participant_status.tsv row: expected the participant level's "
                         "outputs (OUT/danemap)")
    outcomes = run_many(functools.partial(write_participant_report, root), subs,
                        n_jobs=n_jobs, description="participant reports", verbose=False)
    failed = [o for o in outcomes if o.status != "ok"]  # run_many logged each traceback
    if failed:  # one broken participant's report does not stop the others'
        raise DanemapError("participant reports failed for "
                           + "; ".join(f"{o.item}: {o.error}" for o in failed))
    paths = [Path(o.result) for o in outcomes]
    for k, path in enumerate(paths, 1):
        log.info("participant report %d/%d: %s", k, len(paths), path)
    return paths
