"""Resting-state functional markers: denoised ROI time series, connectivity, ALFF, networks.

Pipeline of :func:`process_run` (one BOLD run):

1. **TR** from the explicit ``tr=`` argument, else the JSON sidecar ``RepetitionTime``
   and the NIfTI header (``pixdim[4]`` with its time unit); when both exist and differ
   by more than 1 ms, or neither gives a TR, an :class:`~danemap.errors.InputError`
   names both values and files.
2. **Confounds** from the fMRIPrep table, selected like nilearn's
   ``load_confounds_strategy`` (``simple``, ``scrubbing``, ``compcor``) or a user list
   (``custom``), with motion QC (mean FD, % volumes flagged/scrubbed, exclusion flag
   against ``max_mean_fd`` and ``max_scrubbed_pct``). See ``_func_confounds``.
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
7. **ALFF / fALFF / mALFF / zALFF** (DPARSF/REST convention, see ``_func_alff``): for
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
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from danemap._utils.logging import get_logger
from danemap.config import FunctionalConfig
from danemap.errors import InputError
from danemap.markers._func_alff import normalise_alff, voxel_alff
from danemap.markers._func_clean import cleaning_operator, residual_basis
from danemap.markers._func_confounds import (
    ConfoundSelection,
    read_confounds,
    read_confounds_json,
    select_confounds,
)
from danemap.markers._func_connectivity import (
    SMALL_REGION_VOXELS,
    connectivity,
    fisher_z,
    network_scores,
    vectorise,
)
from danemap.markers._func_extract import (
    AtlasVoxels,
    gather_from_array,
    gather_from_file,
    voxel_order,
)

__all__ = [
    "ALFF_BAND",
    "FunctionalResult",
    "bipartite_edges",
    "collect_functional_group",
    "process_run",
    "process_timeseries",
    "resolve_tr",
    "write_run",
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
    """

    timeseries: pd.DataFrame
    connectivity: dict[str, pd.DataFrame]
    networks: pd.DataFrame
    alff: pd.DataFrame | None
    qc: dict[str, Any]
    regions: pd.DataFrame
    tr: float | None
    meta: dict[str, Any] = field(default_factory=dict)


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
               tr: float | None = None, bold_name: str = "BOLD image") -> float:
    """Repetition time in seconds from the argument, the JSON sidecar and the header.

    Parameters
    ----------
    header : nibabel header or None
        The BOLD header (``pixdim[4]`` and ``xyzt_units``).
    sidecar : path, mapping or None
        The BOLD JSON sidecar (``RepetitionTime`` in seconds); a missing file is ignored.
    tr : float or None
        Explicit TR; wins over the files (a disagreement is logged).
    bold_name : str
        Name of the BOLD file for messages.

    Returns
    -------
    float

    Raises
    ------
    InputError
        When the sidecar and header disagree by more than 1 ms, a value is not positive,
        or no TR is found.
    """
    side_tr: float | None = None
    side_name = "no sidecar"
    if isinstance(sidecar, Mapping):
        meta: Any = sidecar
        side_name = "sidecar (mapping)"
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
    if header is not None:
        zooms = header.get_zooms()
        if len(zooms) > 3 and float(zooms[3]) > 0:
            unit = header.get_xyzt_units()[1]
            scale = {"msec": 1e-3, "usec": 1e-6}.get(unit, 1.0)
            head_tr = float(zooms[3]) * scale
    if tr is not None:
        if not np.isfinite(tr) or tr <= 0:
            raise InputError(f"tr: expected a positive number of seconds, found {tr}")
        for name, val in ((side_name, side_tr), (f"{bold_name} header pixdim[4]", head_tr)):
            if val is not None and abs(val - tr) > TR_TOLERANCE:
                log.warning("tr=%s given explicitly overrides %s (%s s)", tr, name, val)
        return float(tr)
    if side_tr is not None and head_tr is not None and abs(side_tr - head_tr) > TR_TOLERANCE:
        raise InputError(
            f"repetition time disagrees: {side_name} RepetitionTime={side_tr} s but "
            f"{bold_name} header pixdim[4]={head_tr} s; fix one or pass tr="
        )
    if side_tr is not None:
        return side_tr
    if head_tr is not None:
        return head_tr
    raise InputError(
        f"no repetition time: {side_name} has no RepetitionTime and {bold_name} header "
        "pixdim[4] is 0; pass tr= (seconds)"
    )


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
    import nibabel as nib

    img: Any = nib.load(mask) if isinstance(mask, str | os.PathLike) else mask
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
    op = cleaning_operator(n_t, conf, sample_mask, tr, cfg.detrend, cfg.high_pass,
                           cfg.low_pass)
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

    Voxelwise ALFF/fALFF (:func:`~danemap.markers._func_alff.voxel_alff`; censored
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


def process_run(bold: Any, confounds: Any, atlas: Any,
                config: FunctionalConfig | None = None, mask: Any = None,
                tr: float | None = None,
                sidecar: str | os.PathLike[str] | Mapping[str, Any] | None = None,
                max_bytes: float | None = None) -> FunctionalResult:
    """Denoise one BOLD run and compute every functional marker.

    Parameters
    ----------
    bold : path or nibabel.Nifti1Image
        4D BOLD in the atlas space (fMRIPrep ``*_desc-preproc_bold.nii.gz``).
    confounds : path, pandas.DataFrame or None
        fMRIPrep ``*_desc-confounds_timeseries.tsv`` (its JSON sidecar is read for
        CompCor masks) or a table; None: no confound regression and no motion QC.
    atlas : danemap.atlas.Atlas
        Regions and networks; resampled to the BOLD grid (nearest neighbour).
    config : FunctionalConfig, optional
        Strategy, filter, scrubbing, QC settings and connectivity kinds (default
        ``FunctionalConfig()``).
    mask : path or image, optional
        Brain mask; atlas voxels outside it are ignored (like ``NiftiLabelsMasker``).
    tr : float, optional
        Explicit repetition time in seconds, overriding the files.
    sidecar : path or mapping, optional
        BOLD JSON sidecar; default: the ``.json`` next to ``bold``.
    max_bytes : float, optional
        Cap on the BOLD file's declared data size, checked on the header before any
        voxel is read (default 4 GiB; the CLI passes ``run.max_nifti_gib``).

    Returns
    -------
    FunctionalResult

    Raises
    ------
    InputError
        Unreadable inputs, TR disagreement or absence, missing confound columns, confound
        rows not matching the volumes, every volume censored.
    """
    cfg = _check_cfg(config)
    header, bold_name = _load_header(bold, max_bytes)
    shape, affine = _grid(header)
    if sidecar is None:
        sidecar = _sidecar_for(bold)
    tr_used = resolve_tr(header, sidecar, tr, bold_name)
    n_t = int(header.get_data_shape()[3])

    df, cmeta, csource = _confounds_frame(confounds)
    selection = None
    if df is not None:
        if len(df) != n_t:
            raise InputError(
                f"{csource}: has {len(df)} rows but {bold_name} has {n_t} volumes"
            )
        selection = select_confounds(df, cfg, cmeta, csource)

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
                            "confounds_source": csource}
    return _finish(raw, names, counts, selection, cfg, tr_used, res_atlas.networks, voxels,
                   meta)


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
    meta: dict[str, Any] = {"Sources": ["precomputed time series"]}
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


# --------------------------------------------------------------------------- writing
_NETWORK_COLUMNS: dict[str, str] = {
    "network": "network name (atlas networks)",
    "mean_z": "mean Fisher z (arctanh r) over the usable network edges",
    "mean_r": "tanh(mean_z)",
    "n_edges": "edges used",
    "n_edges_planned": "edges defined for the network",
    "n_edges_dropped": "edges dropped because a region is empty or its signal unusable",
    "dropped_edges": "dropped edges, RegionA__RegionB separated by ';'",
    "n_regions": "regions in the network",
    "n_voxels_total": "voxels over the network regions (n/a when any region's count is "
                      "unknown, e.g. precomputed time series)",
    "n_voxels_min": "voxels of the smallest network region (n/a when any region's count is "
                    "unknown)",
    "small_regions": f"regions with a known count under {SMALL_REGION_VOXELS} voxels "
                     "(';'-separated)",
    "region_voxels": "voxels per network region, name=count separated by ';' "
                     "(name=n/a when the count is unknown)",
}
_ALFF_COLUMNS: dict[str, str] = {
    "region": "region name",
    "alff": "mean voxelwise ALFF (0.01-0.08 Hz amplitude, BOLD units; censored volumes "
            "left out, Lomb-Scargle)",
    "falff": "mean voxelwise fALFF (band amplitude / total amplitude)",
    "malff": "alff divided by the mean voxelwise ALFF over every non-constant atlas voxel "
             "of the run (dimensionless)",
    "zalff": "(alff - that mean) / the SD (ddof=1) of the voxelwise ALFF over the same "
             "voxels (dimensionless)",
    "n_voxels": "non-constant voxels averaged",
}


def write_run(result: FunctionalResult, writer: Any, subject: str,
              session: str | None = None, task: str = "rest",
              run: str | int | None = None, atlas: str = "danemap") -> list[Path]:
    """Write one run's outputs as BIDS derivatives (atomic, with JSON sidecars).

    Files (``func/`` of the participant):
    ``sub-X[_ses-Y]_task-T[_run-N]_atlas-<atlas>_timeseries.tsv``,
    ``..._atlas-<atlas>_desc-<corr|partialcorr>_connectivity.tsv`` (the kinds computed;
    square, region names as header and first column), ``..._atlas-<atlas>_desc-networks_stats.tsv``,
    ``..._atlas-<atlas>_desc-alff_stats.tsv`` (when computed) and
    ``..._desc-qc_motion.json``.

    Parameters
    ----------
    result : FunctionalResult
        From :func:`process_run` or :func:`process_timeseries`.
    writer : danemap.io.DerivativesWriter
        Output writer.
    subject : str
        Participant label (a ``sub-`` prefix is accepted).
    session : str or None
        Session label (a ``ses-`` prefix is accepted); None: no ``ses-`` entity.
    task : str
        Task label.
    run : str, int or None
        Run index (written as ``run-<run>``); None: no ``run-`` entity.
    atlas : str
        The ``atlas-`` entity: the name of the atlas the regions come from
        (:attr:`danemap.atlas.Atlas.name`).

    Returns
    -------
    list of Path
        The files written.
    """
    from danemap.io import write_json

    sub = str(subject).removeprefix("sub-")
    ents: dict[str, Any] = {"task": task}
    if session is not None:
        ents["ses"] = str(session).removeprefix("ses-")
    if run is not None:
        ents["run"] = str(run)
    paths: list[Path] = []

    def _p(suffix: str, ext: str, **extra: Any) -> Path:
        return Path(writer.path(sub, "func", suffix, ext, **{**ents, **extra}))

    meta = {k: v for k, v in result.meta.items() if k != "confounds_source"}
    names = [str(n) for n in result.regions["name"]]
    region_voxels: dict[str, int | None] = {
        n: None if pd.isna(v) else int(v)
        for n, v in zip(names, result.regions["n_voxels"], strict=True)}
    p = _p("timeseries", ".tsv", atlas=atlas)
    cols = {"volume": "index of the volume in the run (censored volumes are absent)"}
    cols.update({n: f"denoised mean signal of region {n} ("
                    + ("voxel count unknown" if region_voxels[n] is None
                       else f"{region_voxels[n]} voxels") + "; n/a when empty)"
                 for n in names})
    writer.write_tsv(result.timeseries.reset_index(), p, sidecar={
        **cols, "_metadata": {
            **meta, "Description": "Denoised region mean time series (kept volumes only)",
            "RegionVoxels": region_voxels}})
    paths.append(p)
    for kind, mat in result.connectivity.items():
        p = _p("connectivity", ".tsv", atlas=atlas, desc=kind)
        df = mat.copy()
        df.index.name = "region"
        writer.write_tsv(df.reset_index(), p, sidecar={
            "region": "row region name", "_metadata": {
                "Description": f"{KINDS[kind]} between denoised region time series "
                               "(square; rows and columns in atlas order)",
                "CovarianceEstimator": meta.get("CovarianceEstimator"),
                "EmptyRegions": meta.get("EmptyRegions", []),
                "RegionVoxels": region_voxels}})
        paths.append(p)
    p = _p("stats", ".tsv", atlas=atlas, desc="networks")
    writer.write_tsv(result.networks, p, sidecar={**_NETWORK_COLUMNS, "_metadata": {
        "Description": "Network scores: mean within-network Fisher z of the correlation",
        "SmallRegionHandling": meta.get("NetworkScore")}})
    paths.append(p)
    if result.alff is not None:
        p = _p("stats", ".tsv", atlas=atlas, desc="alff")
        writer.write_tsv(result.alff, p, sidecar={**_ALFF_COLUMNS, "_metadata": {
            "Description": "Regional ALFF / fALFF / mALFF / zALFF",
            **meta.get("alff", {})}})
        paths.append(p)
    p = _p("motion", ".json", desc="qc")
    write_json(p, {**result.qc, "RepetitionTime": result.tr})
    paths.append(p)
    return paths


# --------------------------------------------------------------------------- group
_ENT = re.compile(r"(sub|ses|task|run)-([A-Za-z0-9]+)")


def _entities(name: str) -> dict[str, str]:
    return {k: v for k, v in _ENT.findall(name)}


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
        from danemap.io import atomic_open, write_json

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
        with atomic_open(p) as fh:  # streamed: a cohort's edge table is never one string
            table.to_csv(fh, sep="\t", index=False, na_rep="n/a", float_format="%.8g",
                         lineterminator="\n")
        write_json(p.with_suffix(".json"), {
            **_group_sidecar(name, [str(c) for c in table.columns]), **extra,
            "ExcludedByMotionQC": [] if name == "motion_qc" else excluded,
        })
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
                log.warning("%s: excluded from the group tables by motion QC (%s)", stem,
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
    "exclude": {"Description": "true when the run exceeds max_mean_fd or max_scrubbed_pct "
                               "and is left out of the feature tables"},
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
