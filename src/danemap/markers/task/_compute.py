"""One MID run (or a participant's runs) from BOLD, confounds and events to ROI contrasts.

:func:`process_task_run`:

1. **TR** from the sidecar and the header (the functional family's ``resolve_tr``).
2. **Confounds and censoring** by the functional family's ``select_confounds`` (the
   ``[task] strategy``, else ``[functional] strategy``, with ``[functional]``'s motion,
   WM/CSF and scrubbing settings); fMRIPrep's ``cosine*`` columns are left out, the cosine
   drift of the model being the high-pass. Censored volumes are removed from the data and
   the design (nilearn ``sample_masks``).
3. **Events** validated (:func:`danemap.markers.task.read_events`) and mapped to conditions.
4. **Region means** by the functional family's streaming extraction (atlas resampled to
   the BOLD grid, intersected with the brain mask): the ``NiftiLabelsMasker`` means.
5. **ROI-level GLM** (:func:`danemap.markers.task.fit_glm`) on the region means: the fit
   of nilearn's ``FirstLevelModel`` to those series. With ``voxelwise`` the same model is
   also fitted to every brain voxel (the voxel-wise maps of ``FirstLevelModel``).

ROI-level vs voxel-wise-then-averaged: the GLM is linear, so with OLS and no scaling
the mean of voxel estimates equals the estimate on the mean series exactly. The AR(1)
model is not: each voxel is pre-whitened with its own (binned) coefficient, which is that
of its mostly white noise, while the region mean, where the noise averages out, is
whitened with the coefficient of the shared, autocorrelated signal; and percent-signal
scaling divides each voxel by its own mean. So the two differ by a weighting of the
voxels (both are unbiased for a homogeneous response; the difference is measured in
``tests/markers/task``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from danemap._utils.logging import get_logger
from danemap.config import FunctionalConfig, TaskConfig
from danemap.errors import InputError
from danemap.markers.functional._compute import (
    _grid,
    _load_header,
    _mask_array,
    open_bold,
)
from danemap.markers.functional._confounds import (
    ConfoundSelection,
    read_confounds,
    read_confounds_json,
    select_confounds,
)
from danemap.markers.functional._extract import gather_from_file, voxel_order
from danemap.markers.task._events import parse_conditions, parse_contrasts, read_events
from danemap.markers.task._model import design_matrix, first_level, fixed_effects

__all__ = ["REPORT_FIRST", "TaskResult", "TaskRun", "process_task_run", "process_task_runs",
           "roi_first_level", "task_confounds"]

log = get_logger("markers.task")

#: Region stems reported first (reward circuit), in this order; the rest follow in atlas order.
REPORT_FIRST = ("NAcc", "Caudate", "Putamen", "VTA", "mPFC", "OFC")


@dataclass
class TaskRun:
    """One run's contrast estimates.

    Attributes
    ----------
    table : pandas.DataFrame
        ``contrast, region, effect, variance, t, dof`` (regions reward circuit first).
    maps : dict
        ``(contrast, stat) -> nibabel image`` (``stat`` in effect/variance/t) when the
        voxel-wise model was fitted.
    design : pandas.DataFrame
        The design matrix (kept volumes).
    qc : dict
        Motion QC of the confound selection and the censoring.
    counts : dict
        Events per condition.
    rho : dict
        Binned AR(1) coefficient per region.
    """

    table: pd.DataFrame
    maps: dict[tuple[str, str], Any]
    design: pd.DataFrame
    qc: dict[str, Any]
    counts: dict[str, int]
    rho: dict[str, float]


@dataclass
class TaskResult:
    """A participant's task markers: each run and the fixed effects across runs.

    Attributes
    ----------
    runs : list of TaskRun
    run_labels : list of str or None
        The ``run`` entity of each run.
    table : pandas.DataFrame
        Fixed effects: ``contrast, region, effect, variance, t, n_runs``.
    maps : dict
        ``(contrast, stat) -> image``: fixed-effects voxel maps (voxelwise), or the region
        estimates painted on the atlas (``region_maps`` True).
    region_maps : bool
        Whether ``maps`` paint the region estimates.
    meta : dict
        Sidecar metadata (model, contrasts, confounds, sources).
    """

    runs: list[TaskRun]
    run_labels: list[str | None]
    table: pd.DataFrame
    maps: dict[tuple[str, str], Any]
    region_maps: bool
    meta: dict[str, Any] = field(default_factory=dict)


def _functional_cfg(task: TaskConfig, functional: FunctionalConfig | None) -> FunctionalConfig:
    f = FunctionalConfig() if functional is None else functional
    return dataclasses.replace(f, strategy=task.strategy) if task.strategy else f


def task_confounds(df: pd.DataFrame, task: TaskConfig, functional: FunctionalConfig | None,
                   meta: Mapping[str, Any] | None = None,
                   source: str = "confounds") -> ConfoundSelection:
    """Select the GLM's confounds and censored volumes with the functional family's rules.

    Parameters
    ----------
    df : pandas.DataFrame
        The fMRIPrep confounds table.
    task : TaskConfig
        ``strategy`` (empty: ``functional.strategy``).
    functional : FunctionalConfig or None
        The motion / WM-CSF / scrubbing settings.
    meta : mapping or None
        Confounds JSON sidecar.
    source : str
        File name for messages.

    Returns
    -------
    ConfoundSelection
        Without the fMRIPrep ``cosine*`` columns (the model's drift basis replaces them).
    """
    sel = select_confounds(df, _functional_cfg(task, functional), meta, source)
    keep = [c for c in sel.confounds.columns if "cosine" not in str(c)]
    qc = dict(sel.qc)
    qc["confounds"] = [str(c) for c in keep]
    return ConfoundSelection(sel.confounds[keep], sel.sample_mask, qc)


def _order(names: Sequence[str]) -> list[int]:
    from danemap.simulate._common import stem

    first = {s: i for i, s in enumerate(REPORT_FIRST)}
    return sorted(range(len(names)), key=lambda i: (first.get(stem(names[i]), len(first)), i))


def _table(names: Sequence[str], contrast_names: Sequence[str], effect: np.ndarray,
           variance: np.ndarray, t: np.ndarray, extra: Mapping[str, Any]) -> pd.DataFrame:
    order = _order(names)
    rows = []
    for k, cname in enumerate(contrast_names):
        for i in order:
            rows.append({"contrast": cname, "region": names[i], "effect": effect[k, i],
                         "variance": variance[k, i], "t": t[k, i], **extra})
    return pd.DataFrame(rows)


def roi_first_level(timeseries: np.ndarray | pd.DataFrame, events: pd.DataFrame, tr: float,
                    config: TaskConfig | None = None, confounds: pd.DataFrame | None = None,
                    sample_mask: np.ndarray | None = None, names: Sequence[str] | None = None,
                    ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Fit the first-level model to region-mean series (the fast ROI path).

    Parameters
    ----------
    timeseries : ndarray (T, R) or pandas.DataFrame
        Raw region means (BOLD units, every volume); a DataFrame's columns name regions.
    events : pandas.DataFrame
        Validated events (``trial_type`` is the condition, see :func:`read_events`).
    tr : float
        Repetition time (s).
    config : TaskConfig or None
        Model and contrasts.
    confounds : pandas.DataFrame or None
        Selected confounds (one row per volume).
    sample_mask : ndarray of int or None
        Kept volumes.
    names : sequence of str or None
        Region names (default: the DataFrame's columns, else ``region_<i>``).

    Returns
    -------
    table : pandas.DataFrame
        ``contrast, region, effect, variance, t, dof``; NaN for a region whose series is
        not finite and for contrasts whose conditions have no events.
    info : dict
        ``design``, ``counts``, ``rho`` (per region).
    """
    cfg = TaskConfig() if config is None else config
    mapping = parse_conditions(cfg.conditions)
    contrasts = parse_contrasts(cfg.contrasts, sorted(set(mapping.values())))
    if isinstance(timeseries, pd.DataFrame):
        names = [str(c) for c in timeseries.columns] if names is None else list(names)
        y = timeseries.to_numpy(dtype=np.float64)
    else:
        y = np.asarray(timeseries, dtype=np.float64)
        names = [f"region_{i}" for i in range(y.shape[1])] if names is None else list(names)
    n_t = y.shape[0]
    design = design_matrix(events, n_t, tr, hrf_model=cfg.hrf_model,
                           drift_model=cfg.drift_model, high_pass=cfg.high_pass,
                           confounds=confounds)
    counts = {str(k): int(v) for k, v in events["trial_type"].value_counts().items()}
    good = np.isfinite(y).all(axis=0) & (np.ptp(y, axis=0) > 0)
    k = len(contrasts)
    eff = np.full((k, y.shape[1]), np.nan)
    var, tt = eff.copy(), eff.copy()
    rho = np.full(y.shape[1], np.nan)
    dof = n_t - design.shape[1] if sample_mask is None else len(sample_mask) - design.shape[1]
    ok: list[bool] = [True] * k
    if good.any():
        fit, ok = first_level(y[:, good], design, contrasts, sample_mask, cfg.noise_model,
                              True, cfg.min_trials, counts)
        eff[:, good], var[:, good], tt[:, good] = fit.effect, fit.variance, fit.t
        rho[good] = fit.rho
        dof = fit.dof
    for name, est in zip(contrasts, ok, strict=True):
        if not est:
            log.warning("task contrast %s is not estimable in this run (a condition has "
                        "fewer than %d event(s): %s)", name, cfg.min_trials, counts)
    table = _table(names, list(contrasts), eff, var, tt, {"dof": dof})
    return table, {"design": design if sample_mask is None else design.iloc[sample_mask],
                   "counts": counts, "rho": dict(zip(names, rho.tolist(), strict=True))}


def _voxel_maps(bold: Any, header: Any, brain: np.ndarray, design: pd.DataFrame,
                contrasts: Mapping[str, Mapping[str, float]], sample_mask: np.ndarray | None,
                cfg: TaskConfig, counts: Mapping[str, int],
                affine: np.ndarray) -> dict[tuple[str, str], np.ndarray]:
    """Fit every brain voxel; return ``(contrast, stat) -> 3D array`` (NaN outside)."""
    from danemap.atlas import voxel_order as _vo

    shape = brain.shape
    labels = brain.astype(np.int32)
    order, starts, counts_v = _vo(labels, np.array([1]), None)
    vox = gather_from_file(bold, header, order, starts, counts_v) if isinstance(
        bold, str | os.PathLike) else None
    if vox is None:
        arr = np.asanyarray(bold.dataobj)
        data = arr.reshape(-1, arr.shape[3], order="F")[order].T.astype(np.float64)
    else:
        data = vox.data.astype(np.float64) * vox.slope + vox.inter
    good = np.ptp(data, axis=0) > 0
    fit, _ = first_level(data[:, good], design, contrasts, sample_mask, cfg.noise_model, True,
                         cfg.min_trials, counts)
    out: dict[tuple[str, str], np.ndarray] = {}
    flat_idx = order[good]
    for k, cname in enumerate(contrasts):
        for stat, values in (("effect", fit.effect[k]), ("variance", fit.variance[k]),
                             ("t", fit.t[k])):
            vol = np.full(int(np.prod(shape)), np.nan, dtype=np.float32)
            vol[flat_idx] = values
            out[(cname, stat)] = vol.reshape(shape, order="F")
    return out


def process_task_run(bold: str | os.PathLike[str] | Any, confounds: str | os.PathLike[str] | None,
                     events: str | os.PathLike[str], atlas: Any,
                     config: TaskConfig | None = None,
                     functional: FunctionalConfig | None = None,
                     mask: str | os.PathLike[str] | None = None,
                     sidecar: str | os.PathLike[str] | Mapping[str, Any] | None = None,
                     tr: float | None = None, max_bytes: float | None = None,
                     sidecar_name: str | None = None) -> TaskRun:
    """Fit one MID run's first-level model at the region level (and voxel-wise if asked).

    Parameters
    ----------
    bold : path-like or nibabel image
        Preprocessed 4D BOLD in the atlas space (fMRIPrep ``desc-preproc_bold``).
    confounds : path-like or None
        fMRIPrep confounds TSV (None: no confounds, no censoring).
    events : path-like
        The raw BIDS ``*_events.tsv``.
    atlas : Atlas
        Regions (resampled to the BOLD grid).
    config : TaskConfig or None
        Model, contrasts, trial-type mapping, ``voxelwise``.
    functional : FunctionalConfig or None
        Confound and censoring settings.
    mask : path-like or None
        Brain mask (intersected with the atlas; the voxel-wise fit's voxels).
    sidecar : path, mapping or None
        BOLD JSON sidecar (``RepetitionTime``).
    tr : float or None
        Explicit TR; ``None`` takes ``functional.repetition_time`` when it is set, else
        the header and sidecar.
    max_bytes : float or None
        Largest NIfTI accepted.
    sidecar_name : str or None
        The JSON file a mapping ``sidecar`` came from, named in TR messages.

    Returns
    -------
    TaskRun

    Raises
    ------
    InputError
        Unreadable inputs, missing events file, invalid events, TR problems, confound
        rows not matching the volumes.
    """
    cfg = TaskConfig() if config is None else config
    mapping = parse_conditions(cfg.conditions)
    contrasts = parse_contrasts(cfg.contrasts, sorted(set(mapping.values())))
    if tr is None and functional is not None and functional.repetition_time > 0:
        tr = functional.repetition_time
    header, bold_name, shape, affine, sidecar, tr_used, n_t = open_bold(
        bold, max_bytes, sidecar, tr, sidecar_name)
    ev = read_events(events, n_t, tr_used, mapping, cfg.ignore)
    selection = None
    if confounds is not None:
        df = read_confounds(confounds)
        if len(df) != n_t:
            raise InputError(f"{confounds}: has {len(df)} rows but {bold_name} has {n_t} "
                             "volumes")
        selection = task_confounds(df, cfg, functional, read_confounds_json(confounds),
                                   str(confounds))
    res_atlas = atlas.resample_to((shape, affine))
    labels = np.asarray(res_atlas.img.dataobj)
    mask_arr = _mask_array(mask, shape, affine)
    order, starts, counts = voxel_order(labels, res_atlas.labels, mask_arr)
    if isinstance(bold, str | os.PathLike):
        voxels = gather_from_file(bold, header, order, starts, counts)
        means = voxels.region_means()
    else:
        from danemap.markers.functional._extract import gather_from_array

        means = gather_from_array(np.asanyarray(bold.dataobj), order, starts,
                                  counts).region_means()
    names = [str(n) for n in res_atlas.names]
    conf_df = None if selection is None else selection.confounds
    sample_mask = None if selection is None else selection.sample_mask
    table, info = roi_first_level(means, ev, tr_used, cfg, conf_df, sample_mask, names)
    maps: dict[tuple[str, str], Any] = {}
    if cfg.voxelwise:
        import nibabel as nib

        brain = mask_arr if mask_arr is not None else labels > 0
        design_full = design_matrix(ev, n_t, tr_used, hrf_model=cfg.hrf_model,
                                    drift_model=cfg.drift_model, high_pass=cfg.high_pass,
                                    confounds=conf_df)
        arrays = _voxel_maps(bold, header, brain, design_full, contrasts, sample_mask, cfg,
                             info["counts"], affine)
        maps = {k: nib.Nifti1Image(v, affine) for k, v in arrays.items()}
    qc = {} if selection is None else dict(selection.qc)
    qc["n_volumes_analysed"] = int(n_t if sample_mask is None else len(sample_mask))
    return TaskRun(table=table, maps=maps, design=info["design"], qc=qc,
                   counts=info["counts"], rho=info["rho"])


def _paint(atlas_img: Any, names_to_index: Mapping[str, int], values: Mapping[str, float],
           ) -> Any:
    import nibabel as nib

    lab = np.asarray(atlas_img.dataobj).astype(np.int64)
    lut = np.full(int(lab.max()) + 1, np.nan, dtype=np.float32)
    for name, v in values.items():
        idx = names_to_index.get(name)
        if idx is not None and np.isfinite(v):
            lut[idx] = v
    return nib.Nifti1Image(lut[lab], atlas_img.affine)


def process_task_runs(runs: Sequence[Mapping[str, Any]], atlas: Any,
                      config: TaskConfig | None = None,
                      functional: FunctionalConfig | None = None,
                      max_bytes: float | None = None) -> TaskResult:
    """Fit every run of a participant and combine them by fixed effects.

    Parameters
    ----------
    runs : sequence of mapping
        Keyword arguments of :func:`process_task_run` per run (``bold``, ``confounds``,
        ``events``, ``mask``, ``sidecar``, ``sidecar_name``), plus an optional ``run``
        label.
    atlas : Atlas
        Regions.
    config : TaskConfig or None
        Model settings.
    functional : FunctionalConfig or None
        Confound and censoring settings.
    max_bytes : float or None
        Largest NIfTI accepted.

    Returns
    -------
    TaskResult
    """
    cfg = TaskConfig() if config is None else config
    if not runs:
        raise InputError("task: no run to fit")
    fitted: list[TaskRun] = []
    labels: list[str | None] = []
    for r in runs:
        kw = {k: v for k, v in r.items() if k != "run"}
        fitted.append(process_task_run(atlas=atlas, config=cfg, functional=functional,
                                       max_bytes=max_bytes, **kw))
        labels.append(None if r.get("run") is None else str(r["run"]))
    first = fitted[0].table
    eff = np.stack([f.table["effect"].to_numpy(dtype=float) for f in fitted])
    var = np.stack([f.table["variance"].to_numpy(dtype=float) for f in fitted])
    fe, fv, ft, n = fixed_effects(eff, var)
    table = first[["contrast", "region"]].copy()
    table["effect"], table["variance"], table["t"] = fe, fv, ft
    table["n_runs"] = n.astype(int)
    table["dof"] = sum(int(f.table["dof"].iloc[0]) for f in fitted)
    maps: dict[tuple[str, str], Any] = {}
    region_maps = not cfg.voxelwise
    if cfg.voxelwise:
        import nibabel as nib

        keys = {k[0] for k in fitted[0].maps}
        for cname in sorted(keys):
            e = np.stack([np.asarray(f.maps[(cname, "effect")].dataobj) for f in fitted])
            v = np.stack([np.asarray(f.maps[(cname, "variance")].dataobj) for f in fitted])
            me, mv, mt, _ = fixed_effects(e, v)
            aff = fitted[0].maps[(cname, "effect")].affine
            for stat, arr in (("effect", me), ("variance", mv), ("t", mt)):
                maps[(cname, stat)] = nib.Nifti1Image(arr.astype(np.float32), aff)
    else:
        header, _ = _load_header(runs[0]["bold"], max_bytes)
        on_grid = atlas.resample_to(_grid(header))
        index = {str(n): int(i) for n, i in zip(on_grid.names, on_grid.labels, strict=True)}
        for cname in table["contrast"].unique():
            sub = table[table["contrast"] == cname]
            maps[(str(cname), "effect")] = _paint(
                on_grid.img, index, dict(zip(sub["region"], sub["effect"], strict=True)))
    meta = {
        "Model": {"HRF": cfg.hrf_model, "DriftModel": cfg.drift_model,
                  "HighPass_Hz": cfg.high_pass, "NoiseModel": cfg.noise_model,
                  "SignalScaling": "percent signal change (nilearn signal_scaling=0)",
                  "Reference": "nilearn FirstLevelModel (same design, fit and contrasts)"},
        "Contrasts": {k: {c: float(w) for c, w in v.items()} for k, v in
                      parse_contrasts(cfg.contrasts).items()},
        "Runs": [{"run": lab, "qc": f.qc, "events_per_condition": f.counts,
                  "ar1_by_region": f.rho} for lab, f in zip(labels, fitted, strict=True)],
        "FixedEffects": "precision-weighted over runs (1 / variance)",
        "Voxelwise": bool(cfg.voxelwise),
    }
    return TaskResult(fitted, labels, table, maps, region_maps, meta)
