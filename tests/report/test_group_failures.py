"""The group report of a run whose analyses fail, and of data with hostile strings."""

import re

_URL = re.compile(r"https?://(?!www\.w3\.org/2000/svg)", re.I)


def test_all_failed_run_shows_every_failure(group_runs):
    html = group_runs["failed"].read_text()
    failures = html.split('id="failures"')[1].split("<h2")[0]
    assert "status-failed" in failures
    for analysis in ("glm", "meta", "permutation", "normative", "classify"):
        assert f"<td class=\"txt\">{analysis}</td>" in failures, analysis
    assert "FAILED: 5 analysis(es)" in failures
    # never a bare "none" for the harmonisation, never an empty forest plot
    assert "Harmonisation (group analyses): none (ComBat skipped:" in html
    assert "(the analysis FAILED: normative model" in html
    assert "<svg" not in html


def test_ok_run_says_nothing_failed_and_draws_round_ticks(group_runs):
    html = group_runs["ok"].read_text()
    assert "No analysis failed." in html.split('id="failures"')[1].split("<h2")[0]
    ticks = re.findall(r'text-anchor="middle">([-0-9.]+)</text>', html)
    assert ticks and all(round(float(t) * 4) == float(t) * 4 for t in ticks), ticks


def test_group_report_escapes_and_has_no_url(group_runs, tree):
    for path in group_runs.values():
        html = path.read_text()
        assert tree["script"] not in html and tree["img"] not in html
        assert "<script" not in html.lower()
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert not _URL.search(html)
        assert "Group configuration hash" in html and "Statistics run 20" in html
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in group_runs["ok"].read_text()


def test_each_failed_analysis_section_says_so(group_runs):
    html = group_runs["failed"].read_text()
    heads = dict(re.findall(r'<h2 id="([^"]+)">(.*?)</h2>', html))
    for title, analysis in (("ADHD vs controls", "glm"),
                            ("family-wise error by permutation", "permutation"),
                            ("can the markers tell ADHD from controls?", "classify"),
                            ("normative z-scores", "normative")):
        anchor = next(a for a, h in heads.items() if title in h)
        assert "FAILED" in heads[anchor], title
        body = html.split(f'id="{anchor}"')[1].split("<h2")[0]
        assert f"FAILED: the {analysis} analysis failed (" in body, title
    # harmonisation: its section says why ComBat did not run
    harm = next(a for a, h in heads.items() if "harmonisation before and after" in h)
    body = html.split(f'id="{harm}"')[1].split("<h2")[0]
    assert "harmonize analysis was skipped (fewer than two of the 2 sites" in body


def test_methods_paragraph_describes_what_ran(group_runs):
    ok = group_runs["ok"].read_text().split('id="methods"')[1].split("<h2")[0]
    assert "danemap 0." in ok and "ComBat" in ok and "Johnson WE" in ok
    assert "exact 95% confidence interval" in ok and "Hartung-Knapp" in ok
    assert "covariates: age, sex" in ok
    assert "max-T" not in ok and "normative" not in ok.lower()  # neither ran
    failed = group_runs["failed"].read_text().split('id="methods"')[1].split("<h2")[0]
    assert "Cohen&#x27;s d" not in failed and "Not described (FAILED" in failed
    assert "glm" in failed and "permutation" in failed


def test_methods_names_the_versions_the_statistics_recorded(tmp_path, group_runs):
    import json
    import shutil

    from danemap.report.group import write_group_report

    group = tmp_path / "group"
    shutil.copytree(group_runs["ok"].parent, group)
    summary = group / "stats" / "networks" / "summary.json"
    data = json.loads(summary.read_text())
    assert data["versions"]["numpy"]  # written by run_stats
    data["versions"].update(numpy="0.0.1planted", nilearn="0.0.2planted")
    summary.write_text(json.dumps(data))
    methods = write_group_report(group).read_text().split('id="methods"')[1].split("<h2")[0]
    assert "numpy 0.0.1planted" in methods and "nilearn 0.0.2planted" in methods
    assert "as recorded in summary.json by the statistics run" in methods
    assert "statsmodels " in methods
    # a summary.json without versions (older outputs): the report's own, and said so
    del data["versions"]
    summary.write_text(json.dumps(data))
    methods = write_group_report(group).read_text().split('id="methods"')[1].split("<h2")[0]
    assert "planted" not in methods and "records no library versions" in methods
