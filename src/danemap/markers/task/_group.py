"""The group task table: one row per participant, one column per contrast x region."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from danemap._utils.logging import get_logger
from danemap.errors import InputError

__all__ = ["collect_task"]

log = get_logger("markers.task")


def collect_task(derivatives_root: str | os.PathLike[str], out_group_dir: str | os.PathLike[str],
                 atlas: str = "danemap", task: str = "mid") -> Path | None:
    """Gather every participant's fixed-effects contrasts into ``group/task_<task>.tsv``.

    Parameters
    ----------
    derivatives_root : path-like
        ``OUT/danemap``.
    out_group_dir : path-like
        Where the table goes.
    atlas : str
        The ``atlas-`` entity of the per-participant files.
    task : str
        The task label.

    Returns
    -------
    Path or None
        The table (``participant_id`` [``session``] then ``<contrast>__<region>`` columns
        holding the fixed-effects ``effect``), or None when no participant has one.

    Raises
    ------
    InputError
        A per-participant table without the expected columns.
    """
    from danemap.io import parse_entities, read_tsv, table_sidecar, write_table

    root = Path(derivatives_root)
    pattern = f"sub-*_task-{task}_atlas-{atlas}_desc-contrasts_stats.tsv"
    files = sorted(root.glob(f"sub-*/func/{pattern}")) + sorted(
        root.glob(f"sub-*/ses-*/func/sub-*_ses-*_task-{task}_atlas-{atlas}"
                  "_desc-contrasts_stats.tsv"))
    if not files:
        return None
    rows = []
    with_ses = False
    for f in files:
        ents = parse_entities(f.name)
        if "run" in ents:
            continue
        table = read_tsv(f)
        need = ("contrast", "region", "effect")
        missing = [c for c in need if c not in table.columns]
        if missing:
            raise InputError(f"{f}: expected the columns {list(need)}, missing {missing}")
        row: dict[str, object] = {"participant_id": f"sub-{ents['sub']}"}
        if "ses" in ents:
            with_ses = True
            row["session"] = f"ses-{ents['ses']}"
        for r in table.itertuples(index=False):
            row[f"{r.contrast}__{r.region}"] = r.effect
        rows.append(row)
    df = pd.DataFrame(rows)
    if not with_ses and "session" in df.columns:
        df = df.drop(columns="session")
    out = Path(out_group_dir) / f"task_{task}.tsv"
    out.parent.mkdir(parents=True, exist_ok=True)
    cols = {c: "fixed-effects contrast estimate (percent signal change per unit "
               f"regressor) of {c.replace('__', ' in ')}" for c in df.columns
            if c not in ("participant_id", "session")}
    write_table(df, out, table_sidecar(df.columns, cols, {
        "Task": task, "Measure": "first-level GLM contrast effect (fixed effects over runs)"},
        where=out.name))
    log.info("task group table: %d participant(s), %d feature(s) -> %s", len(df),
             df.shape[1] - 1 - int(with_ses), out)
    return out
