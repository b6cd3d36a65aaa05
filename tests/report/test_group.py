import json

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
    html = write_group_report(tmp_path).read_text()
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
