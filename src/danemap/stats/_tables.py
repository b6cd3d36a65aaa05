"""Feature tables and participants: loading, joining, validation and result writing.

A *feature table* is any tab-separated file with a ``participant_id`` column and
one numeric column per feature (``n/a`` marks a missing value). It can come from
danemap's own markers or from any other pipeline. ``participants.tsv`` follows
BIDS: ``participant_id`` plus phenotype columns, ``n/a`` for missing.

Participants left out: one rule for every analysis. An analysis uses the participants
in either group with every column its model needs (covariates, site) and every feature
finite (``inf`` counts as missing); the normative model and the classifiers (which fit
inside cross-validation folds) further leave out a participant whose level of a
categorical column (site, sex) is held by too few participants to be in every training
fold (:func:`rare_levels`). Every participant left out is named in one
:class:`~danemap.errors.DanemapWarning` (:func:`left_out_warning`); none is an error.

Result tables are written as TSV (``n/a`` for missing) with a JSON sidecar, both
atomically (temporary file + rename) through :func:`danemap.io.write_table`.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from danemap._utils.logging import get_logger
from danemap._utils.text import DISCLAIMER
from danemap.errors import DanemapWarning, InputError
from danemap.io import validate_label, write_table
from danemap.stats._design import CovariateEncoder, _listing, check_columns

if TYPE_CHECKING:
    import pandas as pd

__all__: list[str] = []

log = get_logger("stats")

PathLike = str | os.PathLike[str]


#: How every table here is read: tab-separated, ``n/a`` and empty cells missing.
_TSV: dict[str, Any] = {"sep": "\t", "na_values": ["n/a", ""], "keep_default_na": False}

#: Cells per block of rows when a feature table is parsed (32 MiB as float64),
#: which bounds the parser's memory whatever the size of the table.
_BLOCK_CELLS = 1 << 22

#: Cells per block of rows when a result table is written (each cell is formatted as a
#: Python string first, about 100 bytes: a few MiB per block).
_WRITE_CELLS = 1 << 15


def _existing_file(path: PathLike, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} {p}: file not found")
    return p


@contextlib.contextmanager
def _parse_errors(p: Path, what: str) -> Iterator[None]:
    """Turn the TSV parser's errors into :class:`InputError` naming the file."""
    import pandas as pd

    try:
        yield
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} {p}: not a readable tab-separated table ({exc})") from exc
    except pd.errors.EmptyDataError as exc:
        raise InputError(f"{what} {p}: the file is empty") from exc


def _header(columns: Sequence[Any], p: Path, what: str) -> list[str]:
    """Return the stripped column names; raise if ``participant_id`` is not one of them."""
    names = [str(c).strip() for c in columns]
    if "participant_id" not in names:
        hint = difflib.get_close_matches("participant_id", names, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise InputError(
            f"{what} {p}: expected a 'participant_id' column, found columns "
            f"{names[:8]}{extra}"
        )
    return names


def _index_rows(df: pd.DataFrame, p: Path, what: str) -> pd.DataFrame:
    """Check ``participant_id`` (present, BIDS labels; repeats are allowed for runs).

    Returns ``df`` indexed by it, in BIDS form (``sub-`` prefix added where absent).
    """
    if df.empty:
        raise InputError(f"{what} {p}: the table has a header but no rows")
    if df["participant_id"].isna().any():
        rows = (np.flatnonzero(df["participant_id"].isna().to_numpy()) + 2).tolist()[:5]
        raise InputError(f"{what} {p}: empty participant_id on line(s) {rows}")
    try:  # BIDS form: letters and digits after the ``sub-`` prefix (added if absent)
        df["participant_id"] = [f"sub-{validate_label(str(v).strip())}"
                                for v in df["participant_id"]]
    except InputError as exc:
        raise InputError(f"{what} {p}, column 'participant_id': {exc}") from exc
    return df.set_index("participant_id")


def _max_rows(p: Path) -> int:
    """Upper bound on the rows of a text table: its CR and LF characters, plus one.

    (Not a bound for a compressed file, which :func:`_parse_feature_table` also reads.)
    """
    breaks = 0
    with p.open("rb") as fh:
        while block := fh.read(1 << 20):
            breaks += block.count(b"\n") + block.count(b"\r")
    return breaks + 1


#: Columns of a feature table that identify a row (BIDS session, run), never features.
ID_COLUMNS = ("session", "run")

#: How several rows of one participant are combined (stated in sidecars and summary.json).
RUNS_POLICY = ("runs (rows of one participant within the selected session) are averaged "
               "feature by feature within participant before any analysis")


def _strip_entity(value: object, prefix: str) -> str:
    text = str(value).strip()
    return text[len(prefix):] if text.startswith(prefix) else text


def _session_labels(series: pd.Series) -> pd.Series:
    """Session labels without the ``ses-`` prefix (``<NA>`` where missing)."""
    return series.astype("string").str.strip().str.removeprefix("ses-")


def _in_session(series: pd.Series, session: str) -> np.ndarray:
    """Boolean mask of the rows of ``session`` (a label without ``ses-``)."""
    return (_session_labels(series) == session).fillna(False).to_numpy(bool)


@dataclass
class _Parsed:
    """A feature table parsed by :func:`_parse_feature_table`.

    Attributes
    ----------
    ids : pandas.DataFrame
        ``participant_id`` and the :data:`ID_COLUMNS` present, as text, every row.
    values : numpy.ndarray, shape (rows kept, features)
        The features of the rows of the requested session (every row without one, or
        when the table has no ``session`` column); ``NaN`` where missing or not a number.
    names : list of str
        Feature names.
    bad : dict
        Feature position -> its first (at most three) cells that are not numbers, as
        (row of ``values``, text).
    empty : numpy.ndarray
        Boolean mask of the features without any value in ``values``.
    """

    ids: pd.DataFrame
    values: np.ndarray
    names: list[str]
    bad: dict[int, list[tuple[int, str]]]
    empty: np.ndarray


def _parse_feature_table(path: PathLike, session: str | None) -> _Parsed:
    """Parse a feature table in blocks of rows straight into one float64 array.

    The table is never held as text nor copied whole: the numbers of each block of rows
    go into a preallocated array (whose unused tail is never touched), so the memory
    needed is the data plus one block. Only the header is checked here; the content is
    checked by :func:`load_features`.
    """
    import pandas as pd

    what = "feature table"
    p = _existing_file(path, what)
    with _parse_errors(p, what):
        raw_names = list(pd.read_csv(p, nrows=0, **_TSV).columns)
    names = _header(raw_names, p, what)
    id_pos = [j for j, c in enumerate(names) if c == "participant_id" or c in ID_COLUMNS]
    feat_pos = [j for j in range(len(names)) if j not in id_pos]
    # a slice selects the features of a block without copying them, when they are adjacent
    feat_cols: slice | list[int] = (slice(feat_pos[0], feat_pos[-1] + 1) if feat_pos and
                                    feat_pos[-1] - feat_pos[0] == len(feat_pos) - 1
                                    else feat_pos)
    want = None if session is None or "session" not in names else _strip_entity(session, "ses-")
    values = np.empty((_max_rows(p), len(feat_pos)))
    empty = np.ones(len(feat_pos), bool)
    ids: list[pd.DataFrame] = []
    bad: dict[int, list[tuple[int, str]]] = {}
    n = 0
    with _parse_errors(p, what), pd.read_csv(
            p, dtype={raw_names[j]: str for j in id_pos}, **_TSV, low_memory=False,
            chunksize=max(1, _BLOCK_CELLS // len(names))) as reader:
        for block in reader:
            block.columns = names
            ids.append(block.iloc[:, id_pos])
            if want is not None:
                block = block[_in_session(block["session"], want)]
            feats = block.iloc[:, feat_cols]
            for j in np.flatnonzero([d.kind not in "fi" for d in feats.dtypes]):
                text = feats.iloc[:, j].astype("string")  # text, or True/False as booleans
                num = pd.to_numeric(text, errors="coerce")
                cells = bad.setdefault(int(j), [])
                for i in np.flatnonzero((num.isna() & text.notna()).to_numpy())[:3 - len(cells)]:
                    cells.append((n + int(i), str(text.iloc[i])))
                feats.isetitem(j, num.astype(float))
            if n + len(feats) > len(values):  # more rows than line breaks: compressed input
                values = np.concatenate([values[:n], np.empty((n + len(feats), len(feat_pos)))])
            dest = values[n:n + len(feats)]
            dest[:] = feats.to_numpy(float)
            empty &= np.isnan(dest).all(axis=0)
            n += len(feats)
    table = (pd.concat(ids, ignore_index=True) if ids
             else pd.DataFrame(columns=[names[j] for j in id_pos]))
    return _Parsed(ids=table, values=values[:n], names=[names[j] for j in feat_pos],
                   bad={j: c for j, c in bad.items() if c}, empty=empty)


def _collapse_rows(df: pd.DataFrame, path: PathLike,
                   session: str | None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Select a session and count the runs to average within participant.

    ``df`` holds the identifying columns indexed by ``participant_id`` (repeats allowed).
    Returns the index of the rows of the selected session (without the ``session``/``run``
    columns) and what was done (``rows``, ``participants``, ``averaged``: participants
    with several rows).
    """
    n_rows = len(df)
    if session is not None:
        want = _strip_entity(session, "ses-")
        if "session" not in df.columns:
            raise InputError(f"feature table {path}: session {session!r} was requested but "
                             "the table has no 'session' column")
        found = sorted({str(v) for v in _session_labels(df["session"]).dropna()})
        if want not in found:
            raise InputError(f"feature table {path}: session {want!r} not found in column "
                             f"'session'; found {found}")
        df = df[_in_session(df["session"], want)]
    elif "session" in df.columns:
        n_ses = df["session"].groupby(level=0).nunique()
        several = n_ses[n_ses > 1]
        if len(several):
            found = sorted({str(v) for v in df["session"].dropna()})
            raise InputError(
                f"feature table {path}: {len(several)} participant(s) have rows from several "
                f"sessions (e.g. {list(several.index[:3])}; sessions {found}); sessions are "
                "not averaged: select one with --session ([stats] session)")
    df = df.drop(columns=[c for c in ID_COLUMNS if c in df.columns])
    counts = df.index.value_counts()
    repeated = counts[counts > 1]
    info = {"rows": n_rows, "rows_used": len(df), "participants": len(counts),
            "averaged": len(repeated),
            "session": None if session is None else _strip_entity(session, "ses-")}
    return df, info


def load_features(paths: PathLike | Sequence[PathLike],
                  session: str | None = None) -> pd.DataFrame:
    """Read one or several feature tables and join them on ``participant_id``.

    Each table is parsed in blocks of rows straight to float64, so reading needs little
    more memory than the data themselves.

    Parameters
    ----------
    paths : path-like or sequence of path-like
        TSV files with ``participant_id`` plus one numeric column per feature, and
        optionally ``session`` / ``run`` columns (BIDS labels; several rows per
        participant allowed then).
    session : str or None
        Keep only the rows of this session (``"1"`` or ``"ses-1"``). Without it, a table
        in which a participant has rows from several sessions raises :class:`InputError`.

    Returns
    -------
    pandas.DataFrame
        Float features indexed by ``participant_id`` (with the ``sub-`` prefix), one row
        per participant: several runs of a participant are averaged feature by feature
        (:data:`RUNS_POLICY`). ``DataFrame.attrs["rows"]`` maps each file to ``rows``
        read, ``rows_used`` (in the selected session), ``participants``, ``averaged``
        (participants with several rows) and
        ``session``.

    Raises
    ------
    InputError
        A file is missing or malformed, a feature column is not numeric, a feature
        name appears in two tables, a participant has several rows without a ``run`` or
        ``session`` column, several sessions without ``session``, or the tables share no
        participant.
    """
    import pandas as pd

    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    if len(paths) == 0:
        raise InputError("features: expected at least one feature table, found none")
    tables = []
    rows: dict[str, dict[str, Any]] = {}
    for path in paths:
        parsed = _parse_feature_table(path, session)
        names = parsed.names
        raw = _index_rows(parsed.ids, Path(path), "feature table")
        if not any(c in raw.columns for c in ID_COLUMNS):
            dup = raw.index[raw.index.duplicated()].unique().tolist()
            if dup:
                raise InputError(f"feature table {path}: participant_id must be unique (or "
                                 f"rows told apart by 'session'/'run' columns), found "
                                 f"duplicates {dup[:5]}")
        raw, info = _collapse_rows(raw, path, session)
        rows[str(path)] = info
        if not names:
            raise InputError(
                f"feature table {path}: expected participant_id plus at least one feature "
                "column, found only participant_id"
            )
        if parsed.bad:  # usually not: the first feature with text that is not a number
            j, cells = min(parsed.bad.items())
            examples = [f"{raw.index[i]}={text!r}" for i, text in cells]
            raise InputError(f"feature table {path}, column {names[j]!r}: expected numbers "
                             f"(or n/a), found {', '.join(examples)}")
        if parsed.empty.any():
            empty = [names[j] for j in np.flatnonzero(parsed.empty)[:5]]
            raise InputError(f"feature table {path}: feature column(s) {empty} are entirely n/a")
        df = pd.DataFrame(parsed.values, index=raw.index, columns=names, copy=False)
        if info["averaged"]:
            df = df.groupby(level=0, sort=False).mean()
            log.info("feature table %s: %d participant(s) with several runs; runs averaged",
                     path, info["averaged"])
        tables.append(df)
    out = tables[0]
    for path, df in zip(paths[1:], tables[1:], strict=True):
        clash = sorted(set(out.columns) & set(df.columns))
        if clash:
            raise InputError(
                f"feature table {path}: feature names {clash[:5]} already appear in an earlier "
                "table; rename them so every feature is unique"
            )
        out = out.join(df, how="inner")
        if out.empty:
            raise InputError(f"feature table {path}: no participant in common with the others")
    out.attrs["rows"] = rows
    return out


def load_participants(path: PathLike) -> pd.DataFrame:
    """Read ``participants.tsv``; numeric columns become float.

    The file is validated by :func:`danemap.io.read_participants` (ids, duplicates,
    non-numeric ages: every problem in one error), the reader the BIDS discovery uses.

    Parameters
    ----------
    path : path-like
        BIDS ``participants.tsv`` (``n/a`` for missing values).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``participant_id`` (with the ``sub-`` prefix).

    Raises
    ------
    InputError
        If the file is missing, unreadable or invalid.
    """
    from danemap.io import read_participants

    df = read_participants(path).set_index("participant_id")
    for col in df.columns:
        if df[col].dtype.kind in "iub":
            df[col] = df[col].astype(float)
    return df


def join_tables(
    features: pd.DataFrame,
    participants: pd.DataFrame,
    *,
    features_path: object = "features",
    participants_path: object = "participants",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Align a feature table with the participants table.

    Every participant of the feature table must be in ``participants.tsv``; participants
    without features are left out with a :class:`~danemap.errors.DanemapWarning` giving
    their count and ids.

    Parameters
    ----------
    features, participants : pandas.DataFrame
        Tables indexed by ``participant_id``.
    features_path, participants_path : object
        Names used in messages.

    Returns
    -------
    (features, participants) : tuple of pandas.DataFrame
        Both restricted to the same participants, in the feature table's order.
    """
    unknown = [p for p in features.index if p not in participants.index]
    if unknown:
        raise InputError(
            f"feature table {features_path}: {len(unknown)} participant(s) are not in "
            f"{participants_path}: {unknown[:5]}"
        )
    missing = participants.index.difference(features.index, sort=False)
    if len(missing):
        warnings.warn(f"{len(missing)} participant(s) of {participants_path} have no row in "
                      f"feature table {features_path} and are left out of every analysis: "
                      f"{_listing([str(m) for m in missing])}", DanemapWarning, stacklevel=3)
    return features, participants.loc[features.index]


def load_inputs(
    features: PathLike | Sequence[PathLike], participants: PathLike,
    session: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Load and join feature table(s) and ``participants.tsv`` (see :func:`join_tables`).

    ``session`` selects one session of tables with a ``session`` column
    (see :func:`load_features`).
    """
    feats = load_features(features, session=session)
    parts = load_participants(participants)
    names = [features] if isinstance(features, str | os.PathLike) else list(features)
    return join_tables(feats, parts, features_path=", ".join(str(n) for n in names),
                       participants_path=participants)


def group_mask(
    participants: pd.DataFrame, group: str, case: str, control: str, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """Return boolean case and control masks; raise if a label is absent.

    Parameters
    ----------
    participants : pandas.DataFrame
        The participants table.
    group, case, control : str
        Group column and its case and control labels.
    where : str
        Name used in messages.
    """
    check_columns(participants, [group], where)
    values = participants[group].astype("string").str.strip()
    found = sorted({str(v) for v in values.dropna()})
    for label, name in ((case, "case"), (control, "control")):
        if label not in found:
            raise InputError(
                f"{where}: {name} label {label!r} not found in column {group!r}; "
                f"found {found}"
            )
    return (values == case).fillna(False).to_numpy(bool), (values == control).fillna(
        False
    ).to_numpy(bool)


def encode_covariates(
    participants: pd.DataFrame, columns: Sequence[str], where: str
) -> tuple[np.ndarray, list[str]]:
    """Encode covariates as a numeric matrix (no intercept), missing values kept as NaN.

    Numeric columns are used as they are; text columns (sex, site; stripped of spaces)
    become treatment-coded indicators ``col[level]``, the first sorted level being the
    reference; a text column with a single level gives no column. This is
    :class:`danemap.stats._design.CovariateEncoder` with ``missing="keep"`` and
    ``single_level="drop"``.

    Parameters
    ----------
    participants : pandas.DataFrame
        The participants table.
    columns : sequence of str
        Covariate columns.
    where : str
        Name used in messages.

    Returns
    -------
    matrix : ndarray, shape (n, k)
        Encoded covariates; missing values stay NaN.
    names : list of str
        Column names (``sex[M]`` for indicators).
    """
    import pandas as pd

    check_columns(participants, columns, where)
    df = participants[list(dict.fromkeys(columns))].reset_index(drop=True)
    for col in df.columns:
        if not pd.api.types.is_numeric_dtype(df[col]):
            df[col] = df[col].astype("string").str.strip()
    enc = CovariateEncoder(missing="keep", single_level="drop")
    return enc.fit_transform(df, name=where), list(enc.names_)


def rows_policy(rows: Mapping[str, Mapping[str, Any]], session: str | None) -> dict[str, Any]:
    """Describe how repeated rows (sessions, runs) were handled, for sidecars and summary.

    Parameters
    ----------
    rows : mapping
        ``DataFrame.attrs["rows"]`` of :func:`load_features` (per file).
    session : str or None
        The selected session.

    Returns
    -------
    dict
        ``runs`` (:data:`RUNS_POLICY`), ``session``, ``participants_with_runs_averaged``
        and the per-file ``tables``.
    """
    return {"runs": RUNS_POLICY, "session": session,
            "participants_with_runs_averaged": int(sum(r.get("averaged", 0)
                                                       for r in rows.values())),
            "tables": {str(k): dict(v) for k, v in rows.items()}}


def stats_sidecar(
    description: str,
    columns: Mapping[str, str],
    *,
    n: Mapping[str, Any],
    covariates: Sequence[str],
    harmonization: str,
    site: str | None,
    group: Mapping[str, Any] | None,
    sources: Mapping[str, Any],
    repeated_rows: Mapping[str, Any] | None,
    **extra: Any,
) -> dict[str, Any]:
    """Build the JSON sidecar of a statistics table: n, covariates, harmonisation, columns.

    Parameters
    ----------
    description : str
        What the table holds.
    columns : mapping
        Description of every column (checked by :func:`write_result`).
    n : mapping
        Participant counts (e.g. ``case``, ``control``, ``scored``, ``training``).
    covariates : sequence of str
        Covariates used.
    harmonization : str
        What harmonisation was done (``"none"`` when nothing was).
    site : str or None
        Site column.
    group : mapping or None
        ``column``, ``case`` and ``control`` labels.
    sources : mapping
        Input files.
    repeated_rows : mapping or None
        :func:`rows_policy` of the feature tables.
    **extra
        Further entries, placed before ``Columns``.

    Returns
    -------
    dict
        The sidecar content for :func:`write_result`.
    """
    from danemap._version import __version__

    return {
        "Description": description,
        "GeneratedBy": {"Name": "danemap", "Version": __version__},
        "Sources": dict(sources),
        "Group": None if group is None else dict(group),
        "N": dict(n),
        "Covariates": list(covariates),
        "Site": site,
        "Harmonization": harmonization,
        "RepeatedRows": None if repeated_rows is None else dict(repeated_rows),
        "Disclaimer": DISCLAIMER,
        **extra,
        "Columns": dict(columns),
    }


def write_result(
    df: pd.DataFrame, path: PathLike, sidecar: Mapping[str, Any], *, float_format: str = "%.10g"
) -> Path:
    """Write a result table as TSV (``n/a`` for missing) plus a ``.json`` sidecar.

    A use of :func:`danemap.io.write_table` (atomic, streamed in blocks of rows) that
    first checks the sidecar's ``Columns`` describe every column.

    Parameters
    ----------
    df : pandas.DataFrame
        The table (its index is not written).
    path : path-like
        Output ``.tsv`` path; the sidecar goes next to it with ``.json``.
    sidecar : mapping
        Sidecar content; a ``Columns`` entry describing every column is expected.
    float_format : str
        Float format of the TSV.

    Returns
    -------
    pathlib.Path
        The TSV path.
    """
    p = Path(path)
    missing = [c for c in df.columns if c not in sidecar.get("Columns", {})]
    if missing:  # a programming error, not a user error
        raise RuntimeError(f"sidecar of {p.name} does not describe columns {missing}")
    return write_table(df, p, sidecar, float_format=float_format, block_cells=_WRITE_CELLS)


def rare_levels(participants: pd.DataFrame, keep: np.ndarray, columns: Sequence[str],
                min_count: int, counted: np.ndarray | None = None,
                need: str = "participants") -> tuple[np.ndarray, list[str]]:
    """Leave out the participants whose level of a categorical column is held by too few.

    Parameters
    ----------
    participants : pandas.DataFrame
        The participants table.
    keep : numpy.ndarray of bool
        Participants used so far (complete rows).
    columns : sequence of str
        Categorical columns (site, sex...); each level must be held by ``min_count``
        participants of ``keep & counted``.
    min_count : int
        Participants a level needs.
    counted : numpy.ndarray of bool or None
        Participants that count towards a level (the normative model: the controls);
        default every participant of ``keep``.
    need : str
        Who is counted, for the message (``"controls"``).

    Returns
    -------
    keep : numpy.ndarray of bool
        ``keep`` without the participants of a rare level.
    notes : list of str
        One note per column with rare levels, naming them and their participants.
    """
    import pandas as pd

    keep = keep.copy()
    ids = np.asarray(participants.index.astype(str))
    base = keep if counted is None else counted
    notes = []
    for col in dict.fromkeys(c for c in columns if c):
        labels = participants[col].astype("string").str.strip().fillna("n/a").to_numpy(str)
        counts = pd.Series(labels[keep & base]).value_counts()
        rare = sorted({str(lv) for lv in labels[keep] if counts.get(lv, 0) < int(min_count)})
        if rare:
            drop = keep & np.isin(labels, rare)
            notes.append(f"{int(drop.sum())} whose {col} level(s) {rare} have fewer than "
                         f"{min_count} {need} ({_listing(ids[drop].tolist())})")
            keep &= ~drop
    return keep, notes


def incomplete_note(participants: pd.DataFrame, rows: np.ndarray, complete: np.ndarray,
                    columns: Sequence[str]) -> list[str]:
    """Note naming the participants of ``rows`` left out for missing values (or none).

    Parameters
    ----------
    participants : pandas.DataFrame
        The participants table.
    rows, complete : numpy.ndarray of bool
        Participants of the analysis (both groups) and those of them that are complete.
    columns : sequence of str
        The columns that must be present.

    Returns
    -------
    list of str
        Zero or one note.
    """
    miss = np.asarray(participants.index.astype(str))[rows & ~complete].tolist()
    if not miss:
        return []
    return [f"{len(miss)} with missing {list(columns)} or non-finite features "
            f"({_listing(miss)})"]


def left_out_warning(analysis: str, notes: Sequence[str]) -> None:
    """Warn once, naming every participant an analysis leaves out (nothing if none).

    Parameters
    ----------
    analysis : str
        The analysis (``"normative model"``, ``"classification"``).
    notes : sequence of str
        From :func:`incomplete_note` and :func:`rare_levels`.
    """
    if notes:
        warnings.warn(f"{analysis}: participants left out: " + "; ".join(notes),
                      DanemapWarning, stacklevel=3)
