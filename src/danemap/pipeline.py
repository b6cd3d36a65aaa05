"""The BIDS-App levels: ``participant`` (markers per person) and ``group`` (statistics).

``run_participant`` discovers the dataset, then runs :func:`process_participant` for every
selected participant through :func:`danemap.engine.run_many` (failure isolation, resume,
local processes or Dask). ``run_group`` gathers the per-participant tables and runs the
statistics on each, then writes the group report.

Reliability of the participant level:

* a participant's files are written under ``OUT/danemap/.partial/sub-<label>`` and the
  folder is promoted to ``OUT/danemap/sub-<label>`` only when complete, so no reader (group
  collectors, participant reports) ever sees a partial participant; what a killed run left
  there is removed by the next run;
* one failing participant never stops the others; ``logs/failures.tsv`` names each failed
  participant with the stage it failed in and the error;
* exit codes: 0 when every selected participant succeeded or was resumed, 1 when some
  failed, 2 when all failed (nothing done);
* each participant's status record (``logs/status/<sub>.json``) holds the hash of the
  participant-level settings its outputs were made with; the participant level accepts a
  rerun with other settings (a warning says the folder is now mixed), and the group level
  refuses a folder whose participants disagree, naming who has which settings.

Provenance: the level's own process writes ``dataset_description.json`` (its
``ConfigHash`` covers only result-changing settings, so every task of a SLURM array agrees)
and ``config.toml``; the group level writes its configuration to ``group/config.toml``.
Workers never rewrite either.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from danemap._utils.logging import SUMMARY, get_logger
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

    The participant's files are written out of sight (``OUT/danemap/.partial/sub-<label>``)
    and promoted to ``OUT/danemap/sub-<label>`` only when every marker is written (see
    :meth:`danemap.io.DerivativesWriter.staged`): a failure, or a kill, never leaves a
    partial participant folder visible, and the outputs of an earlier run stay as they
    were until the new ones replace them.

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
        ``{"files": [...], "runs": n, "items": {family: n}, "qc_excluded": [...]}``.

    Raises
    ------
    InputError
        When the participant has no usable input, or an input is malformed.
    Exception
        Any error is raised as it was, with the stage it happened in (``discover``,
        ``atlas``, ``<family>: <item>``, ``write: <family>: <item>``, ``promote``)
        attached as the attribute ``danemap_stage`` and as a note of the exception.
    """
    from danemap.atlas import atlas_from_setting
    from danemap.io import DerivativesWriter, discover
    from danemap.markers.base import families

    stage = "discover"
    written: list[Path] = []
    excluded: list[str] = []
    counts: dict[str, int] = {}
    try:
        if sessions is None:
            sessions = list(discover(bids_dir, participant_label=[label],
                                     session_label=config.run.session_label or None,
                                     derivatives=config.run.derivatives or None))
        stage = "output"
        writer = DerivativesWriter(output_dir, config=config, bids_dir=bids_dir,
                                   describe=False)
        stage = "atlas"
        atlas = atlas_from_setting(config.run.atlas, config.run.resolution)
        enabled = families(config.run.markers or None)
        with writer.staged(label):
            for family in enabled:
                for session in sessions:
                    stage = f"{family.name}: inputs of {_session_name(session)}"
                    for item in family.inputs(session, config):
                        what = family.describe_item(item)
                        stage = f"{family.name}: {what}"
                        result = family.compute(item, atlas, config)
                        stage = f"write: {family.name}: {what}"
                        written += [Path(p) for p in
                                    family.write(result, writer, item, atlas.name)]
                        counts[family.name] = counts.get(family.name, 0) + 1
                        stage = f"{family.name}: {what}"
                        if family.qc_excluded(result):
                            excluded.append(what)
            if not counts:
                stage = "discover"
                unclaimed = _unclaimed(sessions, enabled)
                raise InputError(
                    f"{label}: " + "; ".join(f.missing_input_hint(sessions) for f in enabled)
                    + (f"; found only data for {', '.join(unclaimed)}, which no marker "
                       f"family of danemap {_version()} computes" if unclaimed else "")
                )
            stage = "promote"
    except Exception as exc:
        if not hasattr(exc, "danemap_stage"):
            exc.danemap_stage = stage  # type: ignore[attr-defined]
            exc.add_note(f"danemap: participant {label}, stage: {stage}")
        raise
    return {"files": [str(writer.final_path(p)) for p in written],
            "runs": sum(counts.values()), "items": counts, "qc_excluded": excluded}


def _session_name(session: SessionData) -> str:
    return " ".join(str(x) for x in (session.participant, session.session) if x)


class _ParticipantFailure(DanemapError):
    """A participant's failure as the run records it: ``[stage] message``."""


#: ``[stage] message``, as :func:`_job` words a failure (the stage may be empty).
_STAGED_ERROR = re.compile(r"\[(?P<stage>[^\]\n]*)\] (?P<error>.*)", re.DOTALL)


def _split_error(error: str) -> tuple[str, str]:
    """Return ``(stage, message)`` of a failure recorded by :func:`_job`."""
    m = _STAGED_ERROR.fullmatch(error)
    return (m["stage"], m["error"]) if m else ("", error)


def _unclaimed(sessions: Sequence[SessionData], enabled: Sequence[Any]) -> list[str]:
    """Name the ``datatype/suffix`` pairs ``sessions`` have that no enabled family consumes."""
    claimed = {m for family in enabled for m in family.modalities}
    return sorted({m for session in sessions for m in session.modalities} - claimed)


def _version() -> str:
    from danemap._version import __version__

    return __version__


def _job(label: str, bids_dir: str, output_dir: str, config: Config,
         sessions: dict[str, list[SessionData]], logs: Path | None = None,
         settings_hash: str = "") -> dict[str, Any]:
    if logs is not None:
        _drop_other_markers(logs, label, settings_hash)
    try:
        return process_participant(label, bids_dir, output_dir, config,
                                   sessions=sessions[label])
    except Exception as exc:
        stage = getattr(exc, "danemap_stage", "")
        message = str(exc) if isinstance(exc, DanemapError) else f"{type(exc).__name__}: {exc}"
        raise _ParticipantFailure(f"[{stage}] {message}") from exc


def _marker_dir(logs: Path, settings_hash: str) -> Path:
    """Return the folder of the resume markers of one participant-level configuration."""
    return logs / f"done-{settings_hash[:12]}"


def _drop_other_markers(logs: Path, label: str, settings_hash: str) -> None:
    """Forget that ``label`` was done with other settings: its outputs are about to change.

    Without this, a participant done with settings A, then redone with B, would be skipped
    by a later run with A although its folder holds B's outputs.
    """
    keep = _marker_dir(logs, settings_hash)
    for marker in logs.glob(f"done-*/{label}.done.json"):
        if marker.parent != keep:
            with contextlib.suppress(FileNotFoundError):
                marker.unlink()


def run_participant(bids_dir: str | os.PathLike[str], output_dir: str | os.PathLike[str],
                    config: Config, verbose: bool = False) -> int:
    """Run the participant level over the selected participants.

    The atlas and the dataset are checked first, before anything is written. Each
    participant's outputs appear in ``OUT/danemap/sub-<label>`` only once complete (what a
    killed run left half-written under ``OUT/danemap/.partial`` is removed here); a
    participant already done with the same participant-level settings is skipped
    (resumed). Each outcome is recorded in ``logs/status/<sub>.json`` (with the hash of
    the settings its outputs were made with), and ``logs/participant_status.tsv`` and
    ``logs/failures.tsv`` (participant, stage, error) are rebuilt from those records.

    Participants may be rerun with other settings into the same output folder (as SLURM
    tasks run each participant separately, the participant level cannot tell a mistake
    from work in progress): a warning says when the folder then holds mixed settings, and
    the group level refuses it (see :func:`run_group`).

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
        0 when every selected participant succeeded or was already done (resumed); 1 when
        some failed (the others are complete); 2 when every selected participant failed
        (nothing done).

    Raises
    ------
    InputError
        Before anything is written, when the atlas setting or the dataset is unusable.
    """
    from danemap.atlas import atlas_from_setting
    from danemap.engine import run_many
    from danemap.io import DerivativesWriter, discover
    from danemap.markers.base import families

    # checked once, up front: a bad --atlas fails here, not once per participant
    atlas_from_setting(config.run.atlas, config.run.resolution)
    dataset = discover(bids_dir, participant_label=config.run.participant_label or None,
                       session_label=config.run.session_label or None,
                       derivatives=config.run.derivatives or None)
    writer = DerivativesWriter(output_dir, config=config, bids_dir=bids_dir)
    sessions = {sub: [item for (s, _), item in dataset.data.items() if s == sub]
                for sub in dataset.participants}
    enabled = families(config.run.markers or None)
    unclaimed = _unclaimed(list(dataset.data.values()), enabled)
    if unclaimed:
        log.warning("the dataset has data for %s, which no marker family of danemap %s "
                    "computes (see README, 'What is measured')", ", ".join(unclaimed),
                    _version())
    for sub in dataset.participants:
        if writer.recover(sub):
            log.info("%s: removed the partial outputs an interrupted run left in %s",
                     sub, writer.staging_dir(sub).parent)
    logs = writer.root / "logs"
    sections = [f.config_section for f in enabled if f.config_section]
    participant_hash = config.participant_sha256(sections)
    job = functools.partial(_job, bids_dir=str(bids_dir), output_dir=str(output_dir),
                            config=config, sessions=sessions, logs=logs,
                            settings_hash=participant_hash)
    outcomes = run_many(job, dataset.participants, backend=config.run.backend,
                        n_jobs=config.run.n_jobs,
                        # keyed by the participant level's settings only: changing
                        # [stats] does not recompute anyone
                        state_dir=_marker_dir(logs, participant_hash),
                        description="participants", verbose=verbose,
                        dask_address=config.run.dask_address or None,
                        memory_limit_gib=config.run.memory_limit_gib)
    settings = _settings(config, sections)
    path, records = _write_status(writer, outcomes, participant_hash, settings)
    failures = _write_failures(writer, records)
    failed = [o.item for o in outcomes if o.status == "failed"]
    n_ok = sum(o.status == "ok" for o in outcomes)
    n_resumed = sum(o.status == "skipped" for o in outcomes)
    shown = ", ".join(failed[:5]) + (f" and {len(failed) - 5} more" if len(failed) > 5 else "")
    log.log(SUMMARY, "participant level: %d ok, %d resumed, %d failed%s; status: %s",
            n_ok, n_resumed, len(failed), f" ({shown})" if failed else "", path)
    if failed:
        log.log(SUMMARY, "failures (participant, stage, error): %s", failures)
    if n_ok or n_resumed:
        log.log(SUMMARY, "participant outputs: %s", writer.root)
    mixed = _settings_groups(writer.root, records)
    if len(mixed) > 1:
        log.warning("%s; the group level will refuse this folder until they agree",
                    _describe_mixed(writer.root, mixed, records))
    if failed and not (n_ok or n_resumed):
        return 2
    return 1 if failed else 0


def _settings(config: Config, sections: Sequence[str]) -> dict[str, Any]:
    """Return what :meth:`Config.participant_sha256` hashes, as a flat ``key: value`` map."""
    import dataclasses

    flat: dict[str, Any] = {"run.atlas": config.run.atlas,
                            "run.resolution": config.run.resolution}
    for name in sorted(set(sections)):
        for key, value in dataclasses.asdict(getattr(config, name)).items():
            flat[f"{name}.{key}"] = value
    return flat


def _status_records(root: Path) -> dict[str, dict[str, Any]]:
    """Read every participant's status record (``logs/status/<sub>.json``), by participant."""
    from danemap.io import read_json

    folder = root / "logs" / "status"
    return {p.stem: read_json(p, "participant status") for p in sorted(folder.glob("*.json"))}


def _write_status(writer: Any, outcomes: Sequence[Outcome], settings_hash: str,
                  settings: Mapping[str, Any]) -> tuple[Path, dict[str, dict[str, Any]]]:
    """Record each outcome in ``logs/status/<sub>.json``; rebuild the status table from all.

    One file per participant keeps every outcome when participants run in separate
    processes or SLURM tasks; the table is rebuilt from every file present. A record's
    ``settings_sha256`` is that of the outputs in the participant's folder: the current
    settings when it succeeded or was resumed, those of an earlier run's outputs (kept)
    when it failed.
    """
    import pandas as pd

    from danemap.io import read_json, write_json

    folder = writer.root / "logs" / "status"
    for o in outcomes:
        record = folder / f"{o.item}.json"
        previous = read_json(record, "participant status") if record.is_file() else {}
        if o.status == "skipped" and previous.get("status") == "ok" \
                and previous.get("settings_sha256") == settings_hash:
            continue  # keep the record of the run that did the work
        runs = o.result or {}
        stage, error = _split_error(o.error) if o.status == "failed" else ("", "")
        kept = o.status == "failed" and writer.participant_dir(o.item).is_dir()
        write_json(record, {
            "participant_id": o.item, "status": o.status, "seconds": round(o.seconds, 2),
            "runs": runs.get("runs"),
            "qc_excluded_runs": None if o.status == "failed"
            else len(runs.get("qc_excluded", [])),
            "stage": stage or None, "error": error or None,
            "settings_sha256": (previous.get("settings_sha256") if kept else None)
            if o.status == "failed" else settings_hash,
            "settings": (previous.get("settings") if kept else None)
            if o.status == "failed" else dict(settings),
        })
    records = _status_records(writer.root)
    status = pd.DataFrame.from_records(list(records.values()), columns=[
        "participant_id", "status", "seconds", "runs", "qc_excluded_runs", "settings_sha256",
        "stage", "error"])
    for column in ("runs", "qc_excluded_runs"):  # counts: never written as 1.0
        status[column] = pd.to_numeric(status[column]).astype("Int64")
    status["settings_sha256"] = [h[:12] if isinstance(h, str) else None
                                 for h in status["settings_sha256"]]
    status = status.rename(columns={"settings_sha256": "settings"})
    path = writer.root / "logs" / "participant_status.tsv"
    writer.write_tsv(status, path, sidecar={
        "status": {"Description": "Outcome of the participant level",
                   "Levels": {"ok": "computed", "failed": "see the error column",
                              "skipped": "already done with these settings (resumed)"}},
        "seconds": {"Description": "Wall time", "Units": "s"},
        "runs": {"Description": "Work items processed, every marker family together "
                              "(a functional run, an image); n/a when failed"},
        "qc_excluded_runs": {"Description": "Work items a family's quality control flags for "
                                          "exclusion (e.g. motion); n/a when failed"},
        "settings": {"Description": "First 12 hex digits of the hash of the participant-level "
                                  "settings the participant's outputs were made with (the "
                                  "resume markers are in logs/done-<settings>); n/a when "
                                  "it has no outputs. The group level refuses a folder "
                                  "where they differ."},
        "stage": {"Description": "Where a failed participant stopped: discover, atlas, "
                               "'<family>: <input file>', 'write: <family>: <input file>', "
                               "promote (n/a when it did not fail)"},
        "error": {"Description": "Why the participant failed (n/a when it did not)"},
    })
    return path, records


def _write_failures(writer: Any, records: Mapping[str, Mapping[str, Any]]) -> Path:
    """Rebuild ``logs/failures.tsv`` (participant, stage, error) from the status records."""
    import pandas as pd

    table = pd.DataFrame.from_records(
        [r for r in records.values() if r.get("status") == "failed"],
        columns=["participant_id", "stage", "error"])
    path = writer.root / "logs" / "failures.tsv"
    writer.write_tsv(table, path, sidecar={
        "participant_id": "A participant whose last participant-level run failed",
        "stage": "Where it stopped: discover (its input), atlas, '<family>: <input file>' "
                 "(computing that family's markers from that file), 'write: <family>: "
                 "<input file>' (writing them), promote (making its folder visible); n/a "
                 "when unknown (e.g. a worker stopped from outside)",
        "error": "The error, as in the run log (which has the traceback)",
    })
    return path


def _settings_groups(root: Path, records: Mapping[str, Mapping[str, Any]]
                     ) -> dict[str, list[str]]:
    """Group the participants with outputs in ``root`` by the settings they were made with.

    Participants without a recorded settings hash (an output folder of an older danemap)
    are left out.
    """
    groups: dict[str, list[str]] = {}
    for sub in sorted(p.name for p in root.glob("sub-*") if p.is_dir()):
        digest = records.get(sub, {}).get("settings_sha256")
        if isinstance(digest, str) and digest:
            groups.setdefault(digest, []).append(sub)
    return groups


def _describe_mixed(root: Path, groups: Mapping[str, Sequence[str]],
                    records: Mapping[str, Mapping[str, Any]]) -> str:
    """Say which participants were made with which settings, and how they differ."""
    settings: dict[str, Mapping[str, Any]] = {
        digest: records[subs[0]].get("settings") or {} for digest, subs in groups.items()}
    keys = sorted({k for s in settings.values() for k in s})
    differ = [k for k in keys if len({repr(s.get(k)) for s in settings.values()}) > 1]
    parts = []
    for digest, subs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        what = ", ".join(f"{k}={settings[digest].get(k)!r}" for k in differ)
        names = ", ".join(subs[:10]) + (f" and {len(subs) - 10} more" if len(subs) > 10
                                        else "")
        parts.append(f"settings {digest[:12]}" + (f" ({what})" if what else "")
                     + f": {names}")
    return (f"{root}: the participants' outputs were made with different participant-level "
            f"settings (logs/status/sub-*.json, field settings_sha256): " + "; ".join(parts))


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

    Raises
    ------
    InputError
        Before anything is written: when the atlas setting or ``participants.tsv`` is
        unusable, or when the participants' outputs were made with different
        participant-level settings (e.g. one rerun with ``--denoise-strategy
        scrubbing``): the message lists which participants have which settings; rerun
        those with the settings of the others, or use a new output folder.
    """
    from danemap.atlas import atlas_from_setting, atlas_name
    from danemap.io import (
        DerivativesWriter,
        atomic_write_bytes,
        atomic_write_text,
        read_participants,
        write_json,
    )
    from danemap.markers.base import families
    from danemap.report.group import FAILURES, MANIFEST, write_group_report
    from danemap.report.participant import write_participant_reports
    from danemap.stats.pipeline import run_stats
    from danemap.stats.reference import resolve_reference

    # checked up front: a bad --atlas fails before any group file is written
    atlas = atlas_from_setting(config.run.atlas, config.run.resolution)
    participants = Path(bids_dir) / "participants.tsv"
    if not participants.is_file():
        raise InputError(f"{participants}: the group level needs participants.tsv "
                         "(participant_id, group, covariates)")
    # every problem of the table (ids, duplicates, unknown groups, ages) in one error
    ptable = read_participants(participants, groups=(config.stats.case, config.stats.control),
                               group_column=config.stats.group,
                               covariates=[*config.stats.covariates])
    writer = DerivativesWriter(output_dir, config=config, bids_dir=bids_dir, describe=False)
    records = _status_records(writer.root)
    mixed = _settings_groups(writer.root, records)
    if len(mixed) > 1:
        raise InputError(
            _describe_mixed(writer.root, mixed, records) + ". Group statistics need one set of "
            "settings: rerun the participant level of the others with the same settings "
            "(--participant-label ... and the same options or --config), or write the new "
            "settings to a new output folder")
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
    # the table the statistics used, kept with them: the group report is rebuilt from the
    # outputs alone (its harmonisation view needs the sites) even once the input is gone
    atomic_write_bytes(group_dir / "participants.tsv", participants.read_bytes())
    # the configured atlas's networks reach NBS (a user atlas brings its own)
    networks = atlas.networks
    summaries: dict[str, dict[str, Any]] = {}
    failed: list[str] = []
    table_errors: dict[str, str] = {}  # the report lists them (group/failures.json)
    analysed = [table for table in tables if table.analysed]
    for k, table in enumerate(analysed, 1):
        name = table.name
        log.log(SUMMARY, "group statistics %d/%d: %s (%s; %s)", k, len(analysed),
                table.title, table.path.name, ", ".join(table.analyses) or "no analyses")
        cfg = config
        if table.moderator and not config.stats.glm.moderator \
                and table.moderator in ptable.columns:
            cfg = config.updated({"stats": {"glm": {"moderator": table.moderator}}})
        try:
            summaries[name] = run_stats(table.path, participants, group_dir / "stats" / name,
                                        config=cfg, analyses=table.analyses,
                                        networks=networks, on_error="record",
                                        icv_feature=table.icv or None, progress=True,
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
    log.log(SUMMARY, "group report: %s", report)
    if not (any(writer.root.glob("sub-*")) or (writer.root / "logs"
                                                / "participant_status.tsv").is_file()):
        log.info("no participant outputs in %s: no participant reports", writer.root)
    else:
        log.info("writing the participant reports")
        try:
            reports = write_participant_reports(writer.root, n_jobs=config.run.n_jobs)
            log.log(SUMMARY, "participant reports: %d in %s (%s ... %s)", len(reports),
                    reports[0].parent, reports[0].name, reports[-1].name)
        except DanemapError as exc:  # the group results stand; the reports are said failed
            log.error("participant reports failed: %s", exc)
            failed.append("participant reports")
    if failed:
        log.error("group level: failed: %s (see each table's summary.json for the errors)",
                  ", ".join(failed))
    return 1 if failed else 0
