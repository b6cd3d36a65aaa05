"""Shared texts are written once."""

from __future__ import annotations


def test_one_disclaimer_for_the_report_and_the_statistics():
    from danemap._utils.text import DISCLAIMER
    from danemap.report import DISCLAIMER as REPORT
    from danemap.stats._tables import DISCLAIMER as STATS

    assert REPORT is DISCLAIMER and STATS is DISCLAIMER
    assert "not a diagnostic device" in DISCLAIMER
