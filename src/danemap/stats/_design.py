"""Design-matrix helpers shared by every statistics module.

Everything that turns a ``participants.tsv``-like table into numbers lives here, so that
ComBat, the GLM, the permutation engine and the application modules (symptoms, normative,
classification) encode covariates the same way:

* categorical columns (object, string, category or bool dtype) are dummy-encoded with the
  first level (in sorted order) dropped; numeric columns are used as they are;
* missing values are either reported (:func:`check_complete`, with the rows and columns
  named) or dropped with a logged count (:func:`drop_incomplete`);
* feature tables and participant tables are joined on ``participant_id``
  (:func:`join_features`).

:class:`GroupDesign` is the study design every group analysis takes: the group column and
its labels, the covariates, the site and the ICV column. The analyses take their tables
index-aligned: features and participants both indexed by ``participant_id``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from danemap._utils.logging import get_logger
from danemap.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CovariateEncoder",
    "GroupDesign",
    "as_2d_float",
    "as_labels",
    "check_columns",
    "check_complete",
    "check_numeric_covariates",
    "column_blocks",
    "drop_incomplete",
    "is_categorical",
    "join_features",
]

log = get_logger("stats")

_MAX_LISTED = 10


@dataclass(frozen=True)
class GroupDesign:
    """The study design of the group analyses: groups, covariates, site and ICV.

    Parameters
    ----------
    group : str
        Group column.
    case, control : object
        Values of ``group`` for cases (coded 1, the positive class) and controls.
    covariates : sequence of str
        Covariates (text columns dummy-coded); each is kept once, in order.
    site : str or None
        Site column (ComBat's batch, the GLM's site covariate, the leave-one-site-out
        grouping); None or ``""``: none.
    icv : str or None
        Intracranial-volume column added to the covariates of the analyses that take it
        (harmonisation, GLM, meta-analysis, permutation, NBS; not symptoms, the normative
        model or classification); None or ``""``: none.

    Raises
    ------
    InputError
        If a column name is empty or not a string, case equals control, or the group column
        is listed as a covariate.
    """

    group: str = "group"
    case: Any = "ADHD"
    control: Any = "TD"
    covariates: tuple[str, ...] = ("age", "sex")
    site: str | None = "site"
    icv: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.group, str) or not self.group:
            problems.append(f"group: expected a column name, found {self.group!r}")
        if isinstance(self.covariates, str):
            problems.append(f"covariates: expected a sequence of column names, found the "
                            f"string {self.covariates!r}")
            covariates: tuple[str, ...] = ()
        else:
            covariates = tuple(dict.fromkeys(self.covariates))
            bad = [c for c in covariates if not isinstance(c, str) or not c]
            if bad:
                problems.append(f"covariates: expected column names, found {bad}")
        for name in ("site", "icv"):
            value = getattr(self, name)
            if value == "":
                object.__setattr__(self, name, None)
            elif value is not None and not isinstance(value, str):
                problems.append(f"{name}: expected a column name or None, found {value!r}")
        if self.case is None or self.control is None or self.case == self.control:
            problems.append(f"case, control: expected two different labels, found "
                            f"{self.case!r} and {self.control!r}")
        if self.group in covariates:
            problems.append(f"covariates: the group column {self.group!r} cannot be one")
        if problems:
            raise InputError("GroupDesign: " + "; ".join(problems))
        object.__setattr__(self, "covariates", covariates)

    @classmethod
    def from_config(cls, config: Any) -> GroupDesign:
        """Return the design of a :class:`danemap.config.StatsConfig` (or a ``Config``).

        Parameters
        ----------
        config : danemap.config.StatsConfig or danemap.config.Config
            The ``[stats]`` settings (``group``, ``case``, ``control``, ``covariates``,
            ``site``, ``icv``).

        Returns
        -------
        GroupDesign
            The design; an empty ``site`` or ``icv`` is None.
        """
        cfg = getattr(config, "stats", config)
        return cls(group=cfg.group, case=cfg.case, control=cfg.control,
                   covariates=tuple(cfg.covariates), site=cfg.site or None,
                   icv=cfg.icv or None)

    def replace(self, **changes: Any) -> GroupDesign:
        """Return a copy with ``changes`` applied (validated again)."""
        import dataclasses

        return dataclasses.replace(self, **changes)


def design_or_default(design: GroupDesign | None) -> GroupDesign:
    """Return ``design``, or the default :class:`GroupDesign` when None."""
    if design is None:
        return GroupDesign()
    if not isinstance(design, GroupDesign):
        raise InputError(f"design: expected a danemap.stats.GroupDesign, found "
                         f"{type(design).__name__} (the group, labels, covariates, site and "
                         "ICV are one GroupDesign argument)")
    return design


def indexed_frame(df: pd.DataFrame, name: str, on: str = "participant_id") -> pd.DataFrame:
    """Return ``df`` with its index as an ``on`` column (the join form of the GLM).

    The analyses take index-aligned tables; a table that still has ``on`` as a column is
    refused with the fix.
    """
    if on in df.columns:
        raise InputError(f"{name}: expected '{on}' as the index (danemap.stats takes "
                         f"index-aligned tables), found a '{on}' column; use "
                         f"df.set_index('{on}')")
    return df.rename_axis(on).reset_index()


def _listing(items: Sequence[Any], limit: int = _MAX_LISTED) -> str:
    shown = ", ".join(str(i) for i in list(items)[:limit])
    if len(items) > limit:
        shown += f", ... ({len(items)} in all)"
    return shown


#: Bytes of float64 per block when a computation goes through the features in blocks.
_BLOCK_BYTES = 1 << 25


def column_blocks(n_rows: int, n_cols: int, block_bytes: int = _BLOCK_BYTES) -> Iterator[slice]:
    """Split the columns of an (n_rows, n_cols) float64 array into blocks of about ``block_bytes``.

    Computing column-wise statistics block by block bounds the memory of the temporaries
    whatever the size of the table. Block widths are multiples of 64 columns, so every
    column keeps its position relative to the vector lanes: the column sums computed here
    come out bit for bit as on the whole array.

    Parameters
    ----------
    n_rows, n_cols : int
        Shape of the array.
    block_bytes : int
        Target size of one block.

    Yields
    ------
    slice
        Consecutive column ranges covering ``range(n_cols)``.
    """
    width = max(64, block_bytes // (8 * max(n_rows, 1)) // 64 * 64)
    for start in range(0, n_cols, width):
        yield slice(start, min(start + width, n_cols))


def is_categorical(series: pd.Series) -> bool:
    """Return True when a column is treated as categorical (dummy-encoded).

    Parameters
    ----------
    series : pandas.Series
        The column.

    Returns
    -------
    bool
        True for object, string, category and bool dtypes; False for numbers.
    """
    import pandas as pd

    dtype = series.dtype
    return bool(
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
    )


def as_2d_float(X: Any, name: str = "X") -> np.ndarray:
    """Convert a table or array to a finite 2-D float64 array, naming bad cells.

    Parameters
    ----------
    X : array-like or pandas.DataFrame
        (n_samples, n_features) data.
    name : str
        Parameter name used in error messages.

    Returns
    -------
    numpy.ndarray
        float64 array of shape (n_samples, n_features).

    Raises
    ------
    InputError
        If ``X`` is not 2-D, not numeric, empty, or holds NaN/inf (rows and columns named).
    """
    import pandas as pd

    if isinstance(X, pd.DataFrame):
        non_numeric = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
        if non_numeric:
            raise InputError(
                f"{name}: expected numeric feature columns, found non-numeric columns "
                f"{_listing(non_numeric)}"
            )
        arr = X.to_numpy(dtype=np.float64)
        row_names: Sequence[Any] = list(X.index)
        col_names: Sequence[Any] = list(X.columns)
    else:
        try:
            arr = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{name}: expected a numeric array, got {type(X).__name__}") from exc
        row_names = range(arr.shape[0]) if arr.ndim else []
        col_names = range(arr.shape[1]) if arr.ndim == 2 else []
    if arr.ndim != 2:
        raise InputError(f"{name}: expected a 2-D (n_samples, n_features) array, got "
                         f"shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"{name}: expected at least one sample and one feature, got "
                         f"shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = [row_names[int(i)] for i in np.flatnonzero(bad.any(axis=1))]
        cols = [col_names[int(j)] for j in np.flatnonzero(bad.any(axis=0))]
        raise InputError(
            f"{name}: expected finite values, found {int(bad.sum())} missing/non-finite "
            f"value(s) in rows [{_listing(rows)}] and columns [{_listing(cols)}]; impute or "
            "drop them first"
        )
    return arr


def as_labels(labels: Any, n: int, name: str = "site") -> np.ndarray:
    """Convert site/group labels to a 1-D object array of length ``n`` without missing values.

    Parameters
    ----------
    labels : array-like
        One label per sample.
    n : int
        Expected number of samples.
    name : str
        Parameter name used in error messages.

    Returns
    -------
    numpy.ndarray
        1-D array of labels (object dtype).

    Raises
    ------
    InputError
        On a length mismatch or missing labels.
    """
    import pandas as pd

    arr = np.asarray(labels, dtype=object)
    if arr.ndim != 1:
        arr = arr.reshape(-1) if arr.size == n else arr
    if arr.ndim != 1 or arr.shape[0] != n:
        raise InputError(f"{name}: expected {n} labels (one per row of X), got shape "
                         f"{np.shape(labels)}")
    missing = pd.isna(pd.Series(arr)).to_numpy()
    if missing.any():
        raise InputError(f"{name}: expected a label for every sample, found missing labels "
                         f"in rows [{_listing(np.flatnonzero(missing).tolist())}]")
    return arr


def check_columns(df: pd.DataFrame, columns: Iterable[str | None], where: str) -> None:
    """Raise :class:`InputError` naming the requested columns that are absent.

    Parameters
    ----------
    df : pandas.DataFrame
        The table (e.g. the participants table).
    columns : iterable of str or None
        Required columns (``None`` entries are skipped).
    where : str
        The file or parameter named in the message.

    Raises
    ------
    InputError
        Naming the first absent column (with a close match if one exists), every absent
        column and the available ones.
    """
    absent = [c for c in columns if c is not None and c not in df.columns]
    if not absent:
        return
    hint = difflib.get_close_matches(str(absent[0]), [str(c) for c in df.columns], n=1)
    extra = f"; did you mean {hint[0]!r}?" if hint else ""
    raise InputError(f"{where}: column {absent[0]!r} not found (expected column(s) {absent}); "
                     f"available columns are {_listing(list(df.columns), 30)}{extra}")


def check_complete(df: pd.DataFrame, columns: Iterable[str], name: str = "participants",
                   id_column: str = "participant_id") -> None:
    """Raise if any of ``columns`` is absent from ``df`` or has missing values.

    Parameters
    ----------
    df : pandas.DataFrame
        The table.
    columns : iterable of str
        Columns that must be present and complete.
    name : str
        Name of the table (file or parameter) for messages.
    id_column : str
        Column (or index name) used to name offending rows.

    Raises
    ------
    InputError
        Naming the missing columns, or the incomplete columns and rows.
    """
    columns = list(columns)
    check_columns(df, columns, name)
    sub = df[columns]
    miss = sub.isna()
    if miss.to_numpy().any():
        ids = df[id_column] if id_column in df.columns else df.index.to_series()
        rows = ids[miss.any(axis=1).to_numpy()].tolist()
        cols = [c for c in columns if miss[c].any()]
        raise InputError(f"{name}: expected complete values in columns {cols}, found missing "
                         f"values in rows [{_listing(rows)}]")


def check_numeric_covariates(df: pd.DataFrame, columns: Iterable[Any], name: str) -> None:
    """Refuse a text covariate that must be a number (an ``age`` of ``89+``), with the fix.

    A covariate must be a number when it is named ``age`` or when most of its values are
    numbers (:func:`danemap.io._participants.must_be_numeric`): dummy-encoding it would
    silently turn each value into a group of its own. The message names the file when
    the table came from :func:`danemap.io.read_participants` (``df.attrs["source"]``),
    the column, the bad values with their participants (when the table still has them)
    and the fix.

    Parameters
    ----------
    df : pandas.DataFrame
        The table (participants or covariates).
    columns : iterable
        The covariates to check (absent ones are left to :func:`check_columns`).
    name : str
        The table or analysis named in the message.

    Raises
    ------
    InputError
        ``"<file> (<name>): covariate 'age' must be a number, found non-numeric value(s)
        '89+' (sub-03); recode '89+' as a number, or remove 'age' from [stats]
        covariates"``.
    """
    import pandas as pd

    from danemap.io._participants import must_be_numeric, non_numeric_message, non_numeric_values

    for col in columns:
        if col not in df.columns:
            continue
        s = df[col]
        if not is_categorical(s) or pd.api.types.is_bool_dtype(s.dtype):
            continue
        values = [None if pd.isna(v) else v for v in s.to_numpy(dtype=object)]
        if not must_be_numeric(str(col), values):
            continue
        bad = non_numeric_values(values)
        if not bad:
            continue
        if "participant_id" in df.columns:
            rows: list[str] | None = [str(v) for v in df["participant_id"].to_numpy(object)]
        elif isinstance(df.index, pd.RangeIndex):
            rows = None  # reset by the caller: a position would not be a line of the file
        else:
            rows = [str(v) for v in df.index]
        source = df.attrs.get("source")
        where = f"{source} ({name})" if source and str(source) != name else name
        raise InputError(f"{where}: " + non_numeric_message(
            str(col), [v for _, v in bad], None if rows is None else [rows[i] for i, _ in bad]))


def drop_incomplete(df: pd.DataFrame, columns: Iterable[str],
                    name: str = "participants") -> tuple[pd.DataFrame, int]:
    """Drop rows with a missing value in any of ``columns``, logging how many went.

    Parameters
    ----------
    df : pandas.DataFrame
        The table.
    columns : iterable of str
        Columns that must be complete (absent columns raise).
    name : str
        Name of the table for messages.

    Returns
    -------
    kept : pandas.DataFrame
        The complete rows.
    n_dropped : int
        How many rows were dropped.

    Raises
    ------
    InputError
        If a column is absent, a covariate that must be a number is not (see
        :func:`check_numeric_covariates`), or no row is left.
    """
    columns = list(columns)
    check_columns(df, columns, name)
    check_numeric_covariates(df, columns, name)
    mask = df[columns].notna().all(axis=1)
    n_dropped = int((~mask).sum())
    if n_dropped:
        per_col = {c: int(df[c].isna().sum()) for c in columns if df[c].isna().any()}
        log.info("%s: dropped %d of %d rows with missing values (%s)", name, n_dropped,
                 len(df), per_col)
    kept = df.loc[mask]
    if kept.empty:
        raise InputError(f"{name}: no row is complete for columns {columns} "
                         f"({len(df)} rows, all with a missing value)")
    return kept, n_dropped


def join_features(features: pd.DataFrame, participants: pd.DataFrame,
                  on: str = "participant_id") -> tuple[pd.DataFrame, list[str]]:
    """Inner-join a feature table with a participants table on ``participant_id``.

    Parameters
    ----------
    features : pandas.DataFrame
        ``participant_id`` plus one numeric column per feature.
    participants : pandas.DataFrame
        ``participant_id`` plus covariates.
    on : str
        Join column.

    Returns
    -------
    joined : pandas.DataFrame
        One row per participant in both tables, in feature-table order.
    feature_names : list of str
        The feature columns.

    Raises
    ------
    InputError
        If the join column is missing, duplicated, a feature column clashes with a
        participants column, a feature column is not numeric, or nothing matches.
    """
    import pandas as pd

    for tname, df in (("features", features), ("participants", participants)):
        if on not in df.columns:
            raise InputError(f"{tname}: expected a '{on}' column, found "
                             f"{_listing(list(df.columns), 30)}")
        dup = df[on][df[on].duplicated()].tolist()
        if dup:
            raise InputError(f"{tname}: expected unique '{on}', found duplicates "
                             f"[{_listing(dup)}]")
    feature_names = [c for c in features.columns if c != on]
    if not feature_names:
        raise InputError("features: expected at least one feature column besides "
                         f"'{on}', found none")
    clash = [c for c in feature_names if c in participants.columns]
    if clash:
        raise InputError(f"features: feature column(s) {_listing(clash)} also exist in "
                         "participants; rename them")
    # one pass over the dtypes, not one column access per feature (tables of 10^4 edges)
    non_numeric = [c for c, dt in zip(features.columns, features.dtypes, strict=True)
                   if c != on and not pd.api.types.is_numeric_dtype(dt)]
    if non_numeric:
        raise InputError(f"features: expected numeric feature columns, found non-numeric "
                         f"{_listing(non_numeric)}")
    f_ids = features[on].astype(str)
    pos = pd.Index(participants[on].astype(str)).get_indexer(f_ids)  # -1: not a participant
    found = pos >= 0
    f = (features if found.all() else features[found]).reset_index(drop=True)
    f[on] = f_ids[found].to_numpy()
    # an inner join in feature-table order; unlike DataFrame.merge, concat does not copy
    # the (possibly large) feature columns
    joined = pd.concat([f, participants.drop(columns=on).iloc[pos[found]]
                        .reset_index(drop=True)], axis=1)
    joined.attrs = dict(participants.attrs)  # the participants file, for messages
    n_f, n_p, n_j = len(features), len(participants), len(joined)
    if n_j == 0:
        raise InputError(f"features/participants: no '{on}' in common (features has {n_f} "
                         f"rows, participants {n_p}; e.g. {_listing(f_ids.tolist(), 3)})")
    if n_j < n_f:
        log.info("features: %d of %d rows have no match in participants and were dropped",
                 n_f - n_j, n_f)
    return joined, feature_names


@dataclass
class CovariateEncoder:
    """Encode a covariate table as a numeric matrix, remembering the levels seen at fit.

    Categorical columns (see :func:`is_categorical`, or listed in ``categorical``) become
    dummy columns named ``col[level]`` with the first sorted level dropped; numeric
    columns are used as they are.

    Parameters
    ----------
    categorical : sequence of str or None
        Columns to treat as categorical even if numeric (e.g. integer codes).
    missing : {"raise", "keep"}
        Missing values raise (naming rows and columns), or stay NaN in the encoded
        matrix (every dummy of that column is NaN on that row).
    single_level : {"raise", "drop"}
        A categorical column with fewer than two levels at fit raises, or is left out
        (no encoded column; logged), e.g. sex within a single-sex stratum.
    """

    categorical: Sequence[str] | None = None
    missing: str = "raise"
    single_level: str = "raise"
    columns_: list[str] = field(default_factory=list)
    levels_: dict[str, list[Any]] = field(default_factory=dict)
    names_: list[str] = field(default_factory=list)

    def fit(self, df: pd.DataFrame, name: str = "covars") -> CovariateEncoder:
        """Learn columns and categorical levels from ``df``.

        Parameters
        ----------
        df : pandas.DataFrame
            Complete covariate table.
        name : str
            Parameter name for messages.

        Returns
        -------
        CovariateEncoder
            ``self``.
        """
        if self.missing not in ("raise", "keep") or self.single_level not in ("raise", "drop"):
            raise InputError(f"CovariateEncoder: expected missing in ('raise', 'keep') and "
                             f"single_level in ('raise', 'drop'), found {self.missing!r}, "
                             f"{self.single_level!r}")
        self._check(df, list(df.columns), name)
        forced = set(self.categorical or ())
        check_numeric_covariates(df, [c for c in df.columns if c not in forced], name)
        self.columns_ = list(df.columns)
        self.levels_ = {}
        self.names_ = []
        for col in self.columns_:
            s = df[col]
            if col in forced or is_categorical(s):
                levels = sorted(_unique(s), key=lambda v: str(v))
                if len(levels) < 2 and self.single_level == "drop":
                    log.info("%s: covariate '%s' has one level here and is left out", name, col)
                elif len(levels) < 2:
                    raise InputError(f"{name}: categorical column '{col}' has a single level "
                                     f"{levels}; it cannot be estimated, remove it")
                self.levels_[col] = levels
                self.names_ += [f"{col}[{lv}]" for lv in levels[1:]]
            else:
                self.names_.append(str(col))
        return self

    def transform(self, df: pd.DataFrame, name: str = "covars") -> np.ndarray:
        """Encode ``df`` with the fitted columns and levels.

        Parameters
        ----------
        df : pandas.DataFrame
            Covariate table with the fitted columns.
        name : str
            Parameter name for messages.

        Returns
        -------
        numpy.ndarray
            (n, len(names_)) float64 matrix.

        Raises
        ------
        InputError
            On missing columns or values, or a categorical level not seen at fit.
        """
        import pandas as pd

        self._check(df, self.columns_, name)
        blocks: list[np.ndarray] = []
        for col in self.columns_:
            s = df[col]
            if col in self.levels_ and len(self.levels_[col]) < 2:
                continue  # left out at fit (one level): no column, any level is accepted
            if col in self.levels_:
                levels = self.levels_[col]
                vals = s.to_numpy(dtype=object)
                na = pd.isna(s).to_numpy(bool)
                known = {str(v) for v in levels}
                unseen = sorted({str(v) for v in vals[~na]} - known)
                if unseen:
                    raise InputError(f"{name}: column '{col}' has level(s) {unseen} not seen "
                                     f"at fit (fitted levels: {[str(v) for v in levels]})")
                sv = np.array([str(v) for v in vals])
                for lv in levels[1:]:
                    blocks.append(np.where(na, np.nan, sv == str(lv))[:, None])
            else:
                try:
                    blocks.append(s.to_numpy(dtype=np.float64)[:, None])
                except (TypeError, ValueError) as exc:
                    raise InputError(f"{name}: column '{col}' was numeric at fit, found "
                                     f"non-numeric values") from exc
        if not blocks:
            return np.empty((len(df), 0))
        return np.hstack(blocks)

    def fit_transform(self, df: pd.DataFrame, name: str = "covars") -> np.ndarray:
        """Fit then transform ``df``.

        Parameters
        ----------
        df : pandas.DataFrame
            Covariate table.
        name : str
            Parameter name for messages.

        Returns
        -------
        numpy.ndarray
            Encoded matrix.
        """
        return self.fit(df, name=name).transform(df, name=name)

    def _check(self, df: pd.DataFrame, columns: list[str], name: str) -> None:
        dup = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
        if dup:  # df[col] would be a table, not a column
            raise InputError(f"{name}: column(s) {dup} appear more than once; list each "
                             "covariate once")
        if self.missing == "keep":
            check_columns(df, columns, name)
        else:
            check_complete(df, columns, name=name)


def _unique(series: pd.Series) -> list[Any]:
    """Return the distinct non-missing values of a column (helper for encoders)."""
    return list(series.dropna().unique())
