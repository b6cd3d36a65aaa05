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
from danemap.markers.functional._confounds import select_confounds
from danemap.simulate import SimulationEffects, simulate_cohort, simulate_roi_timeseries


def test_planted_network_scores_recovered(tmp_path):
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
    assert groups["group"].value_counts().to_dict() == {"ADHD": 5, "TD": 5}
    for net in ("frontostriatal", "lc_pfc"):
        assert sorted(scores[net]) == ["ADHD", "TD"], net
        assert all(len(v) == 5 for v in scores[net].values()), net
        # planted truth of the drawn participants (subject shifts included)
        want = {grp: float(np.mean([
            truth["participants"][s]["func"]["networks"][net]["expected_score_z"]
            for s in groups.index[groups["group"] == grp]])) for grp in scores[net]}
        for grp, vals in scores[net].items():
            got = float(np.mean(vals))
            print(f"{net} {grp}: measured {got:.3f} planted {want[grp]:.3f}")
            assert abs(got - want[grp]) <= 0.1


N_SEEDS = 40
N_PER_GROUP = 10
PLANTED = ("frontostriatal", "lc_pfc")  # ADHD lowers their coupling (SimulationEffects)
UNPLANTED = ("mesolimbic", "nigrostriatal")  # same coupling in both groups
# Raised above the realistic default (-0.045 z, latent d -0.3, which 10 + 10 runs detect
# about as often as alpha): -0.15 z is a latent d of -1.0, so the power sanity check below
# has power. The unplanted networks, whose false-positive rate is the point, are unchanged.
POWER_EFFECTS = SimulationEffects(fc_frontostriatal_z=-0.15, fc_lc_pfc_z=-0.15)


def test_false_positive_rate_without_planted_effect():
    """40 simulated cohorts of 10 ADHD + 10 TD runs through danemap's path after extraction.

    Each run is drawn by the simulator's region-level generator
    (:func:`simulate_roi_timeseries`, the generative model that writes the BOLD images:
    ADHD lowers frontostriatal and LC-PFC coupling, leaves mesolimbic and nigrostriatal
    alone), its confounds are selected with the default ``simple`` strategy and the series
    go through :func:`process_timeseries` (cleaning operator, correlation, Fisher z,
    network scores). Per cohort, a Welch t-test compares the groups' network scores at
    alpha = 0.05. Butterworth filtering is off to keep 800 runs fast (it is one more linear
    filter, under which the planted correlations hold; the strategy's cosine regressors
    still high-pass).
    """
    atlas = load_atlas(resolution=3)
    cfg = FunctionalConfig(high_pass=0, low_pass=0)
    nets = {k: v for k, v in atlas.networks.items() if k in PLANTED + UNPLANTED}
    assert sorted(nets) == sorted(PLANTED + UNPLANTED)
    rejections = dict.fromkeys(nets, 0)
    pooled: dict[str, dict[str, list[float]]] = {k: {"ADHD": [], "TD": []} for k in nets}
    for seed in range(N_SEEDS):
        scores: dict[str, dict[str, list[float]]] = {k: {"ADHD": [], "TD": []} for k in nets}
        for i in range(2 * N_PER_GROUP):
            group = "ADHD" if i % 2 == 0 else "TD"
            ts, conf, truth = simulate_roi_timeseries(atlas, n_volumes=200, tr=2.0,
                                                      seed=[seed, i], group=group,
                                                      effects=POWER_EFFECTS)
            sel = select_confounds(conf, cfg, None, "simulated confounds")
            res = process_timeseries(ts, 2.0, confounds=sel.confounds, config=cfg,
                                     networks=nets,
                                     n_voxels=dict(zip(truth["regions"], truth["n_vox"],
                                                       strict=True)))
            for _, row in res.networks.iterrows():
                assert np.isfinite(row["mean_z"]), (seed, i, row["network"])
                scores[row["network"]][group].append(float(row["mean_z"]))
        for k in nets:
            p = stats.ttest_ind(scores[k]["ADHD"], scores[k]["TD"], equal_var=False).pvalue
            assert np.isfinite(p), (seed, k)
            rejections[k] += int(p < 0.05)
            for g in ("ADHD", "TD"):
                assert len(scores[k][g]) == N_PER_GROUP
                pooled[k][g] += scores[k][g]
    rates = {k: v / N_SEEDS for k, v in rejections.items()}
    diff = {k: float(np.mean(pooled[k]["ADHD"]) - np.mean(pooled[k]["TD"])) for k in nets}
    pooled_p = {k: float(stats.ttest_ind(pooled[k]["ADHD"], pooled[k]["TD"],
                                         equal_var=False).pvalue) for k in nets}
    print("rejection rates at alpha=0.05 over", N_SEEDS, "seeds:", rates)
    print("pooled ADHD - TD score difference (z):", {k: round(v, 3) for k, v in diff.items()},
          "pooled p:", {k: f"{v:.1e}" for k, v in pooled_p.items()})
    # power sanity: the planted networks do differ, lower in ADHD, and a single cohort
    # detects them more often than the false-positive ceiling
    for k in PLANTED:
        assert diff[k] < 0 and pooled_p[k] < 1e-6, (k, diff[k], pooled_p[k])
        assert rates[k] > 0.10, (k, rates[k])
    for k in UNPLANTED:
        assert rates[k] <= 0.10, (k, rates[k])


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
