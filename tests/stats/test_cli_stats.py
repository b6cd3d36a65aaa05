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
               "--seed", "3", *FAST])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["seed"] == 3 and s["analyses"]["permutation"]["n_permutations"] == 49
    assert s["analyses"]["classify"]["status"] == "done"
    rc = main(["stats", "predict", "--model", str(tmp_path / "clf.json"), "--features",
               str(fp), "--participants", str(pp), "--out", str(tmp_path / "pred")])
    assert rc == 0
    pred = pd.read_csv(tmp_path / "pred" / "predictions.tsv", sep="\t")
    assert len(pred) == 90 and pred["probability_case"].between(0, 1).all()
    rc = main(["stats", "normative", "--model", str(out / "normative_model.json"),
               "--features", str(fp), "--participants", str(pp), "--out",
               str(tmp_path / "norm")])
    assert rc == 0
    z = pd.read_csv(tmp_path / "norm" / "normative_z.tsv", sep="\t")
    assert "n_extreme" in z.columns and len(z) == 90
    side = json.loads((tmp_path / "norm" / "normative_z.json").read_text())
    assert "ComBat" in side["Harmonization"]


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
