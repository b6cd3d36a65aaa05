"""Random-effects meta-analysis across sites: against statsmodels, scipy and planted truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import optimize
from statsmodels.stats.meta_analysis import combine_effects

from danemap.errors import InputError
from danemap.stats import GroupDesign
from danemap.stats.glm import case_control
from danemap.stats.meta import agreement, random_effects, site_meta_analysis


def _heterogeneous(k: int, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    v = rng.uniform(0.01, 0.08, (k, m))
    y = 0.2 + rng.normal(0, 0.25, (k, m)) \
        + rng.normal(0, np.sqrt(v))
    return y, v


def test_dl_equals_statsmodels_combine_effects():
    y, v = _heterogeneous(k=7, m=40, seed=1)
    got = random_effects(y, v, method="dl")
    n_checked = 0
    for j in range(y.shape[1]):
        ref = combine_effects(y[:, j], v[:, j], method_re="dl", use_t=True)
        tau2 = max(float(ref.tau2), 0.0)
        q_hk = float(ref.scale_hksj_re)
        if ref.tau2 < 0 or q_hk < 1:  # statsmodels neither truncates tau2 nor the HK scale
            continue
        n_checked += 1
        np.testing.assert_allclose(got["tau2"][j], tau2, rtol=1e-10)
        np.testing.assert_allclose(got["estimate"][j], ref.mean_effect_re, rtol=1e-10)
        np.testing.assert_allclose(got["se"][j], np.sqrt(ref.var_hksj_re), rtol=1e-10)
        lo, hi = ref.conf_int(use_t=True)[3]
        np.testing.assert_allclose([got["ci_low"][j], got["ci_high"][j]], [lo, hi], rtol=1e-10)
        np.testing.assert_allclose(got["Q"][j], ref.q, rtol=1e-10)
    assert n_checked >= 12


def _reml_by_optimisation(y: np.ndarray, v: np.ndarray) -> float:
    def nll(tau2: float) -> float:
        w = 1.0 / (v + tau2)
        mu = np.sum(w * y) / np.sum(w)
        return 0.5 * (np.sum(np.log(v + tau2)) + np.log(np.sum(w)) + np.sum(w * (y - mu) ** 2))

    res = optimize.minimize_scalar(nll, bounds=(0.0, 10.0), method="bounded",
                                   options={"xatol": 1e-12})
    return float(res.x)


def test_reml_maximises_the_restricted_likelihood():
    y, v = _heterogeneous(k=9, m=25, seed=2)
    got = random_effects(y, v, method="reml")["tau2"]
    ref = np.array([_reml_by_optimisation(y[:, j], v[:, j]) for j in range(y.shape[1])])
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-8)
    assert (got > 0).sum() >= 20  # the comparison is not only at the boundary


def test_hartung_knapp_truncated_and_few_sites():
    v = np.full((2, 1), 0.02)
    same = random_effects(np.array([[0.3], [0.3001]]), v)
    # sites that agree closely: the HK scale q is ~0, truncated at 1 (unadjusted variance)
    np.testing.assert_allclose(same["se"], np.sqrt(1.0 / (2 / 0.02)), rtol=1e-9)
    assert same["df"][0] == 1 and same["ci_low"][0] < 0 < same["ci_high"][0]  # t_1: wide
    one = random_effects(np.array([[0.3], [np.nan]]), v)
    assert one["k"][0] == 1 and one["estimate"][0] == 0.3 and np.isnan(one["p"][0])
    with pytest.raises(InputError, match="meta_method"):
        random_effects(v, v, method="pm")
    with pytest.raises(InputError, match="variances > 0"):
        random_effects(v, -v)


def test_agreement_rule():
    got = agreement([0.3, 0.3, -0.1, 0.3, np.nan], [0.1, 0.1, -0.3, -0.1, 0],
                    [0.5, 0.5, 0.1, 0.7, 0], [0.2, -0.3, 0.2, -0.2, 0.1],
                    [-1, -0.5, -0.5, -0.4, 0], [1, -0.1, 0.9, 0.1, 1])
    # same sign | opposite, one CI excludes 0 | opposite, both cover 0 | both cover 0 | missing
    assert list(got) == [True, False, True, True, None]


def test_site_meta_analysis_per_site_equals_within_site_glm_and_recovers_planted_d():
    rng = np.random.default_rng(5)
    rows, vals = [], []
    for s, n in enumerate((300, 200, 250)):
        g = rng.random(n) < 0.5
        age = rng.uniform(8, 16, n)
        y = 10.0 * (s + 1) * (1 + 0.1 * (0.4 * g + 0.1 * age + rng.standard_normal(n)))
        for i in range(n):
            rows.append({"participant_id": f"s{s}p{i}", "site": f"S{s}",
                         "group": "ADHD" if g[i] else "TD", "age": age[i],
                         "sex": "M" if rng.random() < 0.6 else "F"})
            vals.append(y[i])
    P = pd.DataFrame(rows).set_index("participant_id")
    F = pd.DataFrame({"f": vals, "c": 1.0}, index=P.index)
    pooled, per_site = site_meta_analysis(F, P)
    for s in ("S0", "S1", "S2"):
        m = P["site"] == s
        ref = case_control(F[m], P[m], GroupDesign(site=None))
        got = per_site[(per_site["site"] == s) & (per_site["feature"] == "f")].iloc[0]
        want = ref[ref["feature"] == "f"].iloc[0]
        np.testing.assert_allclose([got["t"], got["d"], got["d_ci_low"]],
                                   [want["t"], want["d"], want["d_ci_low"]], rtol=1e-12)
    f = pooled.set_index("feature").loc["f"]
    assert f["k_sites"] == 3 and abs(f["d"] - 0.4) < 0.15  # planted within-site d = 0.4
    c = pooled.set_index("feature").loc["c"]  # constant everywhere: not estimated anywhere
    assert c["k_sites"] == 0 and np.isnan(c["d"]) and np.isnan(c["p_fdr"])
    assert per_site.loc[per_site["feature"] == "c", "note"].str.contains("constant").all()
