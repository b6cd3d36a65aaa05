"""run_stats options: GLM interaction/stratification/moderator, NBS on edges, repeated rows."""

import json

import numpy as np
import pandas as pd
import pytest

from danemap.cli import main
from danemap.config import GlmConfig, NbsConfig, StatsConfig
from danemap.errors import InputError
from danemap.stats._tables import load_features
from danemap.stats.pipeline import run_stats


def _cohort(folder, n=80, seed=1):
    rng = np.random.default_rng(seed)
    ids = [f"sub-{i:03d}" for i in range(n)]
    group = np.where(np.arange(n) % 2 == 0, "ADHD", "TD")
    site = np.where(np.arange(n) % 4 == 0, "A", "B")
    P = pd.DataFrame({"participant_id": ids, "site": site, "age": rng.uniform(7, 17, n),
                      "sex": np.where(np.arange(n) % 4 < 2, "F", "M"), "group": group,
                      "med_status": np.where(group == "ADHD",
                                             np.where(np.arange(n) % 4 == 0, "on", "off"),
                                             "n/a")})
    pp = folder / "participants.tsv"
    P.to_csv(pp, sep="\t", index=False)
    return P, pp, rng


def _write(folder, name, ids, X, columns, **extra):
    F = pd.DataFrame(X, columns=columns)
    for k, (col, values) in enumerate(extra.items()):
        F.insert(k, col, values)
    F.insert(0, "participant_id", ids)
    path = folder / name
    F.to_csv(path, sep="\t", index=False, na_rep="n/a")
    return path


def test_glm_options_add_rows_and_keep_the_main_effect(tmp_path):
    P, pp, rng = _cohort(tmp_path)
    X = rng.normal(size=(len(P), 3))
    X[:, 0] -= 1.0 * (P.group == "ADHD").to_numpy() * (P.age.to_numpy() - 12) / 3
    fp = _write(tmp_path, "alff.tsv", P.participant_id, X, ["Caudate_L", "Putamen_L", "x"])
    cfg = StatsConfig(harmonize="none")
    run_stats(fp, pp, tmp_path / "plain", cfg, analyses=("glm",))
    opts = StatsConfig(harmonize="none", glm=GlmConfig(interaction="age", stratify="sex",
                                                       moderator="med_status"))
    res = run_stats(fp, pp, tmp_path / "opts", opts, analyses=("glm",))
    plain = pd.read_csv(tmp_path / "plain" / "effects.tsv", sep="\t")
    eff = pd.read_csv(tmp_path / "opts" / "effects.tsv", sep="\t", na_values="n/a")
    assert set(eff.term) == {"group", "group:age", "group[med_status=off]",
                             "group[med_status=on]", "group|sex=F", "group|sex=M"}
    main_rows = eff[eff.term == "group"].reset_index(drop=True)
    pd.testing.assert_frame_equal(main_rows, plain, check_dtype=False)  # unchanged
    assert (main_rows.stratum == "all").all()
    strat = eff[eff.term.str.startswith("group|")]
    assert set(strat.stratum) == {"F", "M"}
    assert strat.groupby("stratum").n_case.first().sum() == 40
    assert eff.loc[eff.term == "group[med_status=on]", "n_case"].iloc[0] == 20
    inter = eff[eff.term == "group:age"].set_index("feature")
    assert inter.loc["Caudate_L", "p"] < 1e-3 and inter["d"].isna().all()  # planted slope
    side = json.loads((tmp_path / "opts" / "effects.json").read_text())
    assert "group:age" in side["Terms"] and "main" in side["Terms"]["group"]
    assert res["summary"]["analyses"]["glm"]["n_features"] == 3
    assert "group:age" in res["summary"]["analyses"]["glm"]["extra_terms"]
    with pytest.raises(InputError, match="column 'med' not found"):
        run_stats(fp, pp, tmp_path / "bad", StatsConfig(harmonize="none", glm=GlmConfig(
            moderator="med")), analyses=("glm",))


def test_cli_glm_flags(tmp_path):
    P, pp, rng = _cohort(tmp_path)
    fp = _write(tmp_path, "alff.tsv", P.participant_id, rng.normal(size=(len(P), 2)),
                ["a", "b"])
    rc = main(["stats", "glm", "--features", str(fp), "--participants", str(pp), "--out",
               str(tmp_path / "o"), "--harmonize", "none", "--interaction", "age",
               "--stratify", "sex", "--moderator", "med_status"])
    assert rc == 0
    eff = pd.read_csv(tmp_path / "o" / "effects.tsv", sep="\t")
    assert {"group", "group:age", "group|sex=F", "group[med_status=on]"} <= set(eff.term)


def _edges():
    from danemap.atlas import NETWORKS

    pairs = list(NETWORKS["frontostriatal"]) + list(NETWORKS["lc_pfc"])
    other = [("Thalamus_L", "Thalamus_R"), ("Cereb_L", "Cereb_R")]
    return [f"{a}__{b}" for a, b in dict.fromkeys(pairs)], [f"{a}__{b}" for a, b in other]


def test_nbs_on_connectivity_edges(tmp_path):
    P, pp, rng = _cohort(tmp_path, n=80)
    sub, other = _edges()
    names = sub + other
    X = rng.normal(size=(len(P), len(names)))
    planted = [e for e in sub if e.startswith("DLPFC_L__")]  # a star around DLPFC_L
    for e in planted:
        X[(P.group == "ADHD").to_numpy(), names.index(e)] += 1.5
    fp = _write(tmp_path, "connectivity_corr.tsv", P.participant_id, X, names)
    res = run_stats(fp, pp, tmp_path / "o", StatsConfig(n_permutations=199),
                    analyses=("harmonize", "glm", "permutation", "nbs"))
    s = res["summary"]["analyses"]["nbs"]
    assert s["status"] == "done" and s["n_edges"] == len(sub) and s["n_permutations"] == 199
    best = s["components"][0]
    assert set(planted) <= set(best["edges"]) and best["p_fwe"] < 0.05
    assert best["sign"] == 1 and "frontostriatal" in best["subnetworks"]
    tab = pd.read_csv(tmp_path / "o" / "nbs.tsv", sep="\t", na_values="n/a")
    assert set(tab.feature) == set(sub)  # only subnetwork edges
    assert (tab.loc[tab.feature.isin(planted), "component"] == 1).all()
    side = json.loads((tmp_path / "o" / "nbs.json").read_text())
    assert side["Threshold"] == 3.0 and side["NPermutations"] == 199
    assert side["Subnetworks"] == ["frontostriatal", "lc_pfc"]
    assert side["Components"][0]["edges"] == best["edges"]
    # region tables and unknown region names: recorded as skipped, nothing written
    fr = _write(tmp_path, "alff.tsv", P.participant_id, X[:, :2], ["a", "b"])
    r = run_stats(fr, pp, tmp_path / "r", StatsConfig(harmonize="none"), analyses=("nbs",))
    assert "not connectivity edges" in r["summary"]["analyses"]["nbs"]["reason"]
    fu = _write(tmp_path, "c2.tsv", P.participant_id, X[:, :2], ["A__B", "B__C"])
    r = run_stats(fu, pp, tmp_path / "u", StatsConfig(harmonize="none"), analyses=("nbs",))
    assert "no edge of the subnetworks" in r["summary"]["analyses"]["nbs"]["reason"]
    assert not (tmp_path / "u" / "nbs.tsv").exists()
    with pytest.raises(InputError, match=r"stats\.nbs\.subnetworks: unknown network\(s\) "
                                         r"\['lc_pcf'\] \(did you mean 'lc_pfc'\?\)"):
        run_stats(fp, pp, tmp_path / "x", StatsConfig(harmonize="none", nbs=NbsConfig(
            subnetworks=["lc_pcf"])), analyses=("nbs",))


def test_runs_averaged_and_sessions_need_a_choice(tmp_path):
    P, pp, rng = _cohort(tmp_path, n=40)
    ids = list(P.participant_id)
    X = rng.normal(size=(3 * len(ids), 2))
    rows = ids + ids + ids
    ses = ["1"] * (2 * len(ids)) + ["2"] * len(ids)
    run = ["1"] * len(ids) + ["2"] * len(ids) + ["1"] * len(ids)
    fp = _write(tmp_path, "alff.tsv", rows, X, ["a", "b"], session=ses, run=run)
    with pytest.raises(InputError, match=r"several sessions .*--session"):
        load_features(fp)
    F = load_features(fp, session="ses-1")
    np.testing.assert_allclose(F.to_numpy(), (X[:40] + X[40:80]) / 2)
    assert F.attrs["rows"][str(fp)] == {"rows": 120, "rows_used": 80, "participants": 40,
                                        "averaged": 40, "session": "1"}
    with pytest.raises(InputError, match=r"session '3' not found .*\['1', '2'\]"):
        load_features(fp, session="3")
    res = run_stats(fp, pp, tmp_path / "o", StatsConfig(harmonize="none", session="2"),
                    analyses=("glm",))
    rr = res["summary"]["repeated_rows"]
    assert rr["session"] == "2" and rr["participants_with_runs_averaged"] == 0
    assert "averaged" in rr["runs"]
    side = json.loads((tmp_path / "o" / "effects.json").read_text())
    assert side["RepeatedRows"]["session"] == "2"
    # runs only (no session column): averaged by default
    fr = _write(tmp_path, "runs.tsv", ids + ids, X[:80], ["a", "b"], run=["1"] * 40 + ["2"] * 40)
    assert load_features(fr).attrs["rows"][str(fr)]["averaged"] == 40
    with pytest.raises(InputError, match="has no 'session' column"):
        load_features(fr, session="1")
    fd = _write(tmp_path, "dup.tsv", ids + ids, X[:80], ["a", "b"])
    with pytest.raises(InputError, match="participant_id must be unique"):
        load_features(fd)
    rc = main(["stats", "glm", "--features", str(fp), "--participants", str(pp), "--out",
               str(tmp_path / "c"), "--harmonize", "none", "--session", "1"])
    assert rc == 0


def test_cli_icv_is_a_covariate_of_glm_permutation_and_combat(tmp_path):
    import statsmodels.api as sm

    P, pp, rng = _cohort(tmp_path, n=120)
    case = (P.group == "ADHD").to_numpy()
    P["icv"] = rng.normal(1500.0, 120.0, len(P)) - 120.0 * case  # smaller heads in cases
    P.to_csv(pp, sep="\t", index=False)
    vol = P.icv.to_numpy()[:, None] / 120.0 + rng.normal(size=(len(P), 2))
    vol[:, 1] += 1.0 * case  # a true effect that the smaller ICV of cases hides
    fp = _write(tmp_path, "volumes.tsv", P.participant_id, vol, ["Caudate_L", "Putamen_L"])
    base = ["--features", str(fp), "--participants", str(pp), "--harmonize", "none"]
    assert main(["stats", "permutation", *base, "--n-permutations", "99",
                 "--out", str(tmp_path / "icv"), "--icv", "icv"]) == 0
    assert main(["stats", "glm", *base, "--out", str(tmp_path / "icv"), "--icv", "icv"]) == 0
    assert main(["stats", "glm", *base, "--out", str(tmp_path / "raw")]) == 0
    eff = pd.read_csv(tmp_path / "icv" / "effects.tsv", sep="\t").set_index("feature")
    raw = pd.read_csv(tmp_path / "raw" / "effects.tsv", sep="\t").set_index("feature")
    design = np.column_stack([np.ones(len(P)), case, P.age, (P.sex == "M"),
                              (P.site == "B"), P.icv]).astype(float)
    for j, name in enumerate(["Caudate_L", "Putamen_L"]):
        ols = sm.OLS(vol[:, j], design).fit()
        assert abs(eff.loc[name, "t"] - ols.tvalues[1]) <= 1e-8
    assert raw.loc["Caudate_L", "t"] < -3 and abs(eff.loc["Caudate_L", "t"]) < 2
    assert abs(raw.loc["Putamen_L", "t"]) < 2 and eff.loc["Putamen_L", "t"] > 3
    side = json.loads((tmp_path / "icv" / "effects.json").read_text())
    assert side["Covariates"] == ["age", "sex", "icv"] and "icv" in side["Model"]
    assert json.loads((tmp_path / "raw" / "effects.json").read_text())["Covariates"] == [
        "age", "sex"]
    # the permutation test has the same design (site dummies, ICV) as the GLM here
    perm = pd.read_csv(tmp_path / "icv" / "permutation.tsv", sep="\t").set_index("feature")
    np.testing.assert_allclose(perm["t"], eff["t"], rtol=1e-9)
    assert json.loads((tmp_path / "icv" / "permutation.json").read_text())["Confounds"][-2:] \
        == ["icv", "site[B]"]
    # ComBat preserves the ICV effect (it is a biological covariate, like group)
    res = run_stats(fp, pp, tmp_path / "combat", StatsConfig(icv="icv"),
                    analyses=("harmonize",))
    assert res["summary"]["analyses"]["harmonize"]["preserved"] == ["age", "sex", "icv",
                                                                    "group"]
    assert res["summary"]["icv"] == "icv"


def _user_atlas(folder):
    """A 4-region user atlas whose networks JSON names its own networks."""
    import nibabel as nib

    from danemap.atlas import atlas_from_setting

    data = np.zeros((4, 4, 4), dtype=np.int16)
    for k in range(4):
        data[k, 0, :] = k + 1
    nii = folder / "atlas-mine_dseg.nii.gz"
    nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])).to_filename(nii)
    (folder / "atlas-mine_dseg.tsv").write_text("index\tname\n1\tA\n2\tB\n3\tC\n4\tD\n")
    (folder / "atlas-mine_networks.json").write_text(json.dumps(
        {"reward": [["A", "B"], ["B", "C"]], "arousal": [["C", "D"]]}))
    return atlas_from_setting(str(nii))


def test_nbs_uses_the_networks_of_a_user_atlas(tmp_path):
    atlas = _user_atlas(tmp_path)
    assert atlas.networks == {"reward": [("A", "B"), ("B", "C")], "arousal": [("C", "D")]}
    P, pp, rng = _cohort(tmp_path, n=80)
    names = ["A__B", "B__C", "C__D", "A__D"]  # A__D is in no network
    X = rng.normal(size=(len(P), len(names)))
    X[(P.group == "ADHD").to_numpy(), :2] += 1.5  # reward edges differ
    fp = _write(tmp_path, "connectivity_corr.tsv", P.participant_id, X, names)
    cfg = StatsConfig(harmonize="none", n_permutations=99)
    # the built-in atlas's networks know none of these regions
    r = run_stats(fp, pp, tmp_path / "builtin", cfg, analyses=("nbs",))
    assert "no edge of the subnetworks" in r["summary"]["analyses"]["nbs"]["reason"]
    # the user atlas: every network of it by default (it has no frontostriatal / lc_pfc)
    r = run_stats(fp, pp, tmp_path / "user", cfg, analyses=("nbs",), networks=atlas.networks)
    s = r["summary"]["analyses"]["nbs"]
    assert s["status"] == "done" and s["subnetworks"] == ["reward", "arousal"]
    tab = pd.read_csv(tmp_path / "user" / "nbs.tsv", sep="\t", na_values="n/a")
    assert tab.feature.tolist() == ["A__B", "B__C", "C__D"]
    assert tab.subnetwork.tolist() == ["reward", "reward", "arousal"]
    assert set(s["components"][0]["edges"]) == {"A__B", "B__C"}
    side = json.loads((tmp_path / "user" / "nbs.json").read_text())
    assert side["Subnetworks"] == ["reward", "arousal"]
    # [stats.nbs] subnetworks chooses among them; a typo names the closest
    one = StatsConfig(harmonize="none", n_permutations=99, nbs=NbsConfig(subnetworks=["reward"]))
    r = run_stats(fp, pp, tmp_path / "one", one, analyses=("nbs",), networks=atlas.networks)
    assert r["summary"]["analyses"]["nbs"]["n_edges"] == 2
    bad = StatsConfig(harmonize="none", nbs=NbsConfig(subnetworks=["rewards"]))
    with pytest.raises(InputError, match=r"did you mean 'reward'\?\); the atlas has "
                                         r"\['arousal', 'reward'\]"):
        run_stats(fp, pp, tmp_path / "bad", bad, analyses=("nbs",), networks=atlas.networks)
    r = run_stats(fp, pp, tmp_path / "none", cfg, analyses=("nbs",), networks={})
    assert r["summary"]["analyses"]["nbs"]["reason"] == "the atlas has no networks"


def test_nbs_leaves_out_an_edge_not_harmonised_with_n_a(tmp_path):
    # an edge mostly missing at one site is not harmonised and keeps its n/a: NBS leaves it
    # out of the graph with a warning instead of failing on the n/a
    P, pp, rng = _cohort(tmp_path, n=80)
    sub, _ = _edges()
    X = rng.normal(size=(len(P), len(sub)))
    site_a = (P["site"] == P["site"].iloc[0]).to_numpy()
    X[np.flatnonzero(site_a)[:-2], 0] = np.nan  # all but two of the first site
    fp = _write(tmp_path, "connectivity_corr.tsv", P.participant_id, X, sub)
    res = run_stats(fp, pp, tmp_path / "o", StatsConfig(n_permutations=49),
                    analyses=("harmonize", "nbs"))
    s = res["summary"]
    assert s["analyses"]["nbs"]["status"] == "done"
    assert s["analyses"]["nbs"]["n_edges"] == len(sub) - 1
    assert any("left out of the graph" in w and sub[0] in w for w in s["warnings"])
