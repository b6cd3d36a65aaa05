"""The reports in a real headless browser (Debian chromium driven by Playwright).

Opens a participant report and the group report and checks: no console error, no request
at all beyond the file itself (so none can fail), every ``<img>`` decoded (natural width >
0), the required sections present, no script run from the data (no dialog), and a
full-page screenshot that is not blank. The screenshots are kept under ``tmp_path``
(their paths are printed). Under ``CI=true`` a missing chromium or playwright fails.
"""

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="module")
def browser():
    missing = []
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("the playwright package (pip install 'danemap[test]')")
    if not CHROMIUM.is_file() and not shutil.which("chromium"):
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    if missing:
        msg = "browser test needs " + " and ".join(missing)
        if _in_ci():
            pytest.fail(f"{msg}; CI=true requires the browser test to run")
        pytest.skip(msg)
    exe = str(CHROMIUM) if CHROMIUM.is_file() else shutil.which("chromium")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        yield b
        b.close()


def _open(browser, path: Path, shot: Path) -> dict:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    seen = {"console": [], "failed": [], "requests": [], "dialogs": []}
    page.on("console", lambda m: seen["console"].append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: seen["console"].append(str(e)))
    page.on("requestfailed", lambda r: seen["failed"].append(r.url))
    page.on("request", lambda r: seen["requests"].append(r.url))
    page.on("dialog", lambda d: (seen["dialogs"].append(d.message), d.dismiss()))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    seen["images"] = page.evaluate(
        "Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])")
    seen["sections"] = page.evaluate("Array.from(document.querySelectorAll('h2[id]'))"
                                     ".map(h => h.id)")
    seen["text"] = page.inner_text("body")
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    page.close()
    return seen


def _not_blank(shot: Path) -> None:
    import numpy as np
    from matplotlib.image import imread

    img = imread(str(shot))[..., :3]
    assert img.shape[0] > 900  # the full page, longer than the viewport
    dark = (img.mean(axis=2) < 0.5).mean()
    assert img.std() > 0.05 and dark > 0.005, (img.std(), dark)
    assert np.unique(img.reshape(-1, 3), axis=0).shape[0] > 50  # figures, not flat text


def _clean(seen: dict, page: Path) -> None:
    assert seen["console"] == []
    assert seen["failed"] == []
    assert seen["requests"] == [page.as_uri()]  # nothing but the page itself
    assert seen["dialogs"] == []  # no script from the data ran
    assert seen["images"], "no image"
    for complete, width, alt in seen["images"]:
        assert complete and width > 0, alt


def test_participant_report_in_chromium(browser, output_tree, tmp_path):
    from danemap.report.participant import write_participant_report

    page = write_participant_report(output_tree, "sub-01")
    seen = _open(browser, page, tmp_path / "participant.png")
    _clean(seen, page)
    assert len(seen["images"]) == 7
    for anchor in ("header", "qc", "qc-t1w", "qc-fd", "qc-pet", "structural", "functional",
                   "pet", "task", "normative"):
        assert anchor in seen["sections"], anchor
    assert "<script>alert(1)</script>" in seen["text"]  # shown as text
    assert "research measurement, not a diagnosis" in seen["text"]
    _not_blank(tmp_path / "participant.png")


def test_group_reports_in_chromium(browser, group_runs, tmp_path):
    for name, page in group_runs.items():
        seen = _open(browser, page, tmp_path / f"group_{name}.png")
        assert seen["console"] == [] and seen["failed"] == [] and seen["dialogs"] == []
        assert seen["requests"] == [page.as_uri()]
        assert "failures" in seen["sections"]
        assert all(c and w > 0 for c, w, _ in seen["images"])
        shot = tmp_path / f"group_{name}.png"
        assert shot.stat().st_size > 10_000
    assert "FAILED" in _open(browser, group_runs["failed"], tmp_path / "again.png")["text"]
