"""Site checks and the headline under a multiplicative site effect (planted truth).

The simulator's region-level table (:func:`danemap.simulate._table.simulate_feature_table`)
plants a within-site case-control d and multiplies one site's signal, as Peking's ALFF is
8 times NYU's. Every recovery assertion reads the tables ``run_stats`` wrote.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from danemap.config import StatsConfig
from danemap.errors import InputError
from danemap.simulate._table import simulate_feature_table
from danemap.stats.pipeline import run_stats
from danemap.stats.sitecheck import apply_transform, check_sites


def _write(tmp: Path, F: pd.DataFrame, P: pd.DataFrame) -> tuple[Path, Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    F.to_csv(tmp / "f.tsv", sep="\t", index=False)
    P.to_csv(tmp / "p.tsv", sep="\t", index=False)
    return tmp / "f.tsv", tmp / "p.tsv"


def _run(tmp: Path, F: pd.DataFrame, P: pd.DataFrame, **cfg) -> dict[str, pd.DataFrame]:
    fp, pp = _write(tmp, F, P)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_stats(fp, pp, tmp / "o", config=StatsConfig(**cfg), analyses=("glm",))
    return {n: pd.read_csv(tmp / "o" / f"{n}.tsv", sep="\t").set_index("feature")
            for n in ("effects", "meta_effects", "headline", "site_checks")}


def test_check_sites_measures_scale_and_degeneracy():
    F, P, _ = simulate_feature_table(n_per_site=(60, 60), site_scale=(1.0, 8.0), n_features=3,
                                     seed=1)
    X = F.set_index("participant_id")
    X["neg"] = X["feat01"] - X["feat01"].mean()  # not positive: never logged
    X["flat"] = np.where(P["site"] == "site1", 0.03, X["feat02"])  # constant at site1
    X["gappy"] = np.where((P["site"] == "site2") & (np.arange(len(P)) % 3 > 0), np.nan,
                          X["feat03"])  # two thirds missing at site2
    checks = check_sites(X, P["site"]).set_index("feature")
    assert checks.loc["feat01", "transform"] == "log"
    assert 5 < checks.loc["feat01", "sd_ratio"] < 12 and checks.loc["feat01", "cv_ratio"] < 1.5
    assert checks.loc["feat01", "analysed_sd_ratio"] < 1.5
    assert checks.loc["neg", "transform"] == "none" and not checks.loc["neg", "positive"]
    assert not checks.loc["flat", "harmonize"]
    assert checks.loc["flat", "reason"] == "constant at site site1"
    assert not checks.loc["gappy", "harmonize"] and "missing at site site2" in \
        checks.loc["gappy", "reason"]
    assert checks.loc[["feat01", "feat02", "feat03", "neg"], "harmonize"].all()
    none = check_sites(X, P["site"], transform="none")
    assert (none["transform"] == "none").all()
    logged = apply_transform(X, checks.reset_index())
    np.testing.assert_allclose(logged["feat01"], np.log(X["feat01"]), rtol=1e-15)
    with pytest.raises(InputError, match=r"stats\.transform"):
        check_sites(X, P["site"], transform="sqrt")
    with pytest.raises(InputError, match="scale_threshold"):
        check_sites(X, P["site"], scale_threshold=1.0)


def test_multiplicative_site_effect_50_seeds(tmp_path):
    # 8x scale between two sites, within-site d = +0.3, 130 per site, ADHD-200's unequal
    # case fractions (0.54 and 0.41): the headline must keep the sign in >= 95% of seeds
    # and its mean within 0.1 of 0.3. The mega-analysis without the transform is what the
    # old default reported: it is biased towards 0 and beyond (the test can fail).
    head, raw_mega = [], []
    for seed in range(50):
        F, P, truth = simulate_feature_table(site_scale=(1.0, 8.0), d=0.3, n_features=1,
                                             seed=seed)
        out = _run(tmp_path / f"s{seed}", F, P)
        head.append(out["headline"].loc["feat01", "d"])
        assert out["site_checks"].loc["feat01", "transform"] == "log"
        if seed < 15:
            raw = _run(tmp_path / f"r{seed}", F, P, transform="none")
            raw_mega.append(raw["effects"].loc["feat01", "d"])
            assert raw["headline"].loc["feat01", "source"] == "meta"  # checks caught it
    head_a, raw_a = np.array(head), np.array(raw_mega)
    print(f"headline d: mean {head_a.mean():.3f}, right sign {np.mean(head_a > 0):.0%}; "
          f"untransformed ComBat+GLM d: mean {raw_a.mean():.3f}, right sign "
          f"{np.mean(raw_a > 0):.0%}")
    assert np.mean(head_a > 0) >= 0.95
    assert abs(head_a.mean() - truth["d"]["feat01"]) <= 0.1
    assert raw_a.mean() < 0.1  # the failure the checks exist for


def test_scale_threshold_experiment(tmp_path):
    # the bias of untransformed ComBat + GLM grows with the site scale ratio; at the
    # default threshold (1.5) it is small, at 8x it is most of the effect
    bias = {}
    for scale in (1.0, 1.5, 8.0):
        ds = []
        for seed in range(6):
            F, P, _ = simulate_feature_table(site_scale=(1.0, scale), d=0.3, n_features=4,
                                             seed=100 + seed)
            ds.extend(_run(tmp_path / f"{scale}-{seed}", F, P, transform="none")
                      ["effects"]["d"].tolist())
        bias[scale] = float(np.mean(ds))
    print("mean untransformed mega d by site scale:", bias)
    assert abs(bias[1.5] - bias[1.0]) < 0.05
    assert bias[1.0] - bias[8.0] > 0.15


def test_headline_falls_back_to_meta_when_checks_fail(tmp_path):
    # normal (not lognormal) values with negative tails cannot be logged: the SD ratio
    # stays at 8, ComBat's shared additive effect is doubtful, the meta-analysis leads
    F, P, _ = simulate_feature_table(site_scale=(1.0, 8.0), d=0.3, n_features=2, cv=0.5,
                                     distribution="normal", seed=3)
    F.loc[0, "feat01"] = -abs(F.loc[0, "feat01"])
    out = _run(tmp_path, F, P)
    h = out["headline"].loc["feat01"]
    assert out["site_checks"].loc["feat01", "transform"] == "none"
    assert h["source"] == "meta" and "SD ratio" in h["reason"]
    np.testing.assert_allclose(h["d"], out["meta_effects"].loc["feat01", "d"], rtol=1e-12)


def test_single_site_has_no_meta_and_says_so(tmp_path):
    F, P, _ = simulate_feature_table(n_per_site=(80,), site_scale=(1.0,), n_features=2,
                                     seed=4)
    fp, pp = _write(tmp_path, F, P)
    res = run_stats(fp, pp, tmp_path / "o", analyses=("glm",))
    s = res["summary"]
    assert s["analyses"]["meta"]["status"] == "skipped"
    assert "single site" in s["analyses"]["meta"]["reason"]
    head = pd.read_csv(tmp_path / "o" / "headline.tsv", sep="\t")
    assert (head["source"] == "glm").all() and s["headline"]["n_glm"] == 2
    assert not (tmp_path / "o" / "meta_effects.tsv").exists()


def test_disagreement_is_flagged_warned_and_meta_leads(tmp_path):
    # untransformed multiplicative sites (1x with 70% cases, 8x with 30%): for feat03 the
    # pooled GLM is slightly negative while the meta-analysis is clearly positive
    F, P, _ = simulate_feature_table(n_per_site=(400, 400, 400), site_scale=(1.0, 8.0, 8.0),
                                     case_fraction=(0.7, 0.3, 0.3), d=0.4, n_features=3,
                                     seed=2)
    fp, pp = _write(tmp_path, F, P)
    res = run_stats(fp, pp, tmp_path / "o", config=StatsConfig(transform="none"),
                    analyses=("glm",))
    head = pd.read_csv(tmp_path / "o" / "headline.tsv", sep="\t").set_index("feature")
    meta = pd.read_csv(tmp_path / "o" / "meta_effects.tsv", sep="\t").set_index("feature")
    assert head.loc["feat03", "mega_d"] < 0 < meta.loc["feat03", "d_ci_low"]
    assert not head.loc["feat03", "agree"] and head.loc["feat03", "source"] == "meta"
    assert "disagree" in head.loc["feat03", "reason"]
    s = res["summary"]
    assert s["headline"]["n_disagree"] == 1 and s["headline"]["disagree"] == ["feat03"]
    assert any("disagree for 1 feature(s) (feat03)" in w for w in s["warnings"])
    assert (head["d"] > 0).all()  # every headline keeps the planted sign


def test_small_sites_do_not_trigger_the_transform_by_chance():
    # 12 per site, equal true scales: the observed SD ratio exceeds 1.5 often by chance;
    # its 95% lower bound does not, so nothing is transformed
    F, P, _ = simulate_feature_table(n_per_site=(12, 12), site_scale=(1.0, 1.0),
                                     n_features=40, seed=8)
    checks = check_sites(F.set_index("participant_id"), P["site"])
    print("observed ratio > 1.5:", int((checks["sd_ratio"] > 1.5).sum()), "of 40")
    assert (checks["sd_ratio"] > 1.5).sum() >= 8
    assert (checks["transform"] == "none").all()
    assert (checks["sd_ratio_low"] < checks["sd_ratio"]).all()
    big, _, _ = simulate_feature_table(n_per_site=(12, 12), site_scale=(1.0, 8.0),
                                       n_features=10, seed=8)
    assert (check_sites(big.set_index("participant_id"), P["site"])["transform"]
            == "log").all()  # a real 8x scale is still seen at 12 per site


def test_review_cases_harmonize_none_rows_and_single_site_estimates(tmp_path):
    # harmonize = none: nothing is 'not harmonised', and the GLM, the permutation test and
    # the meta-analysis see the same participants (the same t and df)
    F, P, _ = simulate_feature_table(n_per_site=(40, 40), site_scale=(1.0, 1.0), n_features=3,
                                     seed=11)
    F.loc[F.index[:6], "feat02"] = np.nan  # n/a for some participants
    F["feat03"] = np.where(P["site"] == "site1", 0.5, F["feat03"])  # constant at site1
    fp, pp = _write(tmp_path, F, P)
    res = run_stats(fp, pp, tmp_path / "o", config=StatsConfig(harmonize="none",
                                                               n_permutations=50),
                    analyses=("glm", "permutation"))
    assert not any("cannot be harmonised" in w for w in res["summary"]["warnings"])
    eff = pd.read_csv(tmp_path / "o" / "effects.tsv", sep="\t").set_index("feature")
    perm = pd.read_csv(tmp_path / "o" / "permutation.tsv", sep="\t").set_index("feature")
    np.testing.assert_allclose(perm["t"], eff["t"], rtol=1e-9)
    assert (perm["df"] == eff["df"]).all()
    head = pd.read_csv(tmp_path / "o" / "headline.tsv", sep="\t").set_index("feature")
    # feat03 is estimated at one site only: no agreement verdict, no disagreement counted
    assert pd.isna(head.loc["feat03", "agree"]) and res["summary"]["headline"]["n_disagree"] == 0
