"""BIDS labels and ``participants.tsv`` validation."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from danemap.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ENTITY_KEYS", "closest", "read_participants", "validate_label"]

_LABEL_RE = re.compile(r"[a-zA-Z0-9]+")

#: Long entity names -> BIDS keys (the key itself maps to itself).
ENTITY_KEYS: dict[str, str] = {
    "participant": "sub",
    "subject": "sub",
    "session": "ses",
    "task": "task",
    "acquisition": "acq",
    "tracer": "trc",
    "ceagent": "ce",
    "reconstruction": "rec",
    "direction": "dir",
    "run": "run",
    "echo": "echo",
    "space": "space",
    "resolution": "res",
    "atlas": "atlas",
    "description": "desc",
}

_MAX_ERRORS_PER_KIND = 20


def _entity_key(entity: str) -> str:
    return ENTITY_KEYS.get(entity, entity)


def closest(value: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Return up to ``n`` candidates closest to ``value`` (``difflib``)."""
    return difflib.get_close_matches(value, list(candidates), n=n, cutoff=0.5)


def validate_label(label: str | int, entity: str = "participant") -> str:
    """Validate a BIDS label and strip its entity prefix.

    Parameters
    ----------
    label : str or int
        A label such as ``"01"`` or ``"sub-01"`` (``"ses-1"``, ``"task-rest"``...).
        An int (``run=1``) is converted to its decimal text.
    entity : str
        Entity name used for the prefix and in messages: ``"participant"``
        (prefix ``sub-``), ``"session"`` (``ses-``), or a BIDS key such as
        ``"task"``, ``"run"``, ``"desc"``.

    Returns
    -------
    str
        The bare label (``"01"``).

    Raises
    ------
    InputError
        If the label is not letters and digits only (e.g. ``"../x"``, ``""``, ``"a b"``).
    """
    if isinstance(label, bool) or not isinstance(label, str | int):
        raise InputError(f"{entity} label must be a str, found {type(label).__name__} "
                         f"{label!r}")
    text = str(label)
    prefix = _entity_key(entity) + "-"
    bare = text[len(prefix):] if text.startswith(prefix) else text
    if not _LABEL_RE.fullmatch(bare):
        raise InputError(f"{entity} label {text!r} is not a valid BIDS label: expected "
                         "letters and digits only")
    return bare


def read_participants(
    path: str | os.PathLike[str],
    groups: Iterable[str] | None = None,
    group_column: str = "group",
    age_column: str = "age",
) -> pd.DataFrame:
    """Read and validate a BIDS ``participants.tsv``.

    UTF-8 with or without BOM, LF or CRLF line endings; ``n/a`` (and empty
    cells) are missing values. Every problem is collected and reported together
    in one :class:`~danemap.errors.InputError`.

    Parameters
    ----------
    path : str or os.PathLike
        The ``participants.tsv`` file.
    groups : iterable of str or None
        Allowed values of ``group_column`` (e.g. ``{"ADHD", "TD"}``). If given,
        the column must exist and any other non-missing value is an error (with
        the closest allowed value suggested).
    group_column : str
        Name of the diagnostic-group column.
    age_column : str
        Name of the age column; when present its values must be numeric.

    Returns
    -------
    pandas.DataFrame
        One row per participant, ``participant_id`` normalised to ``sub-<label>``
        (first column). Columns whose non-missing values are all numeric are
        converted to numbers; others stay text with missing values as NaN.

    Raises
    ------
    InputError
        If the file cannot be read, or listing every problem found: missing
        ``participant_id`` column, invalid or duplicate ids, unknown group values,
        non-numeric ages.
    """
    import pandas as pd

    p = Path(path)
    name = str(p)
    try:
        df = pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False,
                         na_values=["n/a", ""], encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise InputError(f"{name}: file not found") from exc
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError,
            OSError) as exc:
        raise InputError(f"{name}: cannot be read as a UTF-8 tab-separated table "
                         f"({exc})") from exc
    df.columns = [str(c).strip() for c in df.columns]
    for col in df.columns:
        df[col] = df[col].str.strip()
        df.loc[df[col].isin(["n/a", ""]), col] = None

    problems: list[str] = []
    if "participant_id" not in df.columns:
        hint = closest("participant_id", df.columns, n=1)
        problems.append("missing required column 'participant_id'"
                        + (f" (did you mean '{hint[0]}'?)" if hint else "")
                        + f"; found columns {list(df.columns)}")
    else:
        ids: list[str | None] = []
        invalid: list[str] = []
        for i, raw in enumerate(df["participant_id"]):
            line = i + 2
            if raw is None or (isinstance(raw, float)):
                invalid.append(f"line {line}: missing participant_id")
                ids.append(None)
                continue
            try:
                ids.append("sub-" + validate_label(raw, "participant"))
            except InputError:
                invalid.append(f"line {line}: {raw!r}")
                ids.append(None)
        if invalid:
            problems.append("invalid participant_id (expected sub-<letters and digits>): "
                            + _join(invalid))
        df["participant_id"] = ids
        valid_ids = df["participant_id"].dropna()
        dup = valid_ids[valid_ids.duplicated(keep=False)]
        if len(dup):
            lines: dict[str, list[int]] = {}
            for idx, pid in dup.items():
                lines.setdefault(str(pid), []).append(int(str(idx)) + 2)
            problems.append("duplicate participant_id: " + _join(
                [f"{pid} (lines {', '.join(map(str, ln))})" for pid, ln in lines.items()]))

    if groups is not None:
        allowed = sorted({str(g) for g in groups})
        if group_column not in df.columns:
            hint = closest(group_column, df.columns, n=1)
            problems.append(f"missing column '{group_column}' required for groups "
                            f"{allowed}" + (f" (did you mean '{hint[0]}'?)" if hint else ""))
        else:
            bad: list[str] = []
            for i, value in enumerate(df[group_column]):
                if value is None or isinstance(value, float) or value in allowed:
                    continue
                hint = closest(value, allowed, n=1)
                bad.append(f"line {i + 2}: {value!r}"
                           + (f" (did you mean '{hint[0]}'?)" if hint else ""))
            if bad:
                problems.append(f"unknown value in column '{group_column}' (allowed: "
                                f"{', '.join(allowed)}): " + _join(bad))

    if age_column in df.columns:
        ages = pd.to_numeric(df[age_column], errors="coerce")
        bad_age = [f"line {i + 2}: {v!r}" for i, (v, a) in enumerate(
            zip(df[age_column], ages, strict=True)) if not pd.isna(v) and pd.isna(a)]
        if bad_age:
            problems.append(f"non-numeric value in column '{age_column}': " + _join(bad_age))

    if problems:
        raise InputError(f"{name}: {len(problems)} problem(s) found:\n  - "
                         + "\n  - ".join(problems))

    for col in df.columns:
        if col in ("participant_id", group_column):
            continue
        converted = pd.to_numeric(df[col], errors="coerce")
        if converted.isna().equals(df[col].isna()):
            df[col] = converted
    cols = ["participant_id"] + [c for c in df.columns if c != "participant_id"]
    return df[cols].reset_index(drop=True)


def _join(items: list[str]) -> str:
    shown = items[:_MAX_ERRORS_PER_KIND]
    more = len(items) - len(shown)
    return "; ".join(shown) + (f"; ... and {more} more" if more else "")
