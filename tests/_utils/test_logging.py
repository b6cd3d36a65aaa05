"""The console helpers of :mod:`danemap._utils.logging`: levels, the progress bar."""

from __future__ import annotations

import io
import logging
import re
import sys

import pytest

from danemap._utils.logging import SUMMARY, cli_logging, console_level, get_logger, progress


@pytest.mark.parametrize(("verbose", "quiet", "level"), [
    (0, False, SUMMARY), (1, False, logging.INFO), (2, False, logging.DEBUG),
    (5, False, logging.DEBUG), (0, True, logging.WARNING), (2, True, logging.WARNING),
])
def test_console_level(verbose, quiet, level):
    assert console_level(verbose, quiet) == level
    assert logging.INFO < SUMMARY < logging.WARNING


def test_progress_is_silent_off_a_terminal(capsys):
    assert list(progress(range(5), "work")) == [0, 1, 2, 3, 4]
    assert list(progress(iter(range(3)), "work", total=3, verbose=False)) == [0, 1, 2]
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err == ""


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_draws_elapsed_and_eta_on_stderr(monkeypatch):
    fake_err, fake_out = _Tty(), _Tty()
    monkeypatch.setattr(sys, "stderr", fake_err)
    monkeypatch.setattr(sys, "stdout", fake_out)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert list(progress([1, 2, 3], "Participants")) == [1, 2, 3]
    text = fake_err.getvalue()
    assert "Participants" in text and "3/3" in text
    assert "elapsed" in text and "remaining" in text
    assert re.search(r"\d:\d\d:\d\d", text)  # the time columns
    assert fake_out.getvalue() == ""  # never on stdout


def test_a_log_line_during_the_bar_prints_whole_above_it(monkeypatch):
    fake_err = _Tty()
    monkeypatch.setattr(sys, "stderr", fake_err)
    monkeypatch.setattr(sys, "stdout", _Tty())
    monkeypatch.setenv("TERM", "xterm")
    with cli_logging(0):
        for i in progress(range(3), "Participants"):
            if i == 1:
                get_logger("test").warning("sub-02: a warning mid-run")
    text = fake_err.getvalue()
    line = re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ WARNING sub-02: a warning mid-run\n",
                     text)
    assert line, text
