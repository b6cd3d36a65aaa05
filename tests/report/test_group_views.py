"""The group report's views on planted statistics outputs: harmonisation before/after,
mega/meta and reference forests, the connectome matrix, symptom and normative views, and
the sentence each says when its input is absent."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from danemap.report import _group_views as views
from danemap.report.group import write_group_report

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(2)>'


def _tsv(df, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, sep="\t", index=False, na_rep="n/a")


def _harmonisation_tree(tmp_path):
    """Two sites; ``shifted`` carries a +3 SD site-2 shift that the 'ComBat' output lacks."""
    rng = np.random.default_rng(0)
    n = 40
    pid = [f"sub-{i:02d}" for i in range(n)]
    site = np.repeat(["A", SCRIPT], n // 2)
    shifted = rng.normal(size=n) + 3.0 * (site == SCRIPT)
    flat = rng.normal(size=n)
    pos = np.exp(rng.normal(size=n))
    group = tmp_path / "group"
    _tsv(pd.DataFrame({"participant_id": pid, "shifted": shifted, IMG: flat, "pos": pos}),
         group / "table.tsv")
    _tsv(pd.DataFrame({"participant_id": pid, "site": site,
                       "group": np.tile(["ADHD", "TD"], n // 2)}), group / "participants.tsv")
    stats = group / "stats" / "table"
    harm = shifted - 3.0 * (site == SCRIPT)  # the site shift removed
    _tsv(pd.DataFrame({"participant_id": pid, "shifted": harm, IMG: flat,
                       "pos": np.log(pos)}), stats / "harmonized_features.tsv")
    _tsv(pd.DataFrame({"feature": ["shifted", IMG, "pos"], "positive": [False, False, True],
                       "sd_ratio": [1.1, 1.2, 3.0], "sd_ratio_low": [0.8, 0.9, 1.8],
                       "transform": ["none", "none", "log"],
                       "harmonize": [True, False, True],
                       "reason": [None, f"site {SCRIPT} has a constant feature", None]}),
         stats / "site_checks.tsv")
    summary = {"site": "site", "sources": {"participants": str(group / "participants.tsv")},
               "analyses": {"harmonize": {"status": "done", "method": "ComBat (planted)"}}}
    return group, stats, summary


def test_harmonisation_before_after_and_site_checks(tmp_path):
    group, stats, summary = _harmonisation_tree(tmp_path)
    secs = views.harmonisation_section("T", "table", stats, group, summary, "table.tsv",
                                       ["harmonize", "glm"])
    before_after, checks = secs
    assert len(before_after.figures) == 1 and before_after.figures[0].startswith("<img")
    eta = before_after.table.set_index("feature")
    assert eta.index[0] == "shifted"  # the largest site effect first
    # eta^2 from the one-way ANOVA F of the planted values: F (k-1) / (F (k-1) + N - k)
    from scipy.stats import f_oneway

    raw = pd.read_csv(group / "table.tsv", sep="\t")["shifted"].to_numpy()
    f = f_oneway(raw[:20], raw[20:]).statistic
    assert eta.loc["shifted", "site share of variance, before"] == pytest.approx(
        f / (f + 38), rel=1e-9)
    assert eta.loc["shifted", "after"] < 0.05
    assert "1 log-transformed, 1 left out of ComBat" in checks.text
    why = checks.table.set_index("feature")
    assert why.loc["pos", "transform"] == "log" and not why.loc[IMG, "harmonised"]
    assert "constant feature" in why.loc[IMG, "why"]


def test_harmonisation_absent_says_why(tmp_path):
    summary = {"analyses": {"harmonize": {"status": "failed", "error": "too few per site"}}}
    (sec,) = views.harmonisation_section("T", "x", tmp_path, tmp_path, summary, None,
                                         ["harmonize"])
    assert sec.status == "failed" and "too few per site" in sec.text
    assert views.harmonisation_section("T", "x", tmp_path, tmp_path, {}, None, ["glm"]) == []


def test_harmonisation_in_the_report_escapes_names(tmp_path):
    group, _, summary = _harmonisation_tree(tmp_path)
    (group / "stats" / "table" / "summary.json").write_text(json.dumps(summary))
    html = write_group_report(group).read_text()
    assert "harmonisation before and after" in html and "site checks" in html
    assert SCRIPT not in html and IMG not in html
    assert "site &lt;script&gt;alert(1)&lt;/script&gt; has a constant feature" in html
    # no external URL: only the SVG namespace (data: URIs hold none)
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", html, re.I)


def test_mega_meta_forest_flags_disagreement():
    eff = pd.DataFrame({"feature": ["a", SCRIPT], "d": [0.5, -0.2], "d_ci_low": [0.1, -0.6],
                        "d_ci_high": [0.9, 0.2]})
    meta = pd.DataFrame({"feature": ["a", SCRIPT], "d": [0.45, 0.4], "d_ci_low": [-9.0, 0.0],
                         "d_ci_high": [9.0, 0.8]})
    head = pd.DataFrame({"feature": ["a", SCRIPT], "agree": [True, False]})
    svg = views.mega_meta_forest(eff, meta, head)
    assert svg.count("<circle") == 2 and svg.count('<rect x="') >= 2
    assert ">agree<" in svg and ">DISAGREE<" in svg
    assert SCRIPT not in svg and "&lt;script&gt;" in svg
    assert svg.count("<path") == 2  # meta's +-9 interval cut at the axis, two arrowheads
    assert ">-3<" in svg and ">3<" in svg  # the axis is capped at a round 3
    # a meta d off the axis is drawn open at its end; danemap's estimates widen the axis
    far = views.mega_meta_forest(eff, meta.assign(d=[6.0, 0.4]), head)
    assert ">3<" in far and 'fill="white"' in far
    wide = views.mega_meta_forest(eff.assign(d=[4.5, 0.1]), meta, head)
    assert ">5<" in wide and ">6<" not in wide


def _ref_table():
    return pd.DataFrame({
        "feature": ["Caudate_L", "Putamen_R"], "structure": ["caudate", "putamen"],
        "hemisphere": ["L", "R"], "d": [-0.3, 0.2], "d_ci_low": [-0.7, -0.2],
        "d_ci_high": [0.1, 0.6], "reference_d": [-0.11, -0.14],
        "reference_ci_low": [-0.17, -0.2], "reference_ci_high": [-0.05, -0.08],
        "same_sign": [True, False], "d_within_reference_ci": [False, False],
        "cis_overlap": [True, False], "reference_source": ["ENIGMA-ADHD 2017"] * 2})


def test_reference_section_pairs_danemap_and_enigma(tmp_path):
    _tsv(_ref_table(), tmp_path / "reference_comparison.tsv")
    sec = views.reference_section("Volumes", tmp_path, {}, ["glm", "reference"])
    assert sec is not None and sec.status is None
    assert "2 structure(s) match the reference; 1 have the same sign" in sec.text
    assert "Caudate_L (caudate L)" in sec.svg and "ENIGMA-ADHD 2017" in sec.svg
    assert sec.svg.count("<circle") == 2 and ">OPPOSITE<" in sec.svg


def test_reference_section_absent(tmp_path):
    summary = {"analyses": {"reference": {"status": "skipped",
                                          "reason": "no reference table given"}}}
    sec = views.reference_section("Volumes", tmp_path, summary, ["glm", "reference"])
    assert sec.status == "missing" and "no reference table given" in sec.text
    assert views.reference_section("Networks", tmp_path, {}, ["glm"]) is None


def _edges():
    regions = ["DLPFC_L", "VLPFC_L", "Caudate_L", "LC_R"]
    feats = [f"{a}__{b}" for i, a in enumerate(regions) for b in regions[i + 1:]]
    t = np.arange(1, len(feats) + 1, dtype=float)
    return pd.DataFrame({"feature": feats, "term": "group", "t": t, "d": t / 10, "p": 0.5})


def test_edge_matrices_threshold_by_max_t():
    eff = _edges()
    perm = pd.DataFrame({"feature": eff["feature"], "p_fwe": 0.5})
    perm.loc[perm["feature"] == "DLPFC_L__Caudate_L", "p_fwe"] = 0.01
    names, t, sig = views.edge_matrices(eff, perm, 0.05)
    assert names == ["DLPFC_L", "VLPFC_L", "Caudate_L", "LC_R"]  # the atlas' order
    i, j = names.index("DLPFC_L"), names.index("Caudate_L")
    assert t[i, j] == t[j, i] == 2.0
    assert np.isnan(np.diag(t)).all()
    assert sig.sum() == 2 and sig[i, j] and sig[j, i]


def test_connectome_section(tmp_path):
    eff = _edges()
    summary = {"alpha": 0.05, "analyses": {"permutation": {"status": "failed",
                                                           "error": "too few"}}}
    sec = views.connectome_section("Edges", tmp_path, eff, summary, ["glm", "permutation"])
    assert sec.status == "failed" and "too few" in sec.text and len(sec.figures) == 1
    perm = pd.DataFrame({"feature": eff["feature"], "p_fwe": 0.2})
    _tsv(perm, tmp_path / "permutation.tsv")
    sec = views.connectome_section("Edges", tmp_path, eff, {"alpha": 0.05}, None)
    assert sec.status is None and "0 edge(s) with p_FWE < 0.05" in sec.text
    assert "empty by result, not by failure" in sec.text
    assert views.connectome_section("Nets", tmp_path, eff.assign(feature="frontostriatal"),
                                    {}, None) is None
    # the task table's contrast__region columns are not edges: its kind says so
    task = eff.assign(feature=[f"gain_minus_neutral__{r}" for r in range(len(eff))])
    assert views.connectome_section("MID", tmp_path, task, {}, None, "region") is None
    assert views.connectome_section("Edges", tmp_path, eff, {}, None, "edge") is not None


def test_symptoms_forest():
    sym = pd.DataFrame({"feature": ["a", IMG], "symptom": ["adhd_index", "inattentive"],
                        "sample": ["all", "all"], "r": [0.3, np.nan],
                        "ci_low": [0.1, np.nan], "ci_high": [0.5, np.nan], "p": [0.01, 0.5]})
    svg = views.symptoms_forest(sym)
    assert "a ~ adhd_index (all)" in svg and svg.count("<circle") == 1
    assert "partial correlation r" in svg and ">-0.5<" in svg and ">0.5<" in svg
    assert "could be estimated" in views.symptoms_forest(sym.iloc[[1]])


def test_normative_section_by_group_and_site(tmp_path):
    rng = np.random.default_rng(1)
    n = 30
    _tsv(pd.DataFrame({"participant_id": [f"s{i}" for i in range(n)],
                       "group": np.repeat(["ADHD", "TD"], n // 2),
                       "scored": np.repeat(["model fitted on all controls", "out-of-sample CV"],
                                           n // 2),
                       "frontostriatal": rng.normal(size=n), IMG: rng.normal(size=n),
                       "n_extreme": 0}), tmp_path / "normative_z.tsv")
    calib = {"all": {"n_controls": 15, "mean": 0.0, "sd": 1.05, "robust_sd": 1.0,
                     "frac_extreme": 0.05},
             "per_site": {"A": {"n_controls": 8, "mean": 0.1, "sd": 0.95, "robust_sd": 0.9,
                                "frac_extreme": 0.04},
                          SCRIPT: {"n_controls": 7, "mean": -0.4, "sd": 1.7,
                                   "robust_sd": 1.5, "frac_extreme": 0.2}}}
    summary = {"analyses": {"normative": {"status": "done", "small_reference": False,
                                          "control_calibration": calib}}}
    sec = views.normative_section("Nets", tmp_path, summary, ["normative"])
    assert len(sec.figures) == 1 and sec.status == "flag"
    cal = sec.table.set_index("site")["calibration"]
    assert cal.to_dict() == {"all sites": "ok", "A": "ok", SCRIPT: "MISCALIBRATED"}
    assert sec.notes[0] == f"MISCALIBRATED: {SCRIPT}."


def test_normative_section_failed_and_small(tmp_path, output_tree):
    summary = {"analyses": {"normative": {"status": "failed", "error": "2 controls"}}}
    sec = views.normative_section("PET", tmp_path, summary, ["normative"])
    assert sec.status == "failed" and "2 controls" in sec.text
    assert views.normative_section("PET", tmp_path, {}, ["glm"]) is None
    html = write_group_report(output_tree / "group").read_text()
    nets = html.split("Network scores: normative z-scores")[1].split("<h2")[0]
    assert "SMALL REFERENCE" in nets and "<img" in nets
    pet = html.split("DAT SBR: normative z-scores")[1].split("<h2")[0]
    assert "FAILED" in pet and "2 controls are too few" in pet
    assert IMG not in html and SCRIPT not in html
