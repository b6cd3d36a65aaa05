"""Bad tables a user will have (issue 7, section 6): each case and what danemap does.

The rule for participants (``danemap.stats._tables``, *participants left out*): an
analysis leaves out a participant with a missing or non-finite value it needs, or whose
site or sex level is too rare to be in every training fold, and names them in one
warning; none of this is an error.
"""

import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from danemap.cli import main
from danemap.config import ClassifyConfig, NormativeConfig, StatsConfig
from danemap.errors import DanemapWarning, InputError
from danemap.stats._tables import load_inputs
from danemap.stats.classify import save_classifier
from danemap.stats.pipeline import run_stats

_spec = importlib.util.spec_from_file_location(
    "_stats_pipeline_tests_bad", Path(__file__).with_name("test_pipeline.py"))
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
write_cohort = _mod.write_cohort

FAST_CLI = ["--classify-permutations", "0", "--folds", "3"]  # classify's own options
FAST = StatsConfig(classify_permutations=0, normative=NormativeConfig(n_folds=3),
                   classify=ClassifyConfig(n_bootstrap=20, c_grid=[1.0], n_folds=3))


def _edit(path, changes):
    df = pd.read_csv(path, sep="\t", dtype={"participant_id": str}, keep_default_na=False,
                     na_values=["n/a"])
    for (row, col), value in changes.items():
        df.loc[row, col] = value
    df.to_csv(path, sep="\t", index=False, na_rep="n/a")


def test_iq_listed_as_covariate_does_not_crash_classify(tmp_path):
    # the classifier adds full4_iq itself: it used to appear twice (AttributeError)
    fp, pp, _ = write_cohort(tmp_path)
    out = tmp_path / "o"
    rc = main(["stats", "classify", "--features", str(fp), "--participants", str(pp),
               "--out", str(out), "--covariates", "age", "sex", "full4_iq", *FAST_CLI])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["analyses"]["classify"]["status"] == "done"
    inputs = s["analyses"]["classify"]["kfold"]
    assert inputs["covariates"]["balanced_accuracy"]["value"] is not None
    assert any("sub-003" in w for w in s["warnings"])  # its IQ is n/a: named, left out


def test_rare_levels_and_inf_are_left_out_by_name_in_normative_and_classify(tmp_path):
    fp, pp, _ = write_cohort(tmp_path)
    _edit(pp, {(0, "sex"): "O", (1, "site"): "Z"})  # a sex level and a site of one
    _edit(fp, {(2, "Caudate_R"): np.inf})
    res = run_stats(fp, pp, tmp_path / "o", FAST, analyses=("normative", "classify"))
    s = res["summary"]
    assert all(s["analyses"][a]["status"] == "done" for a in ("normative", "classify"))
    for analysis in ("normative", "classification"):
        msg = " ".join(w for w in s["warnings"] if w.split(":")[1].strip() == analysis
                       or f"{analysis} model" in w)
        assert "sub-000" in msg and "['O']" in msg
        assert "sub-001" in msg and "['Z']" in msg
        assert "sub-002" in msg and "non-finite" in msg
    z = pd.read_csv(tmp_path / "o" / "normative_z.tsv", sep="\t").set_index("participant_id")
    assert (z.loc[["sub-000", "sub-001", "sub-002"], "scored"] == "not scored").all()
    assert s["analyses"]["classify"]["n"] == 90 - 3  # sub-003's n/a IQ is imputed


def test_predict_refuses_a_site_the_classifier_never_saw(tmp_path, capsys):
    fp, pp, _ = write_cohort(tmp_path)
    F, P = load_inputs(fp, pp)
    model = save_classifier(tmp_path / "clf.json", F, P, model="both", c_grid=(1.0,))
    _edit(pp, {(0, "site"): "NEW"})
    rc = main(["stats", "predict", "--model", str(model), "--features", str(fp),
               "--participants", str(pp), "--out", str(tmp_path / "p")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "site ['NEW']" in err and "sub-000" in err and "--save-model" in err
    assert not (tmp_path / "p" / "predictions.tsv").exists()


def test_participants_without_features_are_warned_with_ids(tmp_path):
    fp, pp, _ = write_cohort(tmp_path)
    F = pd.read_csv(fp, sep="\t", dtype={"participant_id": str})
    F.iloc[3:].to_csv(fp, sep="\t", index=False)
    with pytest.warns(DanemapWarning, match=r"3 participant\(s\) of .* no row in feature "
                                            r"table .*sub-000, sub-001, sub-002"):
        F2, P2 = load_inputs(fp, pp)
    assert len(F2) == len(P2) == 87


def test_stats_all_exits_1_and_lists_failed_analyses(tmp_path, capsys):
    fp, pp, _ = write_cohort(tmp_path)
    out = tmp_path / "o"
    rc = main(["stats", "all", "--features", str(fp), "--participants", str(pp), "--out",
               str(out), "--classify-permutations", "0", "--n-permutations", "19",
               "--folds", "1"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "normative failed" in err and "classify failed" in err
    assert "analysis(es) failed: normative, classify" in err
    assert "(--folds)" in err  # the hint names the flag, not the Python argument
    s = json.loads((out / "summary.json").read_text())
    assert set(s["errors"]) == {"normative", "classify"}


def test_group_level_exits_1_when_analyses_fail(tmp_path, monkeypatch, caplog):
    import danemap.report.group as rg
    import danemap.stats.pipeline as sp
    from danemap.config import Config
    from danemap.markers.base import GroupTable
    from danemap.markers.functional import FunctionalFamily
    from danemap.pipeline import run_group

    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "participants.tsv").write_text(
        "participant_id\tgroup\tage\tsex\tsite\nsub-01\tADHD\t10\tF\tA\nsub-02\tTD\t11\tM\tA\n")
    (bids / "dataset_description.json").write_text(
        json.dumps({"Name": "t", "BIDSVersion": "1.8.0"}))
    table = tmp_path / "t.tsv"
    table.write_text("participant_id\tx\nsub-01\t1\nsub-02\t2\n")
    monkeypatch.setattr(FunctionalFamily, "collect", lambda *a, **k: [
        GroupTable("networks", table, "Networks", "network", ("glm", "permutation",
                                                              "normative", "classify"))])
    monkeypatch.setattr(rg, "write_group_report", lambda d, s, **k: d / "group_report.html")
    failed = {"permutation": "boom", "normative": "boom", "classify": "boom"}
    monkeypatch.setattr(sp, "run_stats", lambda *a, **k: {"summary": {"errors": failed}})
    with caplog.at_level(logging.ERROR, logger="danemap"):
        rc = run_group(bids, tmp_path / "out", Config())
    assert rc == 1
    listed = "networks/permutation, networks/normative, networks/classify"
    assert listed in caplog.text
    monkeypatch.setattr(sp, "run_stats", lambda *a, **k: {"summary": {"errors": {}}})
    assert run_group(bids, tmp_path / "out", Config()) == 0


def _edit_text(path, changes):
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    for (row, col), value in changes.items():
        df.loc[row, col] = value
    df.to_csv(path, sep="\t", index=False)


@pytest.mark.parametrize("harmonize", ["combat", "none"])
def test_a_text_code_in_a_numeric_covariate_names_file_column_values_and_fix(tmp_path,
                                                                             harmonize):
    # issue 13: an IQ of "<70" among numbers is a number column with a code in it; the
    # design used to dummy-encode it (one group per IQ value), silently
    fp, pp, _ = write_cohort(tmp_path)
    _edit_text(pp, {(5, "full4_iq"): "<70", (8, "full4_iq"): "<70"})
    cfg = StatsConfig(harmonize=harmonize, covariates=["age", "sex", "full4_iq"])
    with pytest.raises(InputError) as err:
        run_stats(fp, pp, tmp_path / "o", cfg, analyses=["glm"])
    msg = str(err.value)
    assert str(pp) in msg
    assert "covariate 'full4_iq' must be a number" in msg and "'<70'" in msg
    assert "recode '<70' as a number, or remove 'full4_iq' from [stats] covariates" in msg
    if harmonize == "none":  # the GLM still has the ids (ComBat's covariates have not)
        assert "'<70' (sub-005); '<70' (sub-008)" in msg


def test_a_non_numeric_age_at_the_group_level_says_the_fix(tmp_path):
    fp, pp, _ = write_cohort(tmp_path)
    _edit_text(pp, {(2, "age"): "89+"})
    with pytest.raises(InputError) as err:
        run_stats(fp, pp, tmp_path / "o", StatsConfig(harmonize="none"), analyses=["glm"])
    msg = str(err.value)
    assert str(pp) in msg and "column 'age'" in msg and "'89+'" in msg
    assert "recode '89+' as a number" in msg


def test_a_site_coded_with_numbers_and_letters_is_not_refused(tmp_path):
    from danemap.stats._design import CovariateEncoder

    covars = pd.DataFrame({"site": ["1", "2", "X", "1"], "iq": [1.0, 2.0, 3.0, 4.0]})
    enc = CovariateEncoder().fit(covars)
    assert enc.names_ == ["site[2]", "site[X]", "iq"]
    covars["iq"] = ["101", "<70", "99", "98"]
    with pytest.raises(InputError, match=r"covariate 'iq' must be a number, found "
                                         r"non-numeric value\(s\) '<70'; recode '<70'"):
        CovariateEncoder().fit(covars)
