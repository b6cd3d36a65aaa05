"""Planted truth: per-run VS amplitude, the group d over 40 + 40 participants, false positives.

Everything runs on region-mean series (:func:`simulate_mid_roi`, the exact distribution of
the ROI means of the voxel simulator) through the ROI-level path, one thread per BLAS call.
"""

from __future__ import annotations

import numpy as np
import pytest

from danemap.config import TaskConfig
from danemap.markers.task import parse_conditions, roi_first_level, task_confounds, validate_events
from danemap.simulate._task import simulate_mid_roi

CFG = TaskConfig()
MAPPING = parse_conditions(CFG.conditions)
PLANTED = ("NAcc", "Caudate", "Putamen")


@pytest.fixture(scope="module")
def atlas():
    from danemap.atlas import load_atlas

    return load_atlas(2)


def _fit(atlas, seed, group, regions=None):
    ts, conf, ev, truth = simulate_mid_roi(atlas, seed, group)
    if regions is not None:
        ts = ts[list(regions)]
    sel = task_confounds(conf, CFG, None)
    evv = validate_events(ev, "sim", len(ts), CFG_TR, MAPPING, CFG.ignore)
    table, _ = roi_first_level(ts, evv, CFG_TR, CFG, sel.confounds, sel.sample_mask)
    return table.set_index(["contrast", "region"]), truth


CFG_TR = 2.0


def test_per_run_vs_gain_minus_neutral_within_10pct(atlas) -> None:
    from threadpoolctl import threadpool_limits

    est, true, tvals = [], [], []
    with threadpool_limits(1):
        for seed in range(20):
            table, truth = _fit(atlas, [7, seed], "TD", ["NAcc_L", "NAcc_R"])
            for r in ("NAcc_L", "NAcc_R"):
                est.append(table.loc[("gain_minus_neutral", r), "effect"])
                tvals.append(table.loc[("gain_minus_neutral", r), "t"])
                true.append(truth["contrasts"]["gain_minus_neutral"][r])
    est, true = np.array(est), np.array(true)
    rel = (est - true) / true
    print(f"VS gain-neutral per run: median relative error {np.median(rel):+.3f}, median "
          f"|error| {np.median(np.abs(rel)):.3f}, median t {np.median(tvals):.1f}")
    assert abs(np.median(est) / np.median(true) - 1) <= 0.10
    assert abs(np.median(rel)) <= 0.10


@pytest.mark.slow
def test_group_d_and_false_positives(atlas) -> None:
    """20 seeds x (40 TD + 40 ADHD): NAcc d within 0.2 of 0.5; unplanted FPR <= 10 %."""
    from scipy import stats
    from threadpoolctl import threadpool_limits

    names = ["NAcc_L", "NAcc_R", "DLPFC_L", "mPFC_R", "Thalamus_L", "Cerebellum_R",
             "Occipital_L", "ACC_L"]
    unplanted = [n for n in names if n.split("_")[0] not in PLANTED]
    contrasts = ("gain_minus_neutral", "loss_minus_neutral", "hit_minus_miss")
    d_vs, false_pos = [], {n: 0 for n in unplanted}
    n_tests = 0
    with threadpool_limits(1):
        for seed in range(20):
            vals = {g: [] for g in ("TD", "ADHD")}
            for g in ("TD", "ADHD"):
                for i in range(40):
                    table, _ = _fit(atlas, [100 + seed, i, g == "ADHD"], g, names)
                    vals[g].append([[table.loc[(c, n), "effect"] for n in names]
                                    for c in contrasts])
            td, adhd = np.array(vals["TD"]), np.array(vals["ADHD"])  # (40, C, R)
            sd = np.sqrt((td.var(0, ddof=1) + adhd.var(0, ddof=1)) / 2)
            d = (td.mean(0) - adhd.mean(0)) / sd
            d_vs.append(np.mean(d[0, :2]))
            p = stats.ttest_ind(td, adhd, axis=0).pvalue
            for j, n in enumerate(names):
                if n in unplanted:
                    false_pos[n] += int((p[:, j] < 0.05).sum())
            n_tests += len(contrasts)
    fpr = {n: k / n_tests for n, k in false_pos.items()}
    print(f"group d (NAcc gain-neutral, planted 0.5): median {np.median(d_vs):.3f} "
          f"(range {min(d_vs):.2f}..{max(d_vs):.2f}); unplanted FPR {fpr}")
    assert abs(np.median(d_vs) - 0.5) <= 0.2
    assert max(fpr.values()) <= 0.10
