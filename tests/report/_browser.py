"""Headless-chromium checks of a report, shared by tests/report/test_browser.py and
tests/test_demo.py (each loads it by its path: ``--import-mode=importlib`` puts no test
folder on ``sys.path``).

A report is opened with Playwright driving Debian's ``/usr/bin/chromium`` (no browser
download) and must show: no console error, no request beyond the file itself (so none can
fail), every ``<img>`` decoded (natural width > 0), the required sections, no dialog
(no script from the data ran), and a full-page screenshot that is not blank. The
screenshots are test artefacts: written under ``$DANEMAP_TEST_ARTEFACTS`` when it is set,
else under the test's ``tmp_path``, and their paths printed. Under ``CI=true`` a missing
chromium or playwright fails instead of skipping.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")


def in_ci() -> bool:
    """Return whether the tests run under CI (``CI=true``)."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def artefact_dir(tmp_path: Path) -> Path:
    """Return the folder for screenshots: ``$DANEMAP_TEST_ARTEFACTS`` or ``tmp_path``."""
    env = os.environ.get("DANEMAP_TEST_ARTEFACTS")
    out = Path(env) if env else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    return out


@contextmanager
def chromium() -> Iterator[Any]:
    """Yield a headless chromium (skip, or fail under CI, when it or playwright is absent)."""
    missing = []
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("the playwright package (pip install 'danemap[test]')")
    if not CHROMIUM.is_file() and not shutil.which("chromium"):
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    if missing:
        msg = "browser test needs " + " and ".join(missing)
        if in_ci():
            pytest.fail(f"{msg}; CI=true requires the browser test to run")
        pytest.skip(msg)
    exe = str(CHROMIUM) if CHROMIUM.is_file() else shutil.which("chromium")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def open_report(browser: Any, path: Path, shot: Path) -> dict[str, Any]:
    """Open a report, record what the page did, and save a full-page screenshot."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    seen: dict[str, Any] = {"console": [], "failed": [], "requests": [], "dialogs": []}
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
    seen["headings"] = page.evaluate("Array.from(document.querySelectorAll('h2'))"
                                     ".map(h => h.textContent)")
    seen["text"] = page.inner_text("body")
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    page.close()
    return seen


def assert_not_blank(shot: Path) -> None:
    """Assert that a full-page screenshot is longer than the viewport and not blank."""
    import numpy as np
    from PIL import Image

    # uint8 RGB, and distinct colours counted as packed 24-bit codes: a group report's
    # full page is about 1200 x 64000 pixels, on which float images and np.unique over
    # rows took minutes
    with Image.open(shot) as im:
        img = np.asarray(im.convert("RGB"))
    assert img.shape[0] > 900  # the full page, longer than the viewport
    grey = img.mean(axis=2, dtype=np.float32)
    dark = float((grey < 127.5).mean())
    spread = float(grey.std())
    assert spread > 0.05 * 255 and dark > 0.005, (spread, dark)
    code = (img[..., 0].astype(np.uint32) << 16) | (img[..., 1].astype(np.uint32) << 8) \
        | img[..., 2]
    n_colours = int(np.count_nonzero(np.bincount(code.ravel(), minlength=1 << 24)))
    assert n_colours > 50  # figures, not flat text


def assert_clean(seen: dict[str, Any], page: Path) -> None:
    """Assert no console error, no request but the page, no dialog, every image decoded."""
    assert seen["console"] == []
    assert seen["failed"] == []
    assert seen["requests"] == [page.as_uri()]  # nothing but the page itself
    assert seen["dialogs"] == []  # no script from the data ran
    assert seen["images"], "no image"
    for complete, width, alt in seen["images"]:
        assert complete and width > 0, alt


def check_report(browser: Any, page: Path, shot: Path,
                 sections: Sequence[str] = ()) -> dict[str, Any]:
    """Open ``page`` and run every check (clean, sections present, screenshot not blank).

    Parameters
    ----------
    browser : playwright Browser
        From :func:`chromium`.
    page : pathlib.Path
        The report.
    shot : pathlib.Path
        Where the screenshot goes.
    sections : sequence of str
        Section ids (``<h2 id>``) that must be present.

    Returns
    -------
    dict
        What the page did (``console``, ``requests``, ``images``, ``sections``, ``text``).
    """
    seen = open_report(browser, page, shot)
    assert_clean(seen, page)
    for anchor in sections:
        assert anchor in seen["sections"], anchor
    assert_not_blank(shot)
    return seen
