"""``danemap demo`` end to end on a small cohort (the path ``make demo`` takes)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd

from danemap.cli import main


def _browser_helpers():
    """The headless-chromium checks shared with tests/report/test_browser.py."""
    name = "danemap_tests_browser"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).parent / "report" / "_browser.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    # 20 participants: 10 per site is the fewest that classification with ComBat inside
    # every inner training fold accepts (2 x 5 folds); fewer fail it, and the exit code says so
    assert main(["demo", "--out", str(out), "--n-subjects", "20", "--n-volumes", "100"]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    # the demo's volumes come from today's quick raw-T1w path (CC SyN): no caution about
    # the earlier quick mode's volumes (the CLI logs warnings on stderr)
    assert "earlier quick mode" not in captured.err
    for net in ("frontostriatal", "lc_pfc", "mesolimbic", "nigrostriatal"):
        assert net in printed
    assert "not a diagnostic device" in printed
    group = out / "results" / "danemap" / "group"
    assert f"Report:{group / 'group_report.html'}" in "".join(printed.split())
    assert (group / "group_report.html").is_file()
    # the demo includes functional connectivity and network scores
    assert len(pd.read_csv(group / "connectivity_corr.tsv", sep="\t")) == 20
    effects = pd.read_csv(group / "stats" / "networks" / "effects.tsv", sep="\t")
    assert set(effects["feature"]) == {"frontostriatal", "lc_pfc", "mesolimbic",
                                       "nigrostriatal"}
    assert (effects["n_case"] + effects["n_control"] == 20).all()
    head = pd.read_csv(group / "stats" / "networks" / "headline.tsv", sep="\t")
    assert set(head["source"]) <= {"mega", "meta"} and "source" in printed
    # volumes from the raw-T1w quick path on 6 participants, with ICV
    volumes = pd.read_csv(group / "volumes.tsv", sep="\t")
    assert len(volumes) == 6 and "ICV" in volumes and "Caudate_L" in volumes
    assert (group / "stats" / "volumes" / "effects.tsv").is_file()
    # DAT SBR of every participant, with GTM
    pet = pd.read_csv(group / "pet.tsv", sep="\t")
    assert len(pet) == 20 and "putamen_L" in pet
    assert "Volumes:" in printed and "DAT SBR:" in printed
    # and a MID run per participant, whose ventral-striatal contrast reaches the statistics
    task = pd.read_csv(group / "task_mid.tsv", sep="\t")
    assert len(task) == 20 and "gain_minus_neutral__NAcc_L" in task
    assert "MID task:" in printed
    # the demo's group report and a participant report, opened in headless chromium
    _demo_reports_in_chromium(out / "results" / "danemap", tmp_path)


def _demo_reports_in_chromium(root, tmp_path):
    B = _browser_helpers()
    shots = B.artefact_dir(tmp_path)
    with B.chromium() as browser:
        seen = B.check_report(browser, root / "group" / "group_report.html",
                              shots / "demo_group.png", ("failures",))
        heads = " | ".join(seen["headings"])
        for part in ("Cohort and methods", "harmonisation before and after",
                     "ADHD vs controls", "mega-analysis and per-site meta-analysis",
                     "connectome view", "association with symptom scores",
                     "normative z-scores"):
            assert part in heads, part
        assert len(seen["images"]) >= 4  # harmonisation, connectome, normative ...
        seen = B.check_report(browser, root / "sub-01.html", shots / "demo_sub-01.png", (
            "header", "qc", "qc-bold", "qc-fd", "qc-pet", "functional", "pet", "normative"))
        assert "not a diagnostic device" in seen["text"]  # the disclaimer banner


def test_demo_refuses_a_cohort_too_small_for_the_statistics(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--n-subjects", "4",
                 "--n-sites", "4"]) == 2
    assert "at least 3 participants per site" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_demo_refuses_a_folder_that_is_not_a_previous_demo(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["demo", "--out", str(out), "--n-subjects", "6"]) == 2
    assert "expected a new folder or a previous danemap demo" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
