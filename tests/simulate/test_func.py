"""simulate_bold / simulate_roi_timeseries: planted coupling is recoverable, confounds are
really in the data, and the region-level generator is the image model's region means."""

from __future__ import annotations

import numpy as np
import pytest

from danemap.atlas import load_atlas
from danemap.errors import InputError
from danemap.simulate import SimulationEffects, simulate_bold, simulate_roi_timeseries
from danemap.simulate._func import MOTION_COLUMNS, fd_power


@pytest.fixture(scope="module")
def atlas():
    return load_atlas(3)


def _roi_means(img, atlas, names):
    data = np.asarray(img.dataobj)
    lab = np.asarray(atlas.img.dataobj)
    idx = dict(zip(atlas.regions["name"], atlas.regions["index"], strict=True))
    return np.stack([data[lab == idx[n]].mean(axis=0, dtype=np.float64) for n in names], axis=1)


def _nuisance_design(conf):
    cols = [c for c in conf.columns if c.startswith(MOTION_COLUMNS)] + ["white_matter", "csf"]
    assert len(cols) == 26
    return np.column_stack([np.ones(len(conf)), conf[cols].fillna(0.0).to_numpy()])


def test_bold_image_and_confounds(atlas):
    img, conf, truth = simulate_bold(atlas, n_volumes=40, tr=1.5, seed=3)
    assert img.shape == (*atlas.img.shape, 40)
    assert img.get_data_dtype() == np.float32
    assert img.header.get_zooms()[3] == pytest.approx(1.5)
    data = np.asarray(img.dataobj)
    brain = data[..., 0] != 0
    assert brain.sum() == truth["n_brain_voxels"]
    assert np.all(np.asarray(atlas.img.dataobj)[~brain] == 0)  # every atlas voxel in the mask
    assert 900 < data[brain].mean() < 1100  # non-zero baseline like real BOLD
    expected = {"global_signal", "csf", "white_matter", "framewise_displacement"}
    for m in MOTION_COLUMNS:
        expected |= {m, f"{m}_derivative1", f"{m}_power2", f"{m}_derivative1_power2"}
    expected |= {f"a_comp_cor_{i:02d}" for i in range(6)}
    assert expected <= set(conf.columns)
    assert conf["framewise_displacement"].isna().tolist() == [True] + [False] * 39
    assert conf["trans_x_derivative1"].isna().sum() == 1
    assert np.allclose(conf["trans_x_power2"], conf["trans_x"] ** 2)
    motion = conf[list(MOTION_COLUMNS)].to_numpy()
    manual = np.abs(np.diff(motion, axis=0))
    manual = manual[:, :3].sum(1) + 50 * manual[:, 3:].sum(1)
    assert np.allclose(conf["framewise_displacement"].to_numpy()[1:], manual)
    assert np.allclose(fd_power(motion)[1:], manual)
    # planted spikes are scrubbable: FD > 0.5 mm at each spike volume
    fd = conf["framewise_displacement"].to_numpy()
    assert len(truth["spike_volumes"]) == 3
    assert all(fd[t] > 0.5 for t in truth["spike_volumes"])
    # the global signal column is the brain mean
    assert np.allclose(conf["global_signal"], data[brain].mean(axis=0, dtype=np.float64),
                       rtol=1e-5)


def test_same_seed_same_arrays_other_seed_differs(atlas):
    a = simulate_bold(atlas, n_volumes=20, seed=5)
    b = simulate_bold(atlas, n_volumes=20, seed=5)
    c = simulate_bold(atlas, n_volumes=20, seed=6)
    assert np.array_equal(np.asarray(a[0].dataobj), np.asarray(b[0].dataobj))
    assert a[1].equals(b[1])
    assert not np.array_equal(np.asarray(a[0].dataobj), np.asarray(c[0].dataobj))


def test_expected_roi_correlation_recovered_after_nuisance_regression(atlas):
    """rho_ab = c_ab / sqrt((1+s2/n_a)(1+s2/n_b)) matches the data after 24P + WM/CSF."""
    errs, raw_errs, lc_errs = [], [], []
    for seed in range(3):
        img, conf, truth = simulate_bold(atlas, n_volumes=300, seed=seed,
                                         group="ADHD" if seed % 2 else "TD")
        names = truth["regions"]
        ts = _roi_means(img, atlas, names)
        x = _nuisance_design(conf)
        res = ts - x @ np.linalg.lstsq(x, ts, rcond=None)[0]
        iu = np.triu_indices(len(names), 1)
        z_exp = np.arctanh(truth["expected_roi_corr"][iu])
        errs.append(np.mean(np.arctanh(np.corrcoef(res.T)[iu]) - z_exp))
        raw_errs.append(np.mean(np.arctanh(np.corrcoef(ts.T)[iu]) - z_exp))
        pos = {n: i for i, n in enumerate(names)}
        emp = np.corrcoef(res.T)
        for net in ("frontostriatal", "lc_pfc"):
            d = truth["networks"][net]
            score = np.mean([np.arctanh(emp[pos[e["a"]], pos[e["b"]]]) for e in d["edges"]])
            lc_errs.append(score - d["expected_score_z"])
    assert abs(np.mean(errs)) < 0.05
    assert np.max(np.abs(lc_errs)) < 0.1  # network scores, LC (1-2 voxels) included
    # without regression the motion/WM/CSF confounds inflate every correlation
    assert np.mean(raw_errs) > 0.1


def test_motion_is_in_the_voxels(atlas):
    img, conf, _ = simulate_bold(atlas, n_volumes=120, seed=2)
    data = np.asarray(img.dataobj)
    vox = data[np.asarray(atlas.img.dataobj) > 0]  # (V, T)
    motion = conf[list(MOTION_COLUMNS)].to_numpy()
    x = np.column_stack([np.ones(len(conf)), motion])
    beta, *_ = np.linalg.lstsq(x, vox.T, rcond=None)
    r2 = 1 - ((vox.T - x @ beta) ** 2).sum(0) / ((vox.T - vox.T.mean(0)) ** 2).sum(0)
    # median voxel R^2 on the 6 motion columns far above chance (6/120 = 0.05)
    assert np.median(r2) > 0.15
    # fMRIPrep's 128 s DCT basis: floor(2 * 120 * 2 / 128) = 3 columns
    assert [c for c in conf.columns if c.startswith("cosine")] == ["cosine00", "cosine01",
                                                                    "cosine02"]


def test_adhd_lowers_frontostriatal_and_lc_pfc_by_the_planted_z(atlas):
    """The planted group shift is in the images: ROI-mean network scores move by it.

    Same seed for both groups (same white sources, noise and confounds), so the
    ADHD - TD difference of the measured scores is the planted one plus little noise.
    The shifts are raised above the realistic default (-0.045 z) to be measured in one pair.
    """
    eff = SimulationEffects(fc_frontostriatal_z=-0.3, fc_lc_pfc_z=-0.2)
    planted = {"frontostriatal": -0.3, "lc_pfc": -0.2, "mesolimbic": 0.0}
    runs = {g: simulate_bold(atlas, n_volumes=300, seed=9, group=g, effects=eff)
            for g in ("TD", "ADHD")}
    scores: dict[str, dict[str, float]] = {}
    for g, (img, conf, truth) in runs.items():
        names = truth["regions"]
        ts = _roi_means(img, atlas, names)
        x = _nuisance_design(conf)
        emp = np.corrcoef((ts - x @ np.linalg.lstsq(x, ts, rcond=None)[0]).T)
        pos = {n: i for i, n in enumerate(names)}
        for net in planted:
            edges = truth["networks"][net]["edges"]
            scores.setdefault(net, {})[g] = float(np.mean(
                [np.arctanh(emp[pos[e["a"]], pos[e["b"]]]) for e in edges]))
    td, adhd = runs["TD"][2], runs["ADHD"][2]
    for net, shift in planted.items():
        for e_td, e_ad in zip(td["networks"][net]["edges"], adhd["networks"][net]["edges"],
                              strict=True):
            dz = np.arctanh(e_ad["latent_r"]) - np.arctanh(e_td["latent_r"])
            assert dz == pytest.approx(shift, abs=1e-9)  # the truth records the shift
        want = adhd["networks"][net]["expected_score_z"] - td["networks"][net][
            "expected_score_z"]
        got = scores[net]["ADHD"] - scores[net]["TD"]
        print(f"{net}: measured ADHD - TD {got:+.3f}, expected {want:+.3f}")
        assert got == pytest.approx(want, abs=0.05), net
        if shift:
            # clearly lower: at least 30 % of the latent shift survives the attenuation of
            # the ROI means (LC has 1-3 voxels)
            assert got < 0.3 * shift, net


def test_coupling_override_and_matrix(atlas):
    _, _, t = simulate_bold(atlas, n_volumes=20, seed=1, coupling={"lc_pfc": 0.2},
                            effects=SimulationEffects(fc_subject_sd_z=0.0))
    lc = [e["latent_r"] for e in t["networks"]["lc_pfc"]["edges"]]
    assert lc == pytest.approx([0.2] * len(lc))
    r = len(t["regions"])
    c = np.full((r, r), 0.05)
    np.fill_diagonal(c, 1.0)
    _, _, t2 = simulate_bold(atlas, n_volumes=20, seed=1, coupling=c)
    assert np.allclose(t2["latent_corr"], c)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_volumes": 5}, "n_volumes: expected an integer >= 10"),
        ({"tr": 0}, "tr: expected a positive"),
        ({"group": "ASD"}, "group: expected 'TD' or 'ADHD'"),
        ({"coupling": {"frontostriatl": 0.3}}, r"unknown network\(s\) \['frontostriatl'\]"),
        ({"coupling": np.eye(3)}, "expected a symmetric"),
        ({"coupling": {"frontostriatal": 0.95}}, "not positive definite"),
    ],
)
@pytest.mark.parametrize("simulate", [simulate_bold, simulate_roi_timeseries])
def test_bold_errors(atlas, kwargs, match, simulate):
    with pytest.raises(InputError, match=match):
        simulate(atlas, **{"n_volumes": 20, **kwargs})


def test_roi_timeseries_are_the_image_region_means(atlas):
    """Without voxel noise and confounds both generators give the same region means."""
    eff = SimulationEffects(fc_noise_var=0.0, motion_strength=0.0, nuisance_strength=0.0)
    kw = {"n_volumes": 30, "tr": 1.5, "seed": 4, "group": "ADHD", "effects": eff,
          "site_shift_z": 0.05, "intensity_scale": 1.2}
    img, conf_img, t_img = simulate_bold(atlas, **kw)
    ts, conf, truth = simulate_roi_timeseries(atlas, **kw)
    names = truth["regions"]
    assert list(ts.columns) == names == t_img["regions"] and ts.shape == (30, len(names))
    means = _roi_means(img, atlas, names)
    # float32 voxels around a 1200 baseline: agreement to float32 rounding (~1e-4)
    assert np.abs(means - ts.to_numpy()).max() <= 1e-3
    assert np.array_equal(truth["latent_corr"], t_img["latent_corr"])
    assert truth["networks"] == t_img["networks"] and truth["n_vox"] == t_img["n_vox"]
    assert set(conf.columns) == set(conf_img.columns) - {"global_signal"}
    again = simulate_roi_timeseries(atlas, **kw)[0]
    assert again.equals(ts)
    assert not simulate_roi_timeseries(atlas, **{**kw, "seed": 5})[0].equals(ts)


def test_roi_timeseries_noise_and_coupling_follow_the_voxel_model(atlas):
    """A region of n voxels has noise variance sigma2/n and the expected ROI correlation.

    After regressing the 24 motion terms and WM/CSF, a region mean's variance is
    ``amplitude**2 (1 + sigma2 / n)`` and two region means correlate as
    ``expected_roi_corr`` (the formula the image test checks on the voxels).
    """
    ratios, z_err, raw_inflation = [], [], []
    for seed in range(4):
        ts, conf, truth = simulate_roi_timeseries(atlas, n_volumes=300, seed=seed,
                                                  group="ADHD" if seed % 2 else "TD")
        x = _nuisance_design(conf)
        y = ts.to_numpy()
        res = y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
        n = np.asarray(truth["n_vox"], dtype=float)
        want = truth["amplitude"] ** 2 * (1 + truth["noise_var"] / n)
        ratios.append(res.var(axis=0) * len(y) / (len(y) - x.shape[1]) / want)
        iu = np.triu_indices(len(n), 1)
        z_exp = np.arctanh(truth["expected_roi_corr"][iu])
        z_err.append(np.mean(np.arctanh(np.corrcoef(res.T)[iu]) - z_exp))
        raw_inflation.append(np.mean(np.arctanh(np.corrcoef(y.T)[iu]) - z_exp))
    ratio = np.mean(ratios, axis=0)
    print(f"residual variance / model: {ratio.min():.3f}-{ratio.max():.3f}; mean z error "
          f"{np.mean(z_err):+.4f}; without regression {np.mean(raw_inflation):+.3f}")
    single = np.asarray(truth["n_vox"]) <= 2  # LC and VTA: noise 2-4x the signal
    assert single.any() and (~single).any()
    assert np.all(np.abs(ratio - 1) < 0.25), dict(zip(truth["regions"], ratio.round(2),
                                                     strict=True))
    assert abs(np.mean(z_err)) < 0.05
    assert np.mean(raw_inflation) > 0.1  # the confounds are in the region means too


def test_effects_validation():
    with pytest.raises(InputError, match="fc_ar1"):
        SimulationEffects(fc_ar1=1.0)
    with pytest.raises(InputError, match=r"fc_networks/fc_within_group\['lc_pfc'\]"):
        SimulationEffects(fc_networks={"lc_pfc": 1.5})
