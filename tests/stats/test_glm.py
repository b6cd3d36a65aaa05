"""Tests of danemap.stats.glm against statsmodels and planted effects."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from danemap.errors import InputError
from danemap.stats.glm import RESULT_COLUMNS, case_control, effect_sizes_from_t, fit_glm


def _tables(seed: int = 0, n: int = 160, m: int = 6):
    rng = np.random.default_rng(seed)
    ids = [f"sub-{i:03d}" for i in range(n)]
    group = np.where(np.arange(n) % 2 == 0, "ADHD", "TD")
    parts = pd.DataFrame({
        "participant_id": ids, "group": group, "age": rng.uniform(7, 18, n),
        "sex": rng.choice(["M", "F"], n), "site": rng.choice(["NYU", "Peking"], n),
        "med_status": np.where(group == "TD", 1.0, rng.choice([1.0, 2.0], n)),
    })
    Y = rng.normal(size=(n, m))
    Y[:, 0] += 0.8 * (group == "ADHD")
    Y += 0.1 * parts["age"].to_numpy()[:, None]
    feats = pd.DataFrame(Y, columns=[f"roi{j}" for j in range(m)])
    feats.insert(0, "participant_id", ids)
    return feats, parts


def test_fit_glm_equals_statsmodels():
    rng = np.random.default_rng(3)
    n, m = 90, 12
    X = np.column_stack([np.ones(n), rng.normal(size=(n, 3))])
    Y = X @ rng.normal(size=(4, m)) + rng.normal(size=(n, m))
    res = fit_glm(Y, X, [0, 1, 0, 0])
    for j in range(m):
        ols = sm.OLS(Y[:, j], X).fit()
        assert abs(res.t[j] - ols.tvalues[1]) <= 1e-8
        assert abs(res.p[j] - ols.pvalues[1]) <= 1e-10
        assert abs(res.se[j] - ols.bse[1]) <= 1e-10
    assert res.df == n - 4
    multi = fit_glm(Y, X, np.eye(4)[1:3])
    assert multi.t.shape == (2, m)


def test_fit_glm_errors():
    X = np.column_stack([np.ones(10), np.arange(10.0), np.arange(10.0)])
    with pytest.raises(InputError, match="full column rank 3, found rank 2"):
        fit_glm(np.ones((10, 2)), X, [0, 1, 0])
    with pytest.raises(InputError, match="contrast: expected length 3"):
        fit_glm(np.ones((10, 2)), X, [0, 1])
    with pytest.raises(InputError, match="design: expected 10 rows"):
        fit_glm(np.ones((10, 2)), X[:5], [0, 1, 0])


def test_case_control_matches_statsmodels_and_planted_effect():
    feats, parts = _tables()
    res = case_control(feats, parts)
    assert list(res.columns) == RESULT_COLUMNS
    design = np.column_stack([
        np.ones(len(parts)), (parts.group == "ADHD").astype(float), parts.age,
        (parts.sex == "M").astype(float), (parts.site == "Peking").astype(float)])
    for j, row in res.iterrows():
        ols = sm.OLS(feats[f"roi{j}"].to_numpy(), design).fit()
        assert abs(row.t - ols.tvalues[1]) <= 1e-8
        assert abs(row.beta - ols.params[1]) <= 1e-10
    top = res.iloc[0]
    assert top.p < 1e-4 and 0.5 < top.d < 1.3 and top.d_ci_low < top.d < top.d_ci_high
    assert top.n_case == 80 and top.n_control == 80
    assert res.attrs["design_columns"] == ["intercept", "group[ADHD]", "age", "sex[M]",
                                           "site[Peking]"]


def test_effect_size_formulas():
    # without covariates the ENIGMA d from t is the pooled-SD d times sqrt(N / df)
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.5, 1, 40), rng.normal(0, 1, 55)
    t = (a.mean() - b.mean()) / np.sqrt(
        ((39 * a.var(ddof=1) + 54 * b.var(ddof=1)) / 93) * (1 / 40 + 1 / 55))
    eff = effect_sizes_from_t(t, 40, 55, 93)
    sp = np.sqrt((39 * a.var(ddof=1) + 54 * b.var(ddof=1)) / 93)
    assert abs(eff["d"] - (a.mean() - b.mean()) / sp * np.sqrt(95 / 93)) < 1e-12
    se = np.sqrt(95 / (40 * 55) + eff["d"] ** 2 / 190)
    assert abs(eff["d_ci_high"] - eff["d"] - 1.959963984540054 * se) < 1e-12
    assert abs(eff["g"] - eff["d"] * (1 - 3 / (4 * 93 - 1))) < 1e-12


def test_options_interaction_stratify_moderator():
    feats, parts = _tables()
    inter = case_control(feats, parts, interaction="age")
    assert set(inter.term) == {"group", "group:age"}
    assert inter.loc[inter.term == "group:age", "d"].isna().all()
    strat = case_control(feats, parts, stratify="sex")
    assert set(strat.stratum) == {"F", "M"}
    assert (strat.groupby("stratum").n_case.first().sum()) == 80
    mod = case_control(feats, parts, moderator="med_status")
    assert set(mod.term) == {"group", "group[med_status=1.0]", "group[med_status=2.0]"}
    sub = mod[mod.term != "group"].groupby("term").n_case.first()
    assert sub.sum() == 80
    nosite = case_control(feats, parts, site=None, covariates=("age",))
    assert nosite.attrs["covariates"] == ["age"]


def test_missing_covariate_rows_dropped_and_logged(caplog):
    feats, parts = _tables()
    parts.loc[[0, 1, 2], "age"] = np.nan
    feats.loc[5, "roi2"] = np.nan
    with caplog.at_level(logging.INFO, logger="danemap"):
        res = case_control(feats, parts)
    assert "dropped 3 of 160 rows" in caplog.text
    assert res.attrs["n_dropped_missing"] == 3
    assert res.set_index("feature").loc["roi0", ["n_case", "n_control"]].sum() == 157
    assert res.set_index("feature").loc["roi2", ["n_case", "n_control"]].sum() == 156


def test_case_control_errors():
    feats, parts = _tables()
    with pytest.raises(InputError, match="expected group column 'dx'"):
        case_control(feats, parts, group="dx")
    with pytest.raises(InputError, match="no complete row with group == 'ASD'"):
        case_control(feats, parts, case="ASD")
    with pytest.raises(InputError, match=r"expected column\(s\) \['iq'\]"):
        case_control(feats, parts, covariates=("age", "iq"))
    with pytest.raises(InputError, match="moderator column 'meds'"):
        case_control(feats, parts, moderator="meds")
