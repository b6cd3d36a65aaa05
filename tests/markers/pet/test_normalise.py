"""PET spatial normalisation: MNI detection, and the template route on a moved image."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from danemap.atlas import load_atlas, region_means
from danemap.errors import InputError
from danemap.markers.pet._normalise import in_mni, normalise_to_mni
from danemap.simulate import simulate_dat_spect

pytest.importorskip("ants")


@pytest.fixture(scope="module")
def spect():
    atlas = load_atlas(2)
    img, _ = simulate_dat_spect(atlas, 0, noise=False)
    return atlas, img


def _moved(img, degrees=6.0, shift=(8.0, -6.0, 5.0)):
    th = np.deg2rad(degrees)
    a = np.eye(4)
    a[1:3, 1:3] = [[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]]
    a[:3, 3] = shift
    moved = nib.Nifti1Image(np.asarray(img.dataobj), a @ img.affine)
    moved.header.set_sform(a @ img.affine, code=1)
    return moved


def test_mni_is_recognised_by_grid_sform_code_name_or_setting(spect, shared_data):
    _, img = spect
    assert in_mni(img)  # the atlas grid spans the MNI box
    dat = nib.load(shared_data / "pet-templates" / "DAT_fpcit_hc174_dukart_spect.nii.gz")
    assert in_mni(dat)  # the real 3 mm template (sform code 2, MNI box)
    moved = _moved(img)
    assert not in_mni(moved)
    assert in_mni(moved, "sub-01_space-MNI152NLin2009cAsym_pet.nii.gz")
    assert in_mni(moved, setting="MNI") and not in_mni(img, setting="native")
    with pytest.raises(InputError, match=r"pet\.space"):
        in_mni(img, setting="mni305")


def test_a_moved_image_is_brought_back_by_the_template_route(spect):
    atlas, img = spect
    out = normalise_to_mni(_moved(img), name="moved", atlas=atlas, tracer_family="DAT")
    assert out.route == "template"
    assert out.qc["similarity"] > 0.95
    before, after = region_means(img, atlas), region_means(out.img, atlas)
    for name in ("Caudate_L", "Caudate_R", "Putamen_L", "Putamen_R", "Occipital_L"):
        i = atlas.names.index(name)
        # measured 0.1-0.5% after a 6 degree, 11 mm move
        assert after[i] == pytest.approx(before[i], rel=0.02), name


def test_the_t1w_route_registers_rigidly_then_applies_the_t1w_transforms(spect, tmp_path):
    import ants
    from nilearn.datasets import load_mni152_template

    atlas, img = spect
    # the "participant's T1w" is the MNI152 template itself, so its T1w -> MNI transform is
    # the identity, and the route's result is the rigid PET -> T1w registration alone
    tpl = load_mni152_template(resolution=2)
    t1w = nib.Nifti1Image(np.asarray(tpl.dataobj, np.float32), tpl.affine)
    identity = tmp_path / "identity.mat"
    ants.write_transform(ants.create_ants_transform(transform_type="AffineTransform",
                                                    dimension=3), str(identity))
    out = normalise_to_mni(_moved(img), name="moved", atlas=atlas,
                           t1w_to_mni=(t1w, [str(identity)]))
    assert out.route == "t1w"
    before, after = region_means(img, atlas), region_means(out.img, atlas)
    for name in ("Caudate_L", "Putamen_R", "Occipital_L"):
        i = atlas.names.index(name)
        # measured: caudate -1.7%, putamen -1.2%, occipital +0.3% (SPECT to T1 by MI)
        assert after[i] == pytest.approx(before[i], rel=0.03), name
