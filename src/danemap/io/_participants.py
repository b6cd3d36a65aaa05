"""BIDS labels and ``participants.tsv`` validation."""

from __future__ import annotations

import difflib
import io
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from danemap.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ENTITY_KEYS",
    "NUMERIC_COVARIATES",
    "closest",
    "must_be_numeric",
    "non_numeric_message",
    "non_numeric_values",
    "read_participants",
    "validate_label",
]

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


def _numeric_label(text: str) -> int | None:
    """Return the number of a label (``"sub-007"`` -> 7, ``"1"`` -> 1), or None."""
    bare = text.rsplit("-", 1)[-1]
    return int(bare) if bare.isascii() and bare.isdigit() else None


def closest(value: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Return up to ``n`` candidates closest to ``value``.

    Candidates that equal ``value`` once zero-padding is ignored (``sub-1`` -> ``sub-01``,
    the label compared as a number) come first, then those equal but for letter case
    (``sub-adhd1`` -> ``sub-ADHD1``); only when there is none are the closest spellings
    (``difflib``, cutoff 0.5) returned.

    Parameters
    ----------
    value : str
        The requested name or label.
    candidates : iterable of str
        The existing ones.
    n : int
        At most this many suggestions.

    Returns
    -------
    list of str
        The suggestions, best first (empty when nothing is close).
    """
    cands = list(dict.fromkeys(candidates))
    number = _numeric_label(value)
    prefix = value.rsplit("-", 1)[0] if "-" in value else None
    same: list[str] = []
    if number is not None:
        same = [c for c in cands if _numeric_label(c) == number
                and (prefix is None or "-" not in c or c.rsplit("-", 1)[0] == prefix)]
    if not same:
        same = [c for c in cands if c.casefold() == value.casefold() and c != value]
    if same:
        return same[:n]
    return difflib.get_close_matches(value, cands, n=n, cutoff=0.5)


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
    age_column: str | None = "age",
    covariates: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Read and validate a BIDS ``participants.tsv``.

    UTF-8 with or without BOM, LF or CRLF line endings; ``n/a`` (and empty
    cells) are missing values. Every problem is collected and reported together
    in one :class:`~danemap.errors.InputError`.

    Only what the caller uses is validated: the ids always (present, valid, unique); the
    group column when ``groups`` is given; the age column unless ``age_column`` is
    ``None`` or ``covariates`` leaves it out; the ``covariates`` when they are given. So
    discovery (the participant level needs the ids only, ``age_column=None``) is not
    refused because of an ``age`` of ``89+`` that only a group analysis with age as a
    covariate cannot use.

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
    age_column : str or None
        The age column: its values must be numeric when it is present, unless
        ``covariates`` is given without it; ``None`` does not check it.
    covariates : iterable of str or None
        Columns the caller needs (the group level's ``[stats] covariates``): each must
        exist, and one that must be a number must be numeric on every row. A covariate
        must be a number when it is ``age_column`` or named ``age``, or when most of its
        values are numbers; the error names the column, the bad values with their lines,
        and the fix. ``None``: the caller did not say (the age column is checked).

    Returns
    -------
    pandas.DataFrame
        One row per participant, ``participant_id`` normalised to ``sub-<label>``
        (first column). Columns whose non-missing values are all numeric are
        converted to numbers; others stay text with missing values as NaN.
        ``attrs["source"]`` is the file (the statistics name it in their messages).

    Raises
    ------
    InputError
        If the file cannot be read or is empty, or listing every problem found: missing
        ``participant_id`` column, invalid or duplicate ids, a missing group column or
        covariate (with the columns found), unknown group values, non-numeric values
        where numbers are needed.
    """
    import pandas as pd

    p = Path(path)
    name = str(p)
    if p.exists() and not p.is_file():  # a pipe or a device would block or never end
        raise InputError(f"{name}: not a regular file (a folder, pipe or device); expected "
                         "a tab-separated participants table")
    try:
        raw = p.read_bytes()
    except FileNotFoundError as exc:
        raise InputError(f"{name}: file not found") from exc
    except OSError as exc:
        raise InputError(f"{name}: cannot be read ({exc})") from exc
    if not raw.removeprefix(b"\xef\xbb\xbf").strip():
        raise InputError(f"{name}: the file is empty; expected a tab-separated header line "
                         "with a 'participant_id' column, then one line per participant")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name}: cannot be read as a UTF-8 tab-separated table "
                         f"({exc})") from exc
    # trailing tabs (spreadsheet exports) are empty cells: the row is short, not long
    text = "\n".join(line.rstrip("\t\r") for line in text.splitlines()) + "\n"
    _check_shape(text, name)
    try:
        # index_col=False: a row longer than the header must not become pandas' index
        df = pd.read_csv(io.StringIO(text), sep="\t", dtype=str, keep_default_na=False,
                         na_values=["n/a", ""], index_col=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise InputError(f"{name}: cannot be read as a UTF-8 tab-separated table "
                         f"({exc})") from exc
    df.columns = [str(c).strip() for c in df.columns]
    for col in df.columns:
        df[col] = df[col].str.strip()
        df.loc[df[col].isin(["n/a", ""]), col] = None
    # a trailing tab in the header makes an unnamed, empty column: not data
    header = next(ln for ln in text.splitlines() if ln.strip()).split("\t")
    unnamed = [c for c, h in zip(df.columns, header, strict=False)
               if not h.strip() and df[c].isna().all()]
    if unnamed:
        df = df.drop(columns=unnamed)

    problems: list[str] = []
    if "participant_id" not in df.columns:
        sep = (" (the header has no tab: BIDS tables are tab-separated, this one looks "
               "comma-separated)" if len(df.columns) == 1 and "," in df.columns[0] else "")
        hint = [] if sep else closest("participant_id", df.columns, n=1)
        problems.append("missing required column 'participant_id'"
                        + (f" (did you mean '{hint[0]}'?)" if hint else "")
                        + f"; found columns {list(df.columns)}" + sep)
    else:
        ids: list[str | None] = []
        invalid: list[str] = []
        for i, value in enumerate(df["participant_id"]):
            line = i + 2
            if value is None or (isinstance(value, float)):
                invalid.append(f"line {line}: missing participant_id")
                ids.append(None)
                continue
            try:
                ids.append("sub-" + validate_label(value, "participant"))
            except InputError:
                invalid.append(f"line {line}: {value!r}")
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
                            f"{allowed}" + (f" (did you mean '{hint[0]}'?)" if hint else "")
                            + f"; found columns {list(df.columns)}")
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

    needed = None if covariates is None else list(dict.fromkeys(covariates))
    if age_column is not None and age_column in df.columns and needed is None:
        bad_age = non_numeric_values(df[age_column])
        if bad_age:
            values = list(dict.fromkeys(v for _, v in bad_age))
            problems.append(f"non-numeric value in column '{age_column}': " + _join(
                [f"line {i + 2}: {v!r}" for i, v in bad_age])
                + f"; recode {', '.join(repr(v) for v in values[:3])} as a number")

    for cov in needed or ():
        if cov == group_column and groups is not None:
            continue
        if cov not in df.columns:
            hint = closest(cov, df.columns, n=1)
            problems.append(f"missing column '{cov}' required as a covariate"
                            + (f" (did you mean '{hint[0]}'?)" if hint else "")
                            + f"; found columns {list(df.columns)}; add it, or remove "
                            f"'{cov}' from [stats] covariates")
        elif cov == age_column or must_be_numeric(cov, df[cov]):
            bad_cov = non_numeric_values(df[cov])
            if bad_cov:
                problems.append(non_numeric_message(cov, [v for _, v in bad_cov],
                                                    [f"line {i + 2}" for i, _ in bad_cov]))

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
    out = df[cols].reset_index(drop=True)
    out.attrs["source"] = name
    return out


def _check_shape(text: str, name: str) -> None:
    """Refuse a header that repeats a column, and rows with more cells than the header."""
    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines()) if ln.strip()]
    header = [c.strip() for c in lines[0][1].split("\t")]
    repeated = sorted({c for c in header if header.count(c) > 1})
    problems = []
    if repeated:
        problems.append(f"the header names the same column more than once: {repeated}; "
                        "the columns must have unique names")
    long_rows = []
    for number, line in lines[1:]:
        cells = line.split("\t")
        if len(cells) > len(header):
            long_rows.append(f"line {number} ({len(cells)} cells)")
    if long_rows:
        problems.append(f"row(s) with more cells than the {len(header)} columns of the "
                        f"header: " + _join(long_rows))
    if problems:
        raise InputError(f"{name}: {len(problems)} problem(s) found:\n  - "
                         + "\n  - ".join(problems))


#: Covariates that must be numbers whatever their values look like.
NUMERIC_COVARIATES = frozenset({"age"})


def non_numeric_values(values: Iterable[object]) -> list[tuple[int, str]]:
    """Return ``(position, value)`` of the non-missing values that are not numbers.

    Parameters
    ----------
    values : iterable
        A column (text or numbers; ``None`` and NaN are missing).

    Returns
    -------
    list of (int, str)
        Position in ``values`` and the offending value as text.
    """
    out: list[tuple[int, str]] = []
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and v != v):
            continue
        if isinstance(v, int | float) and not isinstance(v, bool):
            continue
        try:
            float(str(v))
        except ValueError:
            out.append((i, str(v)))
    return out


#: A number with a qualifier, as censored or binned values are written: ``89+``, ``<70``,
#: ``>= 130``, ``35-40``, ``~12``, ``9,5``.
_NUMBER_LIKE = re.compile(r"\s*(<=|>=|[<>~≤≥])?\s*\d+([.,]\d+)?\s*"
                          r"(\+|(-|–|to)\s*\d+([.,]\d+)?)?\s*")


def must_be_numeric(column: str, values: Iterable[object]) -> bool:
    """Whether a covariate must be a number: named ``age``, or numbers with a coded value.

    Parameters
    ----------
    column : str
        The column name (``age`` must always be numeric, see :data:`NUMERIC_COVARIATES`).
    values : iterable
        Its values.

    Returns
    -------
    bool
        True when the column is ``age`` (any case), or when more than half of its
        non-missing values are numbers and every other one is a number with a qualifier
        (``10, 12, <70``: a number column with a censored value in it, not a categorical
        one). A site coded ``1, 2, X`` stays categorical.
    """
    if column.casefold() in NUMERIC_COVARIATES:
        return True
    vals = [v for v in values if not (v is None or (isinstance(v, float) and v != v))]
    if not vals:
        return False
    bad = non_numeric_values(vals)
    return (0 < len(bad) < len(vals) / 2
            and all(_NUMBER_LIKE.fullmatch(v) for _, v in bad))


def non_numeric_message(column: str, values: list[str], where: list[str] | None = None) -> str:
    """Describe a covariate that must be numeric but is not, with the fix.

    Parameters
    ----------
    column : str
        The covariate.
    values : list of str
        Its non-numeric values.
    where : list of str or None
        Where each is (``"line 5"``, ``"sub-03"``), parallel to ``values``; ``None``: not
        known.

    Returns
    -------
    str
        ``"covariate 'age' must be a number, found '89+' (line 5) ...; recode '89+' as a
        number, or remove 'age' from [stats] covariates"``.
    """
    examples = list(dict.fromkeys(values))
    shown = _join([repr(v) for v in values] if where is None else
                  [f"{v!r} ({w})" for v, w in zip(values, where, strict=True)])
    return (f"covariate '{column}' must be a number, found non-numeric value(s) {shown}; "
            f"recode {', '.join(repr(v) for v in examples[:3])} as a number, or remove "
            f"'{column}' from [stats] covariates")


def _join(items: list[str]) -> str:
    shown = items[:_MAX_ERRORS_PER_KIND]
    more = len(items) - len(shown)
    return "; ".join(shown) + (f"; ... and {more} more" if more else "")
