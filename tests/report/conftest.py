"""A small, synthesised danemap output tree for the report tests (no pipeline run).

The files follow the formats the families write (checked against a ``danemap demo`` run):
functional (time series with censored volumes absent, correlation matrix, network scores,
motion QC), structural (volumes + sidecar, QC PNG), PET (SBR table + sidecar, QC PNG, TACs
and their fitted curves),
task (MID contrasts) and the group level's normative z-scores with their summaries.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

#: Hostile strings, planted where data strings reach the reports.
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(2)>'

#: What the tree plants (the tests compare the reports with it).
PLANTED = {
    "n_volumes": 40, "censored": [5, 6, 20], "fd_threshold": 0.5,
    "z": {"frontostriatal": 1.0, "lc_pfc": -2.5, IMG: 0.3},
    "abc_sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
}


def _png(path: Path, seed: int) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2), dpi=60)
    ax = fig.add_subplot()
    ax.imshow(np.random.default_rng(seed).random((20, 30)), cmap="gray")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")


def _boldref(path: Path, volumes: int = 0) -> None:
    """Write a brain-like blob on the 3 mm MNI grid (4-D with ``volumes`` > 0)."""
    import nibabel as nib

    from danemap.atlas._atlas import mni_grid

    shape, affine = mni_grid(3)
    ijk = np.indices(shape, dtype=float)
    centre = np.asarray(shape, float)[:, None, None, None] / 2
    r2 = (((ijk - centre) / (np.asarray(shape, float)[:, None, None, None] * 0.4)) ** 2).sum(0)
    data = (1000 * np.exp(-r2 * 2) * (r2 < 1)).astype(np.float32)
    if volumes:
        data = data[..., None] * np.linspace(0.9, 1.1, volumes, dtype=np.float32)
    nib.save(nib.Nifti1Image(data, affine), path)


def _tsv(df: pd.DataFrame, path: Path, meta: dict | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, sep="\t", index=False, na_rep="n/a")
    if meta is not None:
        path.with_suffix(".json").write_text(json.dumps(meta))


def build_tree(base: Path) -> Path:
    """Write the output tree under ``base``; return its ``danemap`` root."""
    from danemap.atlas import REGION_TABLE

    rng = np.random.default_rng(0)
    bids = base / "bids"
    root = base / "out" / "danemap"
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({
        "Name": "danemap", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "danemap", "Version": "0.1.0", "ConfigHash": "c0ffee42"}]}))
    _tsv(pd.DataFrame({"participant_id": ["sub-01", "sub-02", "sub-03"],
                       "status": ["ok", "ok", "failed"], "seconds": [12.5, 3.0, 0.2],
                       "runs": [4, 1, 0], "qc_excluded_runs": [0, 1, 0],
                       "error": [None, None, f"no usable input {SCRIPT}"]}),
         root / "logs" / "participant_status.tsv")
    # inputs: an input whose content is "abc" (a published SHA-256), the confounds
    fmriprep = bids / "derivatives" / "fmriprep" / "sub-01" / "func"
    fmriprep.mkdir(parents=True)
    bold = fmriprep / "sub-01_task-rest_desc-preproc_bold.nii.gz"
    bold.write_bytes(b"abc")
    _boldref(fmriprep / "sub-01_task-rest_boldref.nii.gz")
    n = PLANTED["n_volumes"]
    fd = np.abs(rng.normal(0.15, 0.05, n))
    fd[PLANTED["censored"]] = 1.2
    fd[0] = np.nan
    conf = fmriprep / "sub-01_task-rest_desc-confounds_timeseries.tsv"
    _tsv(pd.DataFrame({"framewise_displacement": fd, "trans_x": 0.0}), conf)
    names = [n for r in REGION_TABLE
             for n in ([f"{r[0]}_L", f"{r[0]}_R"] if r[1] == "LR" else [r[0]])]
    kept = [v for v in range(n) if v not in PLANTED["censored"]]
    func = root / "sub-01" / "func"
    stem = "sub-01_task-rest"
    ts = pd.DataFrame(rng.normal(size=(len(kept), len(names))), columns=names)
    ts.insert(0, "volume", kept)
    _tsv(ts, func / f"{stem}_atlas-danemap_timeseries.tsv",
         {"Sources": [str(bold), str(conf)], "RepetitionTime": 2.0})
    corr = np.corrcoef(rng.normal(size=(len(names), 60)))
    conn = pd.DataFrame(corr, columns=names)
    conn.insert(0, "region", names)
    _tsv(conn, func / f"{stem}_atlas-danemap_desc-corr_connectivity.tsv", {})
    _tsv(pd.DataFrame({"network": ["frontostriatal", "lc_pfc", SCRIPT],
                       "mean_z": [0.45, 0.09, 0.2], "mean_r": [0.42, 0.09, 0.2],
                       "n_edges": [30, 5, 6], "n_edges_planned": [30, 10, 6],
                       "n_edges_dropped": [0, 5, 0],
                       "dropped_edges": [None, "LC_L__DLPFC_L", None],
                       "small_regions": [None, "LC_L", None]}),
         func / f"{stem}_atlas-danemap_desc-networks_stats.tsv", {})
    (func / f"{stem}_desc-qc_motion.json").write_text(json.dumps({
        "n_volumes": n, "n_volumes_kept": len(kept), "mean_fd": 0.21, "max_fd": 1.2,
        "fd_threshold": PLANTED["fd_threshold"], "n_fd_over_threshold": 3,
        "pct_scrubbed": 7.5, "exclude": False, "exclusion_reasons": []}))
    # structural
    anat = root / "sub-01" / "anat"
    _tsv(pd.DataFrame({"region": ["Caudate_L", "Putamen_L", IMG], "hemisphere": "L",
                       "volume_mm3": [3500.0, 4800.0, 10.0], "method": "ants-atlas",
                       "qc": [None, None, None], "gm_volume_mm3": [2000.0, 2500.0, 5.0]}),
         anat / "sub-01_atlas-danemap_desc-volumes_stats.tsv",
         {"Method": "ants-atlas", "Sources": [str(bids / "sub-01" / "anat" / "gone.nii.gz")],
          "ICV": {"Value_mm3": 1.5e6, "Method": "brain mask + CSF"}})
    _png(root / "sub-01" / "figures" / "sub-01_atlas-danemap_desc-qc_T1w.png", 1)
    # PET (dynamic: TACs too)
    pet = root / "sub-01" / "pet"
    rows = []
    for region in ("caudate", "putamen", "putamen_anterior", "putamen_posterior"):
        for method, scale in (("uncorrected", 1.0), ("gtm", 1.5)):
            for hemi, v in (("L", 2.0), ("R", 2.2), ("bilateral", 2.1)):
                rows.append({"region": region, "hemisphere": hemi, "measure": "SBR",
                             "value": v * scale, "method": method, "reference": "occipital",
                             "pvc": method == "gtm"})
            rows.append({"region": region, "hemisphere": "bilateral",
                         "measure": "asymmetry_index", "value": 9.5 * scale, "method": method,
                         "reference": "occipital", "pvc": method == "gtm"})
    _tsv(pd.DataFrame(rows), pet / "sub-01_trc-FPCIT_atlas-danemap_desc-sbr_stats.tsv",
         {"TracerName": "FP-CIT", "Reference": "occipital", "PVC": "gtm",
          "PSF_FWHM_mm": 8.0, "Sources": [str(bold)]})
    t = np.arange(0, 60, 10.0)
    _tsv(pd.DataFrame({"frame_start_min": t, "frame_end_min": t + 10,
                       "Putamen_L": 1 - np.exp(-t / 20 - 0.1), "reference": 0.5 + 0 * t}),
         pet / "sub-01_trc-FPCIT_atlas-danemap_tacs.tsv", {})
    tac = 1 - np.exp(-t / 20 - 0.1)
    _tsv(pd.DataFrame({"frame_start_min": t, "frame_end_min": t + 10,
                       "frame_mid_min": t + 5, "Putamen_L__srtm": tac * 1.01,
                       "Putamen_L__mrtm2": tac * 0.99}),
         pet / "sub-01_trc-FPCIT_atlas-danemap_desc-fits_tacs.tsv", {})
    _png(root / "sub-01" / "figures" / "sub-01_trc-FPCIT_atlas-danemap_desc-qc_pet.png", 2)
    # task
    _tsv(pd.DataFrame({"contrast": ["gain_vs_neutral"] * 3, "region": ["NAcc_L", "NAcc_R",
                                                                        "Caudate_L"],
                       "effect": [0.31, 0.28, 0.1], "t": [3.1, 2.9, 1.0], "dof": [300] * 3,
                       "n_runs": [2] * 3}),
         root / "sub-01" / "func" / "sub-01_task-mid_atlas-danemap_desc-contrasts_stats.tsv",
         {"Sources": [str(bold)]})
    # sub-02: functional only, its run excluded by motion QC
    func2 = root / "sub-02" / "func"
    func2.mkdir(parents=True)
    (func2 / "sub-02_task-rest_desc-qc_motion.json").write_text(json.dumps({
        "n_volumes": n, "mean_fd": 0.9, "fd_threshold": 0.5, "exclude": True,
        "exclusion_reasons": ["mean FD 0.90 mm > 0.5 mm"]}))
    _tsv(pd.DataFrame({"network": ["frontostriatal"], "mean_z": [0.3], "mean_r": [0.29],
                       "n_edges": [30], "n_edges_planned": [30], "n_edges_dropped": [0]}),
         func2 / "sub-02_task-rest_atlas-danemap_desc-networks_stats.tsv", {})
    # group level: normative z of the networks (small reference), pet's normative failed
    group = root / "group"
    group.mkdir()
    (group / "tables.json").write_text(json.dumps({"tables": [
        {"name": "networks", "title": "Network scores", "family": "functional",
         "analyses": ["glm", "normative"]},
        {"name": "pet", "title": "DAT SBR", "family": "pet", "analyses": ["glm", "normative"]},
    ]}))
    z = PLANTED["z"]
    _tsv(pd.DataFrame([{"participant_id": "sub-01", "group": "ADHD",
                        "scored": "model fitted on all controls", **z, "n_extreme": 1},
                       {"participant_id": "sub-02", "group": "TD",
                        "scored": "out-of-sample CV", **{k: 0.0 for k in z}, "n_extreme": 0}]),
         group / "stats" / "networks" / "normative_z.tsv")
    (group / "stats" / "networks" / "summary.json").write_text(json.dumps({"analyses": {
        "normative": {"status": "done", "small_reference": True,
                      "control_calibration": {"all": {"sd": 1.1, "frac_extreme": 0.05}}}}}))
    (group / "stats" / "pet").mkdir(parents=True)
    (group / "stats" / "pet" / "summary.json").write_text(json.dumps({"analyses": {
        "normative": {"status": "failed", "error": "normative model: 2 controls are too few"}
    }}))
    return root


@pytest.fixture(scope="module")
def output_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthesised output tree (one per test module); its ``danemap`` root."""
    return build_tree(tmp_path_factory.mktemp("tree"))


@pytest.fixture(scope="session")
def tree() -> dict:
    """The tree's builder and what it plants: ``build``, ``planted``, ``script``, ``img``,
    and ``boldref`` (writes a 3-D or 4-D brain-like image)."""
    return {"build": build_tree, "planted": PLANTED, "script": SCRIPT, "img": IMG,
            "boldref": _boldref}


def run_group_stats(group_dir: Path, n_per_site: tuple[int, ...], keep: list[int] | None,
                    analyses: tuple[str, ...]) -> Path:
    """Run the statistics on a simulated table whose names are hostile; return group_dir.

    The site names, one feature name and a participants.tsv column carry ``<script>`` and
    ``"><img onerror=...>``; ``keep`` selects rows (a 3-participant run fails).
    """
    from danemap.config import StatsConfig
    from danemap.simulate._table import simulate_feature_table
    from danemap.stats.pipeline import run_stats

    F, P, _ = simulate_feature_table(n_per_site=n_per_site, d=0.4, n_features=3, seed=2)
    if keep is not None:
        F, P = F.iloc[keep], P.iloc[keep]
    P = P.assign(site=P["site"].map({"site1": SCRIPT, "site2": IMG}).fillna(P["site"]))
    P[f"note{SCRIPT}"] = "x"
    F = F.rename(columns={F.columns[1]: IMG, F.columns[2]: SCRIPT})
    group_dir.mkdir(parents=True, exist_ok=True)
    F.to_csv(group_dir / "networks.tsv", sep="\t", index=False)
    P.to_csv(group_dir / "participants.tsv", sep="\t", index=False)
    run_stats(group_dir / "networks.tsv", group_dir / "participants.tsv",
              group_dir / "stats" / "networks", StatsConfig(n_permutations=50),
              analyses=analyses, on_error="record")
    (group_dir / "tables.json").write_text(json.dumps({"tables": [
        {"name": "networks", "title": "Network scores", "family": "functional",
         "analyses": list(analyses)}]}))
    return group_dir


@pytest.fixture(scope="module")
def group_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two group folders with written reports: ``ok`` (20 participants) and ``failed`` (3)."""
    from danemap.report.group import write_group_report

    base = tmp_path_factory.mktemp("group")
    ok = run_group_stats(base / "ok", (10, 10), None, ("harmonize", "glm", "meta"))
    failed = run_group_stats(base / "failed", (4, 4), [0, 1, 4], (
        "harmonize", "glm", "meta", "permutation", "normative", "classify"))
    return {"ok": write_group_report(ok), "failed": write_group_report(failed)}
