import importlib.util
import json
from pathlib import Path

import pandas as pd

from danemap.cli import main

_spec = importlib.util.spec_from_file_location(
    "_stats_pipeline_tests", Path(__file__).with_name("test_pipeline.py"))
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
write_cohort = _mod.write_cohort

FAST = ["--classify-permutations", "2", "--folds", "3", "--n-permutations", "49"]


def test_cli_all_then_predict_and_normative_scoring(tmp_path):
    fp, pp, ref = write_cohort(tmp_path)
    out = tmp_path / "out"
    rc = main(["stats", "all", "--features", str(fp), "--participants", str(pp), "--out",
               str(out), "--reference", str(ref), "--save-model", str(tmp_path / "clf.json"),
               "--seed", "3", "--combat-method", "nonparametric", *FAST])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["seed"] == 3 and s["analyses"]["permutation"]["n_permutations"] == 49
    assert s["analyses"]["classify"]["status"] == "done"
    assert s["harmonization_settings"]["combat_method"] == "nonparametric"
    assert all("non-parametric empirical Bayes" in v for v in s["harmonization"].values())
    reference_keys = set(json.loads((out / "effects.json").read_text()))
    rc = main(["stats", "predict", "--model", str(tmp_path / "clf.json"), "--features",
               str(fp), "--participants", str(pp), "--out", str(tmp_path / "pred")])
    assert rc == 0
    pred = pd.read_csv(tmp_path / "pred" / "predictions.tsv", sep="\t")
    assert len(pred) == 90 and pred["probability_case"].between(0, 1).all()
    side = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    # the same sidecar layout as every statistics table (one builder), plus the model
    assert reference_keys - {"Model", "Terms", "Alpha"} <= set(side)
    assert side["N"] == {"scored": 90, "training": 90, "training_case": 45,
                         "training_control": 45, "case": 45, "control": 45}
    assert side["Covariates"] == ["age", "full4_iq", "sex", "site"]
    assert side["Site"] == "site" and side["Model"] == str(tmp_path / "clf.json")
    assert side["Harmonization"].startswith(
        "saved ComBat (non-parametric empirical Bayes, location and scale) fitted on the 90 "
        "training participants (batch 'site', preserving ['age', 'sex'])")
    rc = main(["stats", "normative", "--model", str(out / "normative_model.json"),
               "--features", str(fp), "--participants", str(pp), "--out",
               str(tmp_path / "norm")])
    assert rc == 0
    z = pd.read_csv(tmp_path / "norm" / "normative_z.tsv", sep="\t")
    assert "n_extreme" in z.columns and len(z) == 90
    side = json.loads((tmp_path / "norm" / "normative_z.json").read_text())
    assert reference_keys - {"Model", "Terms", "Alpha"} <= set(side)
    assert side["N"] == {"scored": 90, "training_controls": 45, "case": 45, "control": 45}
    assert side["Covariates"] == ["age", "sex", "site"] and side["Site"] == "site"
    assert side["SiteTerm"] == "ComBat + site indicators" and side["SmallReference"]
    assert side["Harmonization"].startswith(
        "saved ComBat (non-parametric empirical Bayes, location and scale) fitted on the 45 "
        "reference controls (batch 'site', preserving ['age', 'sex'])")
    assert side["Sources"]["model"] == str(out / "normative_model.json")


def test_cli_scored_sidecars_without_harmonisation_or_group_column(tmp_path):
    fp, pp, _ = write_cohort(tmp_path)
    rc = main(["stats", "normative", "--features", str(fp), "--participants", str(pp),
               "--out", str(tmp_path / "n"), "--save-model", str(tmp_path / "nm.json"),
               "--harmonize", "none"])
    assert rc == 0
    new = tmp_path / "new_participants.tsv"  # people to score: no diagnosis column
    pd.read_csv(pp, sep="\t").drop(columns="group").to_csv(new, sep="\t", index=False,
                                                           na_rep="n/a")
    rc = main(["stats", "normative", "--model", str(tmp_path / "nm.json"), "--features",
               str(fp), "--participants", str(new), "--out", str(tmp_path / "z")])
    assert rc == 0
    side = json.loads((tmp_path / "z" / "normative_z.json").read_text())
    # no ComBat, but site in the model (indicators, a residual SD per site)
    assert side["Harmonization"] == "none" and side["Site"] == "site"
    assert side["Covariates"] == ["age", "sex", "site"]
    assert side["SiteTerm"] == "site indicators, residual SD per site"
    assert side["N"] == {"scored": 90, "training_controls": 45}


def test_cli_combat_method_flag(tmp_path, capsys):
    fp, pp, _ = write_cohort(tmp_path)
    base = ["--features", str(fp), "--participants", str(pp)]
    assert main(["stats", "glm", *base, "--out", str(tmp_path / "g"),
                 "--combat-method", "no-eb"]) == 0
    side = json.loads((tmp_path / "g" / "effects.json").read_text())
    assert side["Harmonization"].startswith(
        "ComBat (per-feature least-squares site estimates without empirical Bayes")
    assert main(["stats", "glm", *base, "--out", str(tmp_path / "x"),
                 "--combat-method", "bayes"]) == 2
    assert "invalid choice: 'bayes'" in capsys.readouterr().err


def test_cli_single_analysis_and_flags(tmp_path):
    fp, pp, _ = write_cohort(tmp_path)
    out = tmp_path / "glm"
    rc = main(["stats", "glm", "--features", str(fp), "--participants", str(pp), "--out",
               str(out), "--covariates", "age", "--harmonize", "none"])
    assert rc == 0
    side = json.loads((out / "effects.json").read_text())
    assert side["Covariates"] == ["age"] and side["Harmonization"] == "none"
    rc = main(["stats", "normative", "--features", str(fp), "--participants", str(pp),
               "--out", str(tmp_path / "n"), "--save-model", str(tmp_path / "nm.json")])
    assert rc == 0 and (tmp_path / "nm.json").is_file()


def test_cli_errors(tmp_path, capsys):
    fp, pp, _ = write_cohort(tmp_path)
    base = ["--features", str(fp), "--participants", str(pp), "--out", str(tmp_path / "o")]
    assert main(["stats", "predict", *base]) == 2
    assert "--model M.json" in capsys.readouterr().err
    assert main(["stats", "reference", *base]) == 2
    assert "--reference ENIGMA.csv is required" in capsys.readouterr().err
    assert main(["stats", "glm", "--model", "x.json", *base]) == 2
    assert "--model applies only" in capsys.readouterr().err
    assert main(["stats", "glm", *base, "--group", "dx_group"]) == 2
    assert "column 'dx_group' not found" in capsys.readouterr().err
    assert main(["stats", "glm", "--features", str(tmp_path / "none.tsv"), "--participants",
                 str(pp), "--out", str(tmp_path / "o")]) == 2
    assert "file not found" in capsys.readouterr().err
    assert main(["stats", "magic", *base]) == 2
    assert main(["stats", "glm", "--participants", str(pp), "--out", "x"]) == 2
    # 'all' records a failing analysis and exits 1
    P = pd.read_csv(pp, sep="\t").drop(columns="site")
    P.to_csv(pp, sep="\t", index=False, na_rep="n/a")
    assert main(["stats", "all", *base, *FAST, "--harmonize", "none"]) == 1
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert "classify" in s["errors"]


def test_cli_transform_threshold_and_meta_command(tmp_path):
    fp, pp, _ = write_cohort(tmp_path)
    out = tmp_path / "m"
    rc = main(["stats", "meta", "--features", str(fp), "--participants", str(pp), "--out",
               str(out), "--transform", "none", "--scale-threshold", "2.5",
               "--meta-method", "dl"])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["harmonization_settings"]["transform"] == "none"
    assert s["harmonization_settings"]["scale_threshold"] == 2.5
    assert s["analyses"]["meta"]["method"] == "dl"
    assert {"effects", "meta", "meta_sites", "headline", "site_checks"} <= set(s["files"])
    pooled = pd.read_csv(out / "meta_effects.tsv", sep="\t")
    assert pooled["method"].str.startswith("DL").all()
    assert main(["stats", "glm", "--features", str(fp), "--participants", str(pp), "--out",
                 str(tmp_path / "bad"), "--scale-threshold", "0.9"]) == 2


def test_cli_honours_the_config_file_flags_win_and_config_toml_is_written(tmp_path):
    from danemap.config import load_config

    fp, pp, _ = write_cohort(tmp_path)
    conf = tmp_path / "c.toml"
    conf.write_text("[stats]\nclassify_permutations = 3\nseed = 4\n"
                    "[stats.classify]\nn_folds = 3\nn_bootstrap = 20\nc_grid = [1.0]\n")
    out = tmp_path / "o"
    args = ["--features", str(fp), "--participants", str(pp), "--out", str(out)]
    assert main(["stats", "--config", str(conf), "classify", *args]) == 0
    tab = pd.read_csv(out / "classification.tsv", sep="\t")
    kfold = tab[tab.scheme == "kfold"]
    assert (tab["n_permutations"] == 3).all() and (kfold["n_folds"] == 3).all()  # the file's
    written = load_config(out / "config.toml", environ={})
    assert written.stats.classify_permutations == 3 and written.stats.seed == 4
    assert written.stats.classify.c_grid == [1.0] and written.stats.classify.n_bootstrap == 20
    # a flag beats the file; the file beats the defaults
    assert main(["stats", "--config", str(conf), "classify", *args,
                 "--classify-permutations", "1", "--folds", "4"]) == 0
    tab = pd.read_csv(out / "classification.tsv", sep="\t")
    kfold = tab[tab.scheme == "kfold"]
    assert (tab["n_permutations"] == 1).all() and (kfold["n_folds"] == 4).all()
    written = load_config(out / "config.toml", environ={})
    assert written.stats.classify_permutations == 1 and written.stats.classify.n_folds == 4
    assert written.stats.normative.n_folds == 4 and written.stats.seed == 4
