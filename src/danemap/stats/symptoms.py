"""Symptom association: partial correlation of each feature with each symptom score.

For every feature × symptom pair, both variables are residualised on the covariates
(an intercept, the covariates and, by default, site indicators) and correlated. The
t statistic of a partial correlation with ``k`` covariate columns has
``df = n - 2 - k`` degrees of freedom, and equals the t of the symptom's coefficient
in the OLS model ``feature ~ symptom + covariates``. The 95% CI uses Fisher's z
with standard error ``1 / sqrt(n - 3 - k)``.

Symptom scales that differ between sites (ADHD-200: NYU uses Conners T-scores,
Peking uses ADHD-RS raw scores) are standardised within site by default: each score
is z-scored within its site over every participant of that site who has it. The
``symptom_scaling`` column says which scaling was used.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from danemap._utils.docs import fill_doc
from danemap._utils.logging import get_logger
from danemap.errors import DanemapWarning, InputError
from danemap.stats._design import GroupDesign, column_blocks, design_or_default
from danemap.stats._tables import check_columns, encode_covariates, group_mask
from danemap.stats.multiple import fdr_bh

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["partial_correlation", "standardize_within_site", "symptom_association"]

log = get_logger("stats.symptoms")

DEFAULT_SYMPTOMS = ("adhd_index", "inattentive", "hyperimpulsive")


def _residualize(a: np.ndarray, design: np.ndarray) -> np.ndarray:
    """Residuals of the columns of ``a`` after least squares on ``design`` (a new array)."""
    beta, *_ = np.linalg.lstsq(design, a, rcond=None)
    fitted = design @ beta
    return np.subtract(a, fitted, out=fitted)  # in place: one array of the size of ``a``


def partial_correlation(
    x: np.ndarray, y: np.ndarray, covariates: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Partial correlation of each column of ``x`` with ``y`` given ``covariates``.

    Parameters
    ----------
    x : ndarray, shape (n, p)
        Features (no missing values).
    y : ndarray, shape (n,)
        Score (no missing values).
    covariates : ndarray, shape (n, k) or None
        Covariates, without an intercept (one is added).

    Returns
    -------
    dict
        ``r``, ``t``, ``df``, ``p``, ``ci_low``, ``ci_high`` (arrays of length p) and
        ``n`` and ``k`` (rank of the covariates, without the intercept).
    """
    from scipy import stats

    x = np.asarray(x, float)
    if x.ndim == 1:
        x = x[:, None]
    y = np.asarray(y, float)
    n = len(y)
    cov = np.empty((n, 0)) if covariates is None else np.asarray(covariates, float)
    design = np.column_stack([np.ones(n), cov])
    k = int(np.linalg.matrix_rank(design)) - 1
    rx = _residualize(x, design)
    ry = _residualize(y[:, None], design)[:, 0]
    sxx, sxy = np.empty(x.shape[1]), np.empty(x.shape[1])
    for sl in column_blocks(*rx.shape):  # no temporary of the size of x
        sxx[sl] = (rx[:, sl] ** 2).sum(0)
        sxy[sl] = (rx[:, sl] * ry[:, None]).sum(0)
    sx = np.sqrt(sxx)
    sy = np.sqrt((ry**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = sxy / (sx * sy)
        r = np.clip(r, -1.0, 1.0)
        df = n - 2 - k
        t = r * np.sqrt(df / (1.0 - r**2))
        p = 2 * stats.t.sf(np.abs(t), df) if df > 0 else np.full_like(r, np.nan)
        se = 1.0 / np.sqrt(n - 3 - k) if n - 3 - k > 0 else np.nan
        z = np.arctanh(np.clip(r, -1 + 1e-15, 1 - 1e-15))
        q = stats.norm.ppf(0.975)
        lo, hi = np.tanh(z - q * se), np.tanh(z + q * se)
    return {"r": r, "t": t, "df": np.full_like(r, df), "p": p, "ci_low": lo, "ci_high": hi,
            "n": np.full(r.shape, n), "k": np.full(r.shape, k)}


def standardize_within_site(
    scores: pd.Series, site: pd.Series, name: str = "score"
) -> pd.Series:
    """Z-score ``scores`` within each site (mean 0, SD 1 with ddof=1).

    Parameters
    ----------
    scores : pandas.Series
        Scores, NaN for missing.
    site : pandas.Series
        Site labels, aligned with ``scores``.
    name : str
        Name used in warnings.

    Returns
    -------
    pandas.Series
        Standardised scores; NaN in a site with fewer than 3 scores or no spread
        (a :class:`DanemapWarning` says so).
    """
    out = scores.astype(float).copy()
    for s in site.dropna().unique():
        m = (site == s).to_numpy(bool)
        v = scores[m].astype(float)
        if v.notna().sum() < 3 or not np.isfinite(v.std()) or v.std() == 0:
            warnings.warn(f"symptom {name!r}: site {s!r} has fewer than 3 scores or no spread; "
                          "its scores are left out", DanemapWarning, stacklevel=2)
            out[m] = np.nan
            continue
        out[m] = (v - v.mean()) / v.std(ddof=1)
    out[site.isna().to_numpy(bool)] = np.nan
    return out


@fill_doc
def symptom_association(
    features: pd.DataFrame,
    participants: pd.DataFrame,
    design: GroupDesign | None = None,
    *,
    symptoms: Sequence[str] | None = None,
    standardize: bool = True,
    samples: Sequence[str] = ("case", "all"),
) -> pd.DataFrame:
    """Partial correlation of every feature with every symptom score.

    Parameters
    ----------
    features : pandas.DataFrame
        Features, indexed by participant (aligned with ``participants``).
    participants : pandas.DataFrame
        Phenotypes with the symptom, covariate, site and group columns, indexed by
        participant.
    %(design)s
        Here ``samples`` ``"case"`` uses the case group only; the covariates are
        partialled out (text columns become indicators) with the site's indicators,
        and with ``standardize`` scores are z-scored within site; ``icv`` is not used.
    symptoms : sequence of str or None
        Symptom columns; ``None`` uses those of ``adhd_index``, ``inattentive`` and
        ``hyperimpulsive`` that are present (at least one must be).
    standardize : bool
        Z-score each symptom within site before the analysis (default true).
    samples : sequence of {"case", "all"}
        Samples to analyse: the case group, everyone, or both.

    Returns
    -------
    pandas.DataFrame
        One row per sample × symptom × feature: ``feature``, ``symptom``, ``sample``,
        ``n``, ``r``, ``t``, ``df``, ``p``, ``ci_low``, ``ci_high``, ``p_fdr`` (BH over
        the features of one sample × symptom), ``symptom_scaling``, ``covariates``.
    """
    import pandas as pd

    d = design_or_default(design)
    group, case, control, site, covariates = d.group, d.case, d.control, d.site, d.covariates
    where = "symptom association (participants)"
    if symptoms is None:
        symptoms = [s for s in DEFAULT_SYMPTOMS if s in participants.columns]
        if not symptoms:
            raise InputError(f"{where}: no symptom column found; expected one of "
                             f"{list(DEFAULT_SYMPTOMS)} or pass symptoms=[...]")
    symptoms = list(symptoms)
    check_columns(participants, [*symptoms, *covariates, site, group], where)
    bad_samples = sorted(set(samples) - {"case", "all"})
    if bad_samples or not samples:
        raise InputError(f"samples: expected 'case' and/or 'all', found {list(samples)}")
    if not features.index.equals(participants.index):
        raise InputError(f"{where}: features and participants are not aligned on participant_id")
    is_case, _ = group_mask(participants, group, case, control, where)
    cov_cols = [*covariates, *([site] if site is not None else [])]
    cov, cov_names = encode_covariates(participants, cov_cols, where)
    scaling = "raw"
    if standardize and site is not None:
        scaling = f"z-scored within {site}"
    X = features.to_numpy(float)
    rows = []
    for symptom in symptoms:
        y = participants[symptom]
        if not pd.api.types.is_numeric_dtype(y):
            raise InputError(f"{where}: symptom column {symptom!r} must be numeric, "
                             f"found values like {y.dropna().head(3).tolist()}")
        if standardize and site is not None:
            y = standardize_within_site(y, participants[site], symptom)
        yv = y.to_numpy(float)
        for sample in samples:
            base = np.isfinite(yv) & np.isfinite(cov).all(1)
            if sample == "case":
                base &= is_case
            label = case if sample == "case" else "all"
            res = _pairwise(X, yv, cov, base)
            nmin = cov.shape[1] + 4
            if (res["n"] < nmin).any():
                warnings.warn(f"symptom {symptom!r}, sample {label!r}: fewer than {nmin} "
                              "participants for some features; their statistics are n/a",
                              DanemapWarning, stacklevel=2)
            df = pd.DataFrame({
                "feature": features.columns, "symptom": symptom, "sample": label,
                "n": res["n"].astype(int), "r": res["r"], "t": res["t"],
                "df": res["df"], "p": res["p"], "ci_low": res["ci_low"],
                "ci_high": res["ci_high"],
            })
            df["p_fdr"] = fdr_bh(df["p"].to_numpy(float), nan="keep")
            df["symptom_scaling"] = scaling
            df["covariates"] = " + ".join(cov_names) if cov_names else "none"
            rows.append(df)
    return pd.concat(rows, ignore_index=True)


def _pairwise(X: np.ndarray, y: np.ndarray, cov: np.ndarray, base: np.ndarray) -> dict:
    """Partial correlations, vectorised for complete features, per feature otherwise."""
    p = X.shape[1]
    out = {k: np.full(p, np.nan) for k in ("r", "t", "df", "p", "ci_low", "ci_high")}
    out["n"] = np.zeros(p)
    complete = np.concatenate([np.isfinite(X[base, sl]).all(0)
                               for sl in column_blocks(int(base.sum()), p)])
    groups = [(np.flatnonzero(complete), base)]
    groups += [(np.array([j]), base & np.isfinite(X[:, j])) for j in np.flatnonzero(~complete)]
    for cols, rows in groups:
        if cols.size == 0:
            continue
        n = int(rows.sum())
        out["n"][cols] = n
        if n < cov.shape[1] + 4:
            continue
        every = rows.all() and cols.size == p  # the common case: no copy of X
        res = partial_correlation(X if every else X[np.ix_(rows, cols)], y[rows], cov[rows])
        for key in ("r", "t", "df", "p", "ci_low", "ci_high"):
            out[key][cols] = res[key]
    return out
