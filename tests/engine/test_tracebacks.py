"""Every failed worker's traceback comes back to the parent and is logged at debug level."""

from __future__ import annotations

import functools
import logging

import pytest

from danemap.engine import run_many
from danemap.errors import InputError


def _work(item):
    if item == "sub-02":
        raise InputError(f"{item}: broken input")
    return item


class _Keep(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_danemap_error_traceback_reaches_the_parent_log(n_jobs):
    logger = logging.getLogger("danemap")
    keep, level = _Keep(), logger.level
    logger.addHandler(keep)
    logger.setLevel(logging.DEBUG)
    try:
        out = run_many(functools.partial(_work), ["sub-01", "sub-02", "sub-03"], n_jobs=n_jobs,
                       verbose=False)
    finally:
        logger.removeHandler(keep)
        logger.setLevel(level)
    assert [o.status for o in out] == ["ok", "failed", "ok"]
    assert "Traceback (most recent call last)" in out[1].detail
    assert "in _work" in out[1].detail  # formatted in the worker, where it happened
    debug = [r.getMessage() for r in keep.records if r.levelno == logging.DEBUG]
    assert any(m.startswith("sub-02: worker traceback:\nTraceback") and "InputError" in m
               for m in debug)
