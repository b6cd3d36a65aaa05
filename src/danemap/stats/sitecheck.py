"""Checks of the site model before harmonisation: multiplicative scale and degenerate sites.

ComBat (:mod:`danemap.stats.combat`) models a site effect as a shift plus a rescaling of the
*noise*, with one additive group effect shared by every site. When a site instead multiplies
the whole signal (ALFF from two scanners: Peking's ADHD-200 ALFF is 8 times NYU's, with equal
coefficients of variation), the group effect in raw units is 8 times larger at one site, the
shared-effect model is wrong, and ComBat's rescaling of each site's residuals can reverse the
sign of the pooled effect (issue 7: ADHD < TD where both sites say ADHD > TD).
:func:`check_sites` measures this per feature, on the participants analysed:

* ``sd_ratio``: largest over smallest within-site SD;
* ``mean_ratio`` and ``cv_ratio``: the same for the site means and the coefficients of
  variation (SD / mean; strictly positive features only). Site SDs that scale with site
  means (``cv_ratio`` near 1 while ``sd_ratio`` is large) are the signature of a
  multiplicative site effect;
* ``log_sd_ratio``: the SD ratio of ``log(x)``;
* ``sd_ratio_low``: the lower 95% confidence bound of the SD ratio, from the F distribution
  of the variance ratio of the two sites it compares (largest and smallest SD). With a few
  participants per site the observed ratio is large by chance (12 per site: a ratio above
  1.5 in about half of the features with equal true SDs); the decisions below use this
  bound, so they follow the sites' real scale, not sampling noise.

Transform (``[stats] transform``)
---------------------------------
* ``"auto"`` (default): a strictly positive feature is log-transformed when its
  ``sd_ratio_low`` exceeds ``scale_threshold`` (default :data:`SCALE_THRESHOLD` = 1.5) and
  the log makes the sites more alike (``log_sd_ratio < sd_ratio``). The threshold was chosen by
  experiment (``tests/stats/test_sitecheck.py`` and the issue note): on the simulator's
  multiplicative site effect (two sites with ADHD-200's case fractions, within-site d =
  0.3, 130 per site) ComBat + GLM on the raw values loses 0.007 of d at a scale ratio of
  1.25, 0.02 at 1.5, 0.05 at 2, 0.11 at 3 and 0.29 at 8 (a reversed sign in 65% of seeds).
  On the real ADHD-200 ALFF table every one of the 116 regions exceeds it (SD ratio 3.5 to
  12.9, median 8.0; after the log 1.0 to 1.7, none credibly above 1.5), while with 12
  participants per site and equal true scales 14 of 40 simulated features show an observed
  ratio above 1.5 and none is transformed.
* ``"log"``: every strictly positive feature; others are left as they are, with a warning.
* ``"none"``: no transform.

A transformed feature stays transformed for every group analysis (harmonisation, GLM, max-T,
symptoms, meta-analysis), so its d is on the log scale; the tables say so.

Degenerate sites
----------------
A feature is left out of harmonisation (and analysed by the GLM with site as a covariate
instead, the reason in ``site_checks.tsv`` and in the ``note`` of ``effects.tsv``) when at
some site it is constant (SD at round-off level), has fewer than 3 values, or is missing
for more than half of the participants. ComBat would
otherwise divide by a zero site variance and turn a region outside one scanner's field of
view into a large, false group effect.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from danemap.errors import DanemapWarning, InputError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CHECK_COLUMNS",
    "SCALE_THRESHOLD",
    "TRANSFORMS",
    "apply_transform",
    "check_sites",
    "describe_checks",
]

#: Values of ``[stats] transform``.
TRANSFORMS = ("auto", "log", "none")
#: Default site SD ratio above which ``transform = "auto"`` takes the log (see module doc).
SCALE_THRESHOLD = 1.5
#: Largest fraction of missing values a site may have before a feature is not harmonised.
MAX_MISSING_FRACTION = 0.5
_MIN_VALUES = 3

#: Columns of :func:`check_sites`'s table (``site_checks.tsv``).
CHECK_COLUMNS = ["feature", "positive", "sd_ratio", "sd_ratio_low", "mean_ratio", "cv_ratio",
                 "log_sd_ratio", "transform", "analysed_sd_ratio", "analysed_sd_ratio_low",
                 "harmonize", "reason"]


def _ratio(values: np.ndarray) -> np.ndarray:
    """Largest over smallest of each column (NaN ignored; inf if the smallest is 0)."""
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        hi, lo = np.nanmax(values, axis=0), np.nanmin(values, axis=0)
        return np.where(lo > 0, hi / np.where(lo > 0, lo, 1.0), np.where(hi > 0, np.inf, 1.0))


def _ratio_low(sd: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Lower 95% confidence bound of the largest / smallest SD ratio of each column.

    The variance ratio of the two sites compared is F-distributed (normal data) with their
    degrees of freedom; the bound is ``ratio / sqrt(F_0.975(n_max - 1, n_min - 1))``.
    """
    from scipy import stats

    valid = np.isfinite(sd)
    out = np.full(sd.shape[1], np.nan)
    cols = np.flatnonzero(valid.sum(axis=0) >= 2)
    if not cols.size:
        return out
    big = np.where(valid, sd, -np.inf)[:, cols].argmax(axis=0)
    small = np.where(valid, sd, np.inf)[:, cols].argmin(axis=0)
    s_big, s_small = sd[big, cols], sd[small, cols]
    crit = stats.f.ppf(0.975, count[big, cols] - 1, count[small, cols] - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[cols] = np.where(s_small > 0, s_big / s_small / np.sqrt(crit), np.inf)
    return out


def _site_sd(X: np.ndarray, codes: np.ndarray, n_sites: int) -> tuple[np.ndarray, ...]:
    """Per-site SD, mean, count of values and count of rows, each (n_sites, n_features)."""
    m = X.shape[1]
    sd = np.full((n_sites, m), np.nan)
    mean = np.full((n_sites, m), np.nan)
    count = np.zeros((n_sites, m), int)
    rows = np.zeros(n_sites, int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for s in range(n_sites):
            x = X[codes == s]
            rows[s] = len(x)
            count[s] = np.isfinite(x).sum(axis=0)
            if len(x) > 1:
                sd[s] = np.nanstd(x, axis=0, ddof=1)
                mean[s] = np.nanmean(x, axis=0)
    return sd, mean, count, rows


def check_sites(features: pd.DataFrame, site: Any, transform: str = "auto",
                scale_threshold: float = SCALE_THRESHOLD) -> pd.DataFrame:
    """Measure site scale effects and degenerate sites, and choose each feature's transform.

    Parameters
    ----------
    features : pandas.DataFrame
        The analysed participants' features (n/a allowed).
    site : array-like
        Site label of each row.
    transform : {"auto", "log", "none"}
        Transform policy (see the module docstring).
    scale_threshold : float
        Site SD ratio above which ``"auto"`` takes the log (> 1).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`CHECK_COLUMNS`, one row per feature: the ratios on the values as
        given, the chosen ``transform`` (``"log"`` or ``"none"``), the SD ratio of what is
        analysed (after the transform), whether the feature can be ``harmonize``-d and, if
        not, the ``reason`` naming the site.

    Raises
    ------
    InputError
        On an unknown transform, a threshold not above 1, or a site vector of the wrong
        length.
    """
    import pandas as pd

    if transform not in TRANSFORMS:
        raise InputError(f"stats.transform: expected one of {list(TRANSFORMS)}, found "
                         f"{transform!r}")
    if not scale_threshold > 1:
        raise InputError(f"stats.scale_threshold: expected a ratio > 1, found {scale_threshold!r}")
    X = features.to_numpy(dtype=np.float64)  # a view of a float table, not a copy
    finite = np.isfinite(X)
    if not finite.all():  # inf counts as missing: replace in a copy, never in the input
        X = np.where(finite, X, np.nan)
    del finite
    labels = np.asarray(site).astype(str)
    if len(labels) != len(X):
        raise InputError(f"site: expected {len(X)} labels (one per row), found {len(labels)}")
    sites, codes = np.unique(labels, return_inverse=True)
    k = len(sites)
    sd, mean, count, rows = _site_sd(X, codes, k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        scale = np.maximum(np.nanmax(X, axis=0), -np.nanmin(X, axis=0)) if len(X) \
            else np.zeros(X.shape[1])
        positive = (np.nanmin(X, axis=0) > 0) if len(X) else np.zeros(X.shape[1], bool)
    positive = positive & np.isfinite(scale)
    constant = sd <= 64 * np.finfo(float).eps * np.where(np.isfinite(scale), scale, 0.0)
    few = count < _MIN_VALUES
    missing = count < (1.0 - MAX_MISSING_FRACTION) * rows[:, None]
    sd_ok = np.where(constant | few, np.nan, sd)
    sd_ratio = _ratio(sd_ok)
    sd_ratio_low = _ratio_low(sd_ok, count)
    mean_ratio = np.where(positive, _ratio(mean), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        cv = sd / mean
        logX = np.log(np.where(positive, X, np.nan))
    cv_ratio = np.where(positive, _ratio(np.where(constant | few, np.nan, cv)), np.nan)
    log_sd = _site_sd(logX, codes, k)[0] if positive.any() else np.full_like(sd, np.nan)
    log_sd_ok = np.where(constant | few, np.nan, log_sd)
    log_sd_ratio = np.where(positive, _ratio(log_sd_ok), np.nan)
    log_sd_ratio_low = np.where(positive, _ratio_low(log_sd_ok, count), np.nan)
    degenerate = (constant | few | missing).any(axis=0)
    if transform == "none" or k < 2:
        take_log = np.zeros(X.shape[1], bool)
    elif transform == "log":
        take_log = positive.copy()
        if not positive.all():
            bad = [str(c) for c, p in zip(features.columns, positive, strict=True) if not p]
            warnings.warn(f"transform = 'log': {len(bad)} feature(s) are not strictly positive"
                          f" and are analysed untransformed (e.g. {bad[:5]})", DanemapWarning,
                          stacklevel=2)
    else:
        take_log = positive & ~degenerate & (sd_ratio_low > scale_threshold) \
            & (log_sd_ratio < sd_ratio)
    reasons = []
    for j in range(X.shape[1]):
        why = []
        for s in range(k):
            if few[s, j]:
                why.append(f"{count[s, j]} value(s) at site {sites[s]}")
            elif constant[s, j]:
                why.append(f"constant at site {sites[s]}")
            elif missing[s, j]:
                why.append(f"{rows[s] - count[s, j]} of {rows[s]} missing at site {sites[s]}")
        reasons.append("; ".join(why))
    table = pd.DataFrame({
        "feature": [str(c) for c in features.columns], "positive": positive,
        "sd_ratio": sd_ratio, "sd_ratio_low": sd_ratio_low, "mean_ratio": mean_ratio,
        "cv_ratio": cv_ratio,
        "log_sd_ratio": log_sd_ratio, "transform": np.where(take_log, "log", "none"),
        "analysed_sd_ratio": np.where(take_log, log_sd_ratio, sd_ratio),
        "analysed_sd_ratio_low": np.where(take_log, log_sd_ratio_low, sd_ratio_low),
        "harmonize": ~degenerate if k > 1 else np.zeros(X.shape[1], bool),
        "reason": reasons})
    return table[CHECK_COLUMNS]


def apply_transform(features: pd.DataFrame, checks: pd.DataFrame) -> pd.DataFrame:
    """Return the features with each column transformed as ``checks`` says.

    Parameters
    ----------
    features : pandas.DataFrame
        Features (same columns as ``checks["feature"]``).
    checks : pandas.DataFrame
        The table of :func:`check_sites`.

    Returns
    -------
    pandas.DataFrame
        A copy with ``log`` applied to the chosen columns (non-positive values become n/a),
        or ``features`` itself when nothing is transformed.
    """
    cols = [c for c, t in zip(features.columns, checks["transform"], strict=True) if t == "log"]
    if not cols:
        return features
    out = features.copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        vals = out[cols].to_numpy(dtype=np.float64, na_value=np.nan)
        out[cols] = np.log(np.where(vals > 0, vals, np.nan))
    return out


def describe_checks(checks: pd.DataFrame, threshold: float) -> dict[str, Any]:
    """Summarise a :func:`check_sites` table for ``summary.json`` and sidecars.

    Parameters
    ----------
    checks : pandas.DataFrame
        The table of :func:`check_sites`.
    threshold : float
        The scale threshold used.

    Returns
    -------
    dict
        Counts of transformed and excluded features, their names (at most 20 each) and the
        ranges of the ratios.
    """
    logged = checks.loc[checks["transform"] == "log", "feature"].tolist()
    excluded = checks.loc[~checks["harmonize"].astype(bool), ["feature", "reason"]]
    finite = checks["sd_ratio"][np.isfinite(checks["sd_ratio"])]
    return {
        "scale_threshold": threshold,
        "sd_ratio_median": float(finite.median()) if len(finite) else None,
        "sd_ratio_max": float(finite.max()) if len(finite) else None,
        "n_log_transformed": len(logged), "log_transformed": logged[:20],
        "n_not_harmonized": len(excluded),
        "not_harmonized": {r.feature: r.reason for r in excluded.head(20).itertuples()},
    }
