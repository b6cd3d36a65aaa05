"""simulate_t1w: warped labels carry the planted volume changes."""

from __future__ import annotations

import numpy as np
import pytest

from danemap.atlas import load_atlas
from danemap.errors import InputError
from danemap.simulate import SimulationEffects, simulate_t1w


@pytest.fixture(scope="module")
def atlas():
    return load_atlas(3)


def test_volumes_from_labels_match_truth(atlas):
    t1, dseg, truth = simulate_t1w(atlas, seed=3)
    lab = np.asarray(dseg.dataobj)
    counts = np.bincount(lab.ravel().astype(int))
    for i, name in zip(atlas.regions["index"], atlas.regions["name"], strict=True):
        assert truth["volume_mm3"][name] == counts[i] * 27.0
    data = np.asarray(t1.dataobj)
    assert data.shape == atlas.img.shape and data.max() > 500
    assert truth["icv_mm3"] == pytest.approx(
        truth["template_icv_mm3"] * np.exp(truth["icv_log_factor"]), rel=0.02)


def test_large_planted_factor_moves_big_regions(atlas):
    """At 3 mm the label counts realise only part of a planted factor (see module notes)."""
    eff = SimulationEffects(icv_sd=0.0, vol_subject_sd=1e-6)
    planted = {"Occipital_L": np.log(0.85), "DLPFC_L": np.log(1.15)}
    _, _, truth = simulate_t1w(atlas, seed=1, effects=eff, log_volume_factors=planted)
    ratio = {n: truth["volume_mm3"][n] / truth["template_volume_mm3"][n] for n in planted}
    assert ratio["Occipital_L"] < 0.96
    assert ratio["DLPFC_L"] > 1.03
    untouched = truth["volume_mm3"]["Thalamus_L"] / truth["template_volume_mm3"]["Thalamus_L"]
    assert untouched == pytest.approx(1.0, abs=0.02)


def test_group_effect_in_planted_log_volumes(atlas):
    eff = SimulationEffects(effect_scale=2.0)
    _, _, td = simulate_t1w(atlas, seed=5, effects=eff)
    _, _, ad = simulate_t1w(atlas, seed=5, group="ADHD", effects=eff)
    for name, d in (("Caudate_L", -0.11), ("Putamen_R", -0.14), ("NAcc_L", -0.15),
                    ("Pallidum_L", 0.0), ("Occipital_L", 0.0)):
        diff = ad["log_volume_factor"][name] - td["log_volume_factor"][name]
        assert diff == pytest.approx(d * 2.0 * 0.08, abs=1e-12), name


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"group": "x"}, "group: expected 'TD' or 'ADHD'"),
     ({"log_volume_factors": {"Caudat_L": 0.1}}, r"unknown region\(s\) \['Caudat_L'\]")],
)
def test_t1w_errors(atlas, kwargs, match):
    with pytest.raises(InputError, match=match):
        simulate_t1w(atlas, **kwargs)
