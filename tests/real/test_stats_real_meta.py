"""Real data: the headline never reverses what both ADHD-200 sites say.

On the ADHD-200 ALFF table Peking's values are about 8 times NYU's (equal coefficients of
variation: a multiplicative site effect). The old default (ComBat on raw ALFF, then the
pooled GLM) reported striatal ADHD < TD (caudate R d = -0.27, p = 0.028) where the GLM
within each site says ADHD > TD. These tests run the default settings and compare the
headline with an independent estimate: the random-effects meta-analysis of the within-site
GLMs, itself checked against statsmodels OLS fitted within each site.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from danemap.config import StatsConfig
from danemap.stats.pipeline import run_stats

pytestmark = pytest.mark.real

STRIATUM = ["Caudate_L", "Caudate_R", "Putamen_L", "Putamen_R"]


@pytest.fixture(scope="module")
def tables(shared_data):
    root = shared_data / "adhd200-alff"
    return root / "alff_aal116.tsv", root / "participants.tsv"


@pytest.fixture(scope="module")
def default_run(tables, tmp_path_factory):
    out = tmp_path_factory.mktemp("real_meta")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = run_stats(*tables, out, StatsConfig(n_permutations=500),
                        analyses=("glm", "permutation"))
    read = {n: pd.read_csv(out / f"{n}.tsv", sep="\t") for n in
            ("effects", "meta_effects", "meta_sites", "headline", "site_checks",
             "permutation")}
    return read, res["summary"]


def test_headline_sign_matches_meta_analysis_in_the_striatum(default_run):
    t, s = default_run
    head = t["headline"].set_index("feature")
    meta = t["meta_effects"].set_index("feature")
    mega = t["effects"].set_index("feature")
    sites = t["meta_sites"]
    for f in STRIATUM:
        per = sites[sites.feature == f].set_index("site")
        print(f"{f}: headline {head.loc[f, 'source']} d {head.loc[f, 'd']:+.3f}; mega "
              f"{mega.loc[f, 'd']:+.3f} [{mega.loc[f, 'd_ci_low']:+.3f}, "
              f"{mega.loc[f, 'd_ci_high']:+.3f}]; meta {meta.loc[f, 'd']:+.3f} "
              f"[{meta.loc[f, 'd_ci_low']:+.3f}, {meta.loc[f, 'd_ci_high']:+.3f}], I2 "
              f"{meta.loc[f, 'I2']:.2f}; NYU {per.loc['NYU', 'd']:+.3f} "
              f"[{per.loc['NYU', 'd_ci_low']:+.3f}, {per.loc['NYU', 'd_ci_high']:+.3f}], "
              f"Peking {per.loc['Peking', 'd']:+.3f} [{per.loc['Peking', 'd_ci_low']:+.3f}, "
              f"{per.loc['Peking', 'd_ci_high']:+.3f}]")
        assert np.sign(head.loc[f, "d"]) == np.sign(meta.loc[f, "d"])
        assert np.sign(mega.loc[f, "d"]) == np.sign(meta.loc[f, "d"])
        assert (per["d"] > 0).all()  # both sites: ADHD > TD
        assert head.loc[f, "agree"]
    assert s["headline"]["n_disagree"] == 0
    checks = t["site_checks"]
    assert (checks["transform"] == "log").all()  # every region: site SD ratio 3.5 to 12.9
    assert checks["sd_ratio"].min() > 3 and checks["analysed_sd_ratio"].max() < 1.8


def test_within_site_d_equals_statsmodels(default_run, tables):
    t, _ = default_run
    F = pd.read_csv(tables[0], sep="\t")
    P = pd.read_csv(tables[1], sep="\t", na_values="n/a")
    D = P.merge(F, on="participant_id").dropna(subset=["age", "sex", "group"])
    sites = t["meta_sites"].set_index(["feature", "site"])
    for site in ("NYU", "Peking"):
        sub = D[D.site == site]
        X = np.column_stack([np.ones(len(sub)), (sub.group == "ADHD").to_numpy(float),
                             sub.age.to_numpy(float), (sub.sex == "M").to_numpy(float)])
        for f in STRIATUM:
            fit = sm.OLS(np.log(sub[f].to_numpy(float)), X).fit()  # the auto transform
            got = sites.loc[(f, site)]
            np.testing.assert_allclose(got["t"], fit.tvalues[1], rtol=1e-8)
            assert int(got["df"]) == int(fit.df_resid)


def test_permutation_reports_the_glm_t_and_df(default_run):
    t, _ = default_run
    eff = t["effects"].set_index("feature")
    perm = t["permutation"].set_index("feature")
    np.testing.assert_allclose(perm["t"], eff.loc[perm.index, "t"], rtol=1e-9)
    assert (perm["df"] == eff.loc[perm.index, "df"]).all()


def test_constant_within_a_site_never_becomes_significant(tables, tmp_path):
    # a region outside one scanner's field of view: constant at NYU. The old default gave
    # Putamen_L d = -0.74, p_FDR = 6e-7; every such feature must stay unremarkable
    F = pd.read_csv(tables[0], sep="\t")
    P = pd.read_csv(tables[1], sep="\t", na_values="n/a")
    nyu = F["participant_id"].isin(P.loc[P.site == "NYU", "participant_id"])
    peking = ~nyu
    planted = {"Putamen_L": (nyu, 0.03), "Caudate_R": (nyu, 0.02),
               "Thalamus_L": (peking, 0.2), "Frontal_Mid_L": (nyu, 0.0)}
    for col, (rows, value) in planted.items():
        F.loc[rows, col] = value
    F["Caudate_L"] = 0.05  # constant for everyone: n/a, out of the FDR and FWE families
    fp = tmp_path / "alff.tsv"
    F.to_csv(fp, sep="\t", index=False)
    res = run_stats(fp, tables[1], tmp_path / "o", StatsConfig(n_permutations=500),
                    analyses=("glm", "permutation"))
    said = " ".join(res["summary"]["warnings"])  # run_stats records its warnings there
    assert "cannot be harmonised safely" in said and "Putamen_L: constant at site NYU" in said
    out = {n: pd.read_csv(tmp_path / "o" / f"{n}.tsv", sep="\t").set_index("feature")
           for n in ("effects", "headline", "permutation", "site_checks")}
    for col in planted:
        assert not out["site_checks"].loc[col, "harmonize"]
        assert out["effects"].loc[col, "p_fdr"] >= 0.05, col
        assert out["headline"].loc[col, "p_fdr"] >= 0.05, col
        assert out["permutation"].loc[col, "p_fwe"] >= 0.05, col
    print("Putamen_L constant at NYU:", out["effects"].loc["Putamen_L", ["d", "p"]].to_dict())
    assert out["effects"].loc["Putamen_L", "d"] > 0  # Peking's ADHD > TD, not invented
    assert np.isnan(out["effects"].loc["Caudate_L", "p"])
    assert np.isnan(out["permutation"].loc["Caudate_L", "p_fwe"])
    assert "constant" in out["effects"].loc["Caudate_L", "note"]
