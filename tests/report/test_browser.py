"""The reports in a real headless browser (Debian chromium driven by Playwright).

Opens a participant report and the group report and checks: no console error, no request
at all beyond the file itself (so none can fail), every ``<img>`` decoded (natural width >
0), the required sections present, no script run from the data (no dialog), and a
full-page screenshot that is not blank (the checks live in ``_browser.py``). The
screenshots are kept under ``$DANEMAP_TEST_ARTEFACTS`` or ``tmp_path`` (their paths are
printed). Under ``CI=true`` a missing chromium or playwright fails.
"""

import importlib.util
import sys
from pathlib import Path

import pytest


def _helpers():
    """The shared browser checks of tests/report/_browser.py (tests/test_demo.py uses them)."""
    name = "danemap_tests_browser"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(
            "_browser.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


B = _helpers()


@pytest.fixture(scope="module")
def browser():
    with B.chromium() as b:
        yield b


def test_participant_report_in_chromium(browser, output_tree, tmp_path):
    from danemap.report.participant import write_participant_report

    page = write_participant_report(output_tree, "sub-01")
    seen = B.check_report(browser, page, B.artefact_dir(tmp_path) / "participant.png", (
        "header", "qc", "qc-t1w", "qc-bold", "qc-fd", "qc-pet", "structural", "functional",
        "pet", "task", "normative"))
    assert len(seen["images"]) == 9  # every figure, the dynamic-PET fit curves included
    assert "<script>alert(1)</script>" in seen["text"]  # shown as text
    assert "research measurement, not a diagnosis" in seen["text"]


def test_group_reports_in_chromium(browser, group_runs, tmp_path):
    shots = B.artefact_dir(tmp_path)
    for name, page in group_runs.items():
        seen = B.open_report(browser, page, shots / f"group_{name}.png")
        assert seen["console"] == [] and seen["failed"] == [] and seen["dialogs"] == []
        assert seen["requests"] == [page.as_uri()]
        assert "failures" in seen["sections"]
        assert all(c and w > 0 for c, w, _ in seen["images"])
        shot = shots / f"group_{name}.png"
        assert shot.stat().st_size > 10_000
        if name == "ok":  # ComBat ran: the before/after figure and the mega/meta forest
            assert any("harmonisation before and after" in h for h in seen["headings"])
            assert len(seen["images"]) >= 1
            B.assert_not_blank(shot)
    assert "FAILED" in B.open_report(browser, group_runs["failed"], shots / "again.png")["text"]
