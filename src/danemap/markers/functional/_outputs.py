"""Per-run derivatives of the functional family: TSVs and JSON sidecars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from danemap._utils.logging import get_logger
from danemap.markers.functional._compute import KINDS, FunctionalResult
from danemap.markers.functional._connectivity import SMALL_REGION_VOXELS

__all__ = ["write_run"]

log = get_logger("markers.functional")

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
              run: str | int | None = None, atlas: str = "danemap",
              space: str | None = None, res: str | None = None,
              fd: Any = None, fd_source: str | None = None) -> list[Path]:
    """Write one run's outputs as BIDS derivatives (atomic, with JSON sidecars).

    Files (``func/`` of the participant):
    ``sub-X[_ses-Y]_task-T[_run-N]_atlas-<atlas>_timeseries.tsv``,
    ``..._atlas-<atlas>_desc-<corr|partialcorr>_connectivity.tsv`` (the kinds computed;
    square, region names as header and first column), ``..._atlas-<atlas>_desc-networks_stats.tsv``,
    ``..._atlas-<atlas>_desc-alff_stats.tsv`` (when computed),
    ``..._desc-qc_motion.json``, ``..._desc-fd_timeseries.tsv`` (when ``fd`` is given) and,
    when the run was read from voxels, the mean BOLD
    ``...[_space-<space>][_res-<res>]_desc-mean_bold.nii.gz`` (with a JSON sidecar naming
    its source; the report's QC image).

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
    space, res : str or None
        The ``space-`` and ``res-`` entities of the mean BOLD (those of the BOLD it is
        the mean of); None: left out.
    fd : array_like or None
        The run's framewise displacement, one value per volume (NaN where undefined):
        written as ``..._desc-fd_timeseries.tsv`` (``volume``, ``framewise_displacement``)
        so the report's FD trace needs no input; None: not written.
    fd_source : str or None
        The file ``fd`` was read from (the sidecar's ``Sources``).

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
    if fd is not None:
        import numpy as np

        series = np.asarray(fd, dtype=np.float64).ravel()
        p = _p("timeseries", ".tsv", desc="fd")
        writer.write_tsv(pd.DataFrame({"volume": np.arange(series.size),
                                       "framewise_displacement": series}), p, sidecar={
            "volume": "index of the volume in the run (every volume, censored ones included)",
            "framewise_displacement": {"Description": "framewise displacement (Power et al. "
                                                      "2012) as fMRIPrep computed it; n/a for "
                                                      "the first volume",
                                       "Units": "mm"},
            "_metadata": {"Description": "The run's framewise displacement series (the "
                                         "participant report's FD trace)",
                          "Sources": [fd_source or "n/a"]}})
        paths.append(p)
    if result.mean_image is not None:
        from danemap.io import write_nifti

        p = _p("bold", ".nii.gz", space=space, res=res, desc="mean")
        paths.append(write_nifti(result.mean_image, p))
        write_json(p.with_name(p.name.replace(".nii.gz", ".json")), {
            "Description": "Mean over volumes of the preprocessed BOLD (every volume, "
                           "before denoising or censoring), on its grid",
            "Sources": [meta.get("bold_source", "n/a")]})
    return paths


