"""Planted truth: recovery of simulated network scores and false-positive rate."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from danemap.atlas import load_atlas
from danemap.config import FunctionalConfig
from danemap.errors import DanemapWarning
from danemap.markers import bipartite_edges, process_run, process_timeseries


def test_planted_network_scores_recovered(tmp_path):
    from danemap.simulate import simulate_cohort

    root = simulate_cohort(tmp_path / "bids", n_subjects=10, n_sites=1, seed=0, resolution=3,
                           modalities=("func",), site_effects=False, n_volumes=200)
    truth = json.loads((root / "ground_truth.json").read_text())
    groups = pd.read_csv(root / "participants.tsv", sep="\t").set_index("participant_id")
    atlas = load_atlas(resolution=3)
    scores: dict[str, dict[str, list[float]]] = {}
    for sub in groups.index:
        d = root / "derivatives" / "fmriprep" / sub / "func"
        bold = next(d.glob("*_desc-preproc_bold.nii.gz"))
        conf = next(d.glob("*_desc-confounds_timeseries.tsv"))
        mask = next(d.glob("*_desc-brain_mask.nii.gz"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DanemapWarning)
            # high-pass only: the planted ROI correlations hold under any linear filter,
            # and keeping the 0.1-0.25 Hz band halves the sampling noise of each edge
            res = process_run(bold, conf, atlas, FunctionalConfig(low_pass=0), mask=mask)
        nets = res.networks.set_index("network")
        for net in ("frontostriatal", "lc_pfc"):
            scores.setdefault(net, {}).setdefault(groups.loc[sub, "group"], []).append(
                nets.loc[net, "mean_z"])
    for net in ("frontostriatal", "lc_pfc"):
        # planted truth of the drawn participants (subject shifts included)
        want = {grp: float(np.mean([
            truth["participants"][s]["func"]["networks"][net]["expected_score_z"]
            for s in groups.index[groups["group"] == grp]])) for grp in scores[net]}
        for grp, vals in scores[net].items():
            got = float(np.mean(vals))
            print(f"{net} {grp}: measured {got:.3f} planted {want[grp]:.3f}")
            assert abs(got - want[grp]) <= 0.1


def _roi_series(rng, n_t, c, noise_var, n_vox, phi=0.5):
    """ROI means of voxels = latent (corr c) + noise / sqrt(n_vox); AR(1) filtered."""
    from scipy.signal import lfilter

    k = c.shape[0]
    lat = rng.normal(size=(n_t + 20, k)) @ np.linalg.cholesky(c).T
    noise = rng.normal(size=(n_t + 20, k)) * np.sqrt(noise_var / n_vox)
    x = lfilter([np.sqrt(1 - phi**2)], [1, -phi], lat + noise, axis=0)[20:]
    return x


def test_false_positive_rate_without_planted_effect():
    """40 seeds x (10 ADHD vs 10 TD) of ROI-level data through process_timeseries.

    Both groups share the same coupling for the mesolimbic and nigrostriatal networks
    (no planted effect); a Welch t-test on the network scores at alpha=0.05 must reject
    in at most 10% of the seeds. ROI-level input keeps the test fast; the path after
    region averaging (cleaning operator, correlation, Fisher z, scores) is the one
    process_run uses.
    """
    names = ["VTA_L", "NAcc_L", "mPFC_L", "SNc_L", "Caudate_L", "Putamen_L"]
    nets = {"mesolimbic": bipartite_edges(["VTA_L"], ["NAcc_L", "mPFC_L"]),
            "nigrostriatal": bipartite_edges(["SNc_L"], ["Caudate_L", "Putamen_L"])}
    c = np.full((6, 6), 0.2) + 0.8 * np.eye(6)
    c[0, 1] = c[1, 0] = c[0, 2] = c[2, 0] = 0.35
    c[3, 4] = c[4, 3] = c[3, 5] = c[5, 3] = 0.45
    n_vox = np.array([2, 44, 1139, 9, 248, 293])
    conf = FunctionalConfig()
    rejections = {k: 0 for k in nets}
    n_seeds = 40
    for seed in range(n_seeds):
        rng = np.random.default_rng(1000 + seed)
        sc: dict[str, list[list[float]]] = {k: [[], []] for k in nets}
        for g in (0, 1):
            for _ in range(10):
                subj_c = c.copy()
                x = _roi_series(rng, 120, subj_c, 4.0, n_vox)
                res = process_timeseries(pd.DataFrame(x, columns=names), tr=2.0, config=conf,
                                         networks=nets,
                                         n_voxels=dict(zip(names, n_vox.tolist(),
                                                           strict=True)))
                for _, row in res.networks.iterrows():
                    sc[row["network"]][g].append(row["mean_z"])
        for k in nets:
            p = stats.ttest_ind(sc[k][0], sc[k][1], equal_var=False).pvalue
            rejections[k] += int(p < 0.05)
    rates = {k: v / n_seeds for k, v in rejections.items()}
    print("false-positive rates:", rates)
    assert all(r <= 0.10 for r in rates.values()), rates


@pytest.mark.parametrize("n_vox", [1, 2])
def test_single_voxel_region_scores_are_finite(n_vox):
    rng = np.random.default_rng(n_vox)
    x = pd.DataFrame(rng.normal(size=(100, 3)), columns=["LC_L", "DLPFC_L", "ACC_L"])
    res = process_timeseries(x, 2.0, networks={"lc_pfc": bipartite_edges(["LC_L"],
                                                                         ["DLPFC_L", "ACC_L"])},
                             n_voxels={"LC_L": n_vox, "DLPFC_L": 1000, "ACC_L": 300})
    row = res.networks.iloc[0]
    assert np.isfinite(row["mean_z"]) and row["n_voxels_min"] == n_vox
    assert row["small_regions"] == "LC_L"
