import json

import numpy as np
import pandas as pd
import pytest

from danemap.config import (
    ClassifyConfig,
    NormativeConfig,
    StatsConfig,
    SymptomsConfig,
)
from danemap.errors import DanemapWarning, InputError
from danemap.stats._tables import join_tables, load_features, load_inputs, load_participants
from danemap.stats.classify import load_classifier
from danemap.stats.normative import NormativeModel
from danemap.stats.pipeline import run_stats

FAST = {"classify_permutations": 2, "normative": NormativeConfig(n_folds=3),
        "classify": ClassifyConfig(n_bootstrap=50, c_grid=[1.0], n_folds=3)}


def write_cohort(folder, n=90, seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"sub-{i:03d}" for i in range(n)]
    group = np.where(np.arange(n) % 2 == 0, "ADHD", "TD")
    site = np.where(np.arange(n) % 3 == 0, "A", "B")
    age = rng.uniform(7, 17, n)
    P = pd.DataFrame({"participant_id": ids, "site": site, "age": age.round(2),
                      "sex": rng.choice(["F", "M"], n), "group": group,
                      "adhd_index": np.where(group == "ADHD", 60, 45) + rng.normal(0, 5, n),
                      "full4_iq": rng.normal(105, 12, n).round()})
    X = rng.normal(size=(n, 4)) + 0.1 * age[:, None]
    X[group == "ADHD", 0] -= 0.8
    X[site == "B"] += 1.0
    F = pd.DataFrame(X, columns=["Caudate_L", "Caudate_R", "Putamen_L", "Frontal_Sup_L"])
    F.insert(0, "participant_id", [i.removeprefix("sub-") for i in ids])  # ids without sub-
    P.loc[3, "full4_iq"] = np.nan
    fp, pp = folder / "alff.tsv", folder / "participants.tsv"
    F.to_csv(fp, sep="\t", index=False)
    P.to_csv(pp, sep="\t", index=False, na_rep="n/a")
    ref = folder / "enigma.csv"
    ref.write_text("SubcorticalVolume,Structure,d_icv,se_icv,low_ci_icv,up_ci_icv,n_controls,"
                   "n_patients,pobs,fdr_p\nX,Lcaud,-0.11,,-0.18,-0.05,1489,1659,0.001,\n"
                   "X,Rcaud,-0.11,,-0.18,-0.05,1489,1659,0.001,\n")
    return fp, pp, ref


def test_run_stats_writes_every_table_with_sidecars(tmp_path):
    fp, pp, ref = write_cohort(tmp_path)
    out = tmp_path / "out"
    res = run_stats(fp, pp, out, StatsConfig(n_permutations=99, **FAST), reference=ref,
                    feature_measure="ALFF")
    for name in ("effects", "permutation", "symptoms", "normative_z", "classification",
                 "reference_comparison", "harmonized_features"):
        tsv = out / f"{name}.tsv"
        side = json.loads((out / f"{name}.json").read_text())
        df = pd.read_csv(tsv, sep="\t", na_values="n/a", keep_default_na=False)
        assert set(df.columns) <= set(side["Columns"]), name
        for key in ("N", "Covariates", "Harmonization", "Disclaimer"):
            assert key in side, (name, key)
    s = json.loads((out / "summary.json").read_text())
    assert s == json.loads(json.dumps(res["summary"]))
    assert s["n"]["case"] == 45 and s["n"]["control"] == 45
    assert s["n"]["per_site"]["A"] == {"case": 15, "control": 15}
    assert all(a["status"] == "done" for k, a in s["analyses"].items() if k != "nbs")
    assert s["analyses"]["nbs"]["status"] == "skipped"  # regions, not edges
    assert "covariates" in s["analyses"]["classify"]["kfold"]
    assert "imaging_beats_covariate_baseline" in s["analyses"]["classify"]["kfold"]
    assert s["analyses"]["symptoms"]["symptom_scaling"] == "z-scored within site"
    assert "not a diagnostic device" in s["disclaimer"]
    eff = pd.read_csv(out / "effects.tsv", sep="\t")
    assert eff.loc[eff.feature == "Caudate_L", "d"].iloc[0] < -0.3  # planted -0.8 SD
    assert (out / "normative_model.json").is_file()
    refc = pd.read_csv(out / "reference_comparison.tsv", sep="\t")
    assert list(refc.feature) == ["Caudate_L", "Caudate_R"]
    assert "ComBat" in s["harmonization"]["group_analyses"]


def test_subset_and_dependencies(tmp_path):
    fp, pp, ref = write_cohort(tmp_path)
    res = run_stats(fp, pp, tmp_path / "o", analyses=("reference",), reference=ref)
    # the reference needs the GLM, which uses harmonised features after the site checks, and
    # the GLM comes with the per-site meta-analysis and the headline choice
    assert set(res["files"]) == {"site_checks", "harmonized", "effects", "meta", "meta_sites",
                                 "headline", "reference"}
    assert res["summary"]["harmonization"]["group_analyses"].startswith("ComBat")
    res = run_stats(fp, pp, tmp_path / "o2", analyses=("glm",),
                    config=StatsConfig(harmonize="none"))
    assert set(res["files"]) == {"site_checks", "effects", "meta", "meta_sites", "headline"}
    assert res["summary"]["analyses"]["harmonize"]["status"] == "skipped"
    assert res["summary"]["harmonization"]["group_analyses"] == "none"
    assert "site as covariate" in res["summary"]["analyses"]["glm"]["model"]


def test_on_error_record_and_raise(tmp_path):
    fp, pp, _ = write_cohort(tmp_path)
    P = pd.read_csv(pp, sep="\t").drop(columns=["adhd_index"])
    P.to_csv(pp, sep="\t", index=False, na_rep="n/a")
    listed = StatsConfig(symptoms=SymptomsConfig(columns=["adhd_index"]))
    res = run_stats(fp, pp, tmp_path / "o", listed, analyses=("symptoms",), on_error="record")
    assert res["summary"]["analyses"]["symptoms"]["status"] == "failed"
    assert "adhd_index" in res["summary"]["errors"]["symptoms"]
    with pytest.raises(InputError, match="column 'adhd_index' not found"):
        run_stats(fp, pp, tmp_path / "o", listed, analyses=("symptoms",))
    res = run_stats(fp, pp, tmp_path / "o3", analyses=("symptoms",))
    assert res["summary"]["analyses"]["symptoms"]["status"] == "skipped"


def test_warnings_are_collected(tmp_path):
    fp, pp, _ = write_cohort(tmp_path)
    F = pd.read_csv(fp, sep="\t", dtype={"participant_id": str})
    F.loc[0, "Caudate_L"] = np.nan
    F.to_csv(fp, sep="\t", index=False, na_rep="n/a")
    res = run_stats(fp, pp, tmp_path / "o", analyses=("glm",))
    assert any("left out" in w for w in res["summary"]["warnings"])


def test_run_stats_argument_errors(tmp_path):
    fp, pp, _ = write_cohort(tmp_path)
    with pytest.raises(InputError, match="analyses: expected a subset"):
        run_stats(fp, pp, tmp_path / "o", analyses=("glm", "magic"))
    with pytest.raises(InputError, match="on_error"):
        run_stats(fp, pp, tmp_path / "o", on_error="ignore")
    with pytest.raises(InputError, match="config: expected"):
        run_stats(fp, pp, tmp_path / "o", config={"group": "x"})
    with pytest.raises(InputError, match="control label 'HC' not found"):
        run_stats(fp, pp, tmp_path / "o", config=StatsConfig(control="HC"))
    with pytest.raises(InputError, match="column 'diagnosis' not found"):
        run_stats(fp, pp, tmp_path / "o", config=StatsConfig(group="diagnosis"))
    with pytest.raises(InputError, match=r"stats\.harmonize"):
        run_stats(fp, pp, tmp_path / "o", analyses=("glm",),
                  config=StatsConfig(harmonize="magic"))
    with pytest.raises(InputError, match="site column 'scanner' not found"):
        run_stats(fp, pp, tmp_path / "o", analyses=("glm",), config=StatsConfig(site="scanner"))


# --------------------------------------------------------------------------- tables
def test_tables_join_multiple_and_normalise_ids(tmp_path):
    fp, pp, _ = write_cohort(tmp_path)
    other = tmp_path / "other.tsv"
    pd.DataFrame({"participant_id": [f"sub-{i:03d}" for i in range(0, 90, 2)],
                  "fc_edge": np.arange(45.0)}).to_csv(other, sep="\t", index=False)
    F = load_features([fp, other])
    assert F.shape == (45, 5) and F.index[0] == "sub-000"
    F, P = load_inputs(fp, pp)
    assert P["age"].dtype == float and P["full4_iq"].isna().sum() == 1
    assert list(F.index) == list(P.index)


def _write(path, text):
    path.write_text(text)
    return path


def test_table_errors(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_features(tmp_path / "none.tsv")
    with pytest.raises(InputError, match="at least one feature table"):
        load_features([])
    with pytest.raises(InputError, match="the file is empty"):
        load_features(_write(tmp_path / "e.tsv", ""))
    with pytest.raises(InputError, match="did you mean 'participant'"):
        load_features(_write(tmp_path / "a.tsv", "participant\tx\n1\t2\n"))
    with pytest.raises(InputError, match="header but no rows"):
        load_features(_write(tmp_path / "b.tsv", "participant_id\tx\n"))
    with pytest.raises(InputError, match="duplicates"):
        load_features(_write(tmp_path / "c.tsv", "participant_id\tx\n01\t1\nsub-01\t2\n"))
    with pytest.raises(InputError, match="empty participant_id"):
        load_features(_write(tmp_path / "d.tsv", "participant_id\tx\nn/a\t1\n02\t2\n"))
    with pytest.raises(InputError, match=r"column 'x'.*expected numbers.*'high'"):
        load_features(_write(tmp_path / "f.tsv", "participant_id\tx\n01\t1\n02\thigh\n"))
    with pytest.raises(InputError, match="only participant_id"):
        load_features(_write(tmp_path / "g.tsv", "participant_id\n01\n"))
    with pytest.raises(InputError, match="entirely n/a"):
        load_features(_write(tmp_path / "h.tsv", "participant_id\tx\ty\n01\t1\tn/a\n"))
    a = _write(tmp_path / "i.tsv", "participant_id\tx\n01\t1\n")
    with pytest.raises(InputError, match="already appear"):
        load_features([a, a])
    b = _write(tmp_path / "j.tsv", "participant_id\ty\n02\t1\n")
    with pytest.raises(InputError, match="no participant in common"):
        load_features([a, b])
    parts = load_participants(_write(tmp_path / "p.tsv", "participant_id\tgroup\n02\tTD\n"))
    with pytest.raises(InputError, match=r"1 participant\(s\) are not in"):
        join_tables(load_features(a), parts)


def test_unused_participants_are_dropped_not_fatal(tmp_path, caplog):
    a = _write(tmp_path / "i.tsv", "participant_id\tx\n01\t1\n")
    p = _write(tmp_path / "p.tsv", "participant_id\tgroup\n01\tTD\n02\tADHD\n")
    with pytest.warns(DanemapWarning, match="no row in feature table"):
        _F, P = load_inputs(a, p)
    assert list(P.index) == ["sub-01"]


def test_no_warning_leaks_out(tmp_path):
    # DanemapWarnings raised inside analyses are recorded, not propagated
    fp, pp, _ = write_cohort(tmp_path)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", DanemapWarning)
        run_stats(fp, pp, tmp_path / "o", StatsConfig(symptoms=SymptomsConfig(
            columns=["adhd_index"])), analyses=("symptoms",))


# --------------------------------------------------------------------------- honesty
def _summary_and_sidecar(out):
    return (json.loads((out / "summary.json").read_text()),
            json.loads((out / "classification.json").read_text()))


def test_harmonization_text_says_none_when_nothing_was_harmonised(tmp_path):
    fp, pp, _ = write_cohort(tmp_path, n=60)
    out = tmp_path / "o"
    run_stats(fp, pp, out, StatsConfig(harmonize="none", n_permutations=9, **FAST),
              analyses=("normative", "classify"))
    s, side = _summary_and_sidecar(out)
    assert s["harmonization"]["group_analyses"] == "none"
    assert s["harmonization"]["normative"] == "none"
    assert "ComBat" not in s["harmonization"]["classification"]
    assert "ComBat" not in side["Harmonization"]
    assert s["harmonization"]["classification"] == side["Harmonization"]
    # analyses that did not run are said not to have run
    run_stats(fp, pp, tmp_path / "g", analyses=("glm",))
    s = json.loads((tmp_path / "g" / "summary.json").read_text())
    assert s["harmonization"]["normative"] == "not run"
    assert s["harmonization"]["classification"] == "not run"
    assert s["harmonization"]["group_analyses"].startswith("ComBat")


def test_harmonization_text_single_site_and_combat_states_per_scheme(tmp_path):
    fp, pp, _ = write_cohort(tmp_path, n=60)
    out = tmp_path / "combat"
    run_stats(fp, pp, out, StatsConfig(n_permutations=9, **FAST), analyses=("classify",))
    s, side = _summary_and_sidecar(out)
    assert side["Harmonization"].startswith("kfold: ComBat fitted in each training fold")
    assert "loso: none" in side["Harmonization"]  # loso_harmonize="none" by default
    P = pd.read_csv(pp, sep="\t").assign(site="A")
    P.to_csv(pp, sep="\t", index=False, na_rep="n/a")
    out = tmp_path / "one"
    res = run_stats(fp, pp, out, StatsConfig(n_permutations=9, **FAST),
                    analyses=("harmonize", "normative", "classify"))
    s, side = _summary_and_sidecar(out)
    assert res["summary"]["analyses"]["harmonize"]["reason"] == "a single site"
    assert not any("ComBat" in v for v in s["harmonization"].values()), s["harmonization"]
    assert "ComBat" not in side["Harmonization"]


def test_combat_label_says_when_empirical_bayes_was_not_used(tmp_path):
    fp, pp, _ = write_cohort(tmp_path, n=60)
    res = run_stats(fp, pp, tmp_path / "o", analyses=("harmonize",))
    assert "(parametric empirical Bayes" in res["summary"]["harmonization"]["group_analyses"]
    one = tmp_path / "one.tsv"  # a single feature: EB needs >= 2 features and is skipped
    pd.read_csv(fp, sep="\t", dtype=str)[["participant_id", "Caudate_L"]].to_csv(
        one, sep="\t", index=False)
    res = run_stats(one, pp, tmp_path / "o1", analyses=("harmonize",))
    text = res["summary"]["harmonization"]["group_analyses"]
    assert "without empirical Bayes" in text and "parametric empirical" not in text


def test_sidecars_are_strict_json_nan_as_null_numpy_converted(tmp_path):
    from pathlib import Path

    from danemap.stats._tables import write_result

    df = pd.DataFrame({"a": [1.0, np.nan]})
    side = {"Columns": {"a": "x"}, "nan": np.float64(np.nan), "inf": float("inf"),
            "i": np.int64(3), "b": np.bool_(True), "arr": np.array([1.5, np.nan]),
            "path": Path("x/y.tsv"), "tup": (1, 2)}
    write_result(df, tmp_path / "t.tsv", side)
    text = (tmp_path / "t.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    got = json.loads(text)
    assert got["nan"] is None and got["inf"] is None and got["i"] == 3 and got["b"] is True
    assert got["arr"] == [1.5, None] and got["path"] == "x/y.tsv" and got["tup"] == [1, 2]
    assert (tmp_path / "t.tsv").read_text() == "a\n1\nn/a\n"


def test_participant_ids_must_be_bids_labels(tmp_path):
    bad = _write(tmp_path / "bad.tsv", "participant_id\tx\nsub-01\t1\nsub-0_2\t2\n")
    with pytest.raises(InputError, match=r"bad\.tsv, column 'participant_id'.*'sub-0_2'.*"
                                         "letters and digits"):
        load_features(bad)
    ok = load_features(_write(tmp_path / "ok.tsv", "participant_id\tx\n 01 \t1\nsub-02\t2\n"))
    assert list(ok.index) == ["sub-01", "sub-02"]


def test_feature_table_parsed_in_blocks_equals_one_read(tmp_path, monkeypatch):
    # blocks of 2 rows: values, n/a, ints, run averaging, session selection, the id columns
    # between features, CRLF line ends, and error messages gathered over several blocks
    import danemap.stats._tables as tables

    monkeypatch.setattr(tables, "_BLOCK_CELLS", 12)  # 6 columns -> 2 rows per block
    rng = np.random.default_rng(3)
    n = 11
    df = pd.DataFrame({"a": rng.normal(size=n),
                       "participant_id": [f"{i % 5:02d}" for i in range(n)],
                       "b": rng.integers(0, 9, n), "session": ["1"] * 10 + ["2"], "run": range(n),
                       "c": rng.normal(size=n) * 1e-300})
    df.loc[[1, 8], "a"] = np.nan
    path = tmp_path / "t.tsv"
    df.to_csv(path, sep="\t", index=False, na_rep="n/a", lineterminator="\r\n")
    got = load_features(path, session="ses-1")
    want = df[df.session == "1"].assign(participant_id=lambda d: "sub-" + d.participant_id)
    want = want.set_index("participant_id")[["a", "b", "c"]].astype(float)
    want = want.groupby(level=0, sort=False).mean()
    pd.testing.assert_frame_equal(got, want, check_exact=True, check_index_type=False,
                                  check_column_type=False)
    assert got.attrs["rows"][str(path)] == {"rows": 11, "rows_used": 10, "participants": 5,
                                            "averaged": 5, "session": "1"}
    df = df.astype({"b": object, "c": object})
    df.loc[[2, 5, 7, 9], "b"] = ["x", "y", "True", "z"]  # in three blocks
    df.loc[10, "c"] = "w"  # session 2 only: not analysed, not reported
    df.to_csv(path, sep="\t", index=False, na_rep="n/a")
    with pytest.raises(InputError, match=r"t\.tsv, column 'b': expected numbers \(or n/a\), "
                                         r"found sub-02='x', sub-00='y', sub-02='True'$"):
        load_features(path, session="1")
    df.loc[[2, 5, 7, 9], "b"] = 1
    df.to_csv(path, sep="\t", index=False, na_rep="n/a")
    load_features(path, session="1")
    with pytest.raises(InputError, match=r"column 'c'.*found sub-00='w'"):
        load_features(path, session="2")
    df.loc[:, "c"] = np.nan
    df.loc[10, "c"] = 1.0
    df.to_csv(path, sep="\t", index=False, na_rep="n/a")
    with pytest.raises(InputError, match=r"feature column\(s\) \['c'\] are entirely n/a"):
        load_features(path, session="1")
    gz = tmp_path / "t.tsv.gz"  # compressed: the rows are not its line breaks
    df.assign(c=1.5).to_csv(gz, sep="\t", index=False, na_rep="n/a")
    assert load_features(gz, session="1")["c"].tolist() == [1.5] * 5
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines[:8], lines[8] + "\t1\t2", *lines[9:]]) + "\n")
    with pytest.raises(InputError, match="not a readable tab-separated table"):
        load_features(path, session="1")


def test_raw_features_let_go_once_harmonised_ones_replace_them(tmp_path, monkeypatch):
    # after ComBat the group analyses use the harmonised table only; the raw one is kept
    # while an analysis that harmonises inside its own fits (normative) is still to run
    import danemap.stats.pipeline as pl

    fp, pp, _ = write_cohort(tmp_path, n=60)
    seen: dict[str, object] = {}
    real = pl._STEPS["symptoms"]

    def spy(run):
        seen["raw"] = run._raw
        real(run)
        if run._raw is None:
            with pytest.raises(RuntimeError, match="raw features were released"):
                run.raw  # noqa: B018

    monkeypatch.setitem(pl._STEPS, "symptoms", spy)
    res = run_stats(fp, pp, tmp_path / "a", analyses=("glm", "symptoms"))
    assert seen["raw"] is None and res["summary"]["n_features"] == 4
    run_stats(fp, pp, tmp_path / "b", StatsConfig(normative=NormativeConfig(n_folds=3)),
              analyses=("symptoms", "normative"))
    assert isinstance(seen["raw"], pd.DataFrame)
    run_stats(fp, pp, tmp_path / "c", StatsConfig(harmonize="none"), analyses=("symptoms",))
    assert isinstance(seen["raw"], pd.DataFrame)  # nothing replaces them


def test_result_tables_are_streamed_to_disk(tmp_path, monkeypatch):
    # written block by block: never the whole table as text (that needs twice the file)
    import tracemalloc

    import danemap.stats._tables as tables
    from danemap.stats._tables import write_result

    X = np.random.default_rng(0).normal(size=(1500, 100))
    df = pd.DataFrame(X, columns=[f"f{j}" for j in range(100)])
    df.iloc[3, 4] = np.nan
    path = tmp_path / "out.tsv"
    monkeypatch.setattr(tables, "_WRITE_CELLS", 1 << 10)  # 10 rows per block
    tracemalloc.start()
    try:
        write_result(df, path, {"Columns": dict.fromkeys(df.columns, "x")})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.5 * path.stat().st_size  # one string of the table: over 2 times
    text = df.to_csv(sep="\t", index=False, na_rep="n/a", float_format="%.10g")
    assert path.read_bytes() == text.encode()  # the same bytes as one to_csv string


# ------------------------------------------------------------------- ComBat method
def test_combat_method_equals_combat_called_directly(tmp_path):
    from danemap.stats.combat import ComBat

    fp, pp, _ = write_cohort(tmp_path, n=60)
    F, P = load_inputs(fp, pp)
    covars = P[["age", "sex", "group"]].reset_index(drop=True)
    got = {}
    for method, kw in (("parametric", {}), ("nonparametric", {"parametric": False}),
                       ("no-eb", {"empirical_bayes": False})):
        out = tmp_path / method
        res = run_stats(fp, pp, out, StatsConfig(combat_method=method), analyses=("harmonize",))
        H = pd.read_csv(out / "harmonized_features.tsv", sep="\t").set_index("participant_id")
        direct = ComBat(**kw).fit_transform(F, P["site"].to_numpy(), covars)
        np.testing.assert_allclose(H.to_numpy(), direct.to_numpy(), rtol=1e-9, atol=1e-12)
        got[method] = H.to_numpy()
        s = res["summary"]
        assert s["harmonization_settings"] == {"harmonize": "combat", "combat_method": method,
                                               "transform": "auto", "scale_threshold": 1.5,
                                               "meta_method": "reml"}
        assert s["analyses"]["harmonize"]["combat_method"] == method
        side = json.loads((out / "harmonized_features.json").read_text())
        assert side["Harmonization"] == s["harmonization"]["group_analyses"]
    # the three methods really differ (so the setting is not ignored)
    assert np.abs(got["parametric"] - got["nonparametric"]).max() > 1e-3
    assert np.abs(got["parametric"] - got["no-eb"]).max() > 1e-3
    text = json.loads((tmp_path / "nonparametric" / "summary.json").read_text())
    assert "(non-parametric empirical Bayes" in text["harmonization"]["group_analyses"]
    text = json.loads((tmp_path / "no-eb" / "summary.json").read_text())
    assert "without empirical Bayes, location" in text["harmonization"]["group_analyses"]


def test_combat_method_reaches_normative_and_classification(tmp_path):
    fp, pp, _ = write_cohort(tmp_path, n=60)
    out = tmp_path / "o"
    run_stats(fp, pp, out, StatsConfig(combat_method="nonparametric", **FAST),
              analyses=("normative", "classify"), save_classifier=tmp_path / "clf.json")
    s, side = _summary_and_sidecar(out)
    assert "ComBat (non-parametric empirical Bayes" in s["harmonization"]["normative"]
    assert "(non-parametric empirical Bayes" in side["Harmonization"]
    normative = NormativeModel.load(out / "normative_model.json")
    assert normative.combat_method == "nonparametric"
    assert normative.combat_.parametric is False and normative.combat_.empirical_bayes
    builder, _ = load_classifier(tmp_path / "clf.json")
    assert builder.combat_method == "nonparametric"
    assert builder.combat_.parametric is False and builder.combat_.empirical_bayes


def test_unknown_combat_method_is_refused_before_any_analysis(tmp_path):
    fp, pp, _ = write_cohort(tmp_path, n=60)
    with pytest.raises(InputError, match=r"stats\.combat_method: expected one of "
                                         r"\['parametric', 'nonparametric', 'no-eb'\], "
                                         "found 'bayes'"):
        run_stats(fp, pp, tmp_path / "o", StatsConfig(combat_method="bayes"),
                  analyses=("normative",))
    assert not (tmp_path / "o").exists()


def test_feature_values_parse_exactly_and_booleans_are_refused(tmp_path):
    # features are parsed straight to float (no text copy of a large table): every value
    # written with repr() must come back bit for bit; integers are numbers, True is not
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 6)) * 10.0 ** rng.integers(-300, 300, (50, 6))
    lines = ["participant_id\t" + "\t".join(f"c{j}" for j in range(6)) + "\tcount"]
    lines += [f"{i:02d}\t" + "\t".join(repr(float(v)) for v in row) + f"\t{i}"
              for i, row in enumerate(X)]
    F = load_features(_write(tmp_path / "x.tsv", "\n".join(lines) + "\n"))
    np.testing.assert_array_equal(F.iloc[:, :6].to_numpy(), X)
    assert (F.dtypes == np.float64).all() and F["count"].iloc[-1] == 49.0
    with pytest.raises(InputError, match=r"column 'flag'.*expected numbers.*'True'"):
        load_features(_write(tmp_path / "b.tsv", "participant_id\tflag\n01\tTrue\n02\tFalse\n"))


def test_participants_problems_reported_together(tmp_path):
    # the same validation as BIDS discovery (danemap.io.read_participants)
    p = _write(tmp_path / "p.tsv", "participant_id\tgroup\tage\nsub-01\tADHD\tten\n"
                                   "sub-01\tTD\t9\nsub-x_y\tTD\t10\n")
    with pytest.raises(InputError, match=r"3 problem\(s\)") as err:
        load_participants(p)
    msg = str(err.value)
    assert "duplicate participant_id: sub-01 (lines 2, 3)" in msg
    assert "non-numeric value in column 'age': line 2: 'ten'" in msg
    assert "invalid participant_id" in msg and "'sub-x_y'" in msg
    ok = _write(tmp_path / "ok.tsv", "participant_id\tage\tsite\n01\t9\tA\nsub-02\tn/a\tB\n")
    df = load_participants(ok)
    assert list(df.index) == ["sub-01", "sub-02"] and df["age"].dtype == float


def test_three_participants_fail_clearly_and_the_report_says_so(tmp_path):
    from danemap.report.group import write_group_report

    p = _write(tmp_path / "p.tsv", "participant_id\tsite\tgroup\tage\tsex\n"
               "sub-01\tA\tADHD\t10\tM\nsub-02\tA\tTD\t11\tF\nsub-03\tB\tTD\t12\tM\n")
    f = _write(tmp_path / "f.tsv", "participant_id\tfrontostriatal\tlc_pfc\n"
               "sub-01\t0.3\t0.1\nsub-02\t0.35\t0.12\nsub-03\t0.31\t0.2\n")
    out = tmp_path / "stats" / "networks"
    res = run_stats(f, p, out, on_error="record")
    s = res["summary"]
    failed = {a for a, v in s["analyses"].items() if v["status"] == "failed"}
    assert {"glm", "meta", "permutation", "normative", "classify"} <= failed
    assert "no participant is left" in s["errors"]["glm"]
    assert "needs the case-control GLM" in s["errors"]["meta"]
    assert "ComBat needs" in s["analyses"]["harmonize"]["reason"] or \
        "3 analysed participants" in s["analyses"]["harmonize"]["reason"]
    assert any("sub-01, sub-02" in w for w in s["warnings"])  # who was left out, named
    html = write_group_report(tmp_path).read_text()
    assert "FAILED: glm, meta, permutation" in html
    assert "<svg" not in html  # no empty forest plot


def test_summary_records_the_library_versions(tmp_path):
    import platform
    from importlib import metadata

    from danemap._version import __version__

    fp, pp, _ = write_cohort(tmp_path, n=30)
    res = run_stats(fp, pp, tmp_path / "o", analyses=("glm",),
                    config=StatsConfig(harmonize="none"))
    versions = json.loads((tmp_path / "o" / "summary.json").read_text())["versions"]
    assert list(versions) == ["danemap", "python", "numpy", "scipy", "pandas",
                              "scikit-learn", "statsmodels", "nilearn", "nibabel"]
    assert versions["danemap"] == __version__ == res["summary"]["danemap_version"]
    assert versions["python"] == platform.python_version()
    for lib in ("numpy", "scipy", "pandas", "scikit-learn", "statsmodels", "nilearn",
                "nibabel"):
        assert versions[lib] == metadata.version(lib), lib


def test_progress_per_analysis_at_summary_level(tmp_path, caplog):
    import logging

    from danemap._utils.logging import SUMMARY

    fp, pp, _ = write_cohort(tmp_path, n=30)
    with caplog.at_level(logging.INFO, logger="danemap"):
        run_stats(fp, pp, tmp_path / "tbl", analyses=("glm", "meta"),
                  config=StatsConfig(harmonize="none"), progress=True)
        run_stats(fp, pp, tmp_path / "one", analyses=("glm",),
                  config=StatsConfig(harmonize="none"))
    progress = [(r.levelno, r.getMessage()) for r in caplog.records
                if " done (" in r.getMessage()]
    tbl = [m.split(" (")[0] for _, m in progress if m.startswith("stats tbl: ")]
    assert "stats tbl: glm done" in tbl and "stats tbl: meta done" in tbl
    n = len(tbl)
    assert progress[0][1].startswith(f"stats tbl: {tbl[0].split(': ')[1].split()[0]} "
                                     f"done (1/{n}, ")
    # the group level's progress shows by default; otherwise it is INFO
    assert {level for level, m in progress if m.startswith("stats tbl: ")} == {SUMMARY}
    assert {level for level, m in progress if m.startswith("stats one: ")} == {logging.INFO}
