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

__all__ = ["process_participant", "run_group", "run_participant"]

log = get_logger("pipeline")


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
    from danemap.markers.base import families

    if sessions is None:
        sessions = list(discover(bids_dir, participant_label=[label],
                                 session_label=config.run.session_label or None,
                                 derivatives=config.run.derivatives or None))
    writer = DerivativesWriter(output_dir, config=config, bids_dir=bids_dir, describe=False)
    atlas = atlas_from_setting(config.run.atlas, config.run.resolution)
    files: list[str] = []
    excluded: list[str] = []
    counts: dict[str, int] = {}
    enabled = families(config.run.markers or None)
    for family in enabled:
        for session in sessions:
            for item in family.inputs(session, config):
                result = family.compute(item, atlas, config)
                files += [str(p) for p in family.write(result, writer, item, atlas.name)]
                counts[family.name] = counts.get(family.name, 0) + 1
                if family.qc_excluded(result):
                    excluded.append(family.describe_item(item))
    if not counts:
        unclaimed = _unclaimed(sessions, enabled)
        raise InputError(
            f"{label}: " + "; ".join(f.missing_input_hint() for f in enabled)
            + (f"; found only data for {', '.join(unclaimed)}, which no marker family of "
               f"danemap {_version()} computes" if unclaimed else "")
        )
    return {"files": files, "runs": sum(counts.values()), "items": counts,
            "qc_excluded": excluded}


def _unclaimed(sessions: Sequence[SessionData], enabled: Sequence[Any]) -> list[str]:
    """Name the ``datatype/suffix`` pairs ``sessions`` have that no enabled family consumes."""
    claimed = {m for family in enabled for m in family.modalities}
    return sorted({m for session in sessions for m in session.modalities} - claimed)


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
                       session_label=config.run.session_label or None,
                       derivatives=config.run.derivatives or None)
    writer = DerivativesWriter(output_dir, config=config, bids_dir=bids_dir)
    sessions = {sub: [item for (s, _), item in dataset.data.items() if s == sub]
                for sub in dataset.participants}
    from danemap.markers.base import families

    enabled = families(config.run.markers or None)
    unclaimed = _unclaimed(list(dataset.data.values()), enabled)
    if unclaimed:
        log.warning("the dataset has data for %s, which no marker family of danemap %s "
                    "computes (see README, 'What is measured')", ", ".join(unclaimed),
                    _version())
    job = functools.partial(_job, bids_dir=str(bids_dir), output_dir=str(output_dir),
                            config=config, sessions=sessions)
    logs = writer.root / "logs"
    participant_hash = config.participant_sha256(
        [f.config_section for f in enabled if f.config_section])
    outcomes = run_many(job, dataset.participants, backend=config.run.backend,
                        n_jobs=config.run.n_jobs,
                        # keyed by the participant level's settings only: changing
                        # [stats] does not recompute anyone
                        state_dir=logs / f"done-{participant_hash[:12]}",
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
        "runs": {"Description": "Work items processed, every marker family together "
                              "(a functional run, an image)"},
        "qc_excluded_runs": {"Description": "Work items a family's quality control flags for "
                                          "exclusion (e.g. motion)"},
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
    from danemap.atlas import atlas_from_setting, atlas_name
    from danemap.io import DerivativesWriter, atomic_write_text, read_participants, write_json
    from danemap.markers.base import families
    from danemap.report.group import FAILURES, MANIFEST, write_group_report
    from danemap.report.participant import write_participant_reports
    from danemap.stats.pipeline import run_stats
    from danemap.stats.reference import resolve_reference

    participants = Path(bids_dir) / "participants.tsv"
    if not participants.is_file():
        raise InputError(f"{participants}: the group level needs participants.tsv "
                         "(participant_id, group, covariates)")
    # every problem of the table (ids, duplicates, unknown groups, ages) in one error
    ptable = read_participants(participants, groups=(config.stats.case, config.stats.control),
                               group_column=config.stats.group)
    writer = DerivativesWriter(output_dir, config=config, bids_dir=bids_dir, describe=False)
    group_dir = writer.root / "group"
    tables = [table for family in families(config.run.markers or None)
              for table in family.collect(writer.root, atlas_name(config.run.atlas), config)]
    write_json(group_dir / MANIFEST, {"tables": [
        {"name": t.name, "title": t.title, "kind": t.kind, "analyses": list(t.analyses),
         "family": t.family, "path": t.path.name, "icv": t.icv or None,
         "moderator": t.moderator or None} for t in tables]})
    # resolved only when a table asks for the comparison (a bad path fails no other table)
    reference = resolve_reference(config.stats.reference, config.stats.reference_age,
                                  start=Path.cwd()) if any(
        "reference" in t.analyses for t in tables) else None
    atomic_write_text(group_dir / "config.toml", config.to_toml())
    # the configured atlas's networks reach NBS (a user atlas brings its own)
    networks = atlas_from_setting(config.run.atlas, config.run.resolution).networks
    summaries: dict[str, dict[str, Any]] = {}
    failed: list[str] = []
    table_errors: dict[str, str] = {}  # the report lists them (group/failures.json)
    for table in tables:
        if not table.analysed:
            continue
        name = table.name
        log.info("group statistics on %s", table.path.name)
        cfg = config
        if table.moderator and not config.stats.glm.moderator \
                and table.moderator in ptable.columns:
            cfg = config.updated({"stats": {"glm": {"moderator": table.moderator}}})
        try:
            summaries[name] = run_stats(table.path, participants, group_dir / "stats" / name,
                                        config=cfg, analyses=table.analyses,
                                        networks=networks, on_error="record",
                                        icv_feature=table.icv or None,
                                        reference=reference if "reference" in table.analyses
                                        else None)["summary"]
        except DanemapError as exc:  # one unusable table must not stop the others
            log.error("group statistics on %s failed: %s", table.path.name, exc)
            failed.append(name)
            table_errors[name] = str(exc)
            continue
        # analyses that failed inside a table are recorded there (on_error="record"),
        # and fail the run just as a failed table does
        failed += [f"{name}/{a}" for a in summaries[name].get("errors", {})]
    write_json(group_dir / FAILURES, {"tables": table_errors})
    report = write_group_report(group_dir, summaries,
                                titles={t.name: t.title for t in tables})
    log.info("group report: %s", report)
    if not (any(writer.root.glob("sub-*")) or (writer.root / "logs"
                                                / "participant_status.tsv").is_file()):
        log.info("no participant outputs in %s: no participant reports", writer.root)
    else:
        log.info("writing the participant reports")
        try:
            reports = write_participant_reports(writer.root)
            log.info("participant reports: %d in %s (%s ... %s)", len(reports), writer.root,
                     reports[0].name, reports[-1].name)
        except DanemapError as exc:  # the group results stand; the reports are said failed
            log.error("participant reports failed: %s", exc)
            failed.append("participant reports")
    if failed:
        log.error("group level: failed: %s (see each table's summary.json for the errors)",
                  ", ".join(failed))
    return 1 if failed else 0
