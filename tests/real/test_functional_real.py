"""Real data: nitime's resting-state ROI time series as precomputed input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from danemap.config import FunctionalConfig
from danemap.markers import bipartite_edges, process_timeseries

pytestmark = pytest.mark.real

STRIATUM = ["LCau", "RCau", "LPut", "RPut"]
FRONTAL_POLE = ["LFpol", "RFpol"]


def _load(shared_data):
    df = pd.read_csv(shared_data / "fmri-timeseries" / "fmri_timeseries.csv")
    assert df.shape == (250, 31)
    return df


def test_caudate_putamen_correlation_and_frontostriatal_score(shared_data):
    df = _load(shared_data)
    # The TR is not recorded: no band-pass (it needs the TR), no detrend, no confounds.
    cfg = FunctionalConfig(high_pass=0, low_pass=0, detrend=False)
    nets = {"frontostriatal": bipartite_edges(STRIATUM, FRONTAL_POLE)}
    res = process_timeseries(df.drop(columns=["WM", "Vent", "Brain"]), config=cfg,
                             networks=nets)
    r = res.connectivity["corr"]
    assert r.loc["LCau", "LPut"] == pytest.approx(0.61, abs=0.01)
    assert r.loc["RCau", "RFpol"] == pytest.approx(0.64, abs=0.01)
    row = res.networks.set_index("network").loc["frontostriatal"]
    want = np.mean([np.arctanh(r.loc[a, b]) for a in STRIATUM for b in FRONTAL_POLE])
    assert row["n_edges"] == 8
    assert row["mean_z"] == pytest.approx(want, abs=1e-12)
    assert 0.2 < row["mean_z"] < 1.0
    # precomputed series carry no voxel counts: unknown (n/a), never a negative number
    assert pd.isna(row["n_voxels_total"]) and pd.isna(row["n_voxels_min"])
    assert row["small_regions"] == "" and row["region_voxels"].startswith("LCau=n/a;")


def test_without_tr_filtering_is_refused(shared_data):
    from danemap.errors import InputError

    df = _load(shared_data)
    with pytest.raises(InputError, match="needs the repetition time"):
        process_timeseries(df, networks={})


def test_nuisance_columns_as_confounds(shared_data):
    df = _load(shared_data)
    cfg = FunctionalConfig(high_pass=0, low_pass=0)
    res = process_timeseries(df, confounds=["WM", "Vent"], config=cfg,
                             networks={"fs": bipartite_edges(STRIATUM, FRONTAL_POLE)})
    assert "WM" not in res.timeseries.columns and res.timeseries.shape == (250, 29)
    assert np.isfinite(res.networks.loc[0, "mean_z"])
