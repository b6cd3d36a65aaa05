"""Dynamic PET on the atlas: regional BP_ND by SRTM, MRTM2 and Logan, and the voxel map.

The phantom is unblurred (no partial volume), so the regional fits see the planted TACs:
the ODE-simulated target (two-tissue, k3 = BP_ND k4) and reference (one-tissue) curves.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from danemap.atlas import load_atlas
from danemap.errors import InputError
from danemap.markers.pet._dynamic import quantify_dynamic
from danemap.markers.pet._inputs import PetFrames
from danemap.simulate._kinetics import FRAMES_11C_30, dynamic_pet_image, frame_times

PLANTED = {"Caudate": 2.5, "Putamen": 3.0, "NAcc": 1.5, "Thalamus": 0.5}


@pytest.fixture(scope="module")
def phantom():
    atlas = load_atlas(3)
    labels = np.asarray(atlas.img.dataobj)
    start, end = frame_times(FRAMES_11C_30)
    params = {int(i): {"bpnd": PLANTED.get(n.rsplit("_", 1)[0], 0.2), "r1": 1.1}
              for n, i in zip(atlas.names, atlas.regions["index"], strict=True)
              if not n.startswith("Occipital")}  # the occipital keeps the reference TAC
    data, _, _ = dynamic_pet_image(labels, params, start, end, target="2tcm")
    img = nib.Nifti1Image(data, atlas.img.affine)
    frames = PetFrames(np.asarray(start) * 60.0, (np.asarray(end) - np.asarray(start)) * 60.0)
    ref = np.isin(labels, [i for n, i in zip(atlas.names, atlas.regions["index"], strict=True)
                           if n.startswith("Occipital")])
    return atlas, img, frames, ref


def test_every_model_recovers_the_planted_regional_bpnd(phantom):
    atlas, img, frames, ref = phantom
    res = quantify_dynamic(img, atlas, frames, reference=ref, reference_name="occipital",
                           high_binding=("Caudate", "Putamen"))
    bp = res.table[res.table["measure"] == "BPND"].pivot(index="region", columns="method",
                                                         values="value")
    for stem, planted in PLANTED.items():
        for hemi in ("L", "R"):
            for model in ("srtm", "mrtm2", "logan"):
                # 2TCM target fitted by one-tissue reduced models: within 3% (measured
                # at most 1.3%)
                assert bp.loc[f"{stem}_{hemi}", model] == pytest.approx(planted, rel=0.03), \
                    (stem, hemi, model)
    # k2' from MRTM on the striatum: the planted reference efflux, 0.3 /min; MRTM's
    # one-tissue reduction of two-tissue TACs puts it 4.4% low (measured), to which the
    # MRTM2 and Logan BP_ND above are insensitive (Ichise et al. 2003)
    assert res.k2_ref == pytest.approx(0.3, rel=0.06)
    # the SRTM map agrees with the regional fit inside a large region
    labels = np.asarray(atlas.img.dataobj)
    put = labels == int(atlas.regions.set_index("name").loc["Putamen_L", "index"])
    assert np.nanmedian(res.maps["bpnd"][put]) == pytest.approx(3.0, rel=0.03)
    assert list(res.tacs.columns[:3]) == ["frame_start_min", "frame_end_min",
                                          "reference_occipital"]


def test_an_empty_reference_or_unknown_model_is_refused(phantom):
    atlas, img, frames, ref = phantom
    with pytest.raises(InputError, match="no voxel"):
        quantify_dynamic(img, atlas, frames, reference=np.zeros_like(ref),
                         reference_name="occipital", high_binding=("Caudate",))
    with pytest.raises(InputError, match=r"pet\.models"):
        quantify_dynamic(img, atlas, frames, reference=ref, reference_name="occipital",
                         high_binding=("Caudate",), models=("ma1",))


def test_the_fitted_srtm_curve_matches_a_noise_free_one_tissue_tac():
    # a one-tissue target (the SRTM assumption): the fitted curve reproduces the TAC; the
    # largest deviation measured is 0.2% of the TAC's peak (SRTM) and 0.25% (MRTM2)
    atlas = load_atlas(3)
    labels = np.asarray(atlas.img.dataobj)
    start, end = frame_times(FRAMES_11C_30)
    params = {int(i): {"bpnd": PLANTED.get(n.rsplit("_", 1)[0], 0.2), "r1": 1.1}
              for n, i in zip(atlas.names, atlas.regions["index"], strict=True)
              if not n.startswith("Occipital")}
    data, _, _ = dynamic_pet_image(labels, params, start, end, target="1tcm")
    img = nib.Nifti1Image(data, atlas.img.affine)
    frames = PetFrames(np.asarray(start) * 60.0, (np.asarray(end) - np.asarray(start)) * 60.0)
    ref = np.isin(labels, [i for n, i in zip(atlas.names, atlas.regions["index"], strict=True)
                           if n.startswith("Occipital")])
    res = quantify_dynamic(img, atlas, frames, reference=ref, reference_name="occipital",
                           high_binding=("Caudate", "Putamen"))
    fits = res.fits
    assert fits is not None
    assert list(fits.columns[:3]) == ["frame_start_min", "frame_end_min", "frame_mid_min"]
    np.testing.assert_allclose(fits["frame_mid_min"], (np.asarray(start) + np.asarray(end)) / 2,
                               rtol=1e-12)
    assert not any(c.endswith("__logan") for c in fits.columns)  # Logan has no model TAC
    for stem in PLANTED:
        for model in ("srtm", "mrtm2"):
            tac = res.tacs[f"{stem}_L"].to_numpy()
            curve = fits[f"{stem}_L__{model}"].to_numpy()
            assert np.max(np.abs(curve - tac)) <= 0.01 * np.max(np.abs(tac)), (stem, model)
