"""Tests of FDR, the Freedman-Lane max-T permutation engine and NBS."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from statsmodels.stats.multitest import multipletests

from danemap.errors import InputError
from danemap.stats.multiple import fdr_bh, nbs, permutation_test


def test_fdr_equals_statsmodels():
    rng = np.random.default_rng(0)
    for p in (rng.uniform(size=200), rng.uniform(size=50) ** 4, np.array([0.01, 0.01, 1.0])):
        np.testing.assert_allclose(fdr_bh(p), multipletests(p, method="fdr_bh")[1],
                                   rtol=0, atol=1e-15)
    with pytest.raises(InputError, match=r"p-values in \[0, 1\]"):
        fdr_bh([0.1, np.nan])


def test_fdr_keeps_nan_and_adjusts_the_rest_among_themselves():
    p = np.array([0.01, np.nan, 0.04, 0.03, np.nan])
    q = fdr_bh(p, nan="keep")
    assert np.isnan(q[[1, 4]]).all()
    np.testing.assert_allclose(q[[0, 2, 3]], multipletests([0.01, 0.04, 0.03],
                                                          method="fdr_bh")[1], atol=1e-15)
    assert np.isnan(fdr_bh([np.nan, np.nan], nan="keep")).all()
    with pytest.raises(InputError, match="nan: expected 'raise' or 'keep'"):
        fdr_bh(p, nan="drop")
    with pytest.raises(InputError, match=r"p-values in \[0, 1\]"):
        fdr_bh([0.1, 1.5, np.nan], nan="keep")


def _data(seed=0, n=120, m=30):
    rng = np.random.default_rng(seed)
    x = np.repeat([0.0, 1.0], n // 2)
    conf = np.column_stack([rng.normal(size=n), np.tile([0.0, 1.0], n // 2)])
    Y = rng.normal(size=(n, m))
    Y[:, 0] += 0.7 * x
    Y[:, 1] += 0.4 * x
    return Y, x, conf


def test_t_equals_ols_and_reproducible():
    Y, x, conf = _data()
    r = permutation_test(Y, x, conf, n_permutations=300, seed=5)
    X = np.column_stack([np.ones(len(x)), x, conf])
    t = np.array([sm.OLS(Y[:, j], X).fit().tvalues[1] for j in range(Y.shape[1])])
    assert np.abs(r.t - t).max() <= 1e-8
    # the same call twice runs the same code path: bit for bit
    again = permutation_test(Y, x, conf, n_permutations=300, seed=5)
    np.testing.assert_array_equal(r.max_t_null, again.max_t_null)
    # another batch size is another BLAS blocking: the same permutations, equal to a few
    # ulps (4.4e-16 apart on an AMD EPYC with OpenBLAS 0.3.31), and the same p-values
    r2 = permutation_test(Y, x, conf, n_permutations=300, seed=5, batch_size=7)
    np.testing.assert_array_max_ulp(r.max_t_null, r2.max_t_null, maxulp=64)
    np.testing.assert_array_equal(r.p_fwe, r2.p_fwe)
    np.testing.assert_array_equal(r.p_uncorrected, r2.p_uncorrected)
    r3 = permutation_test(Y, x, conf, n_permutations=300, seed=6)
    assert not np.array_equal(r.max_t_null, r3.max_t_null)
    r32 = permutation_test(Y, x, conf, n_permutations=300, seed=5, dtype=np.float32)
    np.testing.assert_allclose(r32.max_t_null, r.max_t_null, rtol=1e-4)
    assert r.p_fwe.min() >= 1 / 301 and np.all(r.p_fwe >= r.p_uncorrected)


def test_agrees_with_nilearn_permuted_ols():
    from nilearn.mass_univariate import permuted_ols

    Y, x, conf = _data(1, n=100, m=25)
    n_perm = 2000
    ours = permutation_test(Y, x, conf, n_permutations=n_perm, seed=0)
    ref = permuted_ols(x[:, None], Y, conf, n_perm=n_perm, random_state=0,
                       two_sided_test=True, output_type="dict", verbose=0)
    np.testing.assert_allclose(ours.t, ref["t"][0], atol=1e-10)
    p_ref = 10 ** -ref["logp_max_t"][0]
    pbar = (ours.p_fwe + p_ref) / 2
    bound = 3 * np.sqrt(2 * pbar * (1 - pbar) / n_perm) + 2 / n_perm
    assert np.all(np.abs(ours.p_fwe - p_ref) <= bound)


def test_blocks_permute_within_site():
    from danemap.stats.multiple import _permutations

    codes = np.array([0, 1, 0, 1, 1, 0, 2, 2])
    sig = _permutations(np.random.default_rng(0), 50, 8, codes)
    assert np.all(codes[sig] == codes[None, :])
    assert np.all(np.sort(sig, axis=1) == np.arange(8))
    Y, x, conf = _data()
    r = permutation_test(Y, x, conf, n_permutations=200, blocks=conf[:, 1])
    assert r.p_fwe[0] < 0.05


def test_planted_power_each_feature():
    # d = 0.4 on 2 of 50 independent features, n = 200 per group, 100 seeds
    n, m, hits = 400, 50, np.zeros(2)
    x = np.repeat([0.0, 1.0], 200)
    for seed in range(100):
        rng = np.random.default_rng(1000 + seed)
        Y = rng.normal(size=(n, m))
        Y[:, :2] += 0.4 * x[:, None]
        r = permutation_test(Y, x, n_permutations=500, seed=seed)
        hits += r.p_fwe[:2] <= 0.05
    assert np.all(hits >= 65), hits


def test_null_familywise_error_rate():
    n, m, fp = 400, 50, 0
    x = np.repeat([0.0, 1.0], 200)
    for seed in range(200):
        rng = np.random.default_rng(5000 + seed)
        r = permutation_test(rng.normal(size=(n, m)), x, n_permutations=500, seed=seed)
        fp += bool(np.any(r.p_fwe <= 0.05))
    assert 4 <= fp <= 16, fp  # 2% to 8% of 200 seeds


def test_permutation_errors():
    Y, x, conf = _data()
    with pytest.raises(InputError, match="tested: expected 120 values"):
        permutation_test(Y, x[:-1])
    with pytest.raises(InputError, match="explained by the confounds"):
        permutation_test(Y, x, np.column_stack([x, conf]))
    with pytest.raises(InputError, match="n_permutations: expected a positive integer"):
        permutation_test(Y, x, n_permutations=0)
    with pytest.raises(InputError, match="blocks: expected 120 labels"):
        permutation_test(Y, x, blocks=[0, 1])
    Y[3, 2] = np.nan
    with pytest.raises(InputError, match=r"rows \[3\] and columns \[2\]"):
        permutation_test(Y, x)


def _edges():
    pairs = [("DLPFC_L", "Caudate_L"), ("DLPFC_L", "Putamen_L"), ("VLPFC_L", "Caudate_L"),
             ("LC_L", "DLPFC_L"), ("OFC_L", "Putamen_R"), ("Foo", "Bar")]
    return [f"{a}__{b}" for a, b in pairs]


def test_nbs_finds_planted_component():
    rng = np.random.default_rng(2)
    names = _edges()
    n = 160
    x = np.repeat([0.0, 1.0], n // 2)
    Y = rng.normal(size=(n, len(names)))
    Y[:, :4] += 0.9 * x[:, None]  # a connected component DLPFC-Caudate-Putamen-VLPFC-LC
    res = nbs(Y, names, x, n_permutations=300, seed=0)
    assert "Foo__Bar" not in res.edges
    top = res.components[0]
    assert top["size"] == 4 and top["sign"] == 1 and top["p_fwe"] < 0.05
    assert top["nodes"] == ["Caudate_L", "DLPFC_L", "LC_L", "Putamen_L", "VLPFC_L"]
    custom = nbs(Y, names, x, subnetworks=[{"Foo", "Bar"}], n_permutations=50)
    assert custom.edges == ["Foo__Bar"]


def test_nbs_errors():
    Y = np.zeros((10, 2))
    with pytest.raises(InputError, match="expected 'RegionA__RegionB'"):
        nbs(Y, ["a_b", "c__d"], np.arange(10.0))
    with pytest.raises(InputError, match="no edge belongs to the subnetworks"):
        nbs(Y, ["a__b", "c__d"], np.arange(10.0))
    with pytest.raises(InputError, match="unknown network 'visual'"):
        nbs(Y, ["a__b", "c__d"], np.arange(10.0), subnetworks="visual")


def test_freedman_lane_t_equals_explicit_refit_skipping_invariant_confounds():
    from danemap.stats.multiple import _batches, _permutations, _prepare

    rng = np.random.default_rng(4)
    n, m, b = 60, 5, 25
    site = np.repeat([0, 1, 2], 20)
    dummies = (site[:, None] == [1, 2]).astype(float)
    age = rng.normal(size=n)
    x = rng.integers(0, 2, n).astype(float)
    Y = rng.normal(size=(n, m)) + site[:, None] + 0.5 * age[:, None]
    conf = np.column_stack([age, dummies])
    prep = _prepare(Y, x, conf, site, np.dtype(np.float64))
    assert prep.W0.shape[1] == 2  # x and age: the intercept and site dummies are skipped
    t = next(_batches(prep, b, seed=1, batch_size=b)).t
    sigma = _permutations(np.random.default_rng(1), b, n, prep.codes)
    Z = np.column_stack([np.ones(n), conf])
    fitted = Z @ np.linalg.lstsq(Z, Y, rcond=None)[0]
    E = Y - fitted
    X = np.column_stack([x, Z])
    xtx_inv = np.linalg.inv(X.T @ X)[0, 0]
    for k in range(b):
        E_perm = np.empty_like(E)
        E_perm[sigma[k]] = E  # residuals permuted within site, model refitted in full
        y_star = fitted + E_perm
        beta, rss, *_ = np.linalg.lstsq(X, y_star, rcond=None)
        t_ref = beta[0] / np.sqrt(rss / (n - X.shape[1]) * xtx_inv)
        np.testing.assert_allclose(t[k], t_ref, rtol=1e-9)


def _near_tie_data():
    # 6 + 6 binary groups, intercept only: a permutation that maps the groups onto
    # themselves (or swaps them) gives |t*| = |t| up to round-off, about 2 in 924; and
    # duplicated features tie the maxima of the null
    rng = np.random.default_rng(11)
    x = np.repeat([0.0, 1.0], 6)
    Y = rng.normal(size=(12, 40)) * rng.uniform(0.01, 100, 40)
    Y[:, 1] += 2.5 * x * np.abs(Y[:, 1]).mean()
    Y[:, 20:30] = Y[:, 10:20] * 3.0 + 7.0
    return Y, x


@pytest.mark.parametrize("case", ["ties", "blocks", "one-sided"])
def test_default_precision_gives_the_float64_p_values_exactly(case):
    if case == "ties":
        Y, x = _near_tie_data()
        kw = {"n_permutations": 3000}
    else:
        Y, x, conf = _data(3, n=60, m=200)
        kw = {"confounds": conf, "n_permutations": 1500, "blocks": conf[:, 1]}
        if case == "one-sided":
            kw = {**kw, "two_sided": False, "blocks": None}
    ref = permutation_test(Y, x, dtype=np.float64, seed=2, **kw)
    got = permutation_test(Y, x, seed=2, **kw)  # float32 products, float64 decisions
    f32 = permutation_test(Y, x, dtype=np.float32, seed=2, **kw)
    np.testing.assert_allclose(got.t, ref.t, rtol=1e-12)  # observed t: float64 in every mode
    # counts are integers: the same, not approximately the same
    np.testing.assert_array_equal(got.p_uncorrected, ref.p_uncorrected)
    np.testing.assert_array_equal(got.p_fwe, ref.p_fwe)
    np.testing.assert_allclose(got.max_t_null, ref.max_t_null, rtol=1e-12)
    if case == "ties":  # the ties are real: float32 alone would get counts wrong
        stat = np.abs(ref.t)
        assert np.isclose(ref.max_t_null[:, None], stat[None, :], rtol=1e-9).sum() >= 3
        assert (f32.p_uncorrected != ref.p_uncorrected).any()
    with pytest.raises(InputError, match=r"dtype: expected None .* got 'float16'"):
        permutation_test(Y, x, dtype="float16", n_permutations=10)


def test_nbs_default_precision_gives_the_float64_null():
    rng = np.random.default_rng(2)
    names = _edges()
    x = np.repeat([0.0, 1.0], 30)
    Y = rng.normal(size=(60, len(names)))
    Y[:, :4] += 0.6 * x[:, None]
    ref = nbs(Y, names, x, threshold_t=1.5, n_permutations=800, dtype=np.float64)
    got = nbs(Y, names, x, threshold_t=1.5, n_permutations=800)
    np.testing.assert_array_equal(got.max_size_null, ref.max_size_null)
    assert got.components == ref.components


def test_constant_features_get_nan_and_stay_out_of_max_t():
    Y, x, conf = _data(5, n=100, m=20)
    const = Y.copy()
    const[:, 4] = 0.0  # all zero
    const[:, 9] = 0.05  # constant: residual of round-off only
    r = permutation_test(const, x, conf, n_permutations=400, seed=3)
    assert np.isnan(r.t[[4, 9]]).all()
    assert np.isnan(r.p_uncorrected[[4, 9]]).all() and np.isnan(r.p_fwe[[4, 9]]).all()
    assert r.constant.tolist() == [j in (4, 9) for j in range(20)]
    others = [j for j in range(20) if j not in (4, 9)]
    ref = permutation_test(Y[:, others], x, conf, n_permutations=400, seed=3)
    np.testing.assert_allclose(r.t[others], ref.t, rtol=1e-12)
    # p are permutation counts / (n + 1): equal counts, since no null statistic lies within
    # 1e-12 of an observed one on these continuous data
    np.testing.assert_array_equal(r.p_uncorrected[others], ref.p_uncorrected)
    np.testing.assert_array_equal(r.p_fwe[others], ref.p_fwe)
    np.testing.assert_allclose(r.max_t_null, ref.max_t_null, rtol=1e-12)
    assert not r.constant[others].any()
    # a feature the confounds explain to round-off is constant too; all constant: all n/a
    explained = permutation_test(np.column_stack([Y[:, :3], 2 * conf[:, 0] - 1]), x, conf,
                                 n_permutations=50)
    assert explained.constant.tolist() == [False, False, False, True]
    nothing = permutation_test(np.zeros((100, 2)), x, conf, n_permutations=50)
    assert np.isnan(nothing.p_fwe).all() and np.isnan(nothing.max_t_null).all()


def test_nbs_constant_edge_is_never_supra_threshold():
    rng = np.random.default_rng(2)
    names = _edges()
    x = np.repeat([0.0, 1.0], 40)
    Y = rng.normal(size=(80, len(names)))
    Y[:, :4] += 0.9 * x[:, None]
    with_const = Y.copy()
    with_const[:, 1] = 0.05
    res = nbs(with_const, names, x, n_permutations=300, seed=0)
    assert np.isnan(res.t[1])
    assert all("DLPFC_L__Putamen_L" not in c["edges"] for c in res.components)
    keep = [0, 2, 3, 4, 5]
    ref = nbs(Y[:, keep], [names[j] for j in keep], x, n_permutations=300, seed=0)
    np.testing.assert_array_equal(res.max_size_null, ref.max_size_null)


@pytest.mark.parametrize("dtype", [None, np.float64, np.float32])
def test_features_in_extreme_units_give_the_same_t_and_p(dtype):
    # float32 products see unit-norm columns, and sums of squares stay in range
    Y, x, conf = _data(6, n=80, m=6)
    scaled = Y * np.array([1e-300, 1e-30, 1.0, 1e30, 1e200, 1e300])
    ref = permutation_test(Y, x, conf, n_permutations=300, seed=1, dtype=dtype)
    got = permutation_test(scaled, x, conf, n_permutations=300, seed=1, dtype=dtype)
    assert not got.constant.any()
    np.testing.assert_allclose(got.t, ref.t, rtol=1e-10)
    np.testing.assert_array_equal(got.p_fwe, ref.p_fwe)
    np.testing.assert_array_equal(got.p_uncorrected, ref.p_uncorrected)
