"""Known scaling of a real brain: Colin27 and Colin27 resampled by a known affine.

The affine scales volume by 0.82 (isotropic linear factor 0.82 ** (1/3)) and rotates by 9
degrees; every listed region's recovered volume ratio must be the known factor within 3 %.
Full mode at 2 mm, the two images in two processes (about 3 minutes); skipped when
ch2.nii.gz is missing, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("ants")

from danemap.atlas import load_atlas
from danemap.markers.structural._ants import segment_t1w
from danemap.simulate._anat import COLIN27_PATH
from danemap.simulate._common import resample_to_grid

FACTOR = 0.82
ANGLE_DEG = 9.0
LISTED = ("Caudate_L", "Caudate_R", "Putamen_L", "Putamen_R", "NAcc_L", "NAcc_R",
          "DLPFC_L", "DLPFC_R", "Cerebellum_L", "Cerebellum_R", "Thalamus_L", "Thalamus_R")


@pytest.fixture(scope="module")
def colin():
    if not COLIN27_PATH.is_file():
        msg = f"{COLIN27_PATH} is missing (Debian package mricron-data)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"{msg}, and CI=true requires it")
        pytest.skip(msg)
    img = nib.load(COLIN27_PATH)
    grid = np.diag([2.0, 2.0, 2.0, 1.0])
    grid[:3, 3] = (-90.0, -126.0, -72.0)
    shape = (91, 109, 91)
    base = resample_to_grid(np.asarray(img.dataobj), img.affine, shape, grid, order=1)
    # world map x -> A x + b: scaling by FACTOR in volume, rotation about z, about the
    # brain centre; the scaled image at y is the original at A^-1 y
    a = np.deg2rad(ANGLE_DEG)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    lin = FACTOR ** (1.0 / 3.0) * rot
    c = np.array([0.0, -18.0, 10.0])
    world = np.eye(4)
    world[:3, :3] = lin
    world[:3, 3] = c - lin @ c
    src_affine = world @ img.affine  # the original voxels placed where they move to
    scaled = resample_to_grid(np.asarray(img.dataobj), src_affine, shape, grid, order=1)
    return nib.Nifti1Image(base.astype(np.float32), grid), \
        nib.Nifti1Image(scaled.astype(np.float32), grid)


def _volumes(path):
    vs = segment_t1w(path, load_atlas(2), quick=False, work_dir=os.path.dirname(path)).volumes
    return vs.table.set_index("region")["volume_mm3"].to_dict(), vs.icv_mm3, vs.provenance


def test_known_scaling(colin, tmp_path):
    """Measured (full, 2 mm, Colin27 atlas space): ratios 0.797-0.835, ICV 0.820, for 0.82.

    Quick mode gave 0.801-0.843 (NAcc_L near the 0.845 edge; the earlier, Mattes MI quick
    mode missed: Putamen_L 0.795, NAcc_L 0.851), hence full mode here.
    """
    paths = []
    for name, img in zip(("colin27", "scaled"), colin, strict=True):
        nib.save(img, tmp_path / f"{name}_T1w.nii.gz")
        paths.append(str(tmp_path / f"{name}_T1w.nii.gz"))
    # spawned workers: ITK reads its (deterministic, 1) thread count afresh in each
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        (va, icv_a, prov), (vb, icv_b, _) = list(pool.map(_volumes, paths))
    assert prov["atlas_space"] == "colin27" and prov["mode"] == "full"
    ratios = {r: vb[r] / va[r] for r in LISTED}
    icv_ratio = icv_b / icv_a
    assert icv_ratio == pytest.approx(FACTOR, rel=0.03)
    bad = {r: round(float(v), 4) for r, v in ratios.items() if abs(v / FACTOR - 1.0) > 0.03}
    assert not bad, (f"outside +-3 % of {FACTOR}: {bad}; all ratios "
                     f"{ {r: round(float(v), 4) for r, v in ratios.items()} }, ICV "
                     f"{icv_ratio:.4f}")
