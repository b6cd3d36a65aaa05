"""Readers of existing segmentation outputs, each returning a :class:`VolumeSet`.

* :func:`read_aseg_stats`: FreeSurfer's or FastSurfer's ``stats/aseg.stats``;
* :func:`read_synthseg_table` / :func:`read_synthseg_volumes`: a SynthSeg ``--vol`` CSV
  (version 1, version 2, with or without ``--parc``);
* :func:`read_dseg`: a ``*_dseg.nii[.gz]`` label image with a lookup table;
* :func:`read_volumes`: any of them, by file type.

Every reader is strict: a malformed file raises :class:`~danemap.errors.InputError`
naming the file, the line (text files) or column, what was expected and what was found.
Discovery (finding the files) is :mod:`danemap.io`'s.

Design choices
--------------
* ``aseg.stats``: the volume is ``Volume_mm3``, which ``mri_segstats --pv`` corrects for
  partial volume, so it is not ``NVoxels`` x voxel volume. The ICV is the measure *named*
  ``EstimatedTotalIntraCranialVol`` (eTIV); the ``BrainSegVol-to-eTIV`` and
  ``MaskVol-to-eTIV`` ratios also contain "eTIV" and are not it. The other global
  measures go to the provenance, not the table.
* FreeSurfer or FastSurfer is told from the header: FastSurfer's ``segstats.py`` writes
  ``# generating_program segstats.py`` and ``# FastSurfer_version``; a FreeSurfer
  ``mri_segstats`` run by FastSurfer's pipeline is recognised by its command line
  (``FastSurfer``, ``aseg+DKT``, ``.deep.``).
* SynthSeg 2 writes ``total intracranial`` (the ICV: the sum of every segmented label,
  CSF included) and ``csf``; SynthSeg 1 writes neither, so its ICV is missing and every
  row carries the ``icv_missing`` QC flag. A table with one of the two is an error.
* A dseg has no ICV by any documented rule (an aseg label image has no extra-cerebral
  CSF), so ``icv_mm3`` is None and every row is flagged ``icv_missing``. Labels that are
  not in the lookup table become ``label-<n>`` rows flagged ``unknown_label`` (and
  logged), never dropped.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from danemap._utils.logging import get_logger
from danemap.errors import InputError
from danemap.markers.structural._lut import (
    ASEG_LUT,
    ENIGMA_FREESURFER,
    ENIGMA_SYNTHSEG,
    enigma_name,
    hemisphere,
)
from danemap.markers.structural._volumes import VOLUME_COLUMNS, VolumeSet

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = [
    "ENIGMA_FREESURFER",
    "ENIGMA_SYNTHSEG",
    "ICV_MISSING",
    "UNKNOWN_LABEL",
    "read_aseg_stats",
    "read_dseg",
    "read_lut",
    "read_synthseg_table",
    "read_synthseg_volumes",
    "read_volumes",
]

log = get_logger("structural")

#: QC flag of a row whose VolumeSet has no ICV (SynthSeg 1, dseg, aseg.stats without eTIV).
ICV_MISSING = "icv_missing"
#: QC flag of a dseg label that the lookup table does not name.
UNKNOWN_LABEL = "unknown_label"

_PathLike = str | os.PathLike[str]


def _read_lines(p: Path) -> list[str]:
    if not p.exists():
        raise InputError(f"{p}: file not found")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, expected a text file")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise InputError(f"{p}: cannot be read ({exc.strerror or exc})") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # hostnames/user names in old headers
    return text.splitlines()


def _number(p: Path, where: str, what: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
        ok = False
    else:
        ok = math.isfinite(value)
    if not ok:
        raise InputError(f"{p}: {where}: {what}: expected a finite number, found {text!r}")
    return value


def _integer(p: Path, where: str, what: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{p}: {where}: {what}: expected an integer, found "
                         f"{text!r}") from None


def _table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    df = pd.DataFrame(rows, columns=list(VOLUME_COLUMNS))
    df["volume_mm3"] = df["volume_mm3"].astype("float64")
    return df


def _row(region: str, volume: float, method: str, enigma: str = "",
         qc: list[str] | None = None) -> dict[str, Any]:
    return {"region": region, "hemisphere": hemisphere(region), "volume_mm3": float(volume),
            "method": method, "enigma": enigma, "qc": ";".join(qc or [])}


# --------------------------------------------------------------------------- aseg.stats

_ASEG_TITLE = "Title Segmentation Statistics"
_ICV_MEASURE = "EstimatedTotalIntraCranialVol"
_REQUIRED_COLUMNS = ("SegId", "NVoxels", "Volume_mm3", "StructName")
_HEADER_KEYS = ("generating_program", "cvs_version", "FastSurfer_version", "cmdline",
                "creation_time", "sysname", "hostname", "machine", "user", "anatomy_type",
                "SUBJECTS_DIR", "subjectname", "SegVolFile", "ColorTable", "InVolFile",
                "PVVolFile", "ExcludeSegId")
_FASTSURFER_CMDLINE = re.compile(r"fastsurfer|aseg\+dkt|\.deep\.|aseg\.auto_nocc", re.I)


def _aseg_method(p: Path, header: dict[str, str]) -> str:
    program = header.get("generating_program")
    if program is None:
        raise InputError(f"{p}: not a FreeSurfer/FastSurfer aseg.stats: expected a "
                         "'# generating_program' header line, found none")
    prog = Path(program.split()[0]).name if program.split() else ""
    if prog.endswith("segstats.py") or "FastSurfer_version" in header:
        return "fastsurfer-aseg"
    if prog == "mri_segstats":
        cmd = header.get("cmdline", "")
        return "fastsurfer-aseg" if _FASTSURFER_CMDLINE.search(cmd) else "freesurfer-aseg"
    raise InputError(f"{p}: '# generating_program': expected FreeSurfer's mri_segstats or "
                     f"FastSurfer's segstats.py / mri_segstats.py, found {program!r}")


def _measure(p: Path, lineno: int, body: str) -> tuple[str, dict[str, Any]]:
    parts = [x.strip() for x in body.split(",")]
    if len(parts) != 5 or not all(parts[:2]) or not parts[4]:
        raise InputError(
            f"{p}: line {lineno}: '# Measure' line: expected five comma-separated fields "
            f"(name, short name, description, value, unit), found {len(parts)}: {body!r}")
    value = _number(p, f"line {lineno}", f"measure {parts[0]!r} value", parts[3])
    return parts[0], {"short": parts[1], "description": parts[2], "value": value,
                      "unit": parts[4]}


def read_aseg_stats(path: _PathLike) -> VolumeSet:
    """Read a FreeSurfer or FastSurfer ``stats/aseg.stats`` file.

    Parameters
    ----------
    path : str or os.PathLike
        The ``aseg.stats`` file (``mri_segstats`` or FastSurfer ``segstats.py`` output).

    Returns
    -------
    VolumeSet
        One row per structure of the table, in file order: ``region`` = ``StructName``,
        ``hemisphere`` from its ``Left-``/``Right-`` prefix, ``volume_mm3`` =
        ``Volume_mm3`` (partial-volume corrected), ``enigma`` for the seven ENIGMA-ADHD
        structures (:data:`ENIGMA_FREESURFER`). ``icv_mm3`` is the eTIV measure
        (``None``, and every row flagged ``icv_missing``, when the file has none);
        ``method`` is ``"freesurfer-aseg"`` or ``"fastsurfer-aseg"`` from the header.
        ``provenance`` holds the header lines, every ``# Measure`` (name -> short
        name, description, value, unit), the voxel volume and the column headers.

    Raises
    ------
    InputError
        If the file is missing or is not an ``aseg.stats`` (no title or generating
        program), a ``# Measure`` line does not have five fields or a numeric value, a
        measure is repeated, ``# NRows``/``# NTableCols``/``# ColHeaders`` are missing or
        disagree with the table, a row has the wrong number of fields or a non-numeric
        value, a structure is repeated, or the table is empty. The message names the
        file and line.
    """
    p = Path(path)
    lines = _read_lines(p)
    header: dict[str, str] = {}
    measures: dict[str, dict[str, Any]] = {}
    nrows: tuple[int, int] | None = None  # (value, line)
    ncols: tuple[int, int] | None = None
    headers: list[str] | None = None
    voxel_volume: float | None = None
    rows: list[tuple[int, list[str]]] = []
    title = False
    for lineno, line in enumerate(lines, 1):
        s = line.strip()
        if not s:
            continue
        if not s.startswith("#"):
            if headers is None:
                raise InputError(f"{p}: line {lineno}: expected '# ColHeaders ...' before "
                                 f"the table, found the data row {s[:60]!r}")
            rows.append((lineno, s.split()))
            continue
        body = s[1:].strip()
        key, _, rest = body.partition(" ")
        rest = rest.strip()
        if not title:
            if " ".join(body.split()) != _ASEG_TITLE:
                raise InputError(f"{p}: line {lineno}: not an aseg.stats file: expected "
                                 f"'# {_ASEG_TITLE}' first, found {s[:60]!r}")
            title = True
        elif key == "Measure":
            name, m = _measure(p, lineno, rest)
            if name in measures:
                raise InputError(f"{p}: line {lineno}: measure {name!r} is repeated")
            measures[name] = m
        elif key == "NRows":
            nrows = (_integer(p, f"line {lineno}", "# NRows", rest), lineno)
        elif key == "NTableCols":
            ncols = (_integer(p, f"line {lineno}", "# NTableCols", rest), lineno)
        elif key == "VoxelVolume_mm3":
            voxel_volume = _number(p, f"line {lineno}", "# VoxelVolume_mm3", rest)
        elif key == "ColHeaders":
            if headers is not None:
                raise InputError(f"{p}: line {lineno}: a second '# ColHeaders' line")
            headers = rest.split()
        elif key in _HEADER_KEYS and key not in header:
            header[key] = rest
    if not title:
        raise InputError(f"{p}: not an aseg.stats file: expected '# {_ASEG_TITLE}', "
                         "found an empty file")
    method = _aseg_method(p, header)
    if headers is None:
        raise InputError(f"{p}: expected a '# ColHeaders' line naming the table columns, "
                         "found none")
    missing = [c for c in _REQUIRED_COLUMNS if c not in headers]
    if missing or len(set(headers)) != len(headers):
        raise InputError(f"{p}: '# ColHeaders': expected distinct columns including "
                         f"{', '.join(_REQUIRED_COLUMNS)}, found {' '.join(headers)}")
    if ncols is None:
        raise InputError(f"{p}: expected a '# NTableCols' line, found none")
    if ncols[0] != len(headers):
        raise InputError(f"{p}: line {ncols[1]}: '# NTableCols {ncols[0]}' but "
                         f"'# ColHeaders' names {len(headers)} columns")
    if nrows is None:
        raise InputError(f"{p}: expected a '# NRows' line, found none")
    if not rows:
        raise InputError(f"{p}: the structure table is empty (expected {nrows[0]} rows "
                         "after '# ColHeaders')")
    if nrows[0] != len(rows):
        raise InputError(f"{p}: line {nrows[1]}: '# NRows {nrows[0]}' but the table has "
                         f"{len(rows)} rows")

    i_name, i_vol = headers.index("StructName"), headers.index("Volume_mm3")
    numeric = [i for i, h in enumerate(headers) if h != "StructName"]
    integer = {headers.index(h) for h in ("SegId", "NVoxels", "Index") if h in headers}
    table: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    seg_ids: list[int] = []
    nvoxels: list[int] = []
    icv = measures.get(_ICV_MEASURE)
    qc = [] if icv is not None else [ICV_MISSING]
    for lineno, fields in rows:
        if len(fields) != len(headers):
            raise InputError(f"{p}: line {lineno}: expected {len(headers)} fields "
                             f"({' '.join(headers)}), found {len(fields)}")
        for i in numeric:
            where, what = f"line {lineno}", f"column {headers[i]}"
            if i in integer:
                v = _integer(p, where, what, fields[i])
                if v < 0:
                    raise InputError(f"{p}: {where}: {what}: expected a non-negative "
                                     f"integer, found {v}")
            else:
                _number(p, where, what, fields[i])
        name = fields[i_name]
        if name in seen:
            raise InputError(f"{p}: line {lineno}: structure {name!r} is repeated "
                             f"(first on line {seen[name]})")
        seen[name] = lineno
        volume = float(fields[i_vol])
        if volume < 0:
            raise InputError(f"{p}: line {lineno}: column Volume_mm3: expected a "
                             f"non-negative volume, found {volume}")
        seg_ids.append(int(fields[headers.index("SegId")]))
        nvoxels.append(int(fields[headers.index("NVoxels")]))
        table.append(_row(name, volume, method, ENIGMA_FREESURFER.get(name, ""), qc))

    icv_mm3: float | None = None
    if icv is not None:
        if icv["unit"] not in ("mm^3", "mm3"):
            raise InputError(f"{p}: measure {_ICV_MEASURE}: expected the unit mm^3, found "
                             f"{icv['unit']!r}")
        icv_mm3 = icv["value"]
        if not icv_mm3 > 0:
            raise InputError(f"{p}: measure {_ICV_MEASURE}: expected a positive volume, "
                             f"found {icv_mm3}")
    else:
        log.warning("%s: no '# Measure %s' line: the ICV is missing", p, _ICV_MEASURE)
    provenance: dict[str, object] = {
        "format": "aseg.stats", **header, "measures": measures,
        "voxel_volume_mm3": voxel_volume, "columns": headers, "seg_ids": seg_ids,
        "nvoxels": nvoxels,
    }
    return VolumeSet(table=_table(table), icv_mm3=icv_mm3,
                     icv_method="eTIV" if icv_mm3 is not None else "", method=method,
                     source=p, like_freesurfer=True, provenance=provenance)


# --------------------------------------------------------------------------- SynthSeg

_SYNTHSEG_ICV = "total intracranial"
_SYNTHSEG_CSF = "csf"
#: Column names of SynthSeg's QC-score CSV (``--qc``), which is not a volume table.
_SYNTHSEG_QC_COLUMNS = ("general white matter", "general grey matter", "general csf")
#: SynthSeg's segmentation columns (not cortical parcels), lower case.
_SYNTHSEG_SEGMENTATION = frozenset({
    *(f"{side} {s}" for side in ("left", "right") for s in (
        "cerebral white matter", "cerebral cortex", "lateral ventricle",
        "inferior lateral ventricle", "cerebellum white matter", "cerebellum cortex",
        "thalamus", "thalamus proper", "caudate", "putamen", "pallidum", "hippocampus",
        "amygdala", "accumbens area", "ventral dc")),
    "3rd ventricle", "4th ventricle", "brain-stem", "csf",
})


def _synthseg_participant(subject: str) -> str | None:
    from danemap.io import parse_entities

    sub = parse_entities(Path(subject).name).get("sub")
    return f"sub-{sub}" if sub else None


def read_synthseg_table(path: _PathLike) -> dict[str, VolumeSet]:
    """Read every row of a SynthSeg ``--vol`` CSV.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV written by ``mri_synthseg --vol`` (SynthSeg 1 or 2, with or without
        ``--parc``): a ``subject`` column (the image name) and one column per
        structure in mm3.

    Returns
    -------
    dict
        The ``subject`` value of each row -> its :class:`VolumeSet`, in file order. Each
        VolumeSet's ``provenance`` has ``participant_id`` (``sub-XX`` parsed from the
        subject, or None), ``session`` (``ses-YY`` or None), ``subject``, ``version``
        (1 or 2), ``parc`` (whether cortical parcels are present) and ``line``.
        ``method`` is ``"synthseg-2"`` (ICV = ``total intracranial``) or
        ``"synthseg-1"`` (no ICV: ``icv_mm3`` None, rows flagged ``icv_missing``). The
        rows are every volume column but ``total intracranial``, named as in the file,
        with the hemisphere from ``left``/``right``/``ctx-lh-``/``ctx-rh-`` and the
        ENIGMA names of :data:`ENIGMA_SYNTHSEG`.

    Raises
    ------
    InputError
        If the file is missing or empty, has no ``subject`` column, repeated columns or
        subjects, only one of ``total intracranial`` and ``csf``, no data rows, a row
        with the wrong number of fields, or a volume that is not a non-negative number
        (the message names the line and column); or if it is SynthSeg's QC-score CSV.
    """
    from danemap.io import parse_entities

    p = Path(path)
    lines = _read_lines(p)
    records = [(i, r) for i, r in enumerate(csv.reader(lines), 1) if any(f.strip() for f in r)]
    if not records:
        raise InputError(f"{p}: expected a SynthSeg volume CSV with a header line, found "
                         "an empty file")
    header_line, header = records[0]
    columns = [c.strip() for c in header]
    if "subject" not in columns:
        raise InputError(f"{p}: line {header_line}: not a SynthSeg volume table: expected "
                         f"a 'subject' column, found {columns[:5]}")
    dup = sorted({c for c in columns if columns.count(c) > 1})
    if dup or "" in columns:
        raise InputError(f"{p}: line {header_line}: expected distinct, non-empty column "
                         f"names, found {'repeated ' + str(dup) if dup else 'an empty one'}")
    lower = [c.lower() for c in columns]
    if any(q in lower for q in _SYNTHSEG_QC_COLUMNS):
        raise InputError(f"{p}: this is a SynthSeg QC-score table (--qc: "
                         f"{_SYNTHSEG_QC_COLUMNS[0]!r}...), expected the --vol volume table")
    has_icv, has_csf = _SYNTHSEG_ICV in lower, _SYNTHSEG_CSF in lower
    if has_icv != has_csf:
        found, absent = ((_SYNTHSEG_ICV, _SYNTHSEG_CSF) if has_icv
                         else (_SYNTHSEG_CSF, _SYNTHSEG_ICV))
        raise InputError(f"{p}: line {header_line}: a SynthSeg 2 table has both "
                         f"{_SYNTHSEG_ICV!r} and {_SYNTHSEG_CSF!r} columns and a SynthSeg 1 "
                         f"table neither; found {found!r} without {absent!r}")
    version = 2 if has_icv else 1
    method = f"synthseg-{version}"
    i_subject = columns.index("subject")
    i_icv = lower.index(_SYNTHSEG_ICV) if has_icv else None
    volume_cols = [i for i in range(len(columns)) if i not in (i_subject, i_icv)]
    if not volume_cols:
        raise InputError(f"{p}: line {header_line}: expected structure volume columns, "
                         f"found only {columns}")
    parc = any(lower[i] not in _SYNTHSEG_SEGMENTATION for i in volume_cols)
    if len(records) == 1:
        raise InputError(f"{p}: the table is empty: expected one row per image after the "
                         "header line, found none")
    out: dict[str, VolumeSet] = {}
    first_line: dict[str, int] = {}
    qc = [ICV_MISSING] if version == 1 else []
    for lineno, fields in records[1:]:
        if len(fields) != len(columns):
            raise InputError(f"{p}: line {lineno}: expected {len(columns)} fields, found "
                             f"{len(fields)}")
        subject = fields[i_subject].strip()
        if not subject:
            raise InputError(f"{p}: line {lineno}: column 'subject': expected the image "
                             "name, found an empty value")
        if subject in out:
            raise InputError(f"{p}: line {lineno}: subject {subject!r} is repeated (first "
                             f"on line {first_line[subject]})")
        values = {}
        for i in [*volume_cols, *([i_icv] if i_icv is not None else [])]:
            v = _number(p, f"line {lineno}", f"column {columns[i]!r}", fields[i].strip())
            if v < 0:
                raise InputError(f"{p}: line {lineno}: column {columns[i]!r}: expected a "
                                 f"non-negative volume, found {v}")
            values[i] = v
        table = [_row(columns[i], values[i], method,
                      ENIGMA_SYNTHSEG.get(lower[i], ""), qc) for i in volume_cols]
        icv = values[i_icv] if i_icv is not None else None
        if icv is not None and not icv > 0:
            raise InputError(f"{p}: line {lineno}: column {_SYNTHSEG_ICV!r}: expected a "
                             f"positive volume, found {icv}")
        ses = parse_entities(Path(subject).name).get("ses")
        out[subject] = VolumeSet(
            table=_table(table), icv_mm3=icv,
            icv_method="SynthSeg total intracranial" if icv is not None else "",
            method=method, source=p, like_freesurfer=True,
            provenance={"format": "synthseg-csv", "subject": subject,
                        "participant_id": _synthseg_participant(subject),
                        "session": f"ses-{ses}" if ses else None, "version": version,
                        "parc": parc, "line": lineno})
        first_line[subject] = lineno
    if version == 1:
        log.warning("%s: SynthSeg 1 table (no %r column): the ICV is missing", p,
                    _SYNTHSEG_ICV)
    return out


def _with_prefix(label: str, prefix: str) -> str:
    return label if label.startswith(f"{prefix}-") else f"{prefix}-{label}"


def read_synthseg_volumes(path: _PathLike, participant_id: str | None = None,
                          session: str | None = None) -> VolumeSet:
    """Read one participant's volumes from a SynthSeg ``--vol`` CSV.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV (see :func:`read_synthseg_table`).
    participant_id : str or None
        ``sub-01`` or ``01``: the row whose ``subject`` names this participant. None:
        the file must hold exactly one row.
    session : str or None
        ``ses-1`` or ``1``: among that participant's rows, the one of this session
        (needed only when the file holds several of the participant's images).

    Returns
    -------
    VolumeSet
        The selected row's volumes (see :func:`read_synthseg_table`).

    Raises
    ------
    InputError
        If the file is malformed (see :func:`read_synthseg_table`), or no row or more
        than one row matches the selection (the message lists the subjects).
    """
    p = Path(path)
    table = read_synthseg_table(p)
    if participant_id is None:
        if len(table) != 1:
            raise InputError(f"{p}: holds {len(table)} images ({list(table)[:5]}...): "
                             "expected a participant_id to select one")
        return next(iter(table.values()))
    pid = _with_prefix(participant_id, "sub")
    ses = _with_prefix(session, "ses") if session else None
    rows = {k: v for k, v in table.items() if v.provenance["participant_id"] == pid}
    if not rows and len(table) == 1:
        only, vs = next(iter(table.items()))
        if vs.provenance["participant_id"] is None:
            log.info("%s: its one row (subject %r) names no participant; read as %s",
                     p, only, pid)
            return vs
    if ses is not None:
        rows = {k: v for k, v in rows.items() if v.provenance["session"] in (ses, None)}
    if len(rows) != 1:
        what = "no row" if not rows else f"{len(rows)} rows ({list(rows)})"
        sel = pid + (f" {ses}" if ses else "")
        hint = "; give the session" if len(rows) > 1 and ses is None else ""
        raise InputError(f"{p}: expected one row whose subject names {sel}, found {what}"
                         f"{hint}; subjects: {list(table)[:10]}")
    return next(iter(rows.values()))


# --------------------------------------------------------------------------- dseg + LUT


def _read_freesurfer_lut(p: Path) -> dict[int, str]:
    lut: dict[int, str] = {}
    for lineno, line in enumerate(_read_lines(p), 1):
        s = line.split("#", 1)[0].strip()
        if not s:
            continue
        fields = s.split()
        if len(fields) not in (2, 6):
            raise InputError(f"{p}: line {lineno}: expected '<index> <name> R G B A' (or "
                             f"'<index> <name>'), found {len(fields)} fields: {s[:60]!r}")
        index = _integer(p, f"line {lineno}", "index", fields[0])
        for i, c in enumerate(fields[2:], 2):
            v = _integer(p, f"line {lineno}", "colour", c)
            if not 0 <= v <= 255:
                raise InputError(f"{p}: line {lineno}: field {i + 1} (colour): expected "
                                 f"0..255, found {v}")
        if index in lut:
            raise InputError(f"{p}: line {lineno}: label {index} is repeated")
        lut[index] = fields[1]
    if not lut:
        raise InputError(f"{p}: expected lookup-table lines '<index> <name> R G B A', "
                         "found none")
    return lut


def _read_dseg_tsv(p: Path) -> dict[int, str]:
    lines = _read_lines(p)
    if not lines or not lines[0].strip():
        raise InputError(f"{p}: expected a header line with 'index' and 'name' columns, "
                         "found an empty first line")
    header = [h.strip() for h in lines[0].split("\t")]
    if "index" not in header or "name" not in header:
        raise InputError(f"{p}: line 1: expected the BIDS dseg.tsv columns 'index' and "
                         f"'name', found {header}")
    ii, iname = header.index("index"), header.index("name")
    lut: dict[int, str] = {}
    for lineno, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            raise InputError(f"{p}: line {lineno}: expected {len(header)} tab-separated "
                             f"fields, found {len(fields)}")
        index = _integer(p, f"line {lineno}", "column 'index'", fields[ii].strip())
        name = fields[iname].strip()
        if not name:
            raise InputError(f"{p}: line {lineno}: column 'name': expected a name, found "
                             "an empty value")
        if index in lut:
            raise InputError(f"{p}: line {lineno}: index {index} is repeated")
        lut[index] = name
    if not lut:
        raise InputError(f"{p}: the lookup table is empty: expected rows after the header")
    return lut


def read_lut(path: _PathLike) -> dict[int, str]:
    """Read a label lookup table.

    Parameters
    ----------
    path : str or os.PathLike
        A FreeSurfer ``FreeSurferColorLUT.txt``-style file (``<index> <name> R G B A``
        lines, ``#`` comments), or a BIDS ``*_dseg.tsv`` (``.tsv``: tab-separated with
        ``index`` and ``name`` columns).

    Returns
    -------
    dict
        Label number -> name.

    Raises
    ------
    InputError
        If the file is missing, empty, or a line is malformed (named by number), or a
        label is repeated.
    """
    p = Path(path)
    return _read_dseg_tsv(p) if p.name.lower().endswith(".tsv") else _read_freesurfer_lut(p)


def _dseg_sidecar(p: Path) -> Path | None:
    """Find the BIDS ``dseg.tsv`` of a dseg image: same name, else inherited (no sub/ses)."""
    stem = p.name[:-7] if p.name.endswith(".nii.gz") else p.name[:-4]
    same = p.with_name(stem + ".tsv")
    if same.is_file():
        return same
    generic = "_".join(part for part in stem.split("_")
                       if not part.startswith(("sub-", "ses-"))) + ".tsv"
    folder = p.parent
    for _ in range(4):  # anat/ -> ses-*/ -> sub-*/ -> the derivatives root
        cand = folder / generic
        if cand.is_file():
            return cand
        if (folder / "dataset_description.json").is_file() or folder.parent == folder:
            break
        folder = folder.parent
    return None


def _label_counts(p: Path, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    if data.dtype.kind == "f":
        finite = np.isfinite(data)
        if not finite.all():
            raise InputError(f"{p}: labels must be finite integers, found "
                             f"{int((~finite).sum())} NaN/inf voxels")
        frac = data != np.round(data)
        if frac.any():
            example = float(data[frac].flat[0])
            raise InputError(f"{p}: labels must be integers, found {int(frac.sum())} "
                             f"voxels with non-integer values (e.g. {example!r}); a dseg "
                             "holds labels, not probabilities or resampled values")
        data = data.astype(np.int64)
    elif data.dtype.kind not in "iu":
        raise InputError(f"{p}: labels must be integers, found data type {data.dtype}")
    flat = data.ravel()
    if flat.size and int(flat.min()) < 0:
        raise InputError(f"{p}: labels must be non-negative, found {int(flat.min())}")
    top = int(flat.max()) if flat.size else 0
    if top <= 1 << 16:
        counts = np.bincount(flat.astype(np.intp, copy=False), minlength=1)
        labels = np.flatnonzero(counts)
        return labels, counts[labels]
    labels, counts = np.unique(flat, return_counts=True)
    return labels, counts


def read_dseg(path: _PathLike, lut: _PathLike | Mapping[int, str] | None = None,
              max_bytes: float | None = None) -> VolumeSet:
    """Read regional volumes from a label image (``*_dseg.nii[.gz]``).

    Parameters
    ----------
    path : str or os.PathLike
        A 3D integer label image, such as fMRIPrep's ``desc-aseg_dseg.nii.gz``.
    lut : str, os.PathLike, mapping or None
        The label names: a lookup-table file (see :func:`read_lut`) or a mapping label ->
        name. None: the BIDS ``.tsv`` of the image (same name, or inherited from a
        parent folder without the ``sub``/``ses`` entities), else the built-in
        FreeSurfer aseg table (:data:`~danemap.markers.structural._lut.ASEG_LUT`).
    max_bytes : float or None
        Cap on the image's declared data size (see :func:`danemap.io.load_nifti`).

    Returns
    -------
    VolumeSet
        One row per non-zero label present, in label order: ``volume_mm3`` = voxel count
        x voxel volume (the product of the header's three zooms), ``method``
        ``"dseg-lut"``, the ENIGMA names of FreeSurfer structure names. Labels the table
        does not name are rows ``label-<n>`` flagged ``unknown_label`` (and logged).
        ``icv_mm3`` is None (no documented rule gives an ICV from a label image) and
        every row is flagged ``icv_missing``. ``like_freesurfer`` is True when the table
        names FreeSurfer's ENIGMA structures. ``provenance`` has the lookup table used,
        the voxel volume, the label counts, the unknown labels and the table's labels
        absent from the image.

    Raises
    ------
    InputError
        If the header is invalid or not 3D, the labels are not integers (or are
        negative, NaN), the image holds no non-zero label, or the lookup table is
        malformed.
    """
    import numpy as np

    from danemap.io import load_nifti, load_nifti_header

    p = Path(path)
    hdr = load_nifti_header(p, expect_ndim=3, max_bytes=max_bytes)
    zooms = [float(z) for z in hdr.get_zooms()[:3]]
    voxel_volume = float(np.prod(zooms))
    if isinstance(lut, Mapping):
        names = {int(k): str(v) for k, v in lut.items()}
        lut_source = "mapping"
    elif lut is not None:
        names = read_lut(lut)
        lut_source = str(lut)
    else:
        side = _dseg_sidecar(p)
        if side is not None:
            names, lut_source = read_lut(side), str(side)
        else:
            names, lut_source = dict(ASEG_LUT), "builtin FreeSurfer aseg"
            log.info("%s: no dseg.tsv beside it; labels named by the built-in FreeSurfer "
                     "aseg table", p)
    img = load_nifti(p, expect_ndim=3, max_bytes=max_bytes)
    affine_volume = abs(float(np.linalg.det(img.affine[:3, :3])))
    qc_extra: list[str] = []
    if not math.isclose(affine_volume, voxel_volume, rel_tol=1e-3):
        log.warning("%s: the affine's voxel volume %.6g mm3 differs from the header zooms' "
                    "%.6g mm3; volumes use the zooms", p, affine_volume, voxel_volume)
        qc_extra.append("voxel_volume_mismatch")
    labels, counts = _label_counts(p, np.asarray(img.dataobj))
    keep = labels != 0
    labels, counts = labels[keep], counts[keep]
    if labels.size == 0:
        raise InputError(f"{p}: expected labelled voxels, found only background (0)")
    unknown = [int(v) for v in labels if int(v) not in names]
    if unknown:
        log.warning("%s: %d labels are not in the lookup table (%s): %s", p, len(unknown),
                    lut_source, unknown[:20])
    rows = []
    for label, n in zip(labels.tolist(), counts.tolist(), strict=True):
        name = names.get(label)
        flags = [ICV_MISSING, *qc_extra]
        if name is None:
            name, flags = f"label-{label}", [*flags, UNKNOWN_LABEL]
        rows.append(_row(name, n * voxel_volume, "dseg-lut", enigma_name(name), flags))
    present = set(labels.tolist())
    absent = sorted(k for k in names if k != 0 and k not in present)
    missing_enigma = [names[k] for k in absent if enigma_name(names[k])]
    if missing_enigma:
        log.warning("%s: ENIGMA structures of the lookup table absent from the image: %s",
                    p, missing_enigma)
    like_fs = any(enigma_name(n) for n in names.values())
    provenance: dict[str, object] = {
        "format": "dseg", "lut": lut_source, "voxel_volume_mm3": voxel_volume,
        "zooms": zooms, "label_counts": dict(zip(labels.tolist(), counts.tolist(),
                                                 strict=True)),
        "unknown_labels": unknown, "absent_labels": absent,
    }
    return VolumeSet(table=_table(rows), icv_mm3=None, icv_method="", method="dseg-lut",
                     source=p, like_freesurfer=like_fs, provenance=provenance)


# --------------------------------------------------------------------------- dispatch


def read_volumes(path: _PathLike, **kwargs: Any) -> VolumeSet:
    """Read a volume file of any supported type.

    Parameters
    ----------
    path : str or os.PathLike
        ``*.stats`` (:func:`read_aseg_stats`), ``*.csv`` (:func:`read_synthseg_volumes`)
        or ``*.nii``/``*.nii.gz`` (:func:`read_dseg`).
    **kwargs
        Passed to that reader (``participant_id``/``session`` for a CSV, ``lut`` and
        ``max_bytes`` for a dseg).

    Returns
    -------
    VolumeSet

    Raises
    ------
    InputError
        If the file type is not supported (``.mgz`` included: convert it, or use
        fMRIPrep's ``desc-aseg_dseg.nii.gz``), a keyword does not apply to the reader,
        or the reader rejects the file.
    """
    p = Path(path)
    low = p.name.lower()
    if low.endswith(".stats"):
        reader: Any = read_aseg_stats
    elif low.endswith(".csv"):
        reader = read_synthseg_volumes
    elif low.endswith((".nii", ".nii.gz")):
        reader = read_dseg
    else:
        hint = (" (a FreeSurfer .mgz: convert it with mri_convert, or use fMRIPrep's "
                "desc-aseg_dseg.nii.gz)" if low.endswith(".mgz") else "")
        raise InputError(f"{p}: unsupported volume file type{hint}: expected aseg.stats "
                         "(.stats), a SynthSeg volume CSV (.csv) or a label image "
                         "(.nii/.nii.gz)")
    import inspect

    accepted = set(inspect.signature(reader).parameters) - {"path"}
    extra = sorted(set(kwargs) - accepted)
    if extra:
        raise InputError(f"{p}: {reader.__name__} does not take {extra}; it takes "
                         f"{sorted(accepted) or 'no options'}")
    result: VolumeSet = reader(p, **kwargs)
    return result
