"""The BIDS-App levels: ``participant`` (markers per person) and ``group`` (statistics).

``run_participant`` discovers the dataset, then runs :func:`process_participant` for every
selected participant through :func:`danemap.engine.run_many` (failure isolation, resume,
local processes or Dask). ``run_group`` gathers the per-participant tables and runs the
statistics on each, then writes the group report.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from danemap._utils.logging import get_logger
from danemap.config import Config
from danemap.errors import InputError

__all__ = ["GROUP_TABLES", "process_participant", "run_group", "run_participant"]

log = get_logger("pipeline")

#: Group tables (written by the participant outputs' collection) that the statistics run on:
#: every marker table; counts and QC tables are descriptions, not features.
GROUP_TABLES = ("networks", "alff", "falff", "connectivity_corr", "connectivity_partialcorr",
                "connectivity_tangent")

#: Modalities found in a dataset that have no marker module yet (reported, never silent).
_NOT_BUILT = {"t1w": "structural volumes", "pet": "PET/SPECT SBR"}


def process_participant(label: str, bids_dir: str, output_dir: str,
                        config: Config) -> dict[str, Any]:
    """Compute every available marker of one participant and write its derivatives.

    Parameters
    ----------
    label : str
        Participant label (``sub-01`` or ``01``).
    bids_dir, output_dir : str
        Input BIDS dataset and output folder (outputs go to ``output_dir/danemap``).
    config : Config
        Effective configuration.

    Returns
    -------
    dict
        ``{"files": [...], "runs": n, "not_built": [...], "qc_excluded": [...]}``.

    Raises
    ------
    InputError
        When the participant has no usable input, or an input is malformed.
    """
    from danemap.atlas import load_atlas
    from danemap.io import DerivativesWriter, discover
    from danemap.markers.functional import process_run, write_run

    dataset = discover(bids_dir, participant_label=[label],
                       session_label=config.run.session_label or None)
    writer = DerivativesWriter(output_dir, config=config, bids_dir=bids_dir)
    atlas = load_atlas(config.run.resolution)
    files: list[str] = []
    not_built: set[str] = set()
    excluded: list[str] = []
    n_runs = 0
    for session in dataset:
        for key, what in _NOT_BUILT.items():
            if getattr(session, key):
                not_built.add(what)
        for run in session.runs:
            if run.preproc is None:
                continue
            ents = run.entities
            result = process_run(
                run.preproc.path, run.confounds.path if run.confounds else None, atlas,
                config=config.functional, mask=run.mask.path if run.mask else None,
                sidecar=run.preproc.metadata or None,
                max_bytes=config.run.max_nifti_gib * 2**30,
            )
            files += [str(p) for p in write_run(
                result, writer, session.participant, session=session.session,
                task=ents.get("task", "rest"), run=ents.get("run"))]
            n_runs += 1
            if result.qc.get("excluded"):
                excluded.append(str(run.preproc.path.name))
    if not_built:
        log.info("%s: found data for %s, markers not built yet", label,
                 ", ".join(sorted(not_built)))
    if n_runs == 0:
        raise InputError(
            f"{label}: no fMRIPrep '*_space-MNI152NLin2009cAsym*_desc-preproc_bold.nii.gz' "
            f"found under {bids_dir}/derivatives/fmriprep; nothing to compute"
        )
    return {"files": files, "runs": n_runs, "not_built": sorted(not_built),
            "qc_excluded": excluded}


def _version() -> str:
    from danemap._version import __version__

    return __version__


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
    import pandas as pd

    from danemap.engine import run_many
    from danemap.io import DerivativesWriter, discover

    dataset = discover(bids_dir, participant_label=config.run.participant_label or None,
                       session_label=config.run.session_label or None)
    writer = DerivativesWriter(output_dir, config=config, bids_dir=bids_dir)
    job = functools.partial(process_participant, bids_dir=str(bids_dir),
                            output_dir=str(output_dir), config=config)
    outcomes = run_many(job, dataset.participants, backend=config.run.backend,
                        n_jobs=config.run.n_jobs,
                        state_dir=writer.root / "logs" / f"done-{_resume_key(config)}",
                        description="participants", verbose=verbose)
    status = pd.DataFrame({
        "participant_id": [o.item for o in outcomes],
        "status": [o.status for o in outcomes],
        "seconds": [round(o.seconds, 2) for o in outcomes],
        "error": [o.error or None for o in outcomes],
    })
    path = writer.root / "logs" / "participant_status.tsv"
    writer.write_tsv(status, path, sidecar={
        "status": {"Description": "Outcome of the participant level",
                   "Levels": {"ok": "computed", "failed": "see the error column",
                              "skipped": "already done with this configuration (resumed)"}},
        "seconds": {"Description": "Wall time", "Units": "s"},
        "error": {"Description": "Why the participant failed (n/a when it did not)"},
    })
    not_built = sorted({m for o in outcomes if o.status == "ok" and o.result
                        for m in o.result["not_built"]})
    if not_built:
        log.warning("the dataset has data for %s; those markers are not built yet in "
                    "danemap %s (see README, 'What is measured')", ", ".join(not_built),
                    _version())
    failed = [o for o in outcomes if o.status == "failed"]
    for o in failed:
        log.error("%s failed: %s", o.item, o.error)
    log.info("participant level: %d ok, %d resumed, %d failed; status in %s",
             sum(o.status == "ok" for o in outcomes),
             sum(o.status == "skipped" for o in outcomes), len(failed), path)
    return 1 if failed else 0


def _resume_key(config: Config) -> str:
    """Hash of the settings that change results (not participant selection or back-end)."""
    import dataclasses

    neutral = dataclasses.replace(config.run, participant_label=[], session_label=[],
                                  n_jobs=1, backend="local")
    return dataclasses.replace(config, run=neutral).sha256()[:12]


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
        0 on success.
    """
    from danemap.io import DerivativesWriter
    from danemap.markers.functional import collect_functional_group
    from danemap.stats.pipeline import StatsOptions, run_stats

    participants = Path(bids_dir) / "participants.tsv"
    if not participants.is_file():
        raise InputError(f"{participants}: the group level needs participants.tsv "
                         "(participant_id, group, covariates)")
    writer = DerivativesWriter(output_dir, config=config, bids_dir=bids_dir)
    group_dir = writer.root / "group"
    tables = collect_functional_group(writer.root, group_dir)
    summaries: dict[str, dict[str, Any]] = {}
    for name in GROUP_TABLES:
        if name not in tables:
            continue
        log.info("group statistics on %s", tables[name].name)
        options = StatsOptions(classify_permutations=config.stats.classify_permutations,
                               on_error="record")
        summaries[name] = run_stats(tables[name], participants, group_dir / "stats" / name,
                                    config=config, analyses=_analyses_for(name),
                                    options=options)["summary"]
    from danemap.report.group import write_group_report

    report = write_group_report(group_dir, summaries)
    log.info("group report: %s", report)
    return 0


def _analyses_for(table: str) -> tuple[str, ...]:
    """Choose the analyses: edge-level inference for connectivity, all for region tables."""
    if table.startswith("connectivity"):
        return ("harmonize", "glm", "permutation", "nbs")
    return ("harmonize", "glm", "permutation", "symptoms", "normative", "classify")
