"""Group PET tables: one row per participant, one column per region, one table per tracer.

A static tracer's table holds the SBR of each region (partial-volume corrected by the
configured ``[pet] pvc`` when every participant has it, else uncorrected for everyone, with a
warning), then the putamen/caudate ratio and asymmetry columns; a dynamic tracer's holds the
BP_ND of ``[pet] map_model``. With one tracer in the cohort the table is ``group/pet.tsv``,
else ``group/pet_<trc>.tsv`` each (``pet_<trc>_<sbr|bpnd>.tsv`` when a tracer has both).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from danemap._utils.logging import get_logger
from danemap.errors import InputError

__all__ = ["collect_pet"]

log = get_logger("markers.pet")

_RATIOS = ("PC_ratio", "asymmetry_index")


def _column(measure: str, region: str, hemi: Any) -> str:
    name = region
    if isinstance(hemi, str) and hemi in ("L", "R") and not region.endswith(f"_{hemi}"):
        name = f"{region}_{hemi}"
    return name if measure not in _RATIOS else f"{measure}_{name}"


def _read(path: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    from danemap.io import parse_entities, read_tsv

    table = read_tsv(path)
    need = ("region", "hemisphere", "measure", "value", "method")
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise InputError(f"{path}: expected the columns {list(need)}, missing {missing}")
    return table, parse_entities(path.name)


def _row(table: pd.DataFrame, ents: dict[str, str], measures: tuple[str, ...],
         method: str) -> dict[str, Any]:
    keep = table[table["measure"].isin(measures) & (table["method"] == method)]
    row: dict[str, Any] = {"participant_id": f"sub-{ents['sub']}", "session": ents.get("ses")}
    for r in keep.itertuples(index=False):
        row[_column(str(r.measure), str(r.region), r.hemisphere)] = r.value
    return row


def collect_pet(derivatives_root: str | os.PathLike[str], out_group_dir: str | os.PathLike[str],
                atlas: str = "danemap", pvc: str = "gtm", model: str = "srtm"
                ) -> dict[str, tuple[Path, str]]:
    """Gather every participant's PET table into one group table per tracer.

    Parameters
    ----------
    derivatives_root : path-like
        ``OUT/danemap``.
    out_group_dir : path-like
        Where the tables go.
    atlas : str
        The atlas entity of the per-participant files.
    pvc : str
        ``[pet] pvc``: the method of a static tracer's SBR columns when present.
    model : str
        ``[pet] map_model``: the model of a dynamic tracer's BP_ND columns.

    Returns
    -------
    dict
        Table name -> (path, title); empty when no participant has a PET table.
    """
    from danemap.io import table_sidecar, write_table

    root = Path(derivatives_root)
    files = []
    for desc in ("sbr", "bpnd"):
        pattern = f"*_atlas-{atlas}_desc-{desc}_stats.tsv"
        files += sorted(root.glob(f"sub-*/pet/{pattern}"))
        files += sorted(root.glob(f"sub-*/ses-*/pet/{pattern}"))
    # one table per tracer and kind (static SBR, dynamic BP_ND), one method per table
    groups: dict[tuple[str, str], list[tuple[pd.DataFrame, dict[str, str]]]] = {}
    for f in files:
        table, ents = _read(f)
        groups.setdefault((ents.get("trc", "unknown"), ents.get("desc", "")), []).append(
            (table, ents))
    out: dict[str, tuple[Path, str]] = {}
    for (trc, desc), items in sorted(groups.items()):
        measures: tuple[str, ...]
        if desc == "sbr":
            have = [pvc in set(t["method"].astype(str)) for t, _ in items]
            method = pvc if all(have) else "uncorrected"
            if any(have) and not all(have):
                log.warning("pet %s: %d of %d participants have no %s SBR; the group table "
                            "holds the uncorrected SBR of everyone", trc, len(have) - sum(have),
                            len(have), pvc)
            measures, what = ("SBR", *_RATIOS), f"SBR ({method})"
        else:
            method, measures, what = model, ("BPND",), f"BP_ND ({model})"
        rows = [_row(t, e, measures, method) for t, e in items]
        name = "pet" if len(groups) == 1 else f"pet_{trc}" + (
            f"_{desc}" if sum(k[0] == trc for k in groups) > 1 else "")
        df = pd.DataFrame(rows)
        if df["session"].isna().all():
            df = df.drop(columns="session")
        path = Path(out_group_dir) / f"{name}.tsv"
        cols = {c: f"{what} of {c}" for c in df.columns
                if c not in ("participant_id", "session")}
        write_table(df, path, table_sidecar(df.columns, cols, {"Tracer": trc, "Measure": what},
                                            where=path.name))
        out[name] = (path, f"{trc}: regional {what}")
    return out
