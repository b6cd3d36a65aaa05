"""Meta-analysis of case-control effects across sites, as ENIGMA does.

Where a study has several sites, danemap estimates the group effect two ways:

* the **mega-analysis**: one GLM on the pooled, harmonised data
  (:func:`danemap.stats.glm.case_control` after :class:`danemap.stats.combat.ComBat`);
* the **meta-analysis** (:func:`site_meta_analysis`): the same GLM fitted **within each
  site** (same covariates, no site term), Cohen's d per site with its exact CI, then
  random-effects pooling of the site d's (:func:`random_effects`).

The meta-analysis is ENIGMA's primary analysis (Hoogman et al. 2017, Lancet Psychiatry
4:310). It needs no harmonisation: d is scale-free within a site, so a site effect that
multiplies the signal, which ComBat's model (one additive group effect for all sites) does not
describe, leaves it unbiased. :func:`agreement` says where the two disagree.

Pooling (per feature, vectorised over features)
-----------------------------------------------
``y_s`` the site d, ``v_s`` its large-sample variance (Hedges & Olkin 1985, as metafor's
``escalc(measure="SMD")``); sites where the feature could not be tested are left out.

* ``tau2``: between-site variance, REML (default; Viechtbauer 2005, the fixed-point
  iteration ``tau2 = sum w^2 ((y - mu)^2 - v) / sum w^2 + 1 / sum w``, started from the
  DerSimonian-Laird value) or DerSimonian & Laird (1986); truncated at 0.
* pooled ``d = sum w y / sum w`` with ``w = 1 / (v + tau2)``.
* CI and p with the Hartung-Knapp(-Sidik-Jonkman) adjustment: variance
  ``max(1, q) / sum w`` with ``q = sum w (y - d)^2 / (k - 1)``, on a t distribution with
  ``k - 1`` df. The truncation at 1 (Röver, Knapp & Friede 2015) stops the interval from
  being narrower than the unadjusted one when the sites happen to agree closely, which with
  few sites would otherwise give absurdly narrow intervals. With two sites the interval is
  wide (t quantile 12.7): that is how little two sites can say about between-site variation.
* heterogeneity: Cochran's ``Q = sum (y - d_FE)^2 / v`` (fixed-effect weights), its p on
  ``k - 1`` df, and ``I2 = max(0, (Q - (k - 1)) / Q)`` (Higgins & Thompson 2002).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from danemap._utils.docs import fill_doc
from danemap._utils.logging import get_logger
from danemap.errors import InputError
from danemap.stats._design import GroupDesign, design_or_default

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["META_COLUMNS", "META_METHODS", "SITE_COLUMNS", "agreement", "random_effects",
           "site_meta_analysis"]

log = get_logger("stats.meta")

#: Estimators of the between-site variance.
META_METHODS = ("reml", "dl")

_REML_TOL = 1e-10
_REML_MAX_ITER = 500

#: Columns of the pooled table (``meta_effects.tsv``), in order.
META_COLUMNS = ["feature", "k_sites", "n_case", "n_control", "d", "se", "d_ci_low",
                "d_ci_high", "t", "df", "p", "p_fdr", "tau2", "I2", "Q", "Q_p", "method"]
#: Columns of the per-site table (``meta_sites.tsv``), in order.
SITE_COLUMNS = ["feature", "site", "n_case", "n_control", "beta", "t", "df", "p", "d",
                "d_ci_low", "d_ci_high", "var_d", "weight", "note"]


def _dl_tau2(y: np.ndarray, v: np.ndarray, ok: np.ndarray) -> np.ndarray:
    w = np.where(ok, 1.0 / np.where(ok, v, 1.0), 0.0)
    sw = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = (w * np.where(ok, y, 0.0)).sum(axis=0) / sw
        q = (w * np.where(ok, y - mu, 0.0) ** 2).sum(axis=0)
        c = sw - (w**2).sum(axis=0) / sw
        k = ok.sum(axis=0)
        tau2 = np.where(c > 0, (q - (k - 1)) / c, 0.0)
    return np.maximum(tau2, 0.0)


def _reml_tau2(y: np.ndarray, v: np.ndarray, ok: np.ndarray) -> np.ndarray:
    tau2 = _dl_tau2(y, v, ok)
    vv = np.where(ok, v, 1.0)
    yy = np.where(ok, y, 0.0)
    active = ok.sum(axis=0) >= 2
    for _ in range(_REML_MAX_ITER):
        w = np.where(ok, 1.0 / (vv + tau2), 0.0)
        sw = w.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mu = (w * yy).sum(axis=0) / sw
            num = (w**2 * np.where(ok, (yy - mu) ** 2 - vv, 0.0)).sum(axis=0)
            new = np.maximum(num / (w**2).sum(axis=0) + 1.0 / sw, 0.0)
        new = np.where(active, new, 0.0)
        done = np.abs(new - tau2) <= _REML_TOL * np.maximum(1.0, tau2)
        tau2 = new
        if done.all():
            break
    else:
        log.warning("meta-analysis: REML did not converge for %d feature(s) in %d iterations",
                    int((~done).sum()), _REML_MAX_ITER)
    return tau2


def random_effects(y: Any, v: Any, method: str = "reml", level: float = 0.95
                   ) -> dict[str, np.ndarray]:
    """Random-effects pooling of per-site estimates, for every feature at once.

    Parameters
    ----------
    y : array-like, shape (n_sites, n_features)
        Per-site estimates (NaN: the site did not estimate that feature).
    v : array-like, shape (n_sites, n_features)
        Their sampling variances (> 0 where ``y`` is finite).
    method : {"reml", "dl"}
        Estimator of the between-site variance ``tau2``.
    level : float
        Confidence level of the interval.

    Returns
    -------
    dict of numpy.ndarray, each shape (n_features,)
        ``estimate``, ``se`` (Hartung-Knapp, truncated), ``ci_low``, ``ci_high``, ``t``,
        ``df`` (``k - 1``), ``p``, ``tau2``, ``I2``, ``Q``, ``Q_p``, ``k`` and ``weight``
        (shape (n_sites, n_features), relative random-effects weights). Features with fewer
        than two sites have NaN everywhere except ``k`` (and ``estimate`` equals the one
        site's value when ``k == 1``).

    Raises
    ------
    InputError
        On mismatched shapes, a non-positive variance, or an unknown ``method``.

    Notes
    -----
    See the module docstring for the formulas. With ``method="dl"`` and ``q >= 1`` the
    estimate and interval equal ``statsmodels.stats.meta_analysis.combine_effects``
    (``method_re="dl"``, ``use_t=True``, its ``var_hksj_re``).
    """
    from scipy import stats

    if method not in META_METHODS:
        raise InputError(f"meta_method: expected one of {list(META_METHODS)}, found {method!r}")
    ya = np.atleast_2d(np.asarray(y, dtype=np.float64))
    va = np.atleast_2d(np.asarray(v, dtype=np.float64))
    if ya.shape != va.shape:
        raise InputError(f"v: expected the shape of y {ya.shape}, found {va.shape}")
    ok = np.isfinite(ya) & np.isfinite(va)
    if np.any(va[ok] <= 0):
        raise InputError("v: expected sampling variances > 0 wherever an estimate is given")
    k = ok.sum(axis=0)
    tau2 = _reml_tau2(ya, va, ok) if method == "reml" else _dl_tau2(ya, va, ok)
    vv = np.where(ok, va, 1.0)
    yy = np.where(ok, ya, 0.0)
    w_fe = np.where(ok, 1.0 / vv, 0.0)
    w = np.where(ok, 1.0 / (vv + tau2), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        sw = w.sum(axis=0)
        est = (w * yy).sum(axis=0) / sw
        df = (k - 1).astype(np.float64)
        q_hk = (w * np.where(ok, yy - est, 0.0) ** 2).sum(axis=0) / df
        se = np.sqrt(np.maximum(q_hk, 1.0) / sw)
        t = est / se
        crit = stats.t.isf((1.0 - level) / 2.0, df)
        mu_fe = (w_fe * yy).sum(axis=0) / w_fe.sum(axis=0)
        Q = (w_fe * np.where(ok, yy - mu_fe, 0.0) ** 2).sum(axis=0)
        i2 = np.where(Q > 0, np.maximum(0.0, (Q - df) / Q), 0.0)
        weight = w / sw
    multi = k >= 2
    nan = np.full(est.shape, np.nan)
    out = {
        "estimate": np.where(k >= 1, est, np.nan),
        "se": np.where(multi, se, nan), "t": np.where(multi, t, nan),
        "df": np.where(multi, df, nan),
        "p": np.where(multi, 2.0 * stats.t.sf(np.abs(t), np.where(multi, df, 1.0)), nan),
        "ci_low": np.where(multi, est - crit * se, nan),
        "ci_high": np.where(multi, est + crit * se, nan),
        "tau2": np.where(multi, tau2, nan), "I2": np.where(multi, i2, nan),
        "Q": np.where(multi, Q, nan),
        "Q_p": np.where(multi, stats.chi2.sf(Q, np.where(multi, df, 1.0)), nan),
        "k": k, "weight": np.where(ok, weight, np.nan),
    }
    return out


@fill_doc
def site_meta_analysis(features: pd.DataFrame, participants: pd.DataFrame,
                       design: GroupDesign | None = None, *,
                       method: str = "reml") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Case-control GLM within each site, then random-effects pooling of the site d's.

    Parameters
    ----------
    features : pandas.DataFrame
        One numeric column per feature, indexed by participant (n/a allowed).
    participants : pandas.DataFrame
        Group, covariates and site, indexed by participant (the same index as
        ``features``).
    %(design)s
        Here the site column is required; the covariates and the ICV enter the
        within-site GLM (a categorical covariate with a single level within a site is
        dropped there).
    method : {"reml", "dl"}
        Between-site variance estimator of :func:`random_effects`.

    Returns
    -------
    pooled : pandas.DataFrame
        Columns :data:`META_COLUMNS`: one row per feature.
    per_site : pandas.DataFrame
        Columns :data:`SITE_COLUMNS`: one row per feature and site (d with its exact CI,
        variance and random-effects weight).

    Raises
    ------
    InputError
        If a column is absent, a feature row has no participant, or no site has both cases
        and controls.

    Notes
    -----
    Each site's model is exactly :func:`danemap.stats.glm.case_control` with ``site=None``
    on that site's participants (tested to 1e-12), fitted as one matrix product per site
    rather than through the table-level function, so 20 sites x 4,950 edges take well under
    a second.
    """
    import pandas as pd

    from danemap.stats.glm import (
        CONSTANT_NOTE,
        _encode,
        _fit_terms,
        d_variance,
        effect_sizes_from_t,
    )
    from danemap.stats.multiple import fdr_bh

    d = design_or_default(design)
    if d.site is None:
        raise InputError("design: the per-site meta-analysis needs a site column; "
                         "GroupDesign(site=None) was given")
    group, case, control, site, icv = d.group, d.case, d.control, d.site, d.icv
    covariates = list(d.covariates)
    cov_cols = [*covariates, *([icv] if icv and icv not in covariates else [])]
    missing = [c for c in (site, group, *cov_cols) if c not in participants.columns]
    if missing:
        raise InputError(f"participants: expected column(s) {missing}, found "
                         f"{list(participants.columns)}")
    unknown = features.index.difference(participants.index)
    if len(unknown):
        raise InputError(f"features: {len(unknown)} row(s) not in participants (e.g. "
                         f"{list(unknown[:3])})")
    names = [str(c) for c in features.columns]
    P = participants.loc[features.index]
    Y = features.to_numpy(dtype=np.float64, na_value=np.nan)
    Y = np.where(np.isfinite(Y), Y, np.nan)
    is_case = (P[group] == case).to_numpy()
    in_groups = is_case | (P[group] == control).to_numpy()
    complete = in_groups & P[[site, *cov_cols]].notna().all(axis=1).to_numpy()
    labels = P[site].astype(str).to_numpy()
    blocks: list[pd.DataFrame] = []
    errors: dict[str, str] = {}
    for s in sorted(set(labels[complete])):
        rows = complete & (labels == s)
        g = is_case[rows]
        if g.all() or not g.any():
            errors[s] = "no case or no control"
            log.warning("meta-analysis: site %r left out: it has no case or no control", s)
            continue
        cov, _ = _encode(P.loc[rows], cov_cols, [], f"meta-analysis[{s}]")
        X = np.column_stack([np.ones(rows.sum()), g.astype(float), cov])
        Ys = Y[rows]
        fit = _fit_terms(Ys, X, [1])
        seen = ~np.isnan(Ys)
        n_case = seen[g].sum(axis=0)
        n_ctrl = seen[~g].sum(axis=0)
        note = np.where(fit["constant"][0], CONSTANT_NOTE, np.where(np.isnan(fit["t"][0]),
                                                   "not fitted in this site", ""))
        blocks.append(pd.DataFrame({
            "feature": names, "site": s, "n_case": n_case, "n_control": n_ctrl,
            "beta": fit["beta"][0], "t": fit["t"][0], "df": fit["df"][0], "p": fit["p"][0],
            "note": note}))
    if not blocks:
        first = next(iter(errors.items()), ("", "no participant in either group"))
        raise InputError(f"meta-analysis: no site of {site!r} could be analysed on its own "
                         f"(site {first[0]!r}: {first[1]})")
    per_site = pd.concat(blocks, ignore_index=True)
    # one call for every site: sites of equal size share one noncentral-t curve
    eff = effect_sizes_from_t(per_site["t"], per_site["n_case"], per_site["n_control"],
                              per_site["df"])
    for col in ("d", "d_ci_low", "d_ci_high"):
        per_site[col] = eff[col]
    per_site["var_d"] = d_variance(eff["d"], per_site["n_case"], per_site["n_control"])
    k_sites = len(blocks)
    y = per_site["d"].to_numpy(float).reshape(k_sites, len(names))
    v = per_site["var_d"].to_numpy(float).reshape(k_sites, len(names))
    re = random_effects(y, v, method=method)
    per_site["weight"] = re["weight"].reshape(-1)
    fitted = np.isfinite(y)
    n_case = np.where(fitted, per_site["n_case"].to_numpy(float).reshape(y.shape), 0).sum(0)
    n_ctrl = np.where(fitted, per_site["n_control"].to_numpy(float).reshape(y.shape), 0).sum(0)
    pooled = pd.DataFrame({
        "feature": names, "k_sites": re["k"], "n_case": n_case.astype(int),
        "n_control": n_ctrl.astype(int), "d": re["estimate"], "se": re["se"],
        "d_ci_low": re["ci_low"], "d_ci_high": re["ci_high"], "t": re["t"], "df": re["df"],
        "p": re["p"], "p_fdr": fdr_bh(re["p"], nan="keep"), "tau2": re["tau2"],
        "I2": re["I2"], "Q": re["Q"], "Q_p": re["Q_p"],
        "method": f"{method.upper()} random effects, Hartung-Knapp (truncated) CI"})
    pooled["df"] = pooled["df"].astype("Int64")
    per_site["df"] = per_site["df"].astype("Int64")
    return pooled[META_COLUMNS], per_site[SITE_COLUMNS]


def agreement(mega_d: Any, mega_low: Any, mega_high: Any, meta_d: Any, meta_low: Any,
              meta_high: Any) -> np.ndarray:
    """Tell, per feature, whether the mega- and meta-analysis agree.

    Parameters
    ----------
    mega_d, mega_low, mega_high : array-like
        Pooled-GLM d and its CI bounds.
    meta_d, meta_low, meta_high : array-like
        Random-effects d and its CI bounds.

    Returns
    -------
    numpy.ndarray of object
        ``True`` where both have the same sign, or both CIs cover 0; ``False`` where they
        disagree; ``None`` where either estimate is missing.
    """
    md, ml, mh = (np.asarray(a, dtype=float) for a in (mega_d, mega_low, mega_high))
    rd, rl, rh = (np.asarray(a, dtype=float) for a in (meta_d, meta_low, meta_high))
    same_sign = np.sign(md) == np.sign(rd)
    both_null = (ml <= 0) & (mh >= 0) & (rl <= 0) & (rh >= 0)
    ok = same_sign | both_null
    known = np.isfinite(md) & np.isfinite(rd)
    out = np.full(md.shape, None, dtype=object)
    out[known] = ok[known]
    return out
