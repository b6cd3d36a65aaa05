"""Planted truth from the simulator: ComBat removes a site effect and keeps the group effect.

Network scores of 120 simulated runs (2 sites x 30 ADHD + 30 TD) are drawn by the
simulator's region-level generator (:func:`danemap.simulate.simulate_roi_timeseries`: ADHD
lowers frontostriatal and LC-PFC coupling; site 2 adds a Fisher-z shift to every edge and
scales intensities) and scored by :func:`danemap.markers.process_timeseries`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import statsmodels.api as sm

from danemap.atlas import load_atlas
from danemap.config import FunctionalConfig
from danemap.markers import process_timeseries
from danemap.markers.functional._confounds import select_confounds
from danemap.simulate import SimulationEffects, simulate_roi_timeseries
from danemap.stats import ComBat

SITE_SHIFT_Z = -0.15  # lowers every edge at site 2 (raising it can break positive definiteness)
# Raised above the realistic default (-0.045 z, latent d -0.3): the group effect must be
# significant in 60 + 60 runs before and after ComBat, so this uses -0.15 z (latent d -1.0).
POWER_EFFECTS = SimulationEffects(fc_frontostriatal_z=-0.15, fc_lc_pfc_z=-0.15)


def _scores() -> pd.DataFrame:
    atlas = load_atlas(resolution=3)
    cfg = FunctionalConfig(high_pass=0, low_pass=0)  # fast; the cosines still high-pass
    rows = []
    for i in range(120):
        site = i % 2
        group = "ADHD" if (i // 2) % 2 == 0 else "TD"
        ts, conf, truth = simulate_roi_timeseries(
            atlas, n_volumes=150, tr=2.0, seed=[77, i], group=group,
            site_shift_z=SITE_SHIFT_Z * site, intensity_scale=1.0 + 0.2 * site,
            effects=POWER_EFFECTS)
        sel = select_confounds(conf, cfg, None, "simulated confounds")
        res = process_timeseries(ts, 2.0, confounds=sel.confounds, config=cfg,
                                 networks=atlas.networks,
                                 n_voxels=dict(zip(truth["regions"], truth["n_vox"],
                                                   strict=True)))
        rows.append({"site": f"site-{site + 1}", "group": group,
                     **res.networks.set_index("network")["mean_z"].to_dict()})
    return pd.DataFrame(rows)


def _fit(y: np.ndarray, df: pd.DataFrame) -> tuple[float, float, float, float]:
    """Return site p, group p, group beta and site beta of y ~ 1 + group + site."""
    design = np.column_stack([np.ones(len(df)), (df["group"] == "ADHD").to_numpy(float),
                              (df["site"] == "site-2").to_numpy(float)])
    fit = sm.OLS(y, design).fit()
    return (float(fit.pvalues[2]), float(fit.pvalues[1]), float(fit.params[1]),
            float(fit.params[2]))


def test_planted_site_effect_removed_group_effect_kept():
    df = _scores()
    nets = ["frontostriatal", "lc_pfc", "mesolimbic", "nigrostriatal"]
    X = df[nets].to_numpy()
    harmonised = ComBat().fit_transform(X, df["site"].to_numpy(), df[["group"]])
    for j, net in enumerate(nets):
        site_p0, group_p0, beta0, site0 = _fit(X[:, j], df)
        site_p1, group_p1, beta1, site1 = _fit(harmonised[:, j], df)
        print(f"{net}: site beta {site0:+.3f} (p {site_p0:.1e}) -> {site1:+.3f} (p "
              f"{site_p1:.2f}); group beta {beta0:+.3f} (p {group_p0:.1e}) -> {beta1:+.3f} "
              f"(p {group_p1:.1e})")
        assert site_p0 < 1e-3, net  # the planted site effect is there before
        # and gone after: site no longer predicts the score (empirical Bayes shrinks each
        # site estimate towards the mean over only 4 features, so a remnant stays)
        assert site_p1 > 0.05 and abs(site1) < 0.25 * abs(site0), net
        if net in ("frontostriatal", "lc_pfc"):  # planted: lower in ADHD, before and after
            assert beta0 < 0 and beta1 < 0 and group_p1 < 0.05, net  # alpha = 0.05
            assert abs(beta1 - beta0) < 0.25 * abs(beta0), net  # the effect is preserved
