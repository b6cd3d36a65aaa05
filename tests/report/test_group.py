import json
import re

import pandas as pd

from danemap.report.group import write_group_report


def _effects(features):
    return pd.DataFrame({"feature": features, "term": "group", "n_case": 10, "n_control": 11,
                         "mean_case": 0.1, "mean_control": 0.2, "d": [-0.3] * len(features),
                         "d_ci_low": -1.0, "d_ci_high": 0.4, "p": 0.4, "p_fdr": 0.5})


def test_group_report_order_cohort_and_rows(tmp_path):
    stats = tmp_path / "stats"
    for name, feats in (("alff", ["Caudate_L"]), ("networks", ["frontostriatal", "lc_pfc"])):
        (stats / name).mkdir(parents=True)
        eff = _effects(feats)
        if name == "networks":  # an extra stratified row must not enter the main table
            extra = eff.iloc[[0]].assign(term="group|sex=F", feature="frontostriatal")
            eff = pd.concat([eff, extra])
        eff.to_csv(stats / name / "effects.tsv", sep="\t", index=False)
        (stats / name / "summary.json").write_text(json.dumps({
            "n": {"case": 10, "control": 11, "per_site": {"A": {"case": 5, "control": 6},
                                                          "B": {"case": 5, "control": 5}}},
            "covariates": ["age", "sex"], "site": "site",
            "harmonization": {"group_analyses": "ComBat <parametric>"}}))
    clf = pd.DataFrame([
        {"scheme": "kfold", "model": model, "metric": metric, "value": v, "ci_low": v - 0.1,
         "ci_high": v + 0.1, "p_permutation": 0.04}
        for model, v in (("covariates", 0.7), ("imaging", 0.55))
        for metric in ("balanced_accuracy", "auc")])
    clf.to_csv(stats / "networks" / "classification.tsv", sep="\t", index=False)
    # titles and order come from the families' GroupTables, through the workflow's manifest
    (tmp_path / "tables.json").write_text(json.dumps({"tables": [
        {"name": "networks", "title": "Network scores"},
        {"name": "alff", "title": "Regional ALFF"}]}))
    html = write_group_report(tmp_path).read_text()
    again = write_group_report(
        tmp_path, titles={"networks": "Network scores", "alff": "Regional ALFF"}).read_text()
    # the two builds may straddle a second of the "generated <time>" line
    stamp = re.compile(r"generated \d{4}-\d\d-\d\dT[\d:]+\+00:00")
    assert stamp.sub("generated T", html) == stamp.sub("generated T", again)
    clf_table = html.split("can the markers tell")[1].split("</table>")[0]
    assert clf_table.count("<tr>") == 1 + 2  # one row per scheme and model
    assert "0.70 [0.60, 0.80]" in clf_table and "0.55 [0.45, 0.65]" in clf_table
    assert html.index("Cohort and methods") < html.index("Network scores") < html.index(
        "Regional ALFF")
    assert "ComBat &lt;parametric&gt;" in html
    main_table = html.split("Network scores")[1].split("</table>")[0]
    assert main_table.count("<tr>") == 1 + 2  # header + the two main-effect rows


def test_group_report_without_statistics(tmp_path):
    html = write_group_report(tmp_path).read_text()
    assert "No group statistics were found" in html


def test_report_leads_with_headline_and_shows_failures(tmp_path):
    from danemap.config import StatsConfig, SymptomsConfig
    from danemap.simulate._table import simulate_feature_table
    from danemap.stats.pipeline import run_stats

    # untransformed multiplicative sites: feat03's mega and meta disagree (see
    # tests/stats/test_sitecheck.py); symptoms fail (no such column), recorded not raised
    F, P, _ = simulate_feature_table(n_per_site=(400, 400, 400), site_scale=(1.0, 8.0, 8.0),
                                     case_fraction=(0.7, 0.3, 0.3), d=0.4, n_features=3,
                                     seed=2)
    F.to_csv(tmp_path / "f.tsv", sep="\t", index=False)
    P.to_csv(tmp_path / "p.tsv", sep="\t", index=False)
    out = tmp_path / "stats" / "networks"
    run_stats(tmp_path / "f.tsv", tmp_path / "p.tsv", out,
              StatsConfig(transform="none", n_permutations=50,
                          symptoms=SymptomsConfig(columns=["adhd_index"])),
              analyses=("glm", "symptoms"), on_error="record")
    html = write_group_report(tmp_path).read_text()
    assert "FAILED: symptoms" in html and "adhd_index" in html
    assert "mega- and meta-analysis disagree for 1 feature(s): feat03" in html
    assert html.index("ADHD vs controls") < html.index("mega-analysis and per-site meta")
    head_table = html.split("ADHD vs controls")[1].split("</table>")[0]
    assert "meta" in head_table and "<svg" in html.split("ADHD vs controls")[1]


def test_classification_says_when_imaging_does_not_beat_covariates(tmp_path):
    stats = tmp_path / "stats" / "networks"
    stats.mkdir(parents=True)
    block = {m: {"balanced_accuracy": {"value": v}} for m, v in
             (("covariates", 0.70), ("imaging", 0.55), ("both", 0.68))}
    (stats / "summary.json").write_text(json.dumps({"classify": {
        "status": "done", "kfold": {**block, "imaging_beats_covariate_baseline": False},
        "loso": {**{m: {"balanced_accuracy": {"value": v}} for m, v in
                    (("covariates", 0.5), ("imaging", 0.6), ("both", 0.6))},
                 "imaging_beats_covariate_baseline": True}}}))
    pd.DataFrame([{"scheme": "kfold", "model": m, "metric": "balanced_accuracy", "value": v,
                   "ci_low": v - 0.1, "ci_high": v + 0.1, "p_permutation": 0.3}
                  for m, v in (("covariates", 0.7), ("imaging", 0.55), ("both", 0.68))]
                 ).to_csv(stats / "classification.tsv", sep="\t", index=False)
    html = write_group_report(tmp_path).read_text()
    clf = html.split("can the markers tell")[1].split("<h2")[0]
    assert ("stratified k-fold: IMAGING DOES NOT BEAT THE COVARIATE-ONLY BASELINE (balanced "
            "accuracy covariates 0.70, imaging 0.55, both 0.68)") in clf
    assert "leave-one-site-out: imaging beats the covariate-only baseline" in clf
