"""Group volume tables, gathered from every participant's volume table.

FreeSurfer-style inputs (aseg.stats, SynthSeg, dseg) and the raw-T1w path do not measure
the same quantity, so they never share a table:

* ``group/volumes.tsv``: the FreeSurfer-style participants, one column per ENIGMA-ADHD
  structure under FreeSurfer's name (``Left-Caudate``; the like-for-like set compared
  with ENIGMA), plus ``ICV``;
* the raw-T1w participants, one column per atlas region plus ``ICV``, in
  ``group/volumes.tsv`` when the cohort has no FreeSurfer-style participant, else in
  ``group/volumes_atlas.tsv``.

Each table's sidecar records the methods its rows come from; a table that mixes methods
(aseg.stats and SynthSeg, say) says so in a warning.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from danemap._utils.logging import get_logger
from danemap.errors import DanemapWarning, InputError
from danemap.markers.structural._lut import ENIGMA_FREESURFER
from danemap.markers.structural._volumes import RAW_T1W_CAUTION

__all__ = ["ENIGMA_COLUMNS", "collect_volumes"]

log = get_logger("markers.structural")

#: ENIGMA-ADHD structure -> its group-table column, FreeSurfer 7's aseg name
#: (``Lcaud`` -> ``Left-Caudate``), in ENIGMA's order.
ENIGMA_COLUMNS: dict[str, str] = {
    enigma: name for name, enigma in ENIGMA_FREESURFER.items() if "Proper" not in name}


def _read(path: Path) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """Return (identity + volumes, sidecar metadata, FreeSurfer-style) of one table."""
    from danemap.io import parse_entities, read_json, read_tsv

    table = read_tsv(path)
    for col in ("region", "volume_mm3"):
        if col not in table.columns:
            raise InputError(f"{path}: expected a {col!r} column, found {list(table.columns)}")
    side = path.with_suffix(".json")
    meta = read_json(side, "volume table sidecar") if side.is_file() else {}
    ents = parse_entities(path.name)
    row: dict[str, Any] = {"participant_id": f"sub-{ents['sub']}", "session": ents.get("ses")}
    # the sidecar says; without it, the rows' own method does
    like_fs = bool(meta.get("LikeFreeSurfer", "method" in table.columns
                            and (table["method"].iloc[:-1] != "ants-atlas").all()))
    for r in table.itertuples(index=False):
        name = str(r.region)
        if like_fs and name != "ICV":
            enigma = str(getattr(r, "enigma", ""))
            if enigma not in ENIGMA_COLUMNS:
                continue  # only the like-for-like ENIGMA structures reach the group table
            name = ENIGMA_COLUMNS[enigma]
        row[name] = float(r.volume_mm3) if pd.notna(r.volume_mm3) else None
    return row, meta, like_fs


def collect_volumes(derivatives_root: str | os.PathLike[str],
                    out_group_dir: str | os.PathLike[str],
                    atlas: str = "danemap") -> dict[str, tuple[Path, bool]]:
    """Gather every participant's volumes into group tables.

    Parameters
    ----------
    derivatives_root : path-like
        ``OUT/danemap``.
    out_group_dir : path-like
        Where the tables go (``OUT/danemap/group``).
    atlas : str
        The atlas entity of the per-participant files.

    Returns
    -------
    dict
        Table name (``"volumes"``, ``"volumes_atlas"``) -> (path, whether its volumes are
        FreeSurfer-style); empty when no participant has a volume table.
    """
    root = Path(derivatives_root)
    files = sorted(root.glob(f"sub-*/anat/*_atlas-{atlas}_desc-volumes_stats.tsv")) + sorted(
        root.glob(f"sub-*/ses-*/anat/*_atlas-{atlas}_desc-volumes_stats.tsv"))
    kinds: dict[bool, list[tuple[dict[str, Any], str]]] = {True: [], False: []}
    quick: list[str] = []
    for f in files:
        row, meta, like_fs = _read(f)
        method = str(meta.get("Method", "unknown"))
        prov = meta.get("Provenance") or {}
        space = prov.get("atlas_space")
        # the quick mode before CC SyN (Mattes MI, also when a sidecar predates the
        # schedule's metric field) reversed a validation group difference
        if prov.get("mode") == "quick" and (prov.get("schedule") or {}).get(
                "syn_metric", "mattes") != "CC":
            quick.append(str(row["participant_id"]))
        # the raw-T1w path's atlas space changes the volumes as much as a method does
        kinds[like_fs].append((row, f"{method} (atlas space {space})" if space else method))
    if quick:
        named = ", ".join(quick[:5]) + (", ..." if len(quick) > 5 else "")
        warnings.warn(
            f"{len(quick)} participant(s) ({named}) have raw-T1w volumes from the earlier "
            "quick mode (SyN with Mattes MI), whose validation gave a planted -5.0 % "
            "striatal group difference back as +1.4 % (the wrong sign): rerun the "
            "participant level for them (today's quick and full modes use CC SyN) before "
            "any group statistics",
            DanemapWarning, stacklevel=2)
    out: dict[str, tuple[Path, bool]] = {}
    for like_fs in (True, False):
        rows = kinds[like_fs]
        if not rows:
            continue
        name = "volumes" if like_fs or not kinds[True] else "volumes_atlas"
        out[name] = (_write(rows, Path(out_group_dir) / f"{name}.tsv", like_fs), like_fs)
    return out


def _write(rows: list[tuple[dict[str, Any], str]], path: Path, like_fs: bool) -> Path:
    from danemap.io import table_sidecar, write_table

    df = pd.DataFrame([r for r, _ in rows])
    if df["session"].isna().all():
        df = df.drop(columns="session")
    regions = [c for c in df.columns if c not in ("participant_id", "session", "ICV")]
    if like_fs:  # ENIGMA's order, whatever the inputs' row order
        regions = [c for c in ENIGMA_COLUMNS.values() if c in regions]
    df = df.loc[:, [c for c in ("participant_id", "session") if c in df.columns]
                + regions + ["ICV"]]
    methods = sorted({m for _, m in rows})
    if len(methods) > 1:
        warnings.warn(f"{path.name}: volumes from different methods ({', '.join(methods)}) "
                      "share one table; site harmonisation will not remove a method "
                      "difference unless the methods follow the sites", DanemapWarning,
                      stacklevel=2)
    if df["ICV"].isna().any():
        log.warning("%s: %d participant(s) without an ICV; the ICV-adjusted statistics leave "
                    "them out", path.name, int(df["ICV"].isna().sum()))
    columns = {c: {"Description": f"Volume of {c}", "Units": "mm^3"} for c in regions}
    columns["ICV"] = {"Description": "Intracranial volume (the statistics' ICV covariate)",
                      "Units": "mm^3"}
    side = table_sidecar(df.columns, columns, {
        "Methods": methods,
        "LikeFreeSurfer": like_fs,
        **({} if like_fs else {"Caution": RAW_T1W_CAUTION}),
        "Description": ("FreeSurfer-style volumes of the ENIGMA-ADHD structures" if like_fs
                        else "Volumes of the atlas regions warped into each T1w (not the "
                             "same quantity as FreeSurfer's; never compared with ENIGMA)"),
    }, where=path.name)
    return write_table(df, path, side)
