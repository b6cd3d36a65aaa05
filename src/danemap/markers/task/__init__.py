"""The task-fMRI marker family: Monetary Incentive Delay (MID) reward anticipation.

``read_events`` validates a run's BIDS ``*_events.tsv`` and maps its trial types to
conditions (:mod:`._events`); ``design_matrix`` and ``fit_glm`` are nilearn's
``FirstLevelModel`` design and AR(1) fit, vectorised (:mod:`._model`);
``roi_first_level`` fits them to region-mean series (the fast path) and
``process_task_run`` / ``process_task_runs`` take a run (or a participant's runs, with
fixed effects) from fMRIPrep BOLD, confounds and events to ROI contrasts and maps, using
the functional family's confound selection, censoring and region extraction
(:mod:`._compute`); ``collect_task`` writes ``group/task_<task>.tsv`` (:mod:`._group`).
:class:`TaskFamily` (:mod:`._family`) puts them behind the
:class:`danemap.markers.base.MarkerFamily` interface and registers itself on import.
"""

from __future__ import annotations

from danemap.markers.task._compute import (
    REPORT_FIRST,
    TaskResult,
    TaskRun,
    process_task_run,
    process_task_runs,
    roi_first_level,
    task_confounds,
)
from danemap.markers.task._events import (
    parse_conditions,
    parse_contrasts,
    read_events,
    validate_events,
)
from danemap.markers.task._family import TaskFamily, TaskItem, events_file, task_inputs
from danemap.markers.task._group import collect_task
from danemap.markers.task._model import (
    GlmFit,
    contrast_matrix,
    design_matrix,
    first_level,
    fit_glm,
    fixed_effects,
    hrf_kernel,
    mean_scale,
)

__all__ = [
    "REPORT_FIRST",
    "GlmFit",
    "TaskFamily",
    "TaskItem",
    "TaskResult",
    "TaskRun",
    "collect_task",
    "contrast_matrix",
    "design_matrix",
    "events_file",
    "first_level",
    "fit_glm",
    "fixed_effects",
    "hrf_kernel",
    "mean_scale",
    "parse_conditions",
    "parse_contrasts",
    "process_task_run",
    "process_task_runs",
    "read_events",
    "roi_first_level",
    "task_confounds",
    "task_inputs",
    "validate_events",
]
