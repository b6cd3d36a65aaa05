"""The BIDS-App levels: ``participant`` (markers per person) and ``group`` (statistics).

``run_participant`` discovers the dataset, then runs :func:`process_participant` for every
selected participant through :func:`danemap.engine.run_many` (failure isolation, resume,
local processes or Dask). ``run_group`` gathers the per-participant tables and runs the
statistics on each, then writes the group report.

Provenance: the level's own process writes ``dataset_description.json`` (its
``ConfigHash`` covers only result-changing settings, so every task of a SLURM array agrees)
and ``config.toml``; the group level writes its configuration to ``group/config.toml``.
Workers never rewrite either.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from danemap._utils.logging import get_logger
from danemap.config import Config
from danemap.errors import DanemapError, InputError

if TYPE_CHECKING:
    from danemap.engine import Outcome
    from danemap.io import SessionData

__all__ = ["GROUP_TABLES", "process_participant", "run_group", "run_participant"]

log = get_logger("pipeline")

#: Group tables (written by the participant outputs' collection) that the statistics run on:
#: every marker table; counts and QC tables are descriptions, not features. ALFF enters as
#: mALFF (scale-free, comparable across scanners); raw ``alff.tsv`` and ``zalff.tsv`` are
#: written and gathered but not analysed by default.
GROUP_TABLES = ("networks", "malff", "falff", "connectivity_corr",
                "connectivity_partialcorr", "connectivity_tangent")

#: Modalities found in a dataset that have no marker module yet (reported, never silent).
_NOT_BUILT = {"t1w": "structural volumes", "pet": "PET/SPECT SBR"}


def process_participant(label: str, bids_dir: str, output_dir: str, config: Config,
                        sessions: Sequence[SessionData] | None = None) -> dict[str, Any]:
    """Compute every available marker of one participant and write its derivatives.

    Parameters
    ----------
    label : str
        Participant label (``sub-01`` or ``01``).
    bids_dir, output_dir : str
        Input BIDS dataset and output folder (outputs go to ``output_dir/danemap``).
    config : Config
        Effective configuration.
    sessions : sequence of SessionData or None
        The participant's data as found by :func:`danemap.io.discover`; ``None``
        discovers it (convenient for single calls; the participant level passes it).

    Returns
    -------
    dict
        ``{"files": [...], "runs": n, "qc_excluded": [...]}``.

    Raises
    ------
    InputError
        When the participant has no usable input, or an input is malformed.
    """
    from danemap.atlas import atlas_from_setting
    from danemap.io import DerivativesWriter, discover
    from danemap.markers.functional import process_run, write_run

    if sessions is None:
        sessions = list(discover(bids_dir, participant_label=[label],
                                 session_label=config.run.session_label or None))
    writer = DerivativesWriter(output_dir, config=config, bids_dir=bids_dir, describe=False)
    atlas = atlas_from_setting(config.run.atlas, config.run.resolution)
    files: list[str] = []
    excluded: list[str] = []
    n_runs = 0
    for session in sessions:
        for run in session.runs:
            if run.preproc is None:
                continue
            if run.fallback:
                log.warning("%s: %s", label, run.fallback)
            ents = run.entities
            result = process_run(
                run.preproc.path, run.confounds.path if run.confounds else None, atlas,
                config=config.functional, mask=run.mask.path if run.mask else None,
                sidecar=run.preproc.metadata or None,
                max_bytes=config.run.max_nifti_gib * 2**30,
            )
            files += [str(p) for p in write_run(
                result, writer, session.participant, session=session.session,
                task=ents.get("task", "rest"), run=ents.get("run"), atlas=atlas.name)]
            n_runs += 1
            if result.qc.get("exclude"):
                excluded.append(run.preproc.path.name)
    if n_runs == 0:
        not_built = _not_built(sessions)
        raise InputError(
            f"{label}: no functional input; expected fMRIPrep "
            f"'*_space-MNI152NLin2009cAsym*_desc-preproc_bold.nii.gz' under "
            f"{bids_dir}/derivatives/fmriprep, or a 4D BOLD in MNI space with a "
            "'*_desc-confounds_timeseries.tsv' beside it"
            + (f"; found only data for {', '.join(not_built)}, whose markers are not built "
               f"yet in danemap {_version()}" if not_built else "")
        )
    return {"files": files, "runs": n_runs, "qc_excluded": excluded}


def _not_built(sessions: Sequence[SessionData]) -> list[str]:
    """Name the marker families that ``sessions`` have data for but danemap cannot compute."""
    return sorted({what for session in sessions for key, what in _NOT_BUILT.items()
                   if getattr(session, key)})


def _version() -> str:
    from danemap._version import __version__

    return __version__


def _job(label: str, bids_dir: str, output_dir: str, config: Config,
         sessions: dict[str, list[SessionData]]) -> dict[str, Any]:
    return process_participant(label, bids_dir, output_dir, config, sessions=sessions[label])


def run_participant(bids_dir: str | os.PathLike[str], output_dir: str | os.PathLike[str],
                    config: Config, verbose: bool = False) -> int:
    """Run the participant level over the selected participants.

    Parameters
    ----------
    bids_dir, output_dir : path-like
        Input BIDS dataset (never written to) and output folder.
    config : Config
        Effective configuration (participant selection, back-end, n_jobs, markers).
    verbose : bool
        Show a progress bar.

    Returns
    -------
    int
        0 when every participant succeeded, 1 when some failed (the others are complete).
    """
    from danemap.engine import run_many
    from danemap.io import DerivativesWriter, discover

    dataset = discover(bids_dir, participant_label=config.run.participant_label or None,
                       session_label=config.run.session_label or None)
    writer = DerivativesWriter(output_dir, config=config, bids_dir=bids_dir)
    sessions = {sub: [item for (s, _), item in dataset.data.items() if s == sub]
                for sub in dataset.participants}
    not_built = _not_built(list(dataset.data.values()))
    if not_built:
        log.warning("the dataset has data for %s; those markers are not built yet in "
                    "danemap %s (see README, 'What is measured')", ", ".join(not_built),
                    _version())
    job = functools.partial(_job, bids_dir=str(bids_dir), output_dir=str(output_dir),
                            config=config, sessions=sessions)
    logs = writer.root / "logs"
    outcomes = run_many(job, dataset.participants, backend=config.run.backend,
                        n_jobs=config.run.n_jobs,
                        state_dir=logs / f"done-{config.results_sha256()[:12]}",
                        description="participants", verbose=verbose,
                        dask_address=config.run.dask_address or None)
    path = _write_status(writer, outcomes)
    failed = [o for o in outcomes if o.status == "failed"]
    for o in failed:
        log.error("%s failed: %s", o.item, o.error)
    log.info("participant level: %d ok, %d resumed, %d failed; status in %s",
             sum(o.status == "ok" for o in outcomes),
             sum(o.status == "skipped" for o in outcomes), len(failed), path)
    return 1 if failed else 0


def _write_status(writer: Any, outcomes: Sequence[Outcome]) -> Path:
    """Record each outcome in ``logs/status/<sub>.json``; rebuild the status table from all.

    One file per participant keeps every outcome when participants run in separate
    processes or SLURM tasks; the table is rebuilt from every file present.
    """
    import pandas as pd

    from danemap.io import read_json, write_json

    folder = writer.root / "logs" / "status"
    for o in outcomes:
        if o.status == "skipped" and (folder / f"{o.item}.json").is_file():
            previous = read_json(folder / f"{o.item}.json", "participant status")
            if previous.get("status") == "ok":
                continue  # keep the record of the run that did the work
        runs = o.result or {}
        write_json(folder / f"{o.item}.json", {
            "participant_id": o.item, "status": o.status, "seconds": round(o.seconds, 2),
            "runs": runs.get("runs"), "qc_excluded_runs": len(runs.get("qc_excluded", [])),
            "error": o.error or None,
        })
    records = [read_json(p, "participant status") for p in sorted(folder.glob("*.json"))]
    status = pd.DataFrame.from_records(records, columns=[
        "participant_id", "status", "seconds", "runs", "qc_excluded_runs", "error"])
    path = writer.root / "logs" / "participant_status.tsv"
    writer.write_tsv(status, path, sidecar={
        "status": {"Description": "Outcome of the participant level",
                   "Levels": {"ok": "computed", "failed": "see the error column",
                              "skipped": "already done with these settings (resumed)"}},
        "seconds": {"Description": "Wall time", "Units": "s"},
        "runs": {"Description": "Functional runs processed"},
        "qc_excluded_runs": {"Description": "Runs flagged for exclusion by motion QC"},
        "error": {"Description": "Why the participant failed (n/a when it did not)"},
    })
    return path


def run_group(bids_dir: str | os.PathLike[str], output_dir: str | os.PathLike[str],
              config: Config, verbose: bool = False) -> int:
    """Run the group level: gather marker tables, run the statistics, write the report.

    Parameters
    ----------
    bids_dir, output_dir : path-like
        Input BIDS dataset (for ``participants.tsv``) and the participant-level output.
    config : Config
        Effective configuration (``[stats]`` section).
    verbose : bool
        Log progress.

    Returns
    -------
    int
        0 on success, 1 when the statistics of some table, or an analysis of one, failed
        (the others are written; the failed ones are logged as errors).
    """
    from danemap.atlas import atlas_name
    from danemap.io import DerivativesWriter, atomic_write_text, read_participants
    from danemap.markers.functional import collect_functional_group
    from danemap.report.group import write_group_report
    from danemap.stats.pipeline import StatsOptions, run_stats

    participants = Path(bids_dir) / "participants.tsv"
    if not participants.is_file():
        raise InputError(f"{participants}: the group level needs participants.tsv "
                         "(participant_id, group, covariates)")
    # every problem of the table (ids, duplicates, unknown groups, ages) in one error
    read_participants(participants, groups=(config.stats.case, config.stats.control),
                      group_column=config.stats.group)
    writer = DerivativesWriter(output_dir, config=config, bids_dir=bids_dir, describe=False)
    group_dir = writer.root / "group"
    tables = collect_functional_group(writer.root, group_dir,
                                      connectivity=config.functional.connectivity,
                                      atlas=atlas_name(config.run.atlas))
    atomic_write_text(group_dir / "config.toml", config.to_toml())
    options = StatsOptions(classify_permutations=config.stats.classify_permutations,
                           on_error="record")
    summaries: dict[str, dict[str, Any]] = {}
    failed: list[str] = []
    for name in GROUP_TABLES:
        if name not in tables:
            continue
        log.info("group statistics on %s", tables[name].name)
        try:
            summaries[name] = run_stats(tables[name], participants, group_dir / "stats" / name,
                                        config=config, analyses=_analyses_for(name),
                                        options=options)["summary"]
        except DanemapError as exc:  # one unusable table must not stop the others
            log.error("group statistics on %s failed: %s", tables[name].name, exc)
            failed.append(name)
            continue
        # analyses that failed inside a table are recorded there (on_error="record"),
        # and fail the run just as a failed table does
        failed += [f"{name}/{a}" for a in summaries[name].get("errors", {})]
    report = write_group_report(group_dir, summaries)
    log.info("group report: %s", report)
    if failed:
        log.error("group level: failed: %s (see each table's summary.json for the errors)",
                  ", ".join(failed))
    return 1 if failed else 0


def _analyses_for(table: str) -> tuple[str, ...]:
    """Choose the analyses: edge-level inference for connectivity, all for region tables.

    Connectivity tables get no classification: the tangent reference is fitted on every
    run, so a cross-validated classifier on it would see its test folds.
    """
    if table.startswith("connectivity"):
        return ("harmonize", "glm", "permutation", "nbs")
    return ("harmonize", "glm", "permutation", "symptoms", "normative", "classify")
