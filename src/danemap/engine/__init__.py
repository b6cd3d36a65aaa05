"""Execution back-ends for the participant step: local processes or a Dask cluster.

The engine knows nothing about modalities: it runs a picklable function once per
item (participant), isolates failures, resumes finished work, and shows progress.
"""

from __future__ import annotations

from danemap.engine._run import Outcome, run_many

__all__ = ["Outcome", "run_many"]
