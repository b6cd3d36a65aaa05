"""GTM and RBV against a brute-force reference and on exact piecewise-constant phantoms."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import ndimage, signal

from danemap.errors import InputError
from danemap.markers.pet._pvc import TRUNCATE, gtm, psf_sigma_vox, rbv, transfer_matrix

AFFINE = np.diag([2.0, 2.5, 3.0, 1.0])  # anisotropic voxels: per-axis sigma matters
FWHM = 8.0


def phantom() -> tuple[np.ndarray, np.ndarray]:
    """A 20x22x18 partition: background 0, two touching boxes, a big region, a tiny one."""
    lab = np.zeros((20, 22, 18), dtype=np.int32)
    lab[3:8, 4:10, 3:9] = 1
    lab[8:14, 4:10, 3:9] = 2  # touches region 1
    lab[2:18, 12:20, 2:16] = 3
    lab[10:12, 14:16, 5:7] = 4  # inside region 3 (a 2x2x2 'LC')
    values = np.array([0.5, 3.0, 1.0, 2.0, 7.0])
    return lab, values


def explicit_kernel(sigma: np.ndarray) -> np.ndarray:
    """The 3D Gaussian kernel written out (outer product of normalised 1D samples)."""
    axes = []
    for s in sigma:
        r = int(TRUNCATE * s + 0.5)
        x = np.arange(-r, r + 1, dtype=float)
        k = np.exp(-0.5 * (x / s) ** 2)
        axes.append(k / k.sum())
    return np.einsum("i,j,k->ijk", *axes)


def brute_force_g(lab: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """G by FFT convolution of each whole-grid indicator and a dense region-mean matrix."""
    ids = np.unique(lab)
    kern = explicit_kernel(sigma)
    rsf = np.stack([signal.fftconvolve((lab == i).astype(float), kern, mode="same").ravel()
                    for i in ids])  # (R, V)
    member = np.stack([(lab == j).ravel() / (lab == j).sum() for j in ids])  # (R, V)
    return member @ rsf.T  # G[j, i] = mean over j of RSF_i


def test_transfer_matrix_matches_brute_force_fftconvolve():
    lab, _ = phantom()
    sigma = psf_sigma_vox(FWHM, AFFINE)
    ids, g = transfer_matrix(lab, AFFINE, FWHM)
    ref = brute_force_g(lab, sigma)
    err = np.abs(g - ref).max()
    print(f"GTM matrix vs brute-force fftconvolve: max abs error {err:.2e}")
    assert ids.tolist() == [0, 1, 2, 3, 4]
    assert err < 1e-10
    # a row of G sums to 1 for a region far from the grid edge (the PSF conserves
    # counts: the tiny central region); regions near the edge lose what falls outside
    assert g[4].sum() == pytest.approx(1.0, abs=1e-9)
    assert np.all(g.sum(axis=1) <= 1.0 + 1e-12) and g[0].sum() < 0.99
    # the tiny region sees mostly its surroundings: strong partial volume
    assert g[4, 4] < 0.2


def test_gtm_recovers_exact_values_on_blurred_piecewise_constant_image():
    lab, values = phantom()
    img = ndimage.gaussian_filter(values[lab], psf_sigma_vox(FWHM, AFFINE), mode="constant",
                                  truncate=TRUNCATE)
    observed = ndimage.mean(img, lab, index=range(5))
    _, corrected, g = gtm(img, lab, AFFINE, FWHM)
    rel = np.abs(corrected - values) / values
    print(f"GTM noise-free: max rel error {rel.max():.2e}; uncorrected tiny region "
          f"{observed[4]:.3f} (true 7)")
    assert rel.max() < 1e-6
    assert observed[4] < 0.5 * values[4]  # the uncorrected mean is far off
    assert np.allclose(g @ corrected, observed, rtol=1e-12)
    # the same with the brute-force matrix solved independently
    t = np.linalg.solve(brute_force_g(lab, psf_sigma_vox(FWHM, AFFINE)), observed)
    assert np.allclose(t, values, rtol=1e-6)


def test_gtm_region_order_and_zero_fwhm():
    lab, values = phantom()
    img = values[lab]
    ids, corrected, g = gtm(img, lab, AFFINE, 0.0, region_ids=[4, 3, 2, 1, 0])
    assert ids.tolist() == [4, 3, 2, 1, 0]
    assert np.allclose(g, np.eye(5))
    assert np.allclose(corrected, values[::-1])


def test_rbv_restores_voxel_values_inside_regions():
    lab, values = phantom()
    truth = values[lab]
    img = ndimage.gaussian_filter(truth, psf_sigma_vox(FWHM, AFFINE), mode="constant",
                                  truncate=TRUNCATE)
    out = rbv(img, lab, AFFINE, FWHM)
    # on an exact model image RBV returns the piecewise-constant truth voxel by voxel
    assert np.allclose(out, truth, rtol=1e-8, atol=1e-10)
    ids, corrected, _ = gtm(img, lab, AFFINE, FWHM)
    assert np.allclose(rbv(img, lab, AFFINE, FWHM, corrected_means=corrected), out)
    # with noise the region means of the RBV image stay close to the GTM values
    rng = np.random.default_rng(0)
    noisy = img + 0.05 * rng.standard_normal(img.shape)
    ids, corrected, _ = gtm(noisy, lab, AFFINE, FWHM)
    means = ndimage.mean(rbv(noisy, lab, AFFINE, FWHM), lab, index=ids)
    assert np.allclose(means[1:], corrected[1:], rtol=0.05)


def test_gtm_31_regions_is_fast():
    from danemap.atlas import load_atlas

    atlas = load_atlas(2)
    lab = np.asarray(atlas.img.dataobj).astype(np.int32)
    img = np.random.default_rng(1).random(lab.shape)
    t0 = time.perf_counter()
    ids, _, g = gtm(img, lab, atlas.affine, 8.0)
    dt = time.perf_counter() - t0
    print(f"gtm on the 2 mm atlas (31 regions + background): {dt:.3f} s")
    assert ids.size == 32 and g.shape == (32, 32)
    assert dt < 5.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"img": np.zeros((4, 4))}, "expected a 3D image"),
     ({"img": np.full((20, 22, 18), np.nan)}, "expected finite values"),
     ({"labels": np.zeros((3, 3, 3), dtype=int)}, "expected the image shape"),
     ({"labels": np.zeros((20, 22, 18))}, "expected an integer label array"),
     ({"fwhm": -1.0}, "expected a finite FWHM >= 0"),
     ({"region_ids": [0, 1, 2]}, r"label\(s\) \[3, 4\] occur in 'labels'"),
     ({"region_ids": [0, 1, 2, 3, 4, 9]}, r"region\(s\) \[9\] have no voxel")],
)
def test_gtm_errors(kwargs, match):
    lab, values = phantom()
    img = kwargs.get("img", values[lab])
    with pytest.raises(InputError, match=match):
        gtm(img, kwargs.get("labels", lab), AFFINE, kwargs.get("fwhm", FWHM),
            region_ids=kwargs.get("region_ids"))


def test_rbv_errors():
    lab, values = phantom()
    with pytest.raises(InputError, match="expected 5 values"):
        rbv(values[lab], lab, AFFINE, FWHM, corrected_means=[1.0, 2.0])
    with pytest.raises(InputError, match="expected a 4x4 matrix"):
        psf_sigma_vox(8.0, np.eye(3))
