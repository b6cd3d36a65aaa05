"""The task-fMRI marker family: a participant-session's MID runs per work item."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from danemap._utils.logging import get_logger
from danemap.errors import InputError
from danemap.markers.base import GROUP_ANALYSES, GroupTable, MarkerFamily, register
from danemap.markers.functional._inputs import DEFAULT_SPACE, FuncRun, functional_runs

if TYPE_CHECKING:
    from danemap.config import Config
    from danemap.io import SessionData
    from danemap.markers.task._compute import TaskResult

__all__ = ["TaskFamily", "TaskItem", "events_file", "task_inputs"]

log = get_logger("markers.task")

_COLUMN_DOCS: dict[str, dict[str, Any]] = {
    "contrast": {"Description": "Contrast of the first-level model ([task] contrasts)"},
    "region": {"Description": "Atlas region (reward circuit first: NAcc, caudate, putamen, "
                              "VTA, mPFC, OFC)"},
    "effect": {"Description": "Contrast estimate", "Units": "percent signal change per unit "
                                                            "of HRF-convolved regressor"},
    "variance": {"Description": "Variance of the contrast estimate"},
    "t": {"Description": "t statistic, effect / sqrt(variance)"},
    "dof": {"Description": "Residual degrees of freedom (summed over runs for fixed effects)"},
    "n_runs": {"Description": "Runs combined by fixed effects"},
}


@dataclass
class TaskItem:
    """One participant-session's runs of the task, each with its events file."""

    session: Any
    runs: list[FuncRun]
    events: list[Path] = field(default_factory=list)


def events_file(session: SessionData, run: FuncRun) -> Path:
    """Find a run's raw BIDS ``*_events.tsv``.

    Looked for beside the raw BOLD (same stem), then in the raw ``func`` folder by the
    run's entities, then at the dataset root (``task-<task>[_run-<n>]_events.tsv``,
    BIDS inheritance).

    Parameters
    ----------
    session : SessionData
        The participant-session.
    run : FuncRun
        The run.

    Returns
    -------
    Path

    Raises
    ------
    InputError
        When no events file exists (the places looked at are named).
    """
    ents = run.entities
    sub = session.participant
    parts = [sub]
    if session.session:
        parts.append(session.session)
    parts.append(f"task-{ents.get('task', '')}")
    if ents.get("run"):
        parts.append(f"run-{ents['run']}")
    name = "_".join(parts) + "_events.tsv"
    tried: list[Path] = []
    if run.bold is not None:
        stem = run.bold.path.name.split(".")[0].removesuffix("_bold")
        tried.append(run.bold.path.with_name(f"{stem}_events.tsv"))
    if session.root is not None:
        folder = session.root / sub / (session.session or "") / "func"
        tried.append(folder / name)
        top = [f"task-{ents.get('task', '')}"] + ([f"run-{ents['run']}"] if ents.get("run")
                                                   else [])
        tried.append(session.root / ("_".join(top) + "_events.tsv"))
    for p in tried:
        if p.is_file():
            return p
    raise InputError(f"{sub}: task run {run.preproc.path.name if run.preproc else name} has "
                     f"no events file; expected {name} (looked at "
                     f"{', '.join(str(p) for p in tried) or 'nothing: no dataset root'})")


def task_inputs(session: SessionData, task: str = "mid",
                space: str = DEFAULT_SPACE) -> list[TaskItem]:
    """Return the session's work item: every run of ``task`` with a BOLD and its events.

    Parameters
    ----------
    session : SessionData
        The participant-session.
    task : str
        The task label.
    space : str
        Template space of the fMRIPrep outputs.

    Returns
    -------
    list of TaskItem
        Empty when the session has no run of the task, else one item.

    Raises
    ------
    InputError
        A run without an events file.
    """
    runs = [r for r in functional_runs(session, space)
            if r.entities.get("task") == task and r.preproc is not None]
    if not runs:
        return []
    return [TaskItem(session, runs, [events_file(session, r) for r in runs])]


@register
class TaskFamily(MarkerFamily):
    """MID reward anticipation: first-level GLM contrasts per region, fixed effects over runs.

    Attributes
    ----------
    space : str
        Template space of the fMRIPrep outputs read.
    """

    name = "task"
    config_section = "task"
    modalities = ("func/bold",)
    space: ClassVar[str] = DEFAULT_SPACE

    def inputs(self, session: SessionData, config: Config) -> list[Any]:
        """Return the session's task runs (one work item) with their events files."""
        return task_inputs(session, config.task.task, self.space)

    def describe_item(self, item: TaskItem) -> str:
        """Name the item by its participant, session and task."""
        ses = f" {item.session.session}" if item.session.session else ""
        task = item.runs[0].entities.get("task", "")
        return f"{item.session.participant}{ses} task-{task} ({len(item.runs)} run(s))"

    def compute(self, item: TaskItem, atlas: Any, config: Config) -> TaskResult:
        """Fit every run at the region level (voxel-wise when asked); fixed effects."""
        from danemap.markers.functional._family import _tr_sidecar
        from danemap.markers.task._compute import process_task_runs

        runs = []
        for run, ev in zip(item.runs, item.events, strict=True):
            if run.fallback:
                log.warning("%s: %s", item.session.participant, run.fallback)
            assert run.preproc is not None  # task_inputs keeps runs with an image only
            runs.append({"bold": run.preproc.path, "events": ev,
                         "confounds": run.confounds.path if run.confounds else None,
                         "mask": run.mask.path if run.mask else None,
                         "sidecar": run.preproc.metadata or None,
                         "sidecar_name": _tr_sidecar(run.preproc),
                         "run": run.entities.get("run")})
        return process_task_runs(runs, atlas, config.task, config.functional,
                                 max_bytes=config.run.max_nifti_gib * 2**30)

    def write(self, result: TaskResult, writer: Any, item: TaskItem,
              atlas_name: str) -> list[Path]:
        """Write the contrasts tables (fixed effects; per run when several) and the maps."""
        from danemap.io import write_nifti

        session = item.session
        sub, ses = session.participant, session.session
        task = item.runs[0].entities.get("task", "mid")
        sources = [str(r.preproc.path) for r in item.runs if r.preproc is not None] + [
            str(e) for e in item.events]
        written: list[Path] = []
        path = writer.path(sub, "func", "stats", ".tsv", ses=ses, task=task,
                           atlas=atlas_name, desc="contrasts")
        docs = {k: v for k, v in _COLUMN_DOCS.items() if k in result.table.columns}
        docs["_metadata"] = {**result.meta, "Sources": sources}
        written.append(writer.write_tsv(result.table, path, sidecar=docs))
        if len(result.runs) > 1:
            for lab, run in zip(result.run_labels, result.runs, strict=True):
                rp = writer.path(sub, "func", "stats", ".tsv", ses=ses, task=task, run=lab,
                                 atlas=atlas_name, desc="contrasts")
                rdocs = {k: v for k, v in _COLUMN_DOCS.items() if k in run.table.columns}
                rdocs["_metadata"] = {"Run": lab, "QC": run.qc}
                written.append(writer.write_tsv(run.table, rp, sidecar=rdocs))
        for (contrast, stat), img in sorted(result.maps.items()):
            base = writer.path(sub, "func", "statmap", ".nii.gz", ses=ses, task=task,
                               space=DEFAULT_SPACE, atlas=None if not result.region_maps
                               else atlas_name, desc=_camel(contrast))
            out = base.with_name(base.name.replace("_statmap.nii.gz",
                                                   f"_stat-{stat}_statmap.nii.gz"))
            written.append(write_nifti(img, out))
            writer.write_json(out.with_name(out.name.replace(".nii.gz", ".json")), {
                "Contrast": contrast, "Statistic": stat,
                "Description": ("each atlas region holds its region-level estimate"
                                if result.region_maps else "voxel-wise first-level estimate "
                                "(fixed effects over runs)"),
                "Sources": sources})
        return written

    def qc_excluded(self, result: TaskResult) -> bool:
        """Tell whether motion QC flags every run for exclusion."""
        return bool(result.runs) and all(bool(r.qc.get("exclude")) for r in result.runs)

    def missing_input_hint(self, sessions: Sequence[SessionData] = ()) -> str:
        """Say which task inputs the family looks for."""
        return ("no task input; expected fMRIPrep '*_task-<task>_space-"
                f"{self.space}*_desc-preproc_bold.nii.gz' with its confounds, and the raw "
                "'*_task-<task>_events.tsv'")

    def collect(self, out_root: Path, atlas_name: str, config: Config) -> list[GroupTable]:
        """Write ``group/task_<task>.tsv`` (one row per participant)."""
        from danemap.markers.task._group import collect_task

        task = config.task.task
        path = collect_task(out_root, out_root / "group", atlas_name, task)
        if path is None:
            return []
        return [GroupTable(name=f"task_{task}", path=path,
                           title=f"Task fMRI ({task}): first-level contrast estimates",
                           kind="region", analyses=GROUP_ANALYSES, family=self.name)]



def _camel(name: str) -> str:
    """``gain_minus_neutral`` -> ``gainMinusNeutral`` (a BIDS label)."""
    head, *rest = [p for p in name.split("_") if p]
    return head + "".join(p[:1].upper() + p[1:] for p in rest)
