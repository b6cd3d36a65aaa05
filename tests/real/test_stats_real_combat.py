"""ComBat equals neuroHarmonize / neuroCombat on the real ADHD-200 ALFF table."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pandas as pd
import pytest

from danemap.stats import GroupDesign
from danemap.stats.combat import ComBat
from danemap.stats.glm import case_control

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def adhd200(shared_data):
    root = shared_data / "adhd200-alff"
    feats = pd.read_csv(root / "alff_aal116.tsv", sep="\t", na_values="n/a")
    parts = pd.read_csv(root / "participants.tsv", sep="\t", na_values="n/a")
    joined = feats.merge(parts, on="participant_id").dropna(subset=["age", "sex", "group"])
    names = [c for c in feats.columns if c != "participant_id"]
    # neuroCombat casts numeric covariates to float32; give both tools the same ages
    age = joined["age"].to_numpy().astype(np.float32).astype(np.float64)
    return joined, names, age, feats, parts


def _rel(a, b):
    return float(np.max(np.abs(a - b) / np.abs(b)))


def test_parametric_and_no_eb_equal_neuroharmonize(adhd200):
    import neuroHarmonize as nh  # a test dependency: must not skip in CI
    joined, names, age, _, _ = adhd200
    X = joined[names].to_numpy(np.float64)
    nh_cov = pd.DataFrame({"SITE": joined["site"].to_numpy(), "age": age,
                           "sex": (joined["sex"] == "M").to_numpy(float),
                           "group": (joined["group"] == "TD").to_numpy(float)})
    ours_cov = pd.DataFrame({"age": age, "sex": joined["sex"].to_numpy(),
                             "group": joined["group"].to_numpy()})
    for eb in (True, False):
        with contextlib.redirect_stdout(io.StringIO()):
            _, ref = nh.harmonizationLearn(X, nh_cov, eb=eb)
        ours = ComBat(empirical_bayes=eb).fit_transform(X, joined["site"].to_numpy(), ours_cov)
        assert _rel(ours, ref) <= 1e-6, eb


@pytest.mark.parametrize(("parametric", "mean_only"),
                         [(False, False), (True, True), (False, True)])
def test_nonparametric_and_mean_only_equal_neurocombat(adhd200, parametric, mean_only):
    import neuroCombat as nc  # a test dependency: must not skip in CI
    joined, names, age, _, _ = adhd200
    X = joined[names].to_numpy(np.float64)
    cov = pd.DataFrame({"site": joined["site"].to_numpy(), "age": age,
                        "sex": (joined["sex"] == "M").to_numpy(float),
                        "group": (joined["group"] == "TD").to_numpy(float)})
    with contextlib.redirect_stdout(io.StringIO()):
        ref = nc.neuroCombat(X.T.copy(), cov, "site", continuous_cols=["age", "sex", "group"],
                             parametric=parametric, mean_only=mean_only)["data"].T
    ours = ComBat(parametric=parametric, mean_only=mean_only).fit_transform(
        X, joined["site"].to_numpy(), cov.drop(columns="site"))
    assert _rel(ours, ref) <= 1e-6


def test_site_removed_on_real_data_and_glm_runs(adhd200):
    from scipy import stats

    joined, names, _, _feats, parts = adhd200
    cov = joined[["age", "sex", "group"]]
    Xh = ComBat().fit_transform(joined[names], joined["site"].to_numpy(), cov)
    site = joined["site"].to_numpy()
    p_before = stats.f_oneway(*[joined.loc[site == s, "Caudate_L"] for s in ("NYU", "Peking")])
    p_after = stats.f_oneway(*[Xh.loc[site == s, "Caudate_L"] for s in ("NYU", "Peking")])
    assert p_before.pvalue < 1e-3 < 0.05 < p_after.pvalue
    harmonised = Xh.set_axis(pd.Index(joined["participant_id"], name="participant_id"))
    res = case_control(harmonised, parts.set_index("participant_id"), GroupDesign(site=None))
    assert len(res) == len(names) and res["t"].notna().all()
