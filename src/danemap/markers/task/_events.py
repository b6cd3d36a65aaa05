"""BIDS ``*_events.tsv`` reading and validation, trial-type mapping and contrast parsing.

Validation is strict and says everything at the first problem: the file, the row (data
rows counted from 1, the header is line 1) and the field. An events file must have
``onset``, ``duration`` and ``trial_type`` columns; every onset must lie inside the run
(``0 <= onset < n_volumes * TR``), every duration must be ``>= 0``, no value may be
missing (``n/a``/NaN), and every ``trial_type`` must be a known one (mapped to a condition
by ``[task] conditions`` or listed in ``[task] ignore``; the closest known type is
suggested).
"""

from __future__ import annotations

import difflib
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from danemap.errors import InputError

__all__ = ["parse_conditions", "parse_contrasts", "read_events", "validate_events"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TERM = re.compile(r"\s*([+-])?\s*(\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)?\s*\*?\s*"
                   r"([A-Za-z_][A-Za-z0-9_]*)\s*")


def parse_conditions(entries: Sequence[str], where: str = "task.conditions") -> dict[str, str]:
    """Parse ``"trial_type=condition"`` entries into a mapping.

    Parameters
    ----------
    entries : sequence of str
        The ``[task] conditions`` list.
    where : str
        Name of the setting, for messages.

    Returns
    -------
    dict
        ``trial_type -> condition``.

    Raises
    ------
    InputError
        An entry without ``=``, an empty side, a condition that is not an identifier, or a
        trial type mapped twice to different conditions.
    """
    if isinstance(entries, str):
        raise InputError(f"{where}: expected a list of 'trial_type=condition' entries, "
                         f"found the string {entries!r}")
    out: dict[str, str] = {}
    for i, entry in enumerate(entries):
        key, sep, cond = str(entry).partition("=")
        key, cond = key.strip(), cond.strip()
        if not sep or not key or not cond:
            raise InputError(f"{where}[{i}]: expected 'trial_type=condition', found {entry!r}")
        if not _NAME.match(cond):
            raise InputError(f"{where}[{i}]: the condition must be an identifier (letters, "
                             f"digits, '_'), found {cond!r}")
        if key in out and out[key] != cond:
            raise InputError(f"{where}[{i}]: trial_type {key!r} is mapped to both "
                             f"{out[key]!r} and {cond!r}")
        out[key] = cond
    if not out:
        raise InputError(f"{where}: expected at least one 'trial_type=condition' entry")
    return out


def parse_contrasts(entries: Sequence[str], conditions: Sequence[str] | None = None,
                    where: str = "task.contrasts") -> dict[str, dict[str, float]]:
    """Parse ``"name=expression"`` contrast entries into condition weights.

    Parameters
    ----------
    entries : sequence of str
        ``"gain_minus_neutral=gain - neutral"``; coefficients are allowed
        (``"0.5*gain + 0.5*loss - neutral"``).
    conditions : sequence of str or None
        The known conditions; when given, an expression naming another is refused.
    where : str
        Name of the setting, for messages.

    Returns
    -------
    dict
        ``name -> {condition: weight}`` in entry order.

    Raises
    ------
    InputError
        Malformed entries, unknown conditions, duplicate names, all-zero weights.
    """
    if isinstance(entries, str):
        raise InputError(f"{where}: expected a list of 'name=expression' entries, found the "
                         f"string {entries!r}")
    out: dict[str, dict[str, float]] = {}
    known = None if conditions is None else set(conditions)
    for i, entry in enumerate(entries):
        name, sep, expr = str(entry).partition("=")
        name, expr = name.strip(), expr.strip()
        if not sep or not _NAME.match(name) or not expr:
            raise InputError(f"{where}[{i}]: expected 'name=expression' with an identifier "
                             f"name, found {entry!r}")
        if name in out:
            raise InputError(f"{where}[{i}]: contrast {name!r} is defined twice")
        weights: dict[str, float] = {}
        pos = 0
        while pos < len(expr):
            m = _TERM.match(expr, pos)
            if m is None or m.end() == pos or (pos > 0 and m.group(1) is None):
                raise InputError(f"{where}[{i}]: cannot parse {expr!r} at {expr[pos:]!r}; "
                                 "expected terms like 'gain', '- neutral', '0.5*loss'")
            sign = -1.0 if m.group(1) == "-" else 1.0
            coef = float(m.group(2)) if m.group(2) else 1.0
            cond = m.group(3)
            if known is not None and cond not in known:
                close = difflib.get_close_matches(cond, sorted(known), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise InputError(f"{where}[{i}]: contrast {name!r} names the unknown "
                                 f"condition {cond!r} (conditions: {sorted(known)}){hint}")
            weights[cond] = weights.get(cond, 0.0) + sign * coef
            pos = m.end()
        if not any(w != 0 for w in weights.values()):
            raise InputError(f"{where}[{i}]: contrast {name!r} has only zero weights")
        out[name] = weights
    if not out:
        raise InputError(f"{where}: expected at least one contrast")
    return out


def _row_where(source: str, i: int, field: str) -> str:
    return f"{source}: row {i + 1} (line {i + 2}), field '{field}'"


def validate_events(events: pd.DataFrame, source: str, n_volumes: int, tr: float,
                    mapping: Mapping[str, str],
                    ignore: Sequence[str] = ()) -> pd.DataFrame:
    """Validate an events table and map its trial types to conditions.

    Parameters
    ----------
    events : pandas.DataFrame
        ``onset``, ``duration``, ``trial_type`` (other columns are ignored).
    source : str
        The file (for messages).
    n_volumes : int
        Volumes of the run.
    tr : float
        Repetition time (s); the run lasts ``n_volumes * tr`` seconds.
    mapping : mapping
        ``trial_type -> condition`` (:func:`parse_conditions`).
    ignore : sequence of str
        Known trial types that are not modelled.

    Returns
    -------
    pandas.DataFrame
        ``onset``, ``duration``, ``trial_type`` (the condition) and ``source_trial_type``
        of the modelled events, in file order.

    Raises
    ------
    InputError
        A missing column, a missing or non-numeric value, an onset outside the run, a
        negative duration or an unknown trial type (file, row and field named).
    """
    missing = [c for c in ("onset", "duration", "trial_type") if c not in events.columns]
    if missing:
        raise InputError(f"{source}: events files need the columns onset, duration, "
                         f"trial_type; missing {missing} (found {list(events.columns)})")
    run_s = float(n_volumes) * float(tr)
    onset = pd.to_numeric(events["onset"], errors="coerce").to_numpy(dtype=float)
    duration = pd.to_numeric(events["duration"], errors="coerce").to_numpy(dtype=float)
    for name, values in (("onset", onset), ("duration", duration)):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            i = int(bad[0])
            raw = events[name].iloc[i]
            shown = "a missing value (n/a)" if pd.isna(raw) else repr(str(raw))
            raise InputError(f"{_row_where(source, i, name)}: expected a finite number of "
                             f"seconds, found {shown}")
    bad = np.flatnonzero((onset < 0) | (onset >= run_s))
    if bad.size:
        i = int(bad[0])
        raise InputError(f"{_row_where(source, i, 'onset')}: expected an onset inside the run "
                         f"(0 <= onset < {run_s:g} s = {n_volumes} volumes x TR {tr:g} s), "
                         f"found {onset[i]:g} s")
    bad = np.flatnonzero(duration < 0)
    if bad.size:
        i = int(bad[0])
        raise InputError(f"{_row_where(source, i, 'duration')}: expected a duration >= 0, "
                         f"found {duration[i]:g}")
    types = events["trial_type"]
    known = set(mapping) | set(ignore)
    out_type: list[str] = []
    keep = np.zeros(len(events), dtype=bool)
    for i, value in enumerate(types):
        if value is None or (isinstance(value, float) and np.isnan(value)) or str(
                value).strip() in ("", "n/a"):
            raise InputError(f"{_row_where(source, i, 'trial_type')}: expected a trial type, "
                             "found a missing value")
        t = str(value).strip()
        if t not in known:
            close = difflib.get_close_matches(t, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InputError(
                f"{_row_where(source, i, 'trial_type')}: unknown trial type {t!r}{hint}; "
                "map it to a condition in [task] conditions ('trial_type=condition') or "
                "list it in [task] ignore")
        out_type.append(t)
        keep[i] = t in mapping
    src = np.asarray(out_type, dtype=object)
    table = pd.DataFrame({
        "onset": onset[keep], "duration": duration[keep],
        "trial_type": [mapping[t] for t in src[keep]],
        "source_trial_type": list(src[keep]),
    })
    return table


def read_events(path: str | os.PathLike[str], n_volumes: int, tr: float,
                mapping: Mapping[str, str], ignore: Sequence[str] = ()) -> pd.DataFrame:
    """Read and validate a BIDS ``*_events.tsv`` (see :func:`validate_events`).

    Parameters
    ----------
    path : path-like
        The events file.
    n_volumes : int
        Volumes of the run it belongs to.
    tr : float
        Repetition time (s).
    mapping : mapping
        ``trial_type -> condition``.
    ignore : sequence of str
        Known trial types that are not modelled.

    Returns
    -------
    pandas.DataFrame
        The modelled events (:func:`validate_events`).

    Raises
    ------
    InputError
        The file is missing or unreadable (not UTF-8, a row with more cells than the
        header), or an event is invalid.
    """
    p = Path(path)
    if p.exists() and not p.is_file():  # a pipe or a device would block or never end
        raise InputError(f"{p}: not a regular file (a folder, pipe or device); expected a "
                         "BIDS events table")
    if not p.is_file():
        raise InputError(f"{p}: events file not found; a task run needs its BIDS "
                         "'*_events.tsv' (onset, duration, trial_type)")
    try:
        with warnings.catch_warnings():
            # a row longer than the header: pandas would take its first cells as the index
            # (index_col=None) or drop its last ones (index_col=False), shifting the columns
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(p, sep="\t", dtype={"trial_type": str}, keep_default_na=False,
                             index_col=False, encoding="utf-8-sig",
                             na_values={"onset": ["n/a", "NaN", "nan", ""],
                                        "duration": ["n/a", "NaN", "nan", ""]})
    except pd.errors.ParserWarning as exc:
        raise InputError(f"{p}: a row has more cells than the header's columns; expected "
                         "one tab-separated value per column (onset, duration, trial_type...) "
                         f"({exc})") from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: not a readable tab-separated events table ({exc})") from exc
    return validate_events(df, str(p), n_volumes, tr, mapping, ignore)
