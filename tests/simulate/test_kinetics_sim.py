"""The compartment TAC simulator against scipy solve_ivp, quadrature and exact identities."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad, solve_ivp

from danemap.errors import InputError
from danemap.simulate._kinetics import (
    FRAMES_11C,
    FRAMES_11C_30,
    FengInput,
    add_counting_noise,
    compartment_tacs,
    dynamic_pet_image,
    frame_times,
    reference_target_tacs,
)

START, END = frame_times(FRAMES_11C)


def test_frame_schedules():
    s, e = frame_times(FRAMES_11C)
    assert s.size == 24 and e[-1] == pytest.approx(90.0) and s[0] == 0.0
    np.testing.assert_allclose(s[1:], e[:-1])
    s30, e30 = frame_times(FRAMES_11C_30)
    assert s30.size == 30 and e30[-1] == pytest.approx(90.0)
    s2, _ = frame_times([60.0, 60.0], start_s=30.0)
    np.testing.assert_allclose(s2, [0.5, 1.5])


def test_feng_input_shape():
    p = FengInput()
    assert p(0.0) == 0.0 and p(p.delay) == pytest.approx(0.0, abs=1e-9)
    t = np.linspace(p.delay, 90, 2000)
    cp = p(t)
    assert 0.5 < t[np.argmax(cp)] < 1.5  # bolus peak within a minute of arrival
    assert cp[-1] > 0 and cp[-1] < 0.1 * cp.max()


@pytest.mark.parametrize("rates", [(0.25, 0.3, 0.0, 0.0), (0.3, 0.36, 0.6, 0.4),
                                   (0.1, 0.05, 0.02, 0.01)])
def test_matches_solve_ivp(rates):
    k1, k2, k3, k4 = rates
    p = FengInput()

    def rhs(t, x):
        c1, c2 = x[0], x[1]
        cp = float(p(t))
        return [k1 * cp - (k2 + k3) * c1 + k4 * c2, k3 * c1 - k4 * c2, c1 + c2]

    edges = np.unique(np.r_[START, END])
    sol = solve_ivp(rhs, (0.0, edges[-1]), [0.0, 0.0, 0.0], method="DOP853", t_eval=edges,
                    rtol=1e-11, atol=1e-13, max_step=0.25)
    integ = sol.y[2]
    ref = (integ[np.searchsorted(edges, END)] - integ[np.searchsorted(edges, START)]) / (
        END - START)
    ours = compartment_tacs(START, END, k1, k2, k3, k4)
    np.testing.assert_allclose(ours[1:], ref[1:], rtol=1e-7)
    assert ours[0] == pytest.approx(0.0, abs=1e-12)  # the first frame ends at the arrival


def test_blood_term_is_plasma_quadrature():
    p = FengInput()
    ours = compartment_tacs(START, END, 0.1, 0.1, vb=0.999999) / 0.999999
    ref = np.array([quad(p, a, b, points=[p.delay], limit=200, epsabs=1e-12)[0] / (b - a)
                    for a, b in zip(START, END, strict=True)])
    np.testing.assert_allclose(ours[1:], ref[1:], rtol=1e-5)  # 1e-6 of tissue left in


def test_total_volume_of_distribution_identity():
    """∫_0^∞ C_T = K1/k2 (1 + k3/k4) ∫_0^∞ Cp exactly (one long frame)."""
    s, e = np.array([0.0]), np.array([20000.0])
    cp = compartment_tacs(s, e, 1.0, 1.0, vb=0.5) * 2 - compartment_tacs(s, e, 1.0, 1.0)
    k1, k2, k3, k4 = 0.3, 0.36, 0.6, 0.4
    ct = compartment_tacs(s, e, k1, k2, k3, k4)
    np.testing.assert_allclose(ct, k1 / k2 * (1 + k3 / k4) * cp, rtol=1e-9)


def test_two_tissue_with_k3_zero_is_one_tissue():
    a = compartment_tacs(START, END, 0.3, 0.2, 0.0, 0.7)
    b = compartment_tacs(START, END, 0.3, 0.2)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_reference_target_tacs_parametrisation():
    cr, ct = reference_target_tacs(START, END, [1.5, 3.0], r1=1.2, k2_ref=0.3, k1_ref=0.25)
    np.testing.assert_allclose(cr, compartment_tacs(START, END, 0.25, 0.3))
    np.testing.assert_allclose(ct[:, 0], compartment_tacs(START, END, 0.3, 0.36, 0.75, 0.5))
    _, c1 = reference_target_tacs(START, END, 1.5, r1=1.2, target="1tcm")
    np.testing.assert_allclose(c1[:, 0], compartment_tacs(START, END, 0.3, 0.36 / 2.5))
    # late-time ratio ~ 1 + BPND (transient equilibrium, a little above)
    assert 1.0 + 1.5 < ct[-1, 0] / cr[-1] < 1.0 + 1.5 * 1.3


def test_noise_cv_is_the_level_at_mid_scan():
    _, ct = reference_target_tacs(START, END, [1.5])
    c = np.repeat(ct, 20000, axis=1)
    noisy = add_counting_noise(c, START, END, 0.05, 0)
    mid_frame = int(np.searchsorted(END, 45.0))
    cv = noisy[mid_frame].std() / ct[mid_frame, 0]
    assert cv == pytest.approx(0.05, rel=0.02)
    # σ ∝ sqrt(C exp(λt) / Δt): the ratio of two frames' SDs follows the formula
    lam = np.log(2) / 20.334
    mid = 0.5 * (START + END)
    sd = noisy.std(axis=1)
    pred = np.sqrt(ct[:, 0] * np.exp(lam * mid) / (END - START))
    ratio = sd[3:] / pred[3:]
    np.testing.assert_allclose(ratio / (sd[mid_frame] / pred[mid_frame]), 1.0, rtol=0.03)
    np.testing.assert_allclose(noisy.mean(axis=1)[3:], ct[3:, 0], rtol=0.01)
    again = add_counting_noise(c[:, :5], START, END, 0.05, 0)
    np.testing.assert_array_equal(again, add_counting_noise(c[:, :5], START, END, 0.05, 0))


def test_noise_with_one_count_scale():
    cr, ct = reference_target_tacs(START, END, [0.5, 4.0])
    c = np.repeat(ct, 5000, axis=1)
    noisy = add_counting_noise(c, START, END, 0.05, 1, reference=cr)
    mid_frame = int(np.searchsorted(END, 45.0))
    cv_low = noisy[:, :5000].std(axis=1)[mid_frame] / ct[mid_frame, 0]
    cv_high = noisy[:, 5000:].std(axis=1)[mid_frame] / ct[mid_frame, 1]
    # same scan: CV ∝ 1/sqrt(C): the high-binding TAC is less noisy
    expect = 0.05 * np.sqrt(cr[mid_frame] / ct[mid_frame])
    assert cv_low == pytest.approx(expect[0], rel=0.05)
    assert cv_high == pytest.approx(expect[1], rel=0.05)


def test_dynamic_pet_image():
    labels = np.zeros((4, 4, 3), dtype=int)
    labels[1:3, 1:3, :] = 1
    labels[1:3, 1:3, 2] = 2
    data, cr, truth = dynamic_pet_image(labels, {2: {"bpnd": 2.0, "r1": 1.1}}, START, END,
                                        reference_label=1)
    assert data.shape == (4, 4, 3, 24) and data.dtype == np.float32
    assert not data[labels == 0].any()
    _, ct = reference_target_tacs(START, END, [2.0], r1=1.1)
    np.testing.assert_allclose(data[labels == 2], np.tile(ct[:, 0], (4, 1)), rtol=1e-6)
    np.testing.assert_allclose(data[labels == 1], np.tile(cr, (8, 1)), rtol=1e-6)
    assert truth["regions"][2]["bpnd"] == 2.0
    n1, _, _ = dynamic_pet_image(labels, {2: {"bpnd": 2.0}}, START, END, noise=0.05, seed=4)
    n2, _, _ = dynamic_pet_image(labels, {2: {"bpnd": 2.0}}, START, END, noise=0.05, seed=4)
    np.testing.assert_array_equal(n1, n2)
    assert not n1[labels == 0].any() and np.abs(n1 - data).max() > 0


def test_bad_inputs():
    with pytest.raises(InputError, match="durations_s"):
        frame_times([30.0, 0.0])
    with pytest.raises(InputError, match="k3"):
        compartment_tacs(START, END, 0.3, 0.3, -0.1, 0.1)
    with pytest.raises(InputError, match="vb"):
        compartment_tacs(START, END, 0.3, 0.3, vb=1.0)
    with pytest.raises(InputError, match="frame times"):
        compartment_tacs(END, START, 0.3, 0.3)
    with pytest.raises(InputError, match="target"):
        reference_target_tacs(START, END, 1.0, target="3tcm")
    with pytest.raises(InputError, match="level"):
        add_counting_noise(np.ones(24), START, END, -0.1)
    with pytest.raises(InputError, match="mid-scan frame"):
        add_counting_noise(np.zeros(24), START, END, 0.05)
    with pytest.raises(InputError, match="labels"):
        dynamic_pet_image(np.zeros((3, 3)), {}, START, END)
    with pytest.raises(InputError, match="label 0"):
        dynamic_pet_image(np.zeros((3, 3, 3), int), {0: {"bpnd": 1.0}}, START, END)
