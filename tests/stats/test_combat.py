"""Tests of danemap.stats.combat.ComBat (synthetic data; the real-data equivalence with
neuroHarmonize is in tests/real/test_stats_real_combat.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from danemap.errors import DanemapWarning, InputError, NotFittedError
from danemap.stats.combat import ComBat


def _cohort(seed: int = 0, n_per_site: int = 60, m: int = 20):
    rng = np.random.default_rng(seed)
    sites = np.repeat(["A", "B", "C"], n_per_site)
    n = sites.size
    group = rng.permutation(np.tile(["ADHD", "TD"], n // 2))
    age = rng.uniform(7, 18, n)
    X = rng.normal(size=(n, m)) + 0.05 * age[:, None]
    X[:, 0] += 1.0 * (group == "ADHD")  # planted group effect on feature 0
    shift = {"A": 0.0, "B": 1.5, "C": -1.0}
    scale = {"A": 1.0, "B": 2.0, "C": 0.6}
    for s in shift:
        X[sites == s] = X[sites == s] * scale[s] + shift[s]
    covars = pd.DataFrame({"age": age, "group": group})
    return X, sites, covars


def test_site_effect_removed_group_preserved():
    X, sites, covars = _cohort()
    Xh = ComBat().fit_transform(X, sites, covars)
    resid_before = [X[sites == s, 1] for s in "ABC"]
    resid_after = [Xh[sites == s, 1] for s in "ABC"]
    assert stats.f_oneway(*resid_before).pvalue < 1e-10
    assert stats.f_oneway(*resid_after).pvalue > 0.05
    assert stats.levene(*resid_after).pvalue > 0.05
    # the group effect on feature 0 survives harmonisation
    g = covars["group"].to_numpy() == "ADHD"
    assert stats.ttest_ind(Xh[g, 0], Xh[~g, 0]).pvalue < 0.05


def test_dataframe_in_dataframe_out_and_refit_same_as_fit_transform():
    X, sites, covars = _cohort()
    idx = [f"sub-{i}" for i in range(len(X))]
    df = pd.DataFrame(X, index=idx, columns=[f"f{j}" for j in range(X.shape[1])])
    cb = ComBat().fit(df, sites, covars)
    out = cb.transform(df, sites, covars)
    assert isinstance(out, pd.DataFrame)
    assert list(out.index) == idx and list(out.columns) == list(df.columns)
    np.testing.assert_allclose(out.to_numpy(), ComBat().fit_transform(X, sites, covars))
    # a subset of participants is harmonised exactly as in the full transform
    part = cb.transform(df.iloc[::7], sites[::7], covars.iloc[::7])
    np.testing.assert_allclose(part.to_numpy(), out.to_numpy()[::7])


@pytest.mark.parametrize("kw", [dict(parametric=False), dict(empirical_bayes=False),
                                dict(mean_only=True), dict(parametric=False, mean_only=True)])
def test_variants_remove_location(kw):
    X, sites, covars = _cohort(1)
    Xh = ComBat(**kw).fit_transform(X, sites, covars)
    assert np.all(np.isfinite(Xh))
    assert stats.f_oneway(*[Xh[sites == s, 3] for s in "ABC"]).pvalue > 0.05


def test_constant_feature_passes_through():
    X, sites, covars = _cohort()
    X[:, 2] = 4.2
    Xh = ComBat().fit_transform(X, sites, covars)
    assert np.all(np.isfinite(Xh))
    np.testing.assert_array_equal(Xh[:, 2], 4.2)
    cb = ComBat().fit(X, sites, covars)
    assert cb.constant_features_.sum() == 1


def test_single_site_is_identity():
    X, sites, covars = _cohort()
    keep = sites == "A"
    with pytest.warns(DanemapWarning, match="only one site"):
        cb = ComBat().fit(X[keep], sites[keep], covars[keep])
    np.testing.assert_allclose(cb.transform(X[keep], sites[keep], covars[keep]), X[keep])


def test_not_fitted():
    with pytest.raises(NotFittedError, match="call fit"):
        ComBat().transform(np.ones((3, 2)), ["a", "a", "a"])


def test_unseen_site_error_lists_fitted_sites():
    X, sites, covars = _cohort()
    cb = ComBat().fit(X, sites, covars)
    new = np.array(["D"] * len(X))
    with pytest.raises(InputError, match=r"\['D'\] not seen at fit; fitted sites are \['A', "):
        cb.transform(X, new, covars)


def test_unseen_site_refit_matches_neuroharmonize_approach():
    X, sites, covars = _cohort()
    keep = sites != "C"
    cb = ComBat(unseen_site="refit").fit(X[keep], sites[keep], covars[keep])
    with pytest.warns(DanemapWarning, match="not seen at fit"):
        out = cb.transform(X, sites, covars)
    assert np.all(np.isfinite(out))
    # fitted sites are untouched by the presence of the new one
    np.testing.assert_allclose(out[keep], cb.transform(X[keep], sites[keep], covars[keep]))
    assert stats.f_oneway(*[out[sites == s, 4] for s in "ABC"]).pvalue > 0.05
    assert not hasattr(cb, "extra_sites_")  # estimator state unchanged


@pytest.mark.parametrize("size", [1, 2])
def test_tiny_site_is_refused(size):
    X, sites, covars = _cohort()
    sites = sites.astype(object)
    sites[:size] = "tiny"
    with pytest.raises(InputError, match=rf"at least 3 participants per site.*'tiny': {size}"):
        ComBat().fit(X, sites, covars)


def test_nan_in_X_names_rows_and_columns():
    X, sites, covars = _cohort()
    df = pd.DataFrame(X, columns=[f"f{j}" for j in range(X.shape[1])])
    df.iloc[5, 3] = np.nan
    with pytest.raises(InputError, match=r"rows \[5\] and columns \[f3\]"):
        ComBat().fit(df, sites, covars)


def test_mismatched_lengths():
    X, sites, covars = _cohort()
    with pytest.raises(InputError, match="site: expected 180 labels"):
        ComBat().fit(X, sites[:-1], covars)
    with pytest.raises(InputError, match="covars: expected 180 rows"):
        ComBat().fit(X, sites, covars.iloc[:-1])
    cb = ComBat().fit(X, sites, covars)
    with pytest.raises(InputError, match="expected 20 features"):
        cb.transform(X[:, :5], sites, covars)


def test_missing_site_label_and_covariate():
    X, sites, covars = _cohort()
    s = sites.astype(object)
    s[3] = None
    with pytest.raises(InputError, match=r"site: expected a label.*rows \[3\]"):
        ComBat().fit(X, s, covars)
    c = covars.copy()
    c.loc[4, "age"] = np.nan
    with pytest.raises(InputError, match=r"covars: expected complete values in columns \['age'\]"):
        ComBat().fit(X, sites, c)


def test_confounded_covariate_and_bad_param():
    X, sites, covars = _cohort()
    c = covars.assign(scanner=sites)
    with pytest.raises(InputError, match="rank deficient"):
        ComBat().fit(X, sites, c)
    with pytest.raises(InputError, match="unseen_site must be"):
        ComBat(unseen_site="ignore").fit(X, sites, covars)


def test_unseen_covariate_level():
    X, sites, covars = _cohort()
    cb = ComBat().fit(X, sites, covars)
    c = covars.copy()
    c.loc[0, "group"] = "other"
    with pytest.raises(InputError, match=r"level\(s\) \['other'\] not seen at fit"):
        cb.transform(X, sites, c)


def test_sklearn_contract():
    from sklearn.base import clone

    X, sites, covars = _cohort()
    cb = ComBat(parametric=False, unseen_site="refit")
    # __init__ stores exactly its arguments (what clone and grid searches rely on)
    assert cb.get_params() == {"parametric": False, "empirical_bayes": True,
                               "mean_only": False, "unseen_site": "refit",
                               "confounded": "error"}
    assert cb.fit(X, sites, covars) is cb
    fitted = {k for k in vars(cb) if k.endswith("_")}
    assert {"gamma_star_", "delta_star_", "sites_", "use_eb_"} <= fitted
    # a clone of a fitted estimator has the parameters but none of the fitted state
    fresh = clone(cb)
    assert fresh.get_params() == cb.get_params()
    assert not {k for k in vars(fresh) if k.endswith("_")}
    with pytest.raises(NotFittedError, match="call fit"):
        fresh.transform(X, sites, covars)
    np.testing.assert_array_equal(fresh.fit_transform(X, sites, covars),
                                  cb.transform(X, sites, covars))
    # parameters are read at fit time: set_params changes the next fit
    again = clone(cb).set_params(parametric=True).fit(X, sites, covars)
    assert again.describe().startswith("parametric empirical Bayes")
    assert not np.allclose(again.gamma_star_, cb.gamma_star_)


@pytest.mark.parametrize(("method", "kw"), [("parametric", {}),
                                            ("nonparametric", {"parametric": False}),
                                            ("no-eb", {"empirical_bayes": False})])
def test_combat_methods_by_name(method, kw):
    from danemap.stats.combat import COMBAT_METHODS, combat_params

    assert list(COMBAT_METHODS) == ["parametric", "nonparametric", "no-eb"]
    X, sites, covars = _cohort()
    named = ComBat(**combat_params(method)).fit(X, sites, covars)
    np.testing.assert_array_equal(named.transform(X, sites, covars),
                                  ComBat(**kw).fit_transform(X, sites, covars))
    assert named.describe() == ComBat(**combat_params(method)).describe()  # EB was possible
    with pytest.raises(InputError, match=r"stats\.combat_method: expected one of "
                                         r"\['parametric', 'nonparametric', 'no-eb'\], "
                                         "found 'np'"):
        combat_params("np", "stats.combat_method")


def test_covariate_without_variation_within_sites_is_refused_or_dropped():
    # sex constant at each site (all M at A, all F at B): collinear with the site dummies
    rng = np.random.default_rng(4)
    sites = np.repeat(["A", "B"], 20)
    covars = pd.DataFrame({"age": rng.uniform(8, 16, 40), "sex": np.repeat(["M", "F"], 20)})
    X = rng.normal(size=(40, 5)) + (sites == "B")[:, None]
    with pytest.raises(InputError, match="rank deficient"):
        ComBat().fit(X, sites, covars)
    cb = ComBat(confounded="drop").fit(X, sites, covars)
    assert cb.covariate_names_ == ["age"]
    ref = ComBat().fit(X, sites, covars[["age"]])
    np.testing.assert_allclose(cb.transform(X, sites, covars), ref.transform(X, sites,
                               covars[["age"]]), rtol=1e-12)
