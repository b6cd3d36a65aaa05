"""Confound selection from fMRIPrep tables, scrubbing and motion QC.

The selection reproduces :func:`nilearn.interfaces.fmriprep.load_confounds_strategy`
(nilearn 0.14) column for column:

* ``simple``: ``cosine*`` (fMRIPrep high-pass), motion (``basic`` = 6, ``derivatives``,
  ``power2``, ``full`` = 24 columns) and ``csf``/``white_matter`` with the same expansion.
* ``scrubbing``: the same plus censoring. A volume is flagged when
  ``framewise_displacement > fd_threshold`` or ``std_dvars > std_dvars_threshold``; the
  flags are padded with ``scrub_before`` / ``scrub_after`` neighbours (Power et al. 2012;
  nilearn pads with 0 and 0), then segments of fewer than ``min_segment`` kept volumes are
  censored too (nilearn's ``scrub=5``).
* ``compcor``: ``cosine*``, motion and the first ``n_compcor`` anatomical CompCor
  components of the ``combined`` mask (``a_comp_cor_*``; the JSON sidecar decides which
  mask a component belongs to; without a sidecar the first ``n_compcor`` ``a_comp_cor_NN``
  columns are used).
* ``custom``: exactly the columns of ``FunctionalConfig.confounds``.

Three defaults differ from nilearn's presets on purpose (the WM/CSF model under
``scrubbing``, the scrubbing padding, the number of CompCor components); the reasons are
in :class:`danemap.config.FunctionalConfig`.

``non_steady_state_outlier*`` columns always censor their volumes, as in nilearn.
The derivative columns have ``n/a`` in the first row; like nilearn, missing values in the
first row are filled with the second row, then the confounds are demeaned over the kept
volumes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from danemap.errors import InputError

__all__: list[str] = []

MOTION_BASE = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
WM_CSF_BASE = ["csf", "white_matter"]
EXPANSIONS = {
    "basic": (),
    "derivatives": ("_derivative1",),
    "power2": ("_power2",),
    "full": ("_derivative1", "_power2", "_derivative1_power2"),
}
STRATEGIES = ("simple", "scrubbing", "compcor", "custom")


@dataclass
class ConfoundSelection:
    """Selected confounds, kept volumes and motion QC of one run."""

    confounds: pd.DataFrame
    sample_mask: np.ndarray | None
    qc: dict[str, Any]


def expand(params: Sequence[str], model: str, where: str) -> list[str]:
    """Return ``params`` with nilearn's suffixes for ``model`` (basic/derivatives/...)."""
    if model not in EXPANSIONS:
        raise InputError(
            f"{where}: expected one of {sorted(EXPANSIONS)}, found {model!r}"
        )
    out = list(params)
    for suffix in EXPANSIONS[model]:
        out += [p + suffix for p in params]
    return out


def read_confounds(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read an fMRIPrep ``*_desc-confounds_timeseries.tsv`` (``n/a`` becomes NaN).

    Parameters
    ----------
    path : path-like
        The TSV file.

    Returns
    -------
    pandas.DataFrame
        One column per confound, float64.

    Raises
    ------
    InputError
        Naming the file: missing, empty (no header, or a header without rows), not a
        tab-separated table, rows longer than the header, or a column with text.
    """
    p = Path(path)
    if p.exists() and not p.is_file():  # a pipe or a device would block or never end
        raise InputError(f"{p}: not a regular file (a folder, pipe or device); expected an "
                         "fMRIPrep confounds table")
    try:
        df = pd.read_csv(p, sep="\t", na_values=["n/a", "N/A", "NaN", "nan", ""],
                         keep_default_na=False)
    except FileNotFoundError as exc:
        raise InputError(f"{p}: confounds file not found") from exc
    except pd.errors.EmptyDataError as exc:
        raise InputError(
            f"{p}: the confounds file is empty; expected a tab-separated table with a "
            "header row of confound names and one row per BOLD volume") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: not a readable tab-separated table ({exc})") from exc
    except (OSError, ValueError) as exc:  # a folder, unreadable bytes
        raise InputError(f"{p}: cannot read the confounds file ({exc})") from exc
    if not isinstance(df.index, pd.RangeIndex):  # pandas made the extra first cells an index
        raise InputError(
            f"{p}: rows have more cells than the {len(df.columns)} columns of the header; "
            "expected one tab-separated value per confound name")
    if len(df) == 0:
        raise InputError(
            f"{p}: the confounds table has a header ({len(df.columns)} columns) but no "
            "rows; expected one row per BOLD volume")
    bad = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    if bad:
        examples = []
        for c in bad[:3]:
            vals = pd.to_numeric(df[c], errors="coerce")
            rows = np.flatnonzero(vals.isna().to_numpy() & df[c].notna().to_numpy())
            if rows.size:
                examples.append(f"{c!r} line {int(rows[0]) + 2}: {df[c].iloc[rows[0]]!r}")
        raise InputError(
            f"{p}: confound columns must be numeric (or n/a); found text in "
            f"{[str(c) for c in bad[:5]]}" + (f" (e.g. {'; '.join(examples)})" if examples
                                             else ""))
    return df.astype(np.float64)


def read_confounds_json(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Read the confounds JSON sidecar next to ``path`` (``.tsv`` -> ``.json``), if any."""
    p = Path(path)
    js = p.with_name(p.name[: -len(".tsv")] + ".json") if p.name.endswith(".tsv") else None
    if js is None or not js.is_file():
        return None
    from danemap.io import read_json

    return read_json(js, "confounds sidecar")


def _require(df: pd.DataFrame, cols: Sequence[str], what: str, source: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputError(
            f"{source}: denoising needs {what} columns {missing} that are not in the "
            f"confounds table (available: {', '.join(map(str, df.columns[:12]))}"
            f"{', ...' if len(df.columns) > 12 else ''})"
        )


def compcor_columns(df: pd.DataFrame, meta: Mapping[str, Any] | None, n: int,
                    source: str) -> list[str]:
    """First ``n`` anatomical CompCor columns of the ``combined`` mask (nilearn order)."""
    if meta is not None:
        names = [c for c in meta if "a_comp_cor" in c]
        ordered = [f"a_comp_cor_{i:02d}" for i in range(len(names))]
        cols = [c for c in ordered
                if isinstance(meta.get(c), Mapping) and meta[c].get("Mask") == "combined"]
    else:
        cols = sorted(c for c in df.columns if str(c).startswith("a_comp_cor_"))
    cols = cols[:n] if n >= 0 else cols
    if not cols:
        raise InputError(
            f"{source}: strategy 'compcor' needs a_comp_cor_* columns (combined mask); "
            "none found"
        )
    _require(df, cols, "CompCor", source)
    return cols


def scrub_mask(fd: np.ndarray, std_dvars: np.ndarray | None, fd_threshold: float,
               dvars_threshold: float | None, before: int, after: int,
               min_segment: int) -> np.ndarray:
    """Boolean array, True for volumes censored by scrubbing.

    Parameters
    ----------
    fd, std_dvars : ndarray
        Framewise displacement and standardised DVARS (NaN is never flagged).
    fd_threshold, dvars_threshold : float
        Flag ``fd > fd_threshold`` or ``std_dvars > dvars_threshold`` (None: FD only).
    before, after : int
        Neighbours censored before / after each flagged volume.
    min_segment : int
        Kept segments shorter than this are censored too (nilearn ``scrub``); 0 disables.

    Returns
    -------
    ndarray of bool
    """
    n = fd.shape[0]
    with np.errstate(invalid="ignore"):
        flagged = np.nan_to_num(fd, nan=-np.inf) > fd_threshold
        if std_dvars is not None and dvars_threshold is not None:
            flagged |= np.nan_to_num(std_dvars, nan=-np.inf) > dvars_threshold
    out = flagged.copy()
    for i in np.flatnonzero(flagged):
        out[max(0, i - before): min(n, i + after + 1)] = True
    if min_segment > 0 and out.any():
        idx = np.flatnonzero(out)
        # nilearn.optimize_scrub: short head/tail segments and short gaps are censored
        if idx[0] < min_segment:
            out[: idx[0]] = True
        if n - (idx[-1] + 1) < min_segment:
            out[idx[-1]:] = True
        gaps = np.diff(idx)
        for k in np.flatnonzero((gaps > 1) & (gaps < min_segment + 1)):
            out[idx[k] + 1: idx[k + 1]] = True
    return out


def select_confounds(df: pd.DataFrame, cfg: Any, meta: Mapping[str, Any] | None = None,
                     source: str = "confounds") -> ConfoundSelection:
    """Select confounds, censored volumes and motion QC following ``cfg.strategy``.

    Parameters
    ----------
    df : pandas.DataFrame
        The full fMRIPrep confounds table (n/a already NaN).
    cfg : FunctionalConfig
        Strategy, motion/wm_csf models, FD and DVARS thresholds (``std_dvars_threshold``
        <= 0: FD only), scrubbing padding, minimum kept segment (``scrub_min_segment``).
    meta : mapping or None
        The confounds JSON sidecar (CompCor masks).
    source : str
        Name used in error messages (the file).

    Returns
    -------
    ConfoundSelection
    """
    strategy = cfg.strategy
    if strategy not in STRATEGIES:
        raise InputError(
            f"functional.strategy: expected one of {list(STRATEGIES)}, found {strategy!r}"
        )
    n = len(df)
    cols: list[str] = []
    if strategy in ("simple", "scrubbing", "compcor"):
        cols += [c for c in df.columns if "cosine" in str(c)]
        motion = expand(MOTION_BASE, cfg.motion, "functional.motion")
        _require(df, motion, "motion", source)
        cols += motion
    if strategy in ("simple", "scrubbing"):
        wm = expand(WM_CSF_BASE, cfg.wm_csf, "functional.wm_csf")
        _require(df, wm, "wm_csf", source)
        cols += wm
    if strategy == "compcor":
        cols += compcor_columns(df, meta, int(cfg.n_compcor), source)
    if strategy == "custom":
        if not cfg.confounds:
            raise InputError(
                "functional.confounds: strategy 'custom' needs a list of confound columns; "
                "found an empty list"
            )
        _require(df, cfg.confounds, "user-listed", source)
        cols += list(cfg.confounds)

    censored = np.zeros(n, dtype=bool)
    nss = [c for c in df.columns if "non_steady_state" in str(c)]
    for c in nss:
        censored |= df[c].fillna(0).to_numpy() != 0
    cols = [c for c in dict.fromkeys(cols) if "motion_outlier" not in str(c)]

    fd = (df["framewise_displacement"].to_numpy(dtype=float)
          if "framewise_displacement" in df.columns else None)
    dvars = df["std_dvars"].to_numpy(dtype=float) if "std_dvars" in df.columns else None
    flagged = None
    if fd is not None:
        dvars_threshold = cfg.std_dvars_threshold if cfg.std_dvars_threshold > 0 else None
        flagged = scrub_mask(fd, dvars, cfg.fd_threshold, dvars_threshold,
                             cfg.scrub_before, cfg.scrub_after, cfg.scrub_min_segment)
    if strategy == "scrubbing":
        if fd is None:
            raise InputError(
                f"{source}: strategy 'scrubbing' needs the 'framewise_displacement' column"
            )
        assert flagged is not None
        censored |= flagged

    conf = df[cols].copy()
    if len(conf.columns) and n > 1:
        first = conf.iloc[0].isna().to_numpy()
        conf.iloc[0, first] = conf.iloc[1, first].to_numpy()
    if conf.isna().to_numpy().any():
        bad = conf.columns[conf.isna().any()].tolist()
        raise InputError(
            f"{source}: confound columns {bad[:5]} have missing values (n/a) after the "
            "first row; only the first row may be n/a (fMRIPrep's derivative columns), and "
            "it is filled with the second row as nilearn's load_confounds does"
        )
    if np.isinf(conf.to_numpy()).any():
        bad = conf.columns[np.isinf(conf.to_numpy()).any(axis=0)].tolist()
        raise InputError(
            f"{source}: confound columns {bad[:5]} have infinite values; expected finite "
            "numbers"
        )
    keep = ~censored
    if not keep.any():
        raise InputError(
            f"{source}: every volume was censored (non-steady-state or scrubbing with "
            f"fd_threshold={cfg.fd_threshold}); nothing left to analyse"
        )
    if len(conf.columns):
        conf = conf - conf.to_numpy()[keep].mean(axis=0)

    mean_fd = float(np.nanmean(fd)) if fd is not None and np.isfinite(fd).any() else None
    pct_flag = 100.0 * float(flagged.mean()) if flagged is not None else None
    pct_scrubbed = 100.0 * float(censored.mean())
    reasons = []
    if mean_fd is not None and mean_fd > cfg.max_mean_fd:
        reasons.append(f"mean FD {mean_fd:.3f} mm > max_mean_fd {cfg.max_mean_fd}")
    pct_for_exclusion = pct_flag if pct_flag is not None else pct_scrubbed
    if pct_for_exclusion > cfg.max_scrubbed_pct:
        reasons.append(
            f"{pct_for_exclusion:.1f}% volumes flagged > max_scrubbed_pct {cfg.max_scrubbed_pct}"
        )
    qc: dict[str, Any] = {
        "n_volumes": n,
        "n_volumes_kept": int(keep.sum()),
        "mean_fd": mean_fd,
        "max_fd": float(np.nanmax(fd)) if mean_fd is not None and fd is not None else None,
        "fd_threshold": cfg.fd_threshold,
        "n_fd_over_threshold": int(np.sum(np.nan_to_num(fd, nan=0) > cfg.fd_threshold))
        if fd is not None else None,
        "pct_flagged": pct_flag,
        "pct_scrubbed": pct_scrubbed,
        "n_non_steady_state": int(sum((df[c].fillna(0) != 0).sum() for c in nss)),
        "strategy": strategy,
        "confounds": [str(c) for c in conf.columns],
        "exclude": bool(reasons),
        "exclusion_reasons": reasons,
        "qc_reason": "motion" if reasons else None,
        "max_mean_fd": cfg.max_mean_fd,
        "max_scrubbed_pct": cfg.max_scrubbed_pct,
    }
    sample_mask = np.flatnonzero(keep) if censored.any() else None
    return ConfoundSelection(confounds=conf, sample_mask=sample_mask, qc=qc)
