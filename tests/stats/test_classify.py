import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline

from danemap.errors import DanemapWarning, InputError, NotFittedError
from danemap.stats.classify import (
    FeatureBuilder,
    NestedLogistic,
    classify,
    load_classifier,
    predict,
    save_classifier,
)


def _cohort(n=160, seed=0, signal=1.2):
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"sub-{i:03d}" for i in range(n)], name="participant_id")
    y = np.arange(n) % 2
    site = np.where(rng.random(n) < 0.5, "A", "B")
    P = pd.DataFrame({"group": np.where(y == 1, "ADHD", "TD"), "site": site,
                      "age": rng.uniform(7, 17, n), "sex": rng.choice(["F", "M"], n),
                      "full4_iq": rng.normal(100, 15, n)}, index=ids)
    P.loc[P.index[:4], "full4_iq"] = np.nan
    X = rng.normal(size=(n, 6))
    X[:, 0] += signal * y
    X[site == "B"] = X[site == "B"] * 2 + 3  # site effect
    F = pd.DataFrame(X, index=ids, columns=[f"f{j}" for j in range(6)])
    return F, P


def _frame(F, P):
    return pd.concat([F, P[["site", "age", "sex", "full4_iq"]]], axis=1)


def test_three_models_and_planted_signal():
    F, P = _cohort()
    tab, info = classify(F, P, n_permutations=9, n_bootstrap=100, c_grid=(0.1, 1.0),
                         n_folds=4)
    assert set(tab["model"]) == {"covariates", "imaging", "both"}
    assert set(tab["scheme"]) == {"kfold", "loso"}
    assert len(tab) == 2 * 3 * 5
    auc = tab[tab.metric == "auc"].set_index(["scheme", "model"])["value"]
    assert auc["kfold", "imaging"] > 0.75
    assert auc["kfold", "covariates"] < 0.65  # covariates carry no signal here
    p = tab[tab.metric == "auc"].set_index(["scheme", "model"])["p_permutation"]
    assert p["kfold", "imaging"] == pytest.approx(0.1)  # smallest possible with 9 permutations
    row = tab[(tab.scheme == "kfold") & (tab.model == "imaging")].iloc[0]
    assert row.ci_low <= row.value <= row.ci_high and row.fold_sd > 0
    assert "ComBat fitted in each training fold" in row.harmonization
    loso = tab[(tab.scheme == "loso") & (tab.model == "both")].iloc[0]
    assert loso.harmonization.startswith("none (LOSO")
    assert "site" not in loso.inputs
    assert "site" in tab[(tab.scheme == "kfold") & (tab.model == "covariates")].iloc[0].inputs
    assert "full4_iq" in tab[(tab.model == "covariates")].iloc[0].inputs
    assert info["n"] == 160 and len(info["folds"]["kfold/imaging"]) == 4


def test_seeded_reproducible():
    F, P = _cohort(n=80)
    kw = {"n_permutations": 2, "n_bootstrap": 50, "c_grid": (1.0,), "schemes": ("kfold",)}
    a, _ = classify(F, P, seed=3, **kw)
    b, _ = classify(F, P, seed=3, **kw)
    pd.testing.assert_frame_equal(a, b)


def test_builder_works_inside_sklearn_pipeline_and_never_sees_test_rows():
    F, P = _cohort()
    X = _frame(F, P)
    y = (P.group == "ADHD").to_numpy(int)
    pipe = Pipeline([("features", FeatureBuilder(imaging=list(F.columns), numeric=["age"],
                                                  categorical=["sex", "site"], site="site",
                                                  harmonize=True,
                                                  combat_covariates=["age", "sex"])),
                     ("clf", LogisticRegression())])
    scores = cross_val_score(pipe, X, y, cv=4, scoring="roc_auc")
    assert scores.mean() > 0.7
    train, test = X.iloc[:120], X.iloc[120:]
    fb = FeatureBuilder(imaging=list(F.columns), site="site", harmonize=True,
                        combat_covariates=["age", "sex"]).fit(train)
    assert set(fb.train_index_).isdisjoint(test.index)
    before = fb.transform(test)
    # changing other test rows does not change a test row's transform (no test-fold fit)
    test2 = test.copy()
    test2.iloc[1:, :6] += 100.0
    np.testing.assert_allclose(fb.transform(test2)[0], before[0])
    # whereas fitting with the test rows would change it: the leak this design prevents
    leaky = FeatureBuilder(imaging=list(F.columns), site="site", harmonize=True,
                           combat_covariates=["age", "sex"]).fit(pd.concat([train, test2]))
    assert not np.allclose(leaky.transform(test)[0], before[0])


def test_test_fold_values_do_not_change_training_decisions():
    # shifting the held-out fold's features must not change the models fitted on the others
    F, P = _cohort(n=100)
    X, y = _frame(F, P), (P.group == "ADHD").to_numpy(int)
    b = FeatureBuilder(imaging=list(F.columns), numeric=["age", "full4_iq"],
                       categorical=["sex", "site"], site="site", harmonize=True,
                       combat_covariates=["age", "sex"])
    m1 = NestedLogistic(b, (0.1, 1.0), 3, 0).fit(X.iloc[:80], y[:80])
    X2 = X.copy()
    X2.iloc[80:, :6] = 1e3
    m2 = NestedLogistic(b, (0.1, 1.0), 3, 0).fit(X2.iloc[:80], y[:80])
    np.testing.assert_allclose(m1.clf_.coef_, m2.clf_.coef_)
    assert m1.builder_.medians_["full4_iq"] == pytest.approx(
        np.nanmedian(P.full4_iq.iloc[:80]))


def test_save_and_predict_roundtrip(tmp_path):
    F, P = _cohort()
    path = save_classifier(tmp_path / "clf.json", F, P, c_grid=(0.1, 1.0))
    data = json.loads(path.read_text())
    assert data["format"] == "danemap-classifier" and data["builder"]["combat"] is not None
    _fb, _payload = load_classifier(path)
    res = predict(path, F.iloc[:10], P.iloc[:10])
    assert list(res.columns) == ["participant_id", "probability_case", "predicted", "model"]
    assert res["probability_case"].between(0, 1).all()
    # same as the in-memory model
    b = FeatureBuilder(**{k: v for k, v in data["builder"]["params"].items()})
    m = NestedLogistic(b, (data["C"],), 3, 0).fit(
        _frame(F, P)[(P.group != "x").to_numpy()], (P.group == "ADHD").to_numpy(int))
    np.testing.assert_allclose(res["probability_case"],
                               m.predict_proba(_frame(F, P).iloc[:10])[:, 1], rtol=1e-6)


def test_errors(tmp_path):
    F, P = _cohort(n=60)
    with pytest.raises(InputError, match="schemes"):
        classify(F, P, schemes=("loocv",))
    with pytest.raises(InputError, match="loso_harmonize"):
        classify(F, P, loso_harmonize="magic")
    with pytest.raises(InputError, match=r"n_folds \(--folds\) / inner_folds"):
        classify(F, P, n_folds=1)
    with pytest.raises(InputError, match="n_permutations"):
        classify(F, P, n_permutations=-1)
    with pytest.raises(InputError, match="c_grid"):
        classify(F, P, c_grid=())
    with pytest.raises(InputError, match="not aligned"):
        classify(F.iloc[::-1], P)
    with pytest.raises(InputError, match=r"too few .*lower --folds"), \
            pytest.warns(DanemapWarning, match="fewer than 10 participants"):
        classify(F.iloc[:6], P.iloc[:6], n_folds=5)
    with pytest.raises(InputError, match="clash"):
        classify(F.assign(age=1.0), P)
    with pytest.raises(NotFittedError, match="call fit"):
        FeatureBuilder(imaging=["f0"]).transform(_frame(F, P))
    with pytest.raises(InputError, match="must be a pandas DataFrame"):
        FeatureBuilder(imaging=["f0"]).fit(F.to_numpy())
    with pytest.raises(InputError, match="no imaging, numeric or categorical"):
        FeatureBuilder().fit(_frame(F, P))
    with pytest.raises(InputError, match="harmonize=True needs a site"):
        FeatureBuilder(imaging=["f0"], harmonize=True).fit(_frame(F, P))
    with pytest.raises(InputError, match="entirely missing"):
        FeatureBuilder(numeric=["full4_iq"]).fit(_frame(F, P).assign(full4_iq=np.nan))
    with pytest.raises(NotFittedError, match="call fit"):
        NestedLogistic(FeatureBuilder(imaging=["f0"]), (1.0,), 3, 0).predict_proba(F)
    with pytest.raises(InputError, match="model: expected one of"):
        save_classifier(tmp_path / "m.json", F, P, model="best")
    path = save_classifier(tmp_path / "m.json", F, P, c_grid=(1.0,))
    with pytest.raises(InputError, match="absent here"):
        predict(path, F.drop(columns="f0"), P)
    with pytest.raises(InputError, match="missing values"):
        predict(path, F.assign(f1=np.nan), P)
    with pytest.raises(InputError, match=r"have site \['C'\], which the saved classifier"):
        predict(path, F, P.assign(site="C"))
    with pytest.raises(InputError, match="file not found"):
        load_classifier(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(InputError, match="expected format"):
        load_classifier(bad)
    bad.write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        load_classifier(bad)
    data = json.loads(path.read_text())
    data["version"] = 7
    bad.write_text(json.dumps(data))
    with pytest.raises(InputError, match="expected version 1"):
        load_classifier(bad)
    data["version"] = 1
    data["coef"] = [1.0]
    bad.write_text(json.dumps(data))
    with pytest.raises(InputError, match="coefficients for"):
        load_classifier(bad)
    one_site = P.assign(site="A")
    with pytest.warns(DanemapWarning, match="at least two sites"):
        classify(F, one_site, harmonize=False, n_permutations=0, n_bootstrap=10,
                 c_grid=(1.0,))


def test_solver_switch_same_predictions():
    from danemap.stats.classify import LBFGS_ABOVE, NestedLogistic, logistic_solver

    assert logistic_solver(LBFGS_ABOVE) == "newton-cholesky"
    assert logistic_solver(LBFGS_ABOVE + 1) == "lbfgs"
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 30))
    y = (X[:, 0] + rng.normal(size=60) > 0).astype(int)
    probs = [LogisticRegression(C=1.0, solver=s, tol=1e-10, max_iter=1000).fit(X, y)
             .predict_proba(X)[:, 1] for s in ("newton-cholesky", "lbfgs")]
    np.testing.assert_allclose(probs[0], probs[1], atol=1e-5)
    wide = pd.DataFrame(rng.normal(size=(40, LBFGS_ABOVE + 5)),
                        columns=[f"f{j}" for j in range(LBFGS_ABOVE + 5)])
    m = NestedLogistic(FeatureBuilder(imaging=list(wide.columns)), (0.1, 1.0), 2, 0)
    assert m.fit(wide, np.arange(40) % 2).clf_.solver == "lbfgs"
    narrow = wide.iloc[:, :5]
    m = NestedLogistic(FeatureBuilder(imaging=list(narrow.columns)), (1.0,), 2, 0)
    assert m.fit(narrow, np.arange(40) % 2).clf_.solver == "newton-cholesky"


def _three_sites(n=150, seed=5):
    """Three sites of 50 with strong site shifts and scales, and a planted signal."""
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"sub-{i:03d}" for i in range(n)], name="participant_id")
    y = np.arange(n) % 2
    site = np.repeat(["A", "B", "C"], n // 3)
    P = pd.DataFrame({"group": np.where(y == 1, "ADHD", "TD"), "site": site,
                      "age": rng.uniform(7, 17, n), "sex": rng.choice(["F", "M"], n)},
                     index=ids)
    X = rng.normal(size=(n, 5))
    X[:, 0] += 1.5 * y
    for s, (shift, scale) in {"B": (4.0, 2.0), "C": (-3.0, 0.5)}.items():
        X[site == s] = X[site == s] * scale + shift
    return pd.DataFrame(X, index=ids, columns=[f"f{j}" for j in range(5)]), P


LOSO = {"schemes": ("loso",), "n_permutations": 0, "n_bootstrap": 20, "c_grid": (1.0,),
        "extra_covariates": ()}


def test_loso_refit_harmonises_inside_training_folds_without_test_leakage(monkeypatch):
    from danemap.stats.combat import ComBat

    F, P = _three_sites()
    fits, transforms = [], []
    real_fit, real_transform = ComBat.fit, ComBat.transform

    def spy_fit(self, X, site, covars=None):
        fits.append((len(X), frozenset(map(str, site)), list(covars.columns)))
        return real_fit(self, X, site, covars)

    def spy_transform(self, X, site, covars=None):
        transforms.append(set(map(str, site)) - set(map(str, self.sites_)))
        return real_transform(self, X, site, covars)

    monkeypatch.setattr(ComBat, "fit", spy_fit)
    monkeypatch.setattr(ComBat, "transform", spy_transform)
    tab, info = classify(F, P, loso_harmonize="refit", **LOSO)
    # ComBat is fitted on training rows only: never all three sites, never the labels
    assert fits and all(len(sites) == 2 for _, sites, _ in fits)
    assert all(n <= 100 for n, _, _ in fits)  # at most the 100 rows of two sites
    assert all(cols == ["age", "sex"] for *_, cols in fits)
    # ... and the held-out site is harmonised by the refit path (unseen at fit)
    assert {"A"} in transforms and {"B"} in transforms and {"C"} in transforms
    harm = tab.set_index("model")["harmonization"]
    assert harm["imaging"].iloc[0].startswith("ComBat fitted in each training fold (parametric")
    assert "transductive" in harm["both"].iloc[0]
    assert harm["covariates"].iloc[0] == "not applicable"
    assert "refitted from its own unlabelled features" in info["notes"][0]


def test_loso_refit_removes_site_shifts_that_loso_without_harmonisation_keeps():
    # with least-squares ComBat (no EB), adding a per-feature constant to one site's
    # features changes nothing after harmonisation, whether the site is in training or held
    # out (its location is then estimated from its own features): every out-of-fold
    # prediction, hence every metric, is unchanged. Without harmonisation it is not.
    F, P = _three_sites()
    shifted = F.copy()
    shifted.loc[(P.site == "C").to_numpy()] += np.array([5.0, -3.0, 2.0, 8.0, -6.0])
    kw = dict(LOSO, combat_method="no-eb")
    a, _ = classify(F, P, loso_harmonize="refit", **kw)
    b, _ = classify(shifted, P, loso_harmonize="refit", **kw)
    cols = ["value", "ci_low", "ci_high", "fold_mean", "fold_sd"]
    np.testing.assert_allclose(b[cols].to_numpy(float), a[cols].to_numpy(float), atol=1e-6)
    assert "without empirical Bayes" in a.set_index("model").loc["imaging", "harmonization"].iloc[0]
    c, _ = classify(F, P, loso_harmonize="none", **kw)
    d, _ = classify(shifted, P, loso_harmonize="none", **kw)
    img = (c.model == "imaging").to_numpy()
    assert not np.allclose(d.loc[img, "value"], c.loc[img, "value"], atol=1e-3)
    # refit harmonisation helps here: pooled balanced accuracy under strong site effects
    ba = {k: t[(t.model == "imaging") & (t.metric == "balanced_accuracy")].value.iloc[0]
          for k, t in (("refit", a), ("none", c))}
    assert ba["refit"] > ba["none"]
