import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from danemap.errors import DanemapWarning, InputError
from danemap.stats.symptoms import (
    partial_correlation,
    standardize_within_site,
    symptom_association,
)


def _cohort(n=120, seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"sub-{i:03d}" for i in range(n)]
    site = np.where(np.arange(n) % 2 == 0, "A", "B")
    group = np.where(np.arange(n) % 3 == 0, "TD", "ADHD")
    age = rng.uniform(7, 17, n)
    sex = rng.choice(["F", "M"], n)
    latent = rng.normal(size=n)
    # site B reports on a different scale (x3 + 20), as Conners vs ADHD-RS
    score = np.where(site == "A", latent, 3 * latent + 20)
    P = pd.DataFrame({"site": site, "group": group, "age": age, "sex": sex,
                      "adhd_index": score}, index=pd.Index(ids, name="participant_id"))
    F = pd.DataFrame({"f0": 0.5 * latent + 0.1 * age + rng.normal(size=n),
                      "f1": rng.normal(size=n)}, index=P.index)
    return F, P


def test_partial_correlation_equals_statsmodels_ols_t():
    rng = np.random.default_rng(1)
    n = 80
    cov = rng.normal(size=(n, 3))
    y = rng.normal(size=n) + cov[:, 0]
    X = rng.normal(size=(n, 4)) + 0.4 * y[:, None] + cov[:, [1]]
    res = partial_correlation(X, y, cov)
    for j in range(4):
        ols = sm.OLS(X[:, j], sm.add_constant(np.column_stack([y, cov]))).fit()
        assert res["t"][j] == pytest.approx(ols.tvalues[1], rel=1e-10)
        assert res["p"][j] == pytest.approx(ols.pvalues[1], rel=1e-8)
        assert res["df"][j] == ols.df_resid
        # residual correlation (the pingouin partial_corr definition)
        d = sm.add_constant(cov)
        rx = sm.OLS(X[:, j], d).fit().resid
        ry = sm.OLS(y, d).fit().resid
        assert res["r"][j] == pytest.approx(np.corrcoef(rx, ry)[0, 1], abs=1e-12)
    # Fisher-z CI with se = 1/sqrt(n - 3 - k)
    z = np.arctanh(res["r"][0])
    assert res["ci_low"][0] == pytest.approx(np.tanh(z - 1.959963984540054 / np.sqrt(n - 6)))
    assert res["ci_low"][0] < res["r"][0] < res["ci_high"][0]


def test_standardize_within_site_removes_scale_difference():
    _F, P = _cohort()
    z = standardize_within_site(P["adhd_index"], P["site"])
    for s in ("A", "B"):
        v = z[P["site"] == s]
        assert v.mean() == pytest.approx(0, abs=1e-12)
        assert v.std(ddof=1) == pytest.approx(1)


def test_standardize_small_site_warns_and_leaves_out():
    s = pd.Series([1.0, 2.0, 3.0, 4.0, 5.0])
    site = pd.Series(["A", "A", "A", "B", "B"])
    with pytest.warns(DanemapWarning, match="site 'B' has fewer than 3"):
        z = standardize_within_site(s, site, "adhd_index")
    assert z[3:].isna().all() and z[:3].notna().all()


def test_symptom_association_recovers_planted_correlation_and_states_scaling():
    F, P = _cohort(n=300)
    res = symptom_association(F, P, symptoms=["adhd_index"])
    assert set(res["sample"]) == {"ADHD", "all"}
    assert (res["symptom_scaling"] == "z-scored within site").all()
    f0 = res[(res.feature == "f0") & (res["sample"] == "all")].iloc[0]
    f1 = res[(res.feature == "f1") & (res["sample"] == "all")].iloc[0]
    assert f0.r > 0.3 and f0.p_fdr < 1e-6
    assert abs(f1.r) < 0.15
    assert f0.n == 300
    assert res[(res["sample"] == "ADHD")]["n"].iloc[0] == (P.group == "ADHD").sum()
    assert "site[B]" in f0.covariates
    raw = symptom_association(F, P, symptoms=["adhd_index"], standardize=False)
    assert (raw["symptom_scaling"] == "raw").all()


def test_missing_feature_values_use_complete_rows():
    F, P = _cohort()
    F.iloc[:5, 1] = np.nan
    res = symptom_association(F, P, symptoms=["adhd_index"], samples=("all",))
    assert list(res["n"]) == [120, 115]


def test_errors():
    F, P = _cohort()
    with pytest.raises(InputError, match="column 'nope' not found"):
        symptom_association(F, P, symptoms=["nope"])
    with pytest.raises(InputError, match="no symptom column found"):
        symptom_association(F, P.drop(columns="adhd_index"))
    with pytest.raises(InputError, match="samples: expected"):
        symptom_association(F, P, symptoms=["adhd_index"], samples=("cases",))
    with pytest.raises(InputError, match="not aligned"):
        symptom_association(F.iloc[::-1], P, symptoms=["adhd_index"])
    P2 = P.assign(adhd_index=np.where(P.site == "A", "high", "low"))
    with pytest.raises(InputError, match="must be numeric"):
        symptom_association(F, P2, symptoms=["adhd_index"])
    with pytest.raises(InputError, match="case label 'ADHD' not found"):
        symptom_association(F, P.assign(group="TD"), symptoms=["adhd_index"])


def test_too_few_participants_warns():
    F, P = _cohort(n=12)
    with pytest.warns(DanemapWarning, match="fewer than"):
        res = symptom_association(F.iloc[:6], P.iloc[:6], symptoms=["adhd_index"],
                                  samples=("all",), standardize=False)
    assert res["r"].isna().all()
