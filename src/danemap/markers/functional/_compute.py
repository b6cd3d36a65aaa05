"""Resting-state functional markers: denoised ROI time series, connectivity, ALFF, networks.

Pipeline of :func:`process_run` (one BOLD run):

1. **TR** from the explicit ``tr=`` argument or ``FunctionalConfig.repetition_time``
   (``--repetition-time``; 0: unset), else the JSON sidecar ``RepetitionTime`` and the
   NIfTI header (``pixdim[4]`` with its time unit); when both exist and differ by more
   than 1 ms, or neither gives a TR, an :class:`~danemap.errors.InputError` names the
   BOLD file, the JSON file, both values and how to set the TR. A BOLD of fewer than
   ``MIN_VOLUMES`` volumes, and a run shorter than the band-pass filter's padding needs
   (:func:`~._clean.filter_min_volumes`: 34 volumes for the default band-pass), are
   refused before any voxel is read.
2. **Confounds** from the fMRIPrep table, selected like nilearn's
   ``load_confounds_strategy`` (``simple``, ``scrubbing``, ``compcor``) or a user list
   (``custom``), with motion QC (mean FD, % volumes flagged/scrubbed, exclusion flag
   against ``max_mean_fd`` and ``max_scrubbed_pct``). See ``_confounds``. A run without
   its confounds file is an error, unless ``allow_missing_confounds``: it is then
   processed without regression and flagged (``qc_reason = "no confounds"``,
   ``exclude``), so the group tables leave it out. The residual degrees of freedom
   (kept volumes less confounds, mean and trend, high-pass terms; see
   :func:`~._clean.residual_dof`) must be at least ``MIN_RESIDUAL_DOF`` (10), and an
   image whose every region series is constant (all zero) is refused as having no signal.
3. **Extraction**: the atlas is resampled to the BOLD grid (nearest neighbour; rows never
   disappear; intersected with ``mask`` when given); the file is decompressed with isal a
   few volumes at a time and only atlas voxels are kept. Region means equal
   ``NiftiLabelsMasker(strategy="mean")``; empty regions are NaN columns.
4. **Denoising** as one linear operator ``L`` (interpolation of censored volumes,
   detrend, Butterworth band-pass, censoring, confound regression; nilearn
   ``signal.clean`` order and numbers) applied once to the region series: cleaning is
   linear, so mean-then-clean equals clean-then-mean.
5. **Connectivity**: correlation and partial correlation from the *empirical*
   covariance (``sklearn.covariance.EmpiricalCovariance``, maximum likelihood, divisor
   ``T``), equal to nilearn ``ConnectivityMeasure`` with that estimator; only the kinds
   in ``FunctionalConfig.connectivity`` are kept and written (the correlation is always
   computed for the network scores). Tangent space needs a group reference and is
   computed in :func:`collect_functional_group`.
6. **Network scores**: mean Fisher z (``arctanh r``) over the atlas network edges
   (``frontostriatal``, ``lc_pfc``, ``mesolimbic``, ``nigrostriatal``).
   *Small regions*: every region with at least one voxel is used (the LC has 1-2 voxels
   at 3 mm, 3-5 at 2 mm); the table records each region's voxel count, the smallest
   count, and regions below 5 voxels as ``small_regions``. Edges touching an empty region
   are dropped, listed in ``dropped_edges`` and logged; a network without usable edge has
   a NaN score.
7. **ALFF / fALFF / mALFF / zALFF** (DPARSF/REST convention, see ``_alff``): for
   every atlas voxel, residualise (detrend + the same confounds, no band-pass; with
   censoring, the nuisance model is fitted on the kept volumes), zero-pad to the next
   power of two, amplitude ``2|FFT|/T`` (a censored run: ``2 sqrt(P/T)`` from the
   Lomb-Scargle periodogram ``P`` of the kept volumes at the same bins, as XCP-D); ALFF
   = mean amplitude over 0.01-0.08 Hz, fALFF = band sum / sum over all non-DC bins; the
   region value is the mean over its non-constant voxels. Raw ALFF is in the units of
   the BOLD data, so its scale follows the scanner (the ADHD-200 table
   ``alff_aal116.tsv`` has site scales 8-10-fold apart). mALFF (Zang 2007; DPABI, Yan
   2013) divides by the mean voxelwise ALFF over every non-constant atlas voxel of the
   run (inside the brain mask when given), zALFF subtracts that mean and divides by the
   SD (``ddof=1``) over the same voxels: an atlas-mask reference, since ALFF is computed
   only at atlas voxels, not DPABI's whole-brain mask. mALFF is the ALFF table the group
   statistics use by default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from danemap._utils.logging import get_logger
from danemap.config import FunctionalConfig
from danemap.errors import ConfigError, InputError
from danemap.markers.functional._alff import normalise_alff, voxel_alff
from danemap.markers.functional._clean import (
    MIN_RESIDUAL_DOF,
    check_filter_length,
    cleaning_operator,
    residual_basis,
    residual_dof,
)
from danemap.markers.functional._confounds import (
    ConfoundSelection,
    read_confounds,
    read_confounds_json,
    select_confounds,
)
from danemap.markers.functional._connectivity import (
    SMALL_REGION_VOXELS,
    connectivity,
    network_scores,
    usable_columns,
)
from danemap.markers.functional._extract import (
    AtlasVoxels,
    gather_from_array,
    gather_from_file,
    voxel_order,
)

__all__ = [
    "ALFF_BAND",
    "FunctionalResult",
    "bipartite_edges",
    "process_run",
    "process_timeseries",
    "resolve_tr",
]

log = get_logger("markers.functional")

#: ALFF frequency band in Hz (Zang et al. 2007; DPARSF default).
ALFF_BAND = (0.01, 0.08)
#: Per-participant connectivity kinds written (``desc-<kind>``) and their nilearn names.
KINDS = {"corr": "correlation", "partialcorr": "partial correlation"}
#: Names ``FunctionalConfig.connectivity`` accepts (nilearn's, or the ``desc`` of the
#: files: handy in ``DANEMAP_FUNCTIONAL__CONNECTIVITY``, whose value is split on spaces)
#: and the kind each one selects. Tangent is group-level (:func:`collect_functional_group`).
KIND_NAMES = {"correlation": "corr", "corr": "corr", "partial correlation": "partialcorr",
              "partialcorr": "partialcorr", "tangent": "tangent"}
TR_TOLERANCE = 1e-3


@dataclass
class FunctionalResult:
    """Everything :func:`process_run` / :func:`process_timeseries` compute for one run.

    Attributes
    ----------
    timeseries : pandas.DataFrame
        Denoised region time series, kept volumes only (``volume`` index), one column per
        region (NaN for empty regions).
    connectivity : dict of str to pandas.DataFrame
        ``{"corr": r, "partialcorr": partial r}``, square, labelled by region name; only
        the kinds selected by ``FunctionalConfig.connectivity``.
    networks : pandas.DataFrame
        One row per network: ``mean_z``, ``mean_r``, edge and voxel counts.
    alff : pandas.DataFrame or None
        Per region ``alff``, ``falff``, ``malff``, ``zalff``, ``n_voxels``; None without a
        voxel input (precomputed time series) or without TR.
    qc : dict
        Motion QC (mean FD, % flagged/scrubbed, exclusion flag and reasons).
    regions : pandas.DataFrame
        ``name``, ``n_voxels`` (nullable integer, ``<NA>`` when unknown, e.g. for
        precomputed time series), ``empty`` for every atlas region (input order).
    tr : float or None
        Repetition time used (s).
    meta : dict
        Processing description written to the JSON sidecars.
    mean_image : nibabel.Nifti1Image or None
        The mean over volumes of the BOLD (float32, on the BOLD grid; the report's QC
        image); None for precomputed time series.
    """

    timeseries: pd.DataFrame
    connectivity: dict[str, pd.DataFrame]
    networks: pd.DataFrame
    alff: pd.DataFrame | None
    qc: dict[str, Any]
    regions: pd.DataFrame
    tr: float | None
    meta: dict[str, Any] = field(default_factory=dict)
    mean_image: Any = None


# --------------------------------------------------------------------------- helpers
def bipartite_edges(a: Sequence[str], b: Sequence[str]) -> list[tuple[str, str]]:
    """Every pair between two lists of regions (e.g. striatum x prefrontal).

    Parameters
    ----------
    a, b : sequence of str
        Region (column) names.

    Returns
    -------
    list of (str, str)
        ``[(x, y) for x in a for y in b if x != y]``, usable as a ``networks`` entry.
    """
    return [(x, y) for x in a for y in b if x != y]


def _sidecar_for(bold: Any) -> Path | None:
    if not isinstance(bold, str | os.PathLike):
        return None
    p = Path(bold)
    for ext in (".nii.gz", ".nii"):
        if p.name.endswith(ext):
            return p.with_name(p.name[: -len(ext)] + ".json")
    return None


def resolve_tr(header: Any, sidecar: str | os.PathLike[str] | Mapping[str, Any] | None,
               tr: float | None = None, bold_name: str = "BOLD image",
               sidecar_name: str | None = None) -> float:
    """Repetition time in seconds from the argument, the JSON sidecar and the header.

    Parameters
    ----------
    header : nibabel header or None
        The BOLD header (``pixdim[4]`` and ``xyzt_units``).
    sidecar : path, mapping or None
        The BOLD JSON sidecar (``RepetitionTime`` in seconds); a missing file is ignored.
    tr : float or None
        Explicit TR (``tr=``, ``--repetition-time``, ``[functional] repetition_time``);
        wins over the files (a disagreement is logged).
    bold_name : str
        Name of the BOLD file for messages.
    sidecar_name : str, optional
        The JSON file a mapping ``sidecar`` was read from, for messages (e.g. the
        nearest sidecar of the BIDS inheritance chain that sets ``RepetitionTime``).

    Returns
    -------
    float

    Raises
    ------
    InputError
        When the sidecar and header disagree by more than 1 ms, a value is not positive,
        or no TR is found; the message names the BOLD file, the JSON file and both values,
        and says how to set the TR.
    """
    side_tr: float | None = None
    side_name = "no sidecar"
    if isinstance(sidecar, Mapping):
        meta: Any = sidecar
        side_name = (sidecar_name if sidecar_name is not None
                     else f"the JSON metadata of {bold_name} (given as a mapping)")
    elif sidecar is not None and Path(sidecar).is_file():
        side_name = str(sidecar)
        from danemap.io import read_json

        meta = read_json(sidecar, "BOLD sidecar")
    else:
        meta = {}
        if sidecar is not None:
            side_name = f"{sidecar} (missing)"
    if isinstance(meta, Mapping) and "RepetitionTime" in meta:
        try:
            side_tr = float(meta["RepetitionTime"])
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"{side_name}: 'RepetitionTime' must be a number of seconds, "
                f"found {meta['RepetitionTime']!r}"
            ) from exc
        if not np.isfinite(side_tr) or side_tr <= 0:
            raise InputError(f"{side_name}: 'RepetitionTime' must be > 0, found {side_tr}")
    head_tr: float | None = None
    head_raw = ""
    if header is not None:
        zooms = header.get_zooms()
        if len(zooms) > 3 and float(zooms[3]) > 0:
            unit = header.get_xyzt_units()[1]
            scale = {"msec": 1e-3, "usec": 1e-6}.get(unit, 1.0)
            head_tr = float(zooms[3]) * scale
            head_raw = f" (xyzt_units time unit: {unit})"
    if tr is not None:
        if not np.isfinite(tr) or tr <= 0:
            raise InputError(f"tr: expected a positive number of seconds, found {tr}")
        for name, val in ((side_name, side_tr), (f"{bold_name} header pixdim[4]", head_tr)):
            if val is not None and abs(val - tr) > TR_TOLERANCE:
                log.warning("%s: the repetition time set explicitly (%s s) overrides %s "
                            "(%s s)", bold_name, tr, name, val)
        return float(tr)
    if side_tr is not None and head_tr is not None and abs(side_tr - head_tr) > TR_TOLERANCE:
        raise InputError(
            f"repetition time disagrees for {bold_name}: its JSON sidecar {side_name} has "
            f"RepetitionTime={side_tr} s but its NIfTI header has pixdim[4]={head_tr} s"
            f"{head_raw}; fix the file that is wrong, or set the TR in seconds with "
            f"{_TR_HOW}"
        )
    if side_tr is not None:
        return side_tr
    if head_tr is not None:
        return head_tr
    raise InputError(
        f"no repetition time for {bold_name}: {side_name} has no RepetitionTime and its "
        f"NIfTI header pixdim[4] is 0; set the TR in seconds with {_TR_HOW}"
    )


#: How a user sets the repetition time (for messages).
_TR_HOW = ("--repetition-time SECONDS, or 'repetition_time = SECONDS' in the [functional] "
           "section of the configuration file (tr= in Python)")


def _tr_setting(tr: float | None, cfg: FunctionalConfig) -> float | None:
    """Return the explicit TR: ``tr`` when given, else ``repetition_time`` (0: None)."""
    if tr is not None:
        return tr
    value = cfg.repetition_time
    try:
        value = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"functional.repetition_time: expected seconds (0: read the files), found "
            f"{cfg.repetition_time!r}") from exc
    if not np.isfinite(value) or value < 0:
        raise ConfigError(
            f"functional.repetition_time: expected seconds > 0 (0: read the files), found "
            f"{value}")
    return value if value > 0 else None


def expected_confounds(bold: Any) -> str:
    """Name fMRIPrep's confounds file for a BOLD image (its folder, without ``space`` etc.).

    ``sub-01_task-rest_run-1_space-MNI152NLin2009cAsym_res-2_desc-preproc_bold.nii.gz``
    gives ``sub-01_task-rest_run-1_desc-confounds_timeseries.tsv`` beside it: fMRIPrep
    names the confounds by the run's acquisition entities only.
    """
    if not isinstance(bold, str | os.PathLike):
        return "a '*_desc-confounds_timeseries.tsv' table (none given)"
    p = Path(bold)
    parts = p.name.split("_")[:-1]  # drop '<suffix>.<ext>'
    keep = [x for x in parts if x.split("-", 1)[0] in _CONFOUND_ENTITIES]
    return str(p.with_name("_".join([*keep, "desc-confounds_timeseries.tsv"])))


#: Entities fMRIPrep keeps in a run's confounds file name (not space, res, den, desc).
_CONFOUND_ENTITIES = ("sub", "ses", "task", "acq", "ce", "rec", "dir", "run", "echo", "part")


def _load_header(bold: Any, max_bytes: float | None = None) -> tuple[Any, str]:
    if isinstance(bold, str | os.PathLike):
        from danemap.io import load_nifti_header

        return load_nifti_header(bold, expect_ndim=4, max_bytes=max_bytes), Path(bold).name
    if hasattr(bold, "header") and hasattr(bold, "dataobj"):
        if len(bold.shape) != 4:
            raise InputError(f"bold: expected a 4D image, found shape {bold.shape}")
        return bold.header, "bold image"
    raise InputError(
        f"bold: expected a path to a 4D .nii[.gz] or a nibabel image, found {type(bold).__name__}"
    )


def _grid(header: Any) -> tuple[tuple[int, int, int], np.ndarray]:
    shape = tuple(int(s) for s in header.get_data_shape()[:3])
    return (shape[0], shape[1], shape[2]), np.asarray(header.get_best_affine(), dtype=float)


def _mask_array(mask: Any, shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray | None:
    if mask is None:
        return None
    from danemap.io import load_nifti

    img: Any = load_nifti(mask) if isinstance(mask, str | os.PathLike) else mask
    data = np.asarray(img.dataobj)
    if data.shape[:3] != shape or not np.allclose(img.affine, affine, atol=1e-3):
        import nibabel.processing as nproc

        img = nproc.resample_from_to(img, (shape, affine), order=0)
        data = np.asarray(img.dataobj)
    return data.reshape(shape) != 0


def _confounds_frame(confounds: Any) -> tuple[pd.DataFrame | None, dict[str, Any] | None, str]:
    if confounds is None:
        return None, None, "no confounds"
    if isinstance(confounds, pd.DataFrame):
        return confounds.astype(np.float64), None, "confounds (DataFrame)"
    if isinstance(confounds, str | os.PathLike):
        return read_confounds(confounds), read_confounds_json(confounds), str(confounds)
    raise InputError(
        f"confounds: expected a TSV path or a DataFrame, found {type(confounds).__name__}"
    )


def _connectivity_kinds(kinds: Sequence[str],
                       where: str = "functional.connectivity") -> list[str]:
    """Validate connectivity kinds and return their ``desc`` names, in canonical order.

    Parameters
    ----------
    kinds : sequence of str
        Among ``"correlation"`` (or ``"corr"``), ``"partial correlation"`` (or
        ``"partialcorr"``) and ``"tangent"``; an empty sequence selects none.
    where : str
        Name of the setting or parameter for the error message.

    Returns
    -------
    list of str
        The selected kinds among ``["corr", "partialcorr", "tangent"]``.

    Raises
    ------
    InputError
        When ``kinds`` is a single string or names an unknown kind.
    """
    if isinstance(kinds, str) or not isinstance(kinds, Sequence):
        raise InputError(
            f"{where}: expected a list of connectivity kinds, found {kinds!r}"
        )
    bad = [k for k in kinds if k not in KIND_NAMES]
    if bad:
        raise InputError(
            f"{where}: expected kinds among 'correlation', 'partial correlation', 'tangent' "
            f"(or 'corr', 'partialcorr'); found {bad}"
        )
    chosen = {KIND_NAMES[k] for k in kinds}
    return [k for k in ("corr", "partialcorr", "tangent") if k in chosen]


def _check_cfg(config: FunctionalConfig | None) -> FunctionalConfig:
    cfg = FunctionalConfig() if config is None else config
    _connectivity_kinds(cfg.connectivity)
    return cfg


# --------------------------------------------------------------------------- core
def _finish(raw: np.ndarray, names: list[str], n_voxels: np.ndarray | None,
            selection: ConfoundSelection | None, cfg: FunctionalConfig, tr: float | None,
            networks: Mapping[str, Sequence[tuple[str, str]]],
            voxels: AtlasVoxels | None, meta: dict[str, Any]) -> FunctionalResult:
    n_t = raw.shape[0]
    conf = None if selection is None else selection.confounds.to_numpy()
    if conf is not None and conf.shape[0] != n_t:
        raise InputError(
            f"{meta.get('confounds_source', 'confounds')}: has {conf.shape[0]} rows but the "
            f"BOLD data have {n_t} volumes"
        )
    sample_mask = None if selection is None else selection.sample_mask
    source = str(meta.get("bold_source", "the time series"))
    _check_signal(raw, n_voxels, source)
    check_filter_length(n_t, tr, cfg.high_pass, cfg.low_pass, source)
    n_kept = n_t if sample_mask is None else int(np.unique(sample_mask).size)
    conf_names = [] if selection is None else [str(c) for c in selection.confounds.columns]
    dof, regressors = residual_dof(n_t, n_kept, len(conf_names),
                                   sum("cosine" in c for c in conf_names), tr, cfg.detrend,
                                   cfg.high_pass)
    if dof < MIN_RESIDUAL_DOF:
        raise InputError(
            f"{source}: too few degrees of freedom left after denoising: {n_t} volumes "
            f"({n_kept} kept after censoring) less {sum(regressors.values())} regressors ("
            + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in regressors.items())
            + f") leave {dof} residual degrees of freedom, below the minimum of "
            f"{MIN_RESIDUAL_DOF}: the correlations would be noise. Use a longer run, or "
            "regress fewer confounds (functional.strategy, functional.motion, "
            "functional.wm_csf) or censor fewer volumes"
        )
    op = cleaning_operator(n_t, conf, sample_mask, tr, cfg.detrend, cfg.high_pass,
                           cfg.low_pass, source)
    good = np.isfinite(raw).all(axis=0)
    clean = np.full((op.shape[0], raw.shape[1]), np.nan)
    clean[:, good] = op @ raw[:, good]
    kept = np.arange(n_t) if sample_mask is None else np.asarray(sample_mask)
    # nilearn drops censored head/tail volumes it cannot interpolate
    kept = kept[kept.size - op.shape[0]:] if op.shape[0] < kept.size else kept
    ts = pd.DataFrame(clean, columns=names, index=pd.Index(kept, name="volume"))

    kinds = _connectivity_kinds(cfg.connectivity)
    # the correlation is always computed: the network scores are built on it
    corr, part = connectivity(clean, partial="partialcorr" in kinds)
    conn: dict[str, pd.DataFrame] = {}
    if "corr" in kinds:
        conn["corr"] = pd.DataFrame(corr, index=names, columns=names)
    if part is not None:
        conn["partialcorr"] = pd.DataFrame(part, index=names, columns=names)
    nets = network_scores(corr, names, None if n_voxels is None else n_voxels.tolist(),
                          networks)

    alff_df = None
    if voxels is not None and tr is not None:
        alff_df, meta["alff"] = _alff_table(voxels, names, conf, sample_mask, tr, cfg)
    qc = {} if selection is None else dict(selection.qc)
    qc["n_volumes_analysed"] = int(op.shape[0])
    qc["residual_dof"] = dof
    qc["regressors"] = regressors
    if part is not None:
        n_usable = int(usable_columns(clean).sum())
        estimable = bool(np.isfinite(part).any())
        qc["partialcorr_estimable"] = estimable
        if not estimable:
            # flagged, not an error: the correlation and ALFF of the run stay usable
            qc["partialcorr_reason"] = (
                f"singular covariance: {dof} residual degrees of freedom for {n_usable} "
                "usable regions (partial correlation needs more degrees of freedom than "
                "regions)")
    known = (np.full(len(names), np.nan) if n_voxels is None
             else np.asarray(n_voxels, dtype=float))
    regions = pd.DataFrame({
        "name": names,
        # nullable integers: <NA> (written n/a) where the count is unknown
        "n_voxels": pd.array([int(v) if np.isfinite(v) else None for v in known],
                             dtype="Int64"),
        "empty": ~good,
    })
    meta.update({
        "RepetitionTime": tr,
        "Denoising": {
            "strategy": cfg.strategy if selection is not None else "none",
            "confounds": qc.get("confounds", []),
            "detrend": cfg.detrend,
            "high_pass_hz": cfg.high_pass if cfg.high_pass and cfg.high_pass > 0 else None,
            "low_pass_hz": cfg.low_pass if cfg.low_pass and cfg.low_pass > 0 else None,
            "filter": "butterworth order 5, zero-phase (nilearn.signal.clean)",
            "censoring": "scrubbed volumes interpolated before filtering, then removed "
                         "(nilearn sample_mask semantics)",
            "kept_volumes": kept.tolist(),
        },
        "CovarianceEstimator": "EmpiricalCovariance (maximum likelihood, divisor T)",
        "ConnectivityKinds": kinds,
        "NetworkScore": "mean Fisher z (arctanh r) over network edges with both regions "
                        "non-empty; edges touching empty regions are dropped and listed; "
                        f"regions under {SMALL_REGION_VOXELS} voxels are listed as small",
        "EmptyRegions": [n for n, g in zip(names, good, strict=True) if not g],
    })
    return FunctionalResult(ts, conn, nets, alff_df, qc, regions, tr, meta)


def _alff_table(voxels: AtlasVoxels, names: list[str], conf: np.ndarray | None,
                sample_mask: np.ndarray | None, tr: float, cfg: FunctionalConfig
                ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Regional ALFF, fALFF, mALFF and zALFF of one run, and their sidecar description.

    Voxelwise ALFF/fALFF (:func:`~danemap.markers.functional._alff.voxel_alff`; censored
    runs by Lomb-Scargle) are averaged over each region's non-constant voxels. mALFF and
    zALFF normalise by the mean (and SD, ``ddof=1``) of the voxelwise ALFF over every
    non-constant atlas voxel of the run; both are linear in ALFF, so the region value
    (mean of the voxels' mALFF / zALFF) is the region ALFF normalised.
    """
    op_a = cleaning_operator(voxels.data.shape[0], conf, None, tr, cfg.detrend, None, None)
    basis = residual_basis(op_a)
    if basis is None:  # pragma: no cover - detrend+regression is always a projection
        raise InputError("ALFF: nuisance operator is not a projection")
    a, f, const = voxel_alff(voxels.data, tr, basis, ALFF_BAND, sample_mask=sample_mask)
    a *= abs(voxels.slope)
    keep = ~const
    counts = voxels.counts
    alff_r = np.full(counts.size, np.nan)
    falff_r = np.full(counts.size, np.nan)
    nvox_alff = np.zeros(counts.size, dtype=np.int64)
    for i, (s, c) in enumerate(zip(voxels.starts, counts, strict=True)):
        k = keep[s:s + c]
        nvox_alff[i] = int(k.sum())
        if nvox_alff[i]:
            alff_r[i] = float(a[s:s + c][k].mean())
            falff_r[i] = float(np.nanmean(f[s:s + c][k]))
    malff_r, zalff_r, ref_mean, ref_sd = normalise_alff(alff_r, a[keep])
    n_t = voxels.data.shape[0]
    n_kept = n_t if sample_mask is None else int(np.unique(sample_mask).size)
    table = pd.DataFrame({"region": names, "alff": alff_r, "falff": falff_r,
                          "malff": malff_r, "zalff": zalff_r, "n_voxels": nvox_alff})
    meta = {
        "band_hz": list(ALFF_BAND), "convention": "DPARSF/REST: mean of 2|FFT|/T over "
        "band after detrend + confound regression, zero-padded to a power of 2",
        "censoring": _ALFF_CENSORING,
        "spectrum": "FFT" if n_kept == n_t else "Lomb-Scargle periodogram (censored run)",
        "n_volumes_spectrum": n_kept,
        "malff_reference": _ALFF_REFERENCE,
        "reference_n_voxels": int(keep.sum()),
        "reference_mean_alff": ref_mean,
        "reference_sd_alff": ref_sd,
        "region_value": "mean of voxelwise values over the region's non-constant voxels",
    }
    return table, meta


#: How ALFF handles censored volumes (written to the sidecars).
_ALFF_CENSORING = (
    "censored volumes (scrubbing, non-steady-state) never enter the spectrum: the nuisance "
    "model is fitted on the kept volumes only, and a censored run's amplitude at each FFT "
    "bin is 2 sqrt(P/T) with P the Lomb-Scargle periodogram of the kept residuals (as "
    "XCP-D), T the run's volumes; runs without censoring use the FFT")
#: What mALFF and zALFF are normalised by (written to the sidecars).
_ALFF_REFERENCE = (
    "mean (mALFF) and mean and SD with ddof=1 (zALFF) of the voxelwise ALFF over every "
    "non-constant atlas voxel of the run (atlas voxels inside the brain mask when one is "
    "given): an atlas-mask mean, since danemap computes voxelwise ALFF only at atlas "
    "voxels, not DPABI's whole-brain-mask mean")


def open_bold(bold: Any, max_bytes: float | None, sidecar: Any, tr: float | None,
              sidecar_name: str | None = None
              ) -> tuple[Any, str, tuple[int, int, int], np.ndarray, Any, float, int]:
    """Check a BOLD header and settle its TR, before any voxel is read.

    Returns ``(header, name, shape, affine, sidecar, tr, n_volumes)``; the sidecar is the
    one beside the file when none is given (shared by the resting-state and task runs).
    ``tr`` overrides the files (``[functional] repetition_time``); ``sidecar_name`` names
    the JSON file a mapping ``sidecar`` came from, for messages.

    Raises
    ------
    InputError
        An unreadable or non-4D header, a BOLD of fewer than ``MIN_VOLUMES`` volumes, or
        a TR that is missing or disagrees between the header and the sidecar.
    """
    header, bold_name = _load_header(bold, max_bytes)
    shape, affine = _grid(header)
    n_t = int(header.get_data_shape()[3])
    where = str(bold) if isinstance(bold, str | os.PathLike) else bold_name
    if n_t < MIN_VOLUMES:
        raise InputError(
            f"{where}: a BOLD time series needs at least {MIN_VOLUMES} volumes; found "
            f"{n_t} (shape {tuple(header.get_data_shape())})"
        )
    if sidecar is None:
        sidecar = _sidecar_for(bold)
    tr_used = resolve_tr(header, sidecar, tr, where, sidecar_name)
    return header, bold_name, shape, affine, sidecar, tr_used, n_t


#: Fewest volumes of any BOLD run (a correlation needs a time series); the filter and the
#: degrees of freedom ask for more (:func:`~._clean.filter_min_volumes`, ``MIN_RESIDUAL_DOF``).
MIN_VOLUMES = 3


def _check_signal(raw: np.ndarray, n_voxels: np.ndarray | None, source: str) -> None:
    """Raise when no atlas region has a usable (finite, non-constant) mean series."""
    if raw.shape[1] == 0:
        raise InputError(f"{source}: no atlas region to analyse (0 columns)")
    finite = np.isfinite(raw).all(axis=0)
    varying = finite.copy()
    if finite.any():
        varying[finite] = np.ptp(raw[:, finite], axis=0) > 0
    if varying.any():
        return
    if n_voxels is not None and not np.nansum(np.asarray(n_voxels, dtype=float)):
        raise InputError(
            f"{source}: no atlas region has a voxel in the image (the atlas does not "
            "overlap the BOLD field of view, or the brain mask excludes every atlas voxel)"
        )
    if finite.any():
        raise InputError(
            f"{source}: no signal: every atlas region's mean series is constant over the "
            f"{raw.shape[0]} volumes (e.g. an all-zero or constant image); expected a "
            "preprocessed BOLD time series"
        )
    raise InputError(
        f"{source}: no signal: every atlas region's mean series has NaN or infinite values"
    )


def process_run(bold: Any, confounds: Any, atlas: Any,
                config: FunctionalConfig | None = None, mask: Any = None,
                tr: float | None = None,
                sidecar: str | os.PathLike[str] | Mapping[str, Any] | None = None,
                max_bytes: float | None = None,
                sidecar_name: str | None = None) -> FunctionalResult:
    """Denoise one BOLD run and compute every functional marker.

    Parameters
    ----------
    bold : path or nibabel.Nifti1Image
        4D BOLD in the atlas space (fMRIPrep ``*_desc-preproc_bold.nii.gz``).
    confounds : path, pandas.DataFrame or None
        fMRIPrep ``*_desc-confounds_timeseries.tsv`` (its JSON sidecar is read for
        CompCor masks) or a table; None: an error unless
        ``config.allow_missing_confounds`` (see Notes).
    atlas : danemap.atlas.Atlas
        Regions and networks; resampled to the BOLD grid (nearest neighbour).
    config : FunctionalConfig, optional
        Strategy, filter, scrubbing, QC settings and connectivity kinds (default
        ``FunctionalConfig()``).
    mask : path or image, optional
        Brain mask; atlas voxels outside it are ignored (like ``NiftiLabelsMasker``).
    tr : float, optional
        Explicit repetition time in seconds, overriding the files (default:
        ``config.repetition_time`` when > 0).
    sidecar : path or mapping, optional
        BOLD JSON sidecar; default: the ``.json`` next to ``bold``.
    max_bytes : float, optional
        Cap on the BOLD file's declared data size, checked on the header before any
        voxel is read (default 4 GiB; the CLI passes ``run.max_nifti_gib``).
    sidecar_name : str, optional
        The JSON file a mapping ``sidecar`` was read from (for messages).

    Returns
    -------
    FunctionalResult

    Raises
    ------
    InputError
        Unreadable inputs, fewer than 3 volumes, TR disagreement or absence, no
        confounds (unless ``allow_missing_confounds``), an empty or non-numeric confounds
        table, missing confound columns, confound rows not matching the volumes, every
        volume censored, a run too short for the band-pass filter, fewer than
        ``MIN_RESIDUAL_DOF`` residual degrees of freedom, no signal.
    ConfigError
        A negative ``repetition_time``.

    Notes
    -----
    Without confounds (``confounds=None``) the run is an error, since it would be
    processed with no confound regression and no motion QC; with
    ``FunctionalConfig(allow_missing_confounds=True)`` it is processed, with a warning,
    and its QC says ``qc_reason = "no confounds"`` and ``exclude = true``, so the group
    tables leave it out. ``FunctionalConfig.repetition_time`` (> 0) sets the TR when
    ``tr`` is None.
    """
    cfg = _check_cfg(config)
    tr = _tr_setting(tr, cfg)
    header, bold_name, shape, affine, sidecar, tr_used, n_t = open_bold(
        bold, max_bytes, sidecar, tr, sidecar_name)
    where = str(bold) if isinstance(bold, str | os.PathLike) else bold_name
    check_filter_length(n_t, tr_used, cfg.high_pass, cfg.low_pass, where)

    df, cmeta, csource = _confounds_frame(confounds)
    selection = None
    missing_conf = None
    if df is not None:
        if len(df) != n_t:
            raise InputError(
                f"{csource}: has {len(df)} rows but {where} has {n_t} volumes; expected one "
                "row per volume"
            )
        selection = select_confounds(df, cfg, cmeta, csource)
    else:
        missing_conf = _missing_confounds(bold, where, cfg)

    res_atlas = atlas.resample_to((shape, affine))
    labels = np.asarray(res_atlas.img.dataobj)
    mask_arr = _mask_array(mask, shape, affine)
    order, starts, counts = voxel_order(labels, res_atlas.labels, mask_arr)
    if isinstance(bold, str | os.PathLike):
        voxels = gather_from_file(bold, header, order, starts, counts)
    else:
        arr = np.asanyarray(bold.dataobj)
        voxels = gather_from_array(arr, order, starts, counts)
    raw = voxels.region_means()
    names = [str(n) for n in res_atlas.names]
    meta: dict[str, Any] = {"Sources": [str(bold) if not hasattr(bold, "dataobj")
                                        else "in-memory image", csource],
                            "confounds_source": csource, "bold_source": where}
    res = _finish(raw, names, counts, selection, cfg, tr_used, res_atlas.networks, voxels,
                  meta)
    del voxels
    res.mean_image = mean_bold(bold, header)
    if missing_conf is not None:
        res.qc.update({"strategy": "none", "confounds": [], "qc_reason": "no confounds",
                       "exclude": True, "exclusion_reasons": [missing_conf]})
    return res


def mean_bold(bold: Any, header: Any = None) -> Any:
    """Return the mean over volumes of a 4-D BOLD, streamed a block of volumes at a time.

    The file is decompressed (isal) block by block into one reused buffer and the volumes
    are summed in float64, so the memory used is one block and one float64 volume, never
    a second copy of the series. Scaling (``scl_slope``/``scl_inter``) is applied to the
    mean (exact: the mean is linear).

    Parameters
    ----------
    bold : path or nibabel.Nifti1Image
        The 4-D BOLD (a single ``.nii``/``.nii.gz`` file, or an image in memory).
    header : nibabel.Nifti1Header, optional
        Its header, already validated (read from the file when None).

    Returns
    -------
    nibabel.Nifti1Image
        3-D float32 image on the BOLD grid (its affine and ``qform``/``sform``).

    Raises
    ------
    InputError
        The file is truncated or its compressed stream is corrupt (named).
    """
    import nibabel as nib

    from danemap.markers.functional import _extract as ex

    if not isinstance(bold, str | os.PathLike):
        arr = np.asanyarray(bold.dataobj)
        total = np.zeros(arr.shape[:3], dtype=np.float64)
        step = max(1, ex._BLOCK_BYTES // max(1, int(np.prod(arr.shape[:3])) * 8))
        for t0 in range(0, arr.shape[3], step):
            total += np.sum(arr[..., t0:t0 + step], axis=3, dtype=np.float64)
        mean = total / arr.shape[3]
        out = nib.Nifti1Image(mean.astype(np.float32), bold.affine)
        out.header.set_xyzt_units(*bold.header.get_xyzt_units())
        return out
    if header is None:
        header, _ = _load_header(bold)
    p = Path(bold)
    shape = tuple(int(s) for s in header.get_data_shape())
    n_vox = int(np.prod(shape[:3]))
    n_t = int(np.prod(shape[3:]))
    dtype = header.get_data_dtype()
    slope, inter = header.get_slope_inter()
    slope = 1.0 if slope is None or not np.isfinite(slope) or slope == 0 else float(slope)
    inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    vol_bytes = n_vox * dtype.itemsize
    step = max(1, min(n_t, ex._BLOCK_BYTES // vol_bytes))
    buf = bytearray(step * vol_bytes)
    mv = memoryview(buf)
    total = np.zeros(n_vox, dtype=np.float64)
    with open(p, "rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        stream: Any = raw
        if magic == b"\x1f\x8b":
            from isal import igzip_threaded

            stream = igzip_threaded.open(raw, "rb", threads=1)
        try:
            if stream is raw:
                raw.seek(int(header["vox_offset"]))
            else:
                ex._skip(stream, int(header["vox_offset"]), p.name)
            t0 = 0
            while t0 < n_t:
                k = min(step, n_t - t0)
                need = k * vol_bytes
                got = ex._readinto_full(stream, mv[:need])
                if got < need:
                    raise InputError(f"{p.name}: file is truncated: volume "
                                     f"{t0 + got // vol_bytes} of {n_t} is incomplete")
                block = np.frombuffer(buf, dtype=dtype, count=k * n_vox).reshape(k, n_vox)
                total += block.sum(axis=0, dtype=np.float64)
                t0 += k
        except InputError:
            raise
        except Exception as exc:
            if not ex._is_stream_error(exc):
                raise
            raise InputError(f"{p.name}: corrupt or truncated data ({type(exc).__name__}: "
                             f"{exc})") from exc
        finally:
            if stream is not raw:
                stream.close()
    mean = (total / n_t) * slope + inter
    vol = mean.reshape(shape[:3], order="F").astype(np.float32)
    out = nib.Nifti1Image(vol, header.get_best_affine())
    out.header.set_xyzt_units(*header.get_xyzt_units())
    return out


def _missing_confounds(bold: Any, where: str, cfg: FunctionalConfig) -> str:
    """Refuse a run without confounds, or (when allowed) warn and return the QC reason."""
    expected = expected_confounds(bold)
    if not cfg.allow_missing_confounds:
        raise InputError(
            f"{where}: no fMRIPrep confounds file: expected {expected}, not found. Without "
            "it the run would be processed with no confound regression and no motion QC. "
            "Provide the confounds, or set --allow-missing-confounds ([functional] "
            "allow_missing_confounds = true) to process it anyway, flagged and left out "
            "of the group tables"
        )
    reason = (f"no confounds: {expected} not found; processed without confound regression "
              "or motion QC (allow_missing_confounds)")
    log.warning("%s: %s; the run is flagged and excluded from the group tables", where,
                reason)
    return reason


def process_timeseries(timeseries: pd.DataFrame, tr: float | None = None,
                       confounds: pd.DataFrame | Sequence[str] | None = None,
                       config: FunctionalConfig | None = None,
                       networks: Mapping[str, Sequence[tuple[str, str]]] | None = None,
                       n_voxels: Mapping[str, int] | None = None,
                       sample_mask: np.ndarray | None = None) -> FunctionalResult:
    """Compute connectivity and network scores from precomputed ROI time series.

    The confounds are used as given (no strategy selection, no motion QC). When ``tr`` is
    None the band-pass filter cannot be built: pass ``tr`` or disable filtering with
    ``FunctionalConfig(high_pass=0, low_pass=0)``; ALFF is not computed (it needs
    voxels).

    Parameters
    ----------
    timeseries : pandas.DataFrame
        Volumes x regions (column names are region names).
    tr : float or None
        Repetition time in seconds.
    confounds : DataFrame or sequence of str, optional
        Confound regressors (one row per volume), or names of columns of
        ``timeseries`` to use as confounds (they are removed from the regions).
    config : FunctionalConfig, optional
        ``detrend``, ``high_pass``, ``low_pass`` and ``connectivity`` are used.
    networks : mapping, optional
        ``{network: [(region_a, region_b), ...]}`` over column names (see
        :func:`bipartite_edges`); default: the danemap atlas networks for the columns
        that exist (networks without any column are skipped).
    n_voxels : mapping, optional
        Voxel counts per region, recorded in the network table. Regions it leaves out
        have an unknown count: ``n/a`` in ``region_voxels``, and ``n_voxels_total`` /
        ``n_voxels_min`` are ``n/a`` for networks that include them.
    sample_mask : ndarray of int, optional
        Indices of the volumes to keep (censoring).

    Returns
    -------
    FunctionalResult
        ``alff`` is None.
    """
    cfg = _check_cfg(config)
    if not isinstance(timeseries, pd.DataFrame):
        raise InputError(
            f"timeseries: expected a pandas DataFrame, found {type(timeseries).__name__}"
        )
    ts = timeseries
    conf_df: pd.DataFrame | None = None
    if confounds is not None:
        if isinstance(confounds, pd.DataFrame):
            conf_df = confounds
        else:
            missing = [c for c in confounds if c not in ts.columns]
            if missing:
                raise InputError(
                    f"confounds: columns {missing} are not in the time series table "
                    f"(columns: {list(ts.columns)[:10]})"
                )
            conf_df = ts[list(confounds)]
            ts = ts.drop(columns=list(confounds))
    names = [str(c) for c in ts.columns]
    try:
        raw = ts.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"timeseries: every column must be numeric ({exc})") from exc
    if networks is None:
        from danemap.atlas import NETWORKS

        present = set(names)
        networks = {k: [p for p in v if p[0] in present and p[1] in present]
                    for k, v in NETWORKS.items()}
        networks = {k: v for k, v in networks.items() if v}
    else:
        unknown = sorted({n for v in networks.values() for p in v for n in p} - set(names))
        if unknown:
            raise InputError(
                f"networks: regions {unknown} are not columns of the time series "
                f"(columns: {names[:10]})"
            )
    selection = None
    if conf_df is not None or sample_mask is not None:
        cdf = conf_df if conf_df is not None else pd.DataFrame(index=range(len(ts)))
        if len(cdf) != len(ts):
            raise InputError(
                f"confounds: has {len(cdf)} rows but the time series has {len(ts)}"
            )
        selection = ConfoundSelection(
            confounds=cdf.astype(np.float64),
            sample_mask=None if sample_mask is None else np.asarray(sample_mask, dtype=int),
            qc={"confounds": [str(c) for c in cdf.columns], "n_volumes": len(ts)},
        )
    nv = None if n_voxels is None else _voxel_counts(n_voxels, names)
    meta: dict[str, Any] = {"Sources": ["precomputed time series"],
                            "bold_source": "timeseries (precomputed)"}
    return _finish(raw, names, nv, selection, cfg, tr, networks, None, meta)


def _voxel_counts(n_voxels: Mapping[str, int], names: list[str]) -> np.ndarray:
    """Return the counts in column order as float, NaN where the mapping gives none."""
    if not isinstance(n_voxels, Mapping):
        raise InputError(
            f"n_voxels: expected a mapping of region name to voxel count, found "
            f"{type(n_voxels).__name__}"
        )
    unknown = sorted(str(k) for k in n_voxels if k not in set(names))
    if unknown:
        raise InputError(
            f"n_voxels: regions {unknown[:10]} are not columns of the time series "
            f"(columns: {names[:10]})"
        )
    out = np.full(len(names), np.nan)
    for i, n in enumerate(names):
        v = n_voxels.get(n)
        if v is None:
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            f = float("nan")
        if not (np.isfinite(f) and f >= 0 and f == int(f)):
            raise InputError(
                f"n_voxels: expected a non-negative whole number for region {n!r}, found {v!r}"
            )
        out[i] = f
    missing = [n for n, v in zip(names, out, strict=True) if np.isnan(v)]
    if missing:
        log.info("n_voxels: no count for %d region(s) (%s); recorded as unknown (n/a)",
                 len(missing), ", ".join(missing[:10]))
    return out
