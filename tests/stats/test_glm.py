"""Tests of danemap.stats.glm against statsmodels and planted effects."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from danemap.errors import InputError
from danemap.stats import GroupDesign
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
    feats = pd.DataFrame(Y, columns=[f"roi{j}" for j in range(m)], index=parts["participant_id"])
    return feats, parts.set_index("participant_id")  # index-aligned


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


def _two_samples(n1: int, n2: int, delta: float, seed: int):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(delta, 1, n1), rng.normal(0, 1, n2)
    df = n1 + n2 - 2
    sp = np.sqrt(((n1 - 1) * a.var(ddof=1) + (n2 - 1) * b.var(ddof=1)) / df)
    return (a.mean() - b.mean()) / sp, stats.ttest_ind(a, b).statistic, df


def test_effect_size_d_from_t_is_the_pooled_sd_d():
    # without covariates the ENIGMA d from t is the pooled-SD d times sqrt(N / df)
    d_pooled, t, df = _two_samples(40, 55, 0.5, 0)
    eff = effect_sizes_from_t(t, 40, 55, df)
    assert abs(eff["d"] - d_pooled * np.sqrt(95 / 93)) < 1e-12


@pytest.mark.parametrize(("n1", "n2", "delta"),
                         [(200, 200, 0.4), (130, 138, -0.2), (40, 55, 0.5), (10, 10, 1.2)])
def test_effect_size_ci_is_the_exact_noncentral_t_interval(n1, n2, delta):
    # The exact 95% CI inverts the noncentral t distribution of t; independently here by
    # root finding on scipy.stats.nct (danemap uses scipy.special.nctdtrinc), mapped to d
    # by the factor that maps t to d. Agreement to 1e-6 in d (nctdtrinc's own tolerance).
    from scipy.optimize import brentq

    _, t, df = _two_samples(n1, n2, delta, 1)
    eff = effect_sizes_from_t(t, n1, n2, df)
    lo = brentq(lambda nc: stats.nct.sf(t, df, nc) - 0.025, t - 10, t + 10, xtol=1e-12)
    hi = brentq(lambda nc: stats.nct.cdf(t, df, nc) - 0.025, t - 10, t + 10, xtol=1e-12)
    to_d = (n1 + n2) / (np.sqrt(n1 * n2) * np.sqrt(df))
    assert abs(eff["d_ci_low"] - lo * to_d) < 1e-6
    assert abs(eff["d_ci_high"] - hi * to_d) < 1e-6


def test_exact_ci_agrees_with_p():
    t = np.linspace(-4, 4, 801)
    for df, n1, n2 in ((18, 10, 10), (40, 20, 23), (263, 130, 138)):
        eff = effect_sizes_from_t(t, n1, n2, df)
        p = 2 * stats.t.sf(np.abs(t), df)
        excludes = (eff["d_ci_low"] > 0) | (eff["d_ci_high"] < 0)
        far = np.abs(p - 0.05) > 1e-6  # away from the boundary itself
        assert np.array_equal(excludes[far], (p < 0.05)[far])


@pytest.mark.parametrize("delta", [0.0, 0.5])
def test_d_ci_coverage_at_10_plus_10(delta):
    # 2,000 simulated studies of 10 + 10, the GLM fitted to all at once (one column each)
    rng = np.random.default_rng(2026 + int(10 * delta))
    n1 = n2 = 10
    g = np.r_[np.ones(n1), np.zeros(n2)]
    Y = delta * g[:, None] + rng.standard_normal((n1 + n2, 2000))
    res = fit_glm(Y, np.column_stack([np.ones(n1 + n2), g]), [0, 1])
    eff = effect_sizes_from_t(res.t, n1, n2, res.df)
    # the CI covers the population value of the ENIGMA d: delta * sqrt(N / df)
    target = delta * np.sqrt((n1 + n2) / res.df)
    cover = np.mean((eff["d_ci_low"] <= target) & (target <= eff["d_ci_high"]))
    print(f"coverage at delta {delta}: {cover:.4f}")
    assert 0.94 <= cover <= 0.96


def test_constant_features_are_not_tested():
    feats, parts = _tables(seed=3, n=60)
    feats["const"] = 0.05
    feats["zero"] = 0.0
    res = case_control(feats, parts).set_index("feature")
    for f in ("const", "zero"):
        assert np.isnan(res.loc[f, ["t", "p", "d", "p_fdr"]].astype(float)).all()
        assert "constant" in res.loc[f, "note"]
    ref = case_control(feats.drop(columns=["const", "zero"]), parts).set_index("feature")
    # the others' FDR family is unchanged: the constants are not counted in it
    np.testing.assert_allclose(res.loc[ref.index, "p_fdr"].astype(float), ref["p_fdr"],
                               rtol=1e-12)


@pytest.mark.parametrize("n1, n2", [(40, 55), (10, 12), (130, 138)])
def test_hedges_g_matches_the_exact_bias_correction(n1, n2):
    # Hedges (1981): the unbiased g = J(m) d with the exact
    # J(m) = Gamma(m/2) / (sqrt(m/2) Gamma((m-1)/2)), m = n1 + n2 - 2; the implementation's
    # 1 - 3 / (4m - 1) approximates it to better than 1e-4 from m = 20 on.
    from scipy.special import gammaln

    m = n1 + n2 - 2
    eff = effect_sizes_from_t(2.5, n1, n2, m)
    exact = np.exp(gammaln(m / 2) - gammaln((m - 1) / 2)) / np.sqrt(m / 2)
    assert abs(eff["g"] / eff["d"] - exact) < 1e-4
    assert eff["g"] < eff["d"]


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
    nosite = case_control(feats, parts, GroupDesign(site=None, covariates=("age",)))
    assert nosite.attrs["covariates"] == ["age"]


def test_missing_covariate_rows_dropped_and_logged(caplog):
    feats, parts = _tables()
    parts.iloc[[0, 1, 2], parts.columns.get_loc("age")] = np.nan
    feats.iloc[5, feats.columns.get_loc("roi2")] = np.nan
    with caplog.at_level(logging.INFO, logger="danemap"):
        res = case_control(feats, parts)
    assert "dropped 3 of 160 rows" in caplog.text
    assert res.attrs["n_dropped_missing"] == 3
    assert res.set_index("feature").loc["roi0", ["n_case", "n_control"]].sum() == 157
    assert res.set_index("feature").loc["roi2", ["n_case", "n_control"]].sum() == 156


def test_case_control_errors():
    feats, parts = _tables()
    with pytest.raises(InputError, match="expected group column 'dx'"):
        case_control(feats, parts, GroupDesign(group="dx"))
    with pytest.raises(InputError, match="no complete row with group == 'ASD'"):
        case_control(feats, parts, GroupDesign(case="ASD"))
    with pytest.raises(InputError, match=r"expected column\(s\) \['iq'\]"):
        case_control(feats, parts, GroupDesign(covariates=("age", "iq")))
    with pytest.raises(InputError, match="moderator column 'meds'"):
        case_control(feats, parts, moderator="meds")
    with pytest.raises(InputError, match=r"expected 'participant_id' as the index .*"
                                         r"set_index\('participant_id'\)"):
        case_control(feats.reset_index(), parts)
    with pytest.raises(InputError, match=r"design: expected a danemap\.stats\.GroupDesign"):
        case_control(feats, parts, "group")
    with pytest.raises(InputError, match=r"case, control: expected two different labels.*"
                                         r"covariates: the group column 'group' cannot be one"):
        GroupDesign(case="TD", covariates=("age", "group"))
    assert GroupDesign(site="", icv="", covariates=["age", "sex", "age"]) == GroupDesign(
        site=None, covariates=("age", "sex"))


def _icv_tables(seed: int = 4, n: int = 240):
    """Volumes confounded by intracranial volume (cases have smaller heads).

    ``confounded``: no group effect beyond ICV, so the raw difference vanishes once ICV is
    in the model. ``masked``: a true +1 SD (d = 1) group effect hidden by the smaller ICV
    of the cases, which appears only with ICV in the model.
    """
    rng = np.random.default_rng(seed)
    ids = [f"sub-{i:03d}" for i in range(n)]
    case = np.arange(n) % 2 == 0
    icv = rng.normal(1500.0, 120.0, n) - 120.0 * case
    parts = pd.DataFrame({"group": np.where(case, "ADHD", "TD"),
                          "age": rng.uniform(7, 18, n), "sex": rng.choice(["M", "F"], n),
                          "icv": icv}, index=pd.Index(ids, name="participant_id"))
    k = 1 / 120.0  # 1 SD of volume per 120 ml of ICV
    feats = pd.DataFrame({"confounded": k * icv + rng.normal(size=n),
                          "masked": k * icv + 1.0 * case + rng.normal(size=n)},
                         index=parts.index)
    return feats, parts


def test_icv_enters_the_model_as_a_covariate():
    feats, parts = _icv_tables()
    without = case_control(feats, parts, GroupDesign(site=None)).set_index("feature")
    with_icv = case_control(feats, parts, GroupDesign(site=None, icv="icv")).set_index("feature")
    assert with_icv.attrs["design_columns"] == ["intercept", "group[ADHD]", "age", "sex[M]",
                                                "icv"]
    assert with_icv.attrs["covariates"] == ["age", "sex", "icv"]
    design = np.column_stack([np.ones(len(parts)), (parts.group == "ADHD").astype(float),
                              parts.age, (parts.sex == "M").astype(float), parts.icv])
    for name in ("confounded", "masked"):
        ols = sm.OLS(feats[name].to_numpy(), design).fit()
        assert abs(with_icv.loc[name, "t"] - ols.tvalues[1]) <= 1e-8
        assert abs(with_icv.loc[name, "beta"] - ols.params[1]) <= 1e-10
        assert with_icv.loc[name, "df"] == len(parts) - 5
    # ICV-driven "effect" disappears once ICV is a covariate ...
    assert without.loc["confounded", "t"] < -4 and abs(with_icv.loc["confounded", "t"]) < 2
    # ... and an effect masked by smaller heads appears
    assert abs(without.loc["masked", "t"]) < 2 and with_icv.loc["masked", "t"] > 4
    assert with_icv.loc["masked", "d_ci_low"] < 1.0 < with_icv.loc["masked", "d_ci_high"]
    # rows without ICV are dropped like any other incomplete covariate
    parts.iloc[:10, parts.columns.get_loc("icv")] = np.nan
    res = case_control(feats, parts, GroupDesign(site=None, icv="icv"))
    assert res.attrs["n_dropped_missing"] == 10
    assert (res["n_case"] + res["n_control"] == len(parts) - 10).all()


def test_noncentrality_bound_interpolated_as_accurate_as_direct():
    from scipy import special

    from danemap.stats.glm import noncentrality_bound

    rng = np.random.default_rng(1)
    for df in (3, 10, 46, 263, 10_000):
        t = np.r_[rng.uniform(-12, 12, 3000), -12.0, 12.0]  # > 1024 values: interpolated
        d = np.full(t.size, float(df))
        for prob in (0.975, 0.025):
            got = noncentrality_bound(t, d, prob)
            direct = special.nctdtrinc(d, prob, t)
            res_got = np.abs(special.nctdtr(d, got, t) - prob)
            res_direct = np.abs(special.nctdtr(d, direct, t) - prob)
            assert res_got.max() <= max(4e-7, 1.05 * res_direct.max())
            if df >= 46:  # with few df the CDF is flat in lambda: compare the residuals only
                assert np.max(np.abs(got - direct)[np.abs(t) < 6]) < 2e-6
    few = noncentrality_bound(np.array([1.0, 2.0]), np.array([18.0, 18.0]), 0.975)
    np.testing.assert_array_equal(few, special.nctdtrinc(18.0, 0.975, np.array([1.0, 2.0])))
