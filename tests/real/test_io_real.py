"""load_nifti on the real shared templates: byte order, integer scaling, oblique affine."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from danemap.io import load_nifti, load_nifti_header

pytestmark = pytest.mark.real

TEMPLATES = [
    ("pet-templates/DAT_fpcit_hc174_dukart_spect.nii.gz", ">f4"),  # big-endian float32
    ("pet-templates/NAT_MRB_hc10_hesse.nii.gz", "<i4"),  # int32 with scl_slope
    ("lc-atlas/LCconsensus.nii.gz", "<f4"),  # oblique 2 mm affine
]


@pytest.mark.parametrize(("relpath", "disk_dtype"), TEMPLATES)
def test_real_templates_load_like_nibabel(shared_data, relpath, disk_dtype):
    path = shared_data / relpath
    header = load_nifti_header(path, expect_ndim=3)
    assert header.get_data_dtype().str == np.dtype(disk_dtype).str
    img = load_nifti(path, expect_ndim=3)
    ref = nib.load(path)
    data = np.asarray(img.dataobj)
    assert data.dtype.isnative
    np.testing.assert_array_equal(data.astype(np.float64), ref.get_fdata())
    np.testing.assert_array_equal(img.affine, ref.affine)


def test_real_template_refused_under_a_small_cap(shared_data):
    from danemap.errors import InputError

    with pytest.raises(InputError, match="exceeds the limit"):
        load_nifti(shared_data / TEMPLATES[0][0], max_bytes=1024)
    with pytest.raises(InputError, match=r"DAT_fpcit.*4"):
        load_nifti(shared_data / TEMPLATES[0][0], expect_ndim=4)
