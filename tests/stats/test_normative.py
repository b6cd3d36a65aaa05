import json

import numpy as np
import pandas as pd
import pytest

from danemap.errors import InputError, NotFittedError
from danemap.stats.normative import NormativeModel, _bspline_basis, _knots, normative_scores

SHIFT = np.array([1.0, -1.0, 0.0, 0.0])  # planted case shift in control-SD units


def _cohort(n_ctrl=240, n_case=120, seed=0, site_effect=True):
    rng = np.random.default_rng(seed)
    n = n_ctrl + n_case
    ids = pd.Index([f"sub-{i:04d}" for i in range(n)], name="participant_id")
    group = np.r_[["TD"] * n_ctrl, ["ADHD"] * n_case]
    age = rng.uniform(6, 20, n)
    sex = rng.choice(["F", "M"], n)
    site = rng.choice(["S1", "S2", "S3"], n)
    trend = np.column_stack([np.log(age), 0.02 * (age - 12) ** 2, np.sin(age / 3), age / 10])
    X = 2.0 + trend + 0.3 * (sex == "M")[:, None] + rng.normal(size=(n, 4))
    X[group == "ADHD"] += SHIFT
    if site_effect:
        loc = {"S1": 0.0, "S2": 1.5, "S3": -1.0}
        scale = {"S1": 1.0, "S2": 1.6, "S3": 0.7}
        mu = X.mean(0)
        for s in loc:
            m = site == s
            X[m] = mu + (X[m] - mu) * scale[s] + loc[s]
    F = pd.DataFrame(X, index=ids, columns=["f0", "f1", "f2", "f3"])
    P = pd.DataFrame({"group": group, "age": age, "sex": sex, "site": site}, index=ids)
    return F, P


def test_planted_shift_recovered_and_controls_calibrated():
    F, P = _cohort()
    z, model = normative_scores(F, P, n_folds=5, seed=1)
    ctrl = z[z.group == "TD"]
    case = z[z.group == "ADHD"]
    assert (ctrl.scored == "out-of-sample CV").all()
    assert (case.scored == "model fitted on all controls").all()
    zc = ctrl[["f0", "f1", "f2", "f3"]].to_numpy()
    # out-of-sample controls: mean ~0, sd ~1 (measured: |mean| < 0.05, sd 1.00-1.05)
    assert np.abs(zc.mean(0)).max() < 0.1
    assert np.all(np.abs(zc.std(0) - 1) < 0.1)
    # cases: the planted shift, recovered within 0.25 SD
    zk = case[["f0", "f1", "f2", "f3"]].mean().to_numpy()
    np.testing.assert_allclose(zk, SHIFT, atol=0.25)
    assert case.n_extreme.mean() > ctrl.n_extreme.mean()
    assert model.combat_ is not None and model.n_train_ == 240


def test_cases_do_not_influence_the_norm():
    F, P = _cohort()
    z1, _ = normative_scores(F, P, seed=2)
    F2 = F.copy()
    F2.loc[P.group == "ADHD"] += 50.0  # absurd cases
    z2, _ = normative_scores(F2, P, seed=2)
    ctrl = P.group == "TD"
    pd.testing.assert_frame_equal(z1[ctrl.to_numpy()], z2[ctrl.to_numpy()])


def test_save_load_roundtrip(tmp_path):
    F, P = _cohort()
    ctrl = P.group == "TD"
    m = NormativeModel(site="site", heteroscedastic=True).fit(F[ctrl], P[ctrl])
    path = m.save(tmp_path / "norm.json")
    data = json.loads(path.read_text())
    assert data["format"] == "danemap-normative-model" and data["combat"] is not None
    m2 = NormativeModel.load(path)
    pd.testing.assert_frame_equal(m.transform(F, P), m2.transform(F, P), rtol=1e-12)
    nm = NormativeModel(sex=None).fit(F[ctrl].to_numpy(), P[ctrl])
    nm.save(tmp_path / "n2.json")
    np.testing.assert_allclose(NormativeModel.load(tmp_path / "n2.json").transform(
        F.to_numpy(), P), nm.transform(F.to_numpy(), P))


def test_spline_basis_partition_of_unity_and_linear_extrapolation():
    age = np.linspace(8, 16, 50)
    t = _knots(age, 4, 3)
    B = _bspline_basis(np.array([2.0, 8.0, 12.0, 16.0, 30.0]), t, 3)
    np.testing.assert_allclose(B.sum(1), 1.0, atol=1e-12)
    far = _bspline_basis(np.array([16.0, 17.0, 18.0]), t, 3)
    np.testing.assert_allclose(far[2] - far[1], far[1] - far[0], atol=1e-12)


def test_constant_feature_warns_and_gives_nan():
    F, P = _cohort(site_effect=False)
    F["const"] = 3.0
    ctrl = P.group == "TD"
    from danemap.errors import DanemapWarning

    with pytest.warns(DanemapWarning, match="no residual variance"):
        m = NormativeModel().fit(F[ctrl], P[ctrl])
    assert m.transform(F, P)["const"].isna().all()


def test_errors(tmp_path):
    F, P = _cohort()
    with pytest.raises(NotFittedError, match="call fit"):
        NormativeModel().transform(F, P)
    with pytest.raises(InputError, match="n_knots"):
        NormativeModel(n_knots=1).fit(F, P)
    with pytest.raises(InputError, match="degree"):
        NormativeModel(degree=5).fit(F, P)
    with pytest.raises(InputError, match="extreme_z"):
        NormativeModel(extreme_z=0).fit(F, P)
    with pytest.raises(InputError, match="expected 360 rows"):
        NormativeModel().fit(F, P.iloc[:10])
    with pytest.raises(InputError, match="column 'age' not found"):
        NormativeModel().fit(F, P.drop(columns="age"))
    m = NormativeModel().fit(F, P)
    with pytest.raises(InputError, match=r"level\(s\) \['X'\] not seen"):
        m.transform(F, P.assign(sex="X"))
    with pytest.raises(InputError, match="absent here"):
        m.transform(F.drop(columns="f0"), P)
    with pytest.raises(InputError, match="finite values"):
        m.transform(F.assign(f0=np.nan), P)
    with pytest.raises(InputError, match="ages are all equal"):
        NormativeModel().fit(F, P.assign(age=10.0))
    with pytest.raises(InputError, match="file not found"):
        NormativeModel.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        NormativeModel.load(bad)
    bad.write_text(json.dumps({"format": "other"}))
    with pytest.raises(InputError, match="expected format"):
        NormativeModel.load(bad)
    bad.write_text(json.dumps({"format": "danemap-normative-model", "version": 99}))
    with pytest.raises(InputError, match="expected version 1"):
        NormativeModel.load(bad)
    path = NormativeModel(site="site").fit(F, P).save(tmp_path / "m.json")
    data = json.loads(path.read_text())
    data["combat"]["class"] = "os:system"
    bad.write_text(json.dumps(data))
    with pytest.raises(InputError, match="refusing"):
        NormativeModel.load(bad)
    with pytest.raises(InputError, match="n_folds"):
        normative_scores(F, P, n_folds=1)
    with pytest.raises(InputError, match="too few"):
        normative_scores(F.iloc[-125:], P.iloc[-125:], n_folds=5)
    with pytest.raises(InputError, match="fewer than 5 controls"):
        normative_scores(F, P.assign(site=np.where(np.arange(360) < 3, "tiny", P.site)))


def test_normative_model_follows_the_sklearn_parameter_contract():
    from sklearn.base import clone

    from danemap.stats import NormativeModel

    model = NormativeModel(n_knots=5, heteroscedastic=True)
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    assert copy.set_params(extreme_z=3.0).extreme_z == 3.0
