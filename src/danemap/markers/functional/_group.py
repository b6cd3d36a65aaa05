"""Group tables of the functional family, gathered from every participant's outputs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from danemap._utils.logging import get_logger
from danemap.errors import InputError
from danemap.markers.functional._compute import (
    _ALFF_CENSORING,
    _ALFF_REFERENCE,
    KIND_NAMES,
    KINDS,
    _connectivity_kinds,
)
from danemap.markers.functional._connectivity import fisher_z, vectorise

__all__ = ["collect_functional_group"]

log = get_logger("markers.functional")

# --------------------------------------------------------------------------- group
_ID_ENTITIES = ("sub", "ses", "task", "run")


def _entities(name: str) -> dict[str, str]:
    """Return the entities that identify a run (sub, ses, task, run) in a file name."""
    from danemap.io import parse_entities

    return {k: v for k, v in parse_entities(name).items() if k in _ID_ENTITIES}


def _id_cols(ents: dict[str, str], with_ses: bool, with_run: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"participant_id": f"sub-{ents['sub']}"}
    if with_ses:
        out["session"] = ents.get("ses")
    if with_run:
        out["run"] = ents.get("run")
    return out


def collect_functional_group(derivatives_root: str | os.PathLike[str],
                             out_group_dir: str | os.PathLike[str],
                             exclude_flagged: bool = True,
                             connectivity: Sequence[str] | None = None,
                             atlas: str = "danemap") -> dict[str, Path]:
    """Gather every participant's functional outputs into group tables.

    Writes (TSV, ``n/a`` for missing): ``connectivity_corr.tsv`` and
    ``connectivity_partialcorr.tsv`` (Fisher z of the upper-triangle edges, columns
    ``participant_id`` [``session``, ``run`` when any file has them] then
    ``RegionA__RegionB``), ``connectivity_tangent.tsv`` (nilearn
    ``ConnectivityMeasure(kind="tangent")`` with Ledoit-Wolf covariances, over the regions
    non-empty in every participant; needs >= 2 runs; tangent values, not Fisher z; the
    reference geometric mean is fitted on every run included, cases and controls, so the
    table suits group comparisons, not out-of-sample classification), ``networks.tsv``
    (one mean-z column per network: only scores, so every column is a feature for the
    statistics), ``networks_counts.tsv`` (``<network>_n_edges``,
    ``<network>_n_voxels_min``), ``alff.tsv`` (raw ALFF), ``malff.tsv`` (mALFF, the ALFF
    table the group statistics use), ``zalff.tsv`` and ``falff.tsv`` (one column per
    region, like ``alff_aal116.tsv``) and ``motion_qc.tsv``. Every table has a JSON sidecar
    describing its columns (identifier columns by name, edge/region/network columns as a
    pattern, with units). Runs whose motion QC flags them for exclusion are listed in
    ``motion_qc.tsv`` but left out of every feature table when ``exclude_flagged`` is true
    (the default), and the tables' JSON sidecars name them. A run is found by its
    ``*_atlas-<atlas>_timeseries.tsv``; a per-run table it lacks (a connectivity kind not
    selected, ALFF of precomputed series) is left out of the group table, and a group
    table without any row, or whose every value is n/a (e.g. partial correlations that
    were singular in every run), is not written (with a warning).

    Parameters
    ----------
    derivatives_root : path
        ``OUT/danemap`` (holding ``sub-*/[ses-*/]func/``).
    out_group_dir : path
        Output folder (created).
    exclude_flagged : bool
        Leave runs flagged by motion QC out of the feature tables.
    connectivity : sequence of str or None
        Connectivity kinds to gather (``FunctionalConfig.connectivity``, same names);
        ``tangent`` is computed here from the time series. None: every kind.
    atlas : str
        The ``atlas-`` entity of the per-run files to gather (``danemap`` for the
        built-in atlas; see :func:`write_run`).

    Returns
    -------
    dict of str to Path
        Table name (``connectivity_corr``, ``networks``, ...) -> file written.

    Raises
    ------
    InputError
        No participant output under ``derivatives_root``, an unknown connectivity kind, or
        a per-run file that is not valid JSON / a readable TSV or lacks a required column
        (the message names it).
    """
    root = Path(derivatives_root)
    out = Path(out_group_dir)
    kinds = _connectivity_kinds(list(KIND_NAMES) if connectivity is None else connectivity,
                               "connectivity")
    if not root.is_dir():
        raise InputError(f"derivatives_root: {root} is not a directory")
    files = sorted(root.glob(f"sub-*/**/func/*_atlas-{atlas}_timeseries.tsv"))
    if not files:
        raise InputError(
            f"{root}: no '*_atlas-{atlas}_timeseries.tsv' found under sub-*/func"
        )
    from danemap.io import read_json

    out.mkdir(parents=True, exist_ok=True)
    ents_all = [_entities(f.name) for f in files]
    with_ses = any("ses" in e for e in ents_all)
    with_run = any("run" in e for e in ents_all)
    written: dict[str, Path] = {}
    excluded: list[str] = []

    def _save(name: str, rows: list[dict[str, Any]], **extra: Any) -> None:
        from danemap.io import write_table

        if not rows:
            return
        p = out / f"{name}.tsv"
        table = pd.DataFrame(rows)
        values = table.drop(columns=["participant_id", "session", "run"], errors="ignore")
        if name != "motion_qc" and values.isna().all(axis=None):
            log.warning("%s: every value is n/a in every run (see the participants' "
                        "warnings, e.g. a singular covariance for partial correlation); "
                        "the group table is not written", name)
            return
        # streamed, atomic, sidecar first: a cohort's edge table is never one string
        write_table(table, p, {
            **_group_sidecar(name, [str(c) for c in table.columns]), **extra,
            "ExcludedByMotionQC": [] if name == "motion_qc" else excluded,
        }, float_format="%.8g")
        written[name] = p

    tables: dict[str, list[dict[str, Any]]] = {k: [] for k in (
        "connectivity_corr", "connectivity_partialcorr", "networks", "networks_counts",
        "alff", "malff", "zalff", "falff", "motion_qc")}
    series: list[tuple[dict[str, Any], pd.DataFrame]] = []
    for f, ents in zip(files, ents_all, strict=True):
        ids = _id_cols(ents, with_ses, with_run)
        stem = f.name[: -len("_timeseries.tsv")]
        qf = f.with_name(stem.replace(f"_atlas-{atlas}", "") + "_desc-qc_motion.json")
        if qf.is_file():
            q = read_json(qf, "motion QC file")
            tables["motion_qc"].append({**ids, **{k: q.get(k) for k in _MOTION_COLUMNS}})
            if exclude_flagged and q.get("exclude"):
                excluded.append(stem)
                log.warning("%s: excluded from the group tables by QC (%s)", stem,
                            q.get("exclusion_reasons") or "exclude flag")
                continue
        for kind in (k for k in KINDS if k in kinds):
            cf = f.with_name(f"{stem}_desc-{kind}_connectivity.tsv")
            if cf.is_file():
                m = _read_square(cf)
                names = [str(c) for c in m.columns]
                tables[f"connectivity_{kind}"].append(
                    {**ids, **vectorise(fisher_z(m.to_numpy(dtype=float)), names)})
        nf = f.with_name(f"{stem}_desc-networks_stats.tsv")
        if nf.is_file():
            n = _read_table(nf, ("network", "mean_z", "n_edges", "n_voxels_min"))
            row, counts = dict(ids), dict(ids)
            for _, r in n.iterrows():
                row[str(r["network"])] = r["mean_z"]
                counts[f"{r['network']}_n_edges"] = r["n_edges"]
                counts[f"{r['network']}_n_voxels_min"] = r["n_voxels_min"]
            tables["networks"].append(row)
            tables["networks_counts"].append(counts)
        af = f.with_name(f"{stem}_desc-alff_stats.tsv")
        if af.is_file():
            a = _read_table(af, ("region", "alff", "falff"))
            for col in ("alff", "malff", "zalff", "falff"):
                if col in a.columns:  # malff/zalff: absent from files of older versions
                    tables[col].append({**ids, **dict(zip(a["region"], a[col],
                                                          strict=True))})
        if "tangent" in kinds:
            series.append((ids, _read_table(f, ()).drop(columns=["volume"], errors="ignore")))
    for name, rows in tables.items():
        _save(name, rows)
    if "tangent" in kinds and len(series) >= 2:
        rows, left_out = _tangent_rows(series)
        _save("connectivity_tangent", rows, TangentReference=_TANGENT_REFERENCE,
              RegionsLeftOut=left_out)
    elif "tangent" in kinds:
        log.info("tangent connectivity needs at least 2 runs; found %d", len(series))
    return written


def _read_table(path: Path, required: Sequence[str]) -> pd.DataFrame:
    """Read a per-run TSV (``n/a`` as NaN) and check it has the ``required`` columns."""
    from danemap.io import read_tsv

    df = read_tsv(path)
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InputError(
            f"{path}: expected columns {list(required)}, missing {missing} "
            f"(found {[str(c) for c in df.columns][:10]})"
        )
    return df


def _read_square(path: Path) -> pd.DataFrame:
    """Read a square connectivity TSV (first column: row region names)."""
    df = _read_table(path, ())
    m = df.set_index(df.columns[0]) if len(df.columns) else df
    if m.shape[0] != m.shape[1] or [str(i) for i in m.index] != [str(c) for c in m.columns]:
        raise InputError(
            f"{path}: expected a square matrix with the region names as header and first "
            f"column, found {m.shape[0]} rows x {m.shape[1]} columns"
        )
    try:
        m = m.astype(float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: every matrix value must be a number or n/a ({exc})") from exc
    return m


# --------------------------------------------------------------------------- group sidecars
_MOTION_COLUMNS: dict[str, dict[str, str]] = {
    "mean_fd": {"Description": "mean framewise displacement (Power) of the run",
                "Units": "mm"},
    "pct_flagged": {"Description": "volumes flagged by FD/DVARS thresholds (n/a without "
                                   "scrubbing)", "Units": "percent"},
    "pct_scrubbed": {"Description": "volumes censored (scrubbed or non-steady-state)",
                     "Units": "percent"},
    "n_volumes_analysed": {"Description": "volumes left after censoring",
                           "Units": "volumes"},
    "exclude": {"Description": "true when the run exceeds max_mean_fd or max_scrubbed_pct, "
                               "or was processed without its confounds file "
                               "(allow_missing_confounds), and is left out of the feature "
                               "tables"},
    "qc_reason": {"Description": "why the run is excluded: 'motion' or 'no confounds'; n/a "
                                 "when it is not"},
}
_ID_COLUMNS: dict[str, dict[str, str]] = {
    "participant_id": {"Description": "participant label, 'sub-<label>'"},
    "session": {"Description": "session label (the ses- entity); n/a when the run has none"},
    "run": {"Description": "run index (the run- entity); n/a when the run has none"},
}
_EDGE = "<RegionA>__<RegionB>"
_TANGENT_REFERENCE = ("fitted on all runs (cases and controls): the geometric mean of every "
                      "included run's covariance; use it for group comparisons, not for "
                      "out-of-sample classification (the reference has seen the test runs)")
#: Per group table: description, and its non-identifier columns (by name or as a pattern).
_GROUP_TABLES: dict[str, dict[str, Any]] = {
    "connectivity_corr": {
        "Description": "Correlation connectivity (empirical covariance), Fisher z of the "
                       "upper-triangle edges in atlas order; one row per run",
        "ColumnPatterns": {_EDGE: {
            "Description": "Fisher z (arctanh r) of the correlation between the denoised "
                           "time series of RegionA and RegionB; n/a when either region is "
                           "empty or unusable in the run",
            "Units": "Fisher z (dimensionless)"}}},
    "connectivity_partialcorr": {
        "Description": "Partial correlation connectivity (inverse empirical covariance), "
                       "Fisher z of the upper-triangle edges in atlas order; one row per run",
        "ColumnPatterns": {_EDGE: {
            "Description": "Fisher z (arctanh) of the partial correlation between RegionA "
                           "and RegionB given every other usable region; n/a when a region "
                           "is unusable or the covariance is singular",
            "Units": "Fisher z (dimensionless)"}}},
    "connectivity_tangent": {
        "Description": "Tangent-space connectivity (nilearn ConnectivityMeasure "
                       "kind='tangent', Ledoit-Wolf covariances, regions non-empty in every "
                       "run): each run's covariance whitened by the group geometric mean and "
                       "mapped by the matrix logarithm; upper-triangle edges; one row per run",
        "ColumnPatterns": {_EDGE: {
            "Description": "off-diagonal tangent-space value of the edge RegionA-RegionB "
                           "(deviation from the group reference); not a correlation and "
                           "not Fisher z",
            "Units": "dimensionless"}}},
    "networks": {
        "Description": "Network scores: mean within-network Fisher z of the correlation "
                       "over the usable network edges; one row per run",
        "ColumnPatterns": {"<network>": {
            "Description": "mean Fisher z (arctanh r) over the network's usable edges; n/a "
                           "when the network has none",
            "Units": "Fisher z (dimensionless)"}}},
    "networks_counts": {
        "Description": "Bookkeeping of the network scores (edges used, smallest region); "
                       "descriptions, not features; one row per run",
        "ColumnPatterns": {
            "<network>_n_edges": {"Description": "network edges used for the score",
                                  "Units": "edges"},
            "<network>_n_voxels_min": {
                "Description": "voxels of the smallest network region; n/a when a "
                               "region's count is unknown (precomputed time series)",
                "Units": "voxels"}}},
    "alff": {
        "Description": "Regional raw ALFF (mean 2|FFT|/n amplitude over 0.01-0.08 Hz, "
                       "DPARSF/REST convention, mean over the region's non-constant voxels; "
                       "censored volumes left out, Lomb-Scargle periodogram); one row per run. Its "
                       "scale follows the scanner: the group statistics use malff.tsv",
        "Censoring": _ALFF_CENSORING,
        "ColumnPatterns": {"<Region>": {
            "Description": "ALFF of the region; n/a when it has no non-constant voxel",
            "Units": "BOLD signal units (raw ALFF, not mALFF)"}}},
    "malff": {
        "Description": "Regional mALFF (Zang 2007; DPABI): the region's ALFF divided by the "
                       "run's mean voxelwise ALFF over every non-constant atlas voxel; one "
                       "row per run. The ALFF table the group statistics use by default",
        "Censoring": _ALFF_CENSORING,
        "Reference": _ALFF_REFERENCE,
        "ColumnPatterns": {"<Region>": {
            "Description": "mALFF of the region; n/a when it has no non-constant voxel",
            "Units": "ratio to the run's atlas-voxel mean ALFF (dimensionless)"}}},
    "zalff": {
        "Description": "Regional zALFF (DPABI): (region ALFF - the run's mean voxelwise "
                       "ALFF) / the SD (ddof=1) of the voxelwise ALFF, both over every "
                       "non-constant atlas voxel; one row per run",
        "Censoring": _ALFF_CENSORING,
        "Reference": _ALFF_REFERENCE,
        "ColumnPatterns": {"<Region>": {
            "Description": "zALFF of the region; n/a when it has no non-constant voxel",
            "Units": "SD of the run's voxelwise ALFF (dimensionless)"}}},
    "falff": {
        "Description": "Regional fALFF (0.01-0.08 Hz amplitude / amplitude over all non-DC "
                       "bins, mean over the region's non-constant voxels); one row per run",
        "ColumnPatterns": {"<Region>": {
            "Description": "fALFF of the region; n/a when it has no non-constant voxel",
            "Units": "ratio (dimensionless)"}}},
    "motion_qc": {
        "Description": "Motion QC of every run, the excluded ones included",
        "Columns": _MOTION_COLUMNS},
}


def _group_sidecar(name: str, columns: list[str]) -> dict[str, Any]:
    """JSON sidecar of a group table: identifier columns by name, the others by pattern."""
    spec = _GROUP_TABLES[name]
    side: dict[str, Any] = {"Description": spec["Description"]}
    side.update({k: spec[k] for k in ("Censoring", "Reference") if k in spec})
    side.update({c: _ID_COLUMNS[c] for c in columns if c in _ID_COLUMNS})
    side.update({c: d for c, d in spec.get("Columns", {}).items() if c in columns})
    if "ColumnPatterns" in spec:
        side["ColumnPatterns"] = spec["ColumnPatterns"]
    return side


def _tangent_rows(series: list[tuple[dict[str, Any], pd.DataFrame]]
                  ) -> tuple[list[dict[str, Any]], list[str]]:
    """Tangent connectivity of every run; also the regions left out (empty in some run)."""
    from nilearn.connectome import ConnectivityMeasure
    from sklearn.covariance import LedoitWolf

    cols = [c for c in series[0][1].columns
            if all(c in s.columns and s[c].notna().all() and s[c].std() > 0
                   for _, s in series)]
    dropped = sorted(set(series[0][1].columns) - set(cols))
    if dropped:
        log.info("tangent: regions empty in some run left out: %s", ", ".join(dropped))
    if len(cols) < 2:
        return [], dropped
    cm = ConnectivityMeasure(kind="tangent", cov_estimator=LedoitWolf(store_precision=False),
                             standardize=False)
    # the reference (geometric mean) is fitted on every run: see _TANGENT_REFERENCE
    mats = cm.fit_transform([s[cols].to_numpy(dtype=float) for _, s in series])
    rows = [{**ids, **vectorise(m, cols)} for (ids, _), m in zip(series, mats, strict=True)]
    return rows, dropped
