"""Tests of the structural readers: aseg.stats, SynthSeg CSVs, dseg + LUT, dispatch.

The aseg.stats and SynthSeg fixtures under ``data/`` are hand-specified files in the
documented formats (FreeSurfer 7 ``mri_segstats``, FastSurfer ``segstats.py``, SynthSeg
1/2 ``--vol`` with and without ``--parc``). Every volume is checked against an
independent parse of the same file (pandas / regex), and the dseg volumes against
``numpy.bincount`` x the product of the zooms on an image whose label counts are planted.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from danemap.errors import InputError
from danemap.markers.structural._lut import ASEG_LUT, ENIGMA_FREESURFER, ENIGMA_SYNTHSEG
from danemap.markers.structural._readers import (
    ICV_MISSING,
    UNKNOWN_LABEL,
    read_aseg_stats,
    read_dseg,
    read_lut,
    read_synthseg_table,
    read_synthseg_volumes,
    read_volumes,
)
from danemap.markers.structural._volumes import VOLUME_COLUMNS

DATA = Path(__file__).parent / "data"
FS7 = DATA / "freesurfer7_aseg.stats"
FAST = DATA / "fastsurfer_aseg.stats"
SS1 = DATA / "synthseg1_vol.csv"
SS2 = DATA / "synthseg2_vol.csv"
SS2_PARC = DATA / "synthseg2_parc_vol.csv"

ENIGMA_14 = {"Laccumb", "Lamyg", "Lcaud", "Lhippo", "Lpal", "Lput", "Lthal",
             "Raccumb", "Ramyg", "Rcaud", "Rhippo", "Rpal", "Rput", "Rthal"}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _independent_aseg(path: Path) -> tuple[pd.DataFrame, dict[str, float]]:
    """The table with pandas (ColHeaders names), the measures with a regex."""
    text = path.read_text()
    cols = re.search(r"^# ColHeaders\s+(.*)$", text, re.M).group(1).split()
    table = pd.read_csv(path, sep=r"\s+", comment="#", header=None, names=cols)
    measures = {m.group(1): float(m.group(2)) for m in re.finditer(
        r"^# Measure ([^,]+), [^,]+, [^,]+, ([^,]+), \S+\s*$", text, re.M)}
    return table, measures


# ------------------------------------------------------------------ aseg.stats


@pytest.mark.parametrize(("path", "method", "version_key"), [
    (FS7, "freesurfer-aseg", "cvs_version"), (FAST, "fastsurfer-aseg", "FastSurfer_version")])
def test_aseg_matches_an_independent_parse(path, method, version_key):
    vs = read_aseg_stats(path)
    ref, measures = _independent_aseg(path)
    assert vs.method == method and vs.like_freesurfer and vs.source == path
    assert list(vs.table.columns) == list(VOLUME_COLUMNS)
    assert len(vs.table) == 45 == len(ref)  # the full standard aseg row set
    assert vs.table["region"].tolist() == ref["StructName"].tolist()
    np.testing.assert_allclose(vs.table["volume_mm3"], ref["Volume_mm3"], rtol=1e-12)
    np.testing.assert_allclose(vs.table["volume_mm3"].sum(), ref["Volume_mm3"].sum(),
                               rtol=1e-12)
    # the ICV is the eTIV measure, not the BrainSegVol-to-eTIV / MaskVol-to-eTIV ratios
    assert vs.icv_mm3 == pytest.approx(measures["EstimatedTotalIntraCranialVol"], rel=1e-12)
    assert vs.icv_mm3 > 1e6 and vs.icv_method == "eTIV"
    ratio = measures["BrainSegVol-to-eTIV"]
    assert ratio == pytest.approx(measures["BrainSeg"] / vs.icv_mm3, abs=1e-6)
    assert vs.provenance["measures"]["BrainSegVol-to-eTIV"]["unit"] == "unitless"
    assert len(vs.provenance["measures"]) == len(measures) == 20
    assert vs.provenance[version_key]
    assert vs.provenance["cmdline"].startswith(("mri_segstats", "/fastsurfer"))
    assert vs.table["qc"].eq("").all()
    assert (vs.table["method"] == method).all()


def test_aseg_volume_is_volume_mm3_not_nvoxels():
    """mri_segstats --pv corrects Volume_mm3 for partial volume: not NVoxels x voxel size."""
    vs = read_aseg_stats(FS7)
    ref, _ = _independent_aseg(FS7)
    assert vs.provenance["voxel_volume_mm3"] == 1.0
    caudate = ref.set_index("StructName").loc["Left-Caudate"]
    assert caudate["NVoxels"] == 3581 and caudate["Volume_mm3"] == pytest.approx(3520.6)
    got = vs.table.set_index("region").loc["Left-Caudate", "volume_mm3"]
    assert got == pytest.approx(3520.6, rel=1e-12)
    differ = (ref["NVoxels"] * 1.0 - ref["Volume_mm3"]).abs() > 1
    assert differ.sum() > 30  # most structures differ
    np.testing.assert_allclose(vs.table.loc[differ.to_numpy(), "volume_mm3"],
                               ref.loc[differ, "Volume_mm3"], rtol=1e-12)


def test_aseg_hemisphere_and_enigma():
    t = read_aseg_stats(FS7).table.set_index("region")
    assert t.loc["Left-Putamen", "hemisphere"] == "L"
    assert t.loc["Right-Accumbens-area", "hemisphere"] == "R"
    assert t.loc["Left-WM-hypointensities", "hemisphere"] == "L"
    for mid in ("Brain-Stem", "3rd-Ventricle", "CSF", "CC_Central", "WM-hypointensities"):
        assert t.loc[mid, "hemisphere"] == "midline"
    assert (t["hemisphere"] == "L").sum() == (t["hemisphere"] == "R").sum() == 16
    enigma = t.loc[t["enigma"] != "", "enigma"]
    assert set(enigma) == ENIGMA_14 and len(enigma) == 14
    assert t.loc["Left-Thalamus", "enigma"] == "Lthal"
    assert t.loc["Right-Accumbens-area", "enigma"] == "Raccumb"
    assert t.loc["Left-Lateral-Ventricle", "enigma"] == ""


def test_aseg_freesurfer6_thalamus_proper(tmp_path):
    text = FS7.read_text().replace("-Thalamus ", "-Thalamus-Proper ")
    t = read_aseg_stats(_write(tmp_path / "aseg.stats", text)).table.set_index("region")
    assert t.loc["Left-Thalamus-Proper", "enigma"] == "Lthal"
    assert t.loc["Right-Thalamus-Proper", "enigma"] == "Rthal"


def test_aseg_fastsurfer_detection(tmp_path):
    # FreeSurfer's mri_segstats run by the FastSurfer pipeline: told by the command line
    text = FS7.read_text().replace("--seg mri/aseg.mgz",
                                   "--seg mri/aparc.DKTatlas+aseg.deep.mgz")
    assert read_aseg_stats(_write(tmp_path / "a.stats", text)).method == "fastsurfer-aseg"
    text = FS7.read_text().replace("generating_program mri_segstats",
                                   "generating_program mystats")
    with pytest.raises(InputError, match=r"a\.stats.*generating_program.*'mystats'"):
        read_aseg_stats(_write(tmp_path / "a.stats", text))
    text = FS7.read_text().replace("# generating_program mri_segstats\n", "")
    with pytest.raises(InputError, match=r"expected a '# generating_program' header line"):
        read_aseg_stats(_write(tmp_path / "a.stats", text))


def test_aseg_without_etiv_flags_icv_missing(tmp_path, caplog):
    text = re.sub(r"^# Measure EstimatedTotalIntraCranialVol.*\n", "", FS7.read_text(),
                  flags=re.M)
    with caplog.at_level(logging.WARNING, logger="danemap"):
        vs = read_aseg_stats(_write(tmp_path / "aseg.stats", text))
    assert vs.icv_mm3 is None and vs.icv_method == ""
    assert vs.table["qc"].eq(ICV_MISSING).all()
    assert "ICV is missing" in caplog.text


def _line_of(text: str, start: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith(start))


def test_aseg_malformed(tmp_path):
    good = FS7.read_text()
    p = tmp_path / "bad.stats"

    def check(text, pattern):
        with pytest.raises(InputError, match=pattern):
            read_aseg_stats(_write(p, text))

    n = _line_of(good, "# Measure Mask,")
    check(good.replace("Mask Volume, 1587664.000000, mm^3", "Mask Volume, 1587664.000000"),
          rf"bad\.stats: line {n}: '# Measure' line: expected five comma-separated fields"
          r".*found 4")
    check(good.replace("Mask Volume, 1587664.000000", "Mask Volume, lots"),
          rf"bad\.stats: line {n}: measure 'Mask' value: expected a finite number, "
          r"found 'lots'")
    n = _line_of(good, "# NRows")
    check(good.replace("# NRows 45", "# NRows 44"),
          rf"bad\.stats: line {n}: '# NRows 44' but the table has 45 rows")
    check(good.replace("# NTableCols 10", "# NTableCols 9"),
          r"'# NTableCols 9' but '# ColHeaders' names 10 columns")
    check(re.sub(r"^# ColHeaders.*\n", "", good, flags=re.M),
          r"bad\.stats: line \d+: expected '# ColHeaders \.\.\.' before the table")
    check(re.sub(r"^# NRows.*\n", "", good, flags=re.M), r"expected a '# NRows' line")
    n = _line_of(good, "  6   11")
    check(good.replace("3520.6  Left-Caudate", "abc  Left-Caudate"),
          rf"bad\.stats: line {n}: column Volume_mm3: expected a finite number, found 'abc'")
    check(good.replace("3520.6  Left-Caudate", "3520.6  Left Caudate"),
          rf"bad\.stats: line {n}: expected 10 fields .* found 11")
    check(good.replace("  6   11     3581", "  6   11     3581.5"),
          rf"line {n}: column NVoxels: expected an integer, found '3581.5'")
    check(good.replace("Left-Caudate ", "Left-Putamen "),
          r"line \d+: structure 'Left-Putamen' is repeated \(first on line \d+\)")
    head = good.split("# ColHeaders")[0].replace("# NRows 45", "# NRows 0")
    cols = "# ColHeaders" + good.split("# ColHeaders")[1].splitlines()[0] + "\n"
    check(head + cols, r"bad\.stats: the structure table is empty")
    check("# Title Something else\n", r"line 1: not an aseg.stats file")
    check("", r"not an aseg.stats file.*empty file")
    with pytest.raises(InputError, match=r"nothere\.stats: file not found"):
        read_aseg_stats(tmp_path / "nothere.stats")


# ------------------------------------------------------------------ SynthSeg


def test_synthseg2_matches_an_independent_parse():
    table = read_synthseg_table(SS2)
    ref = pd.read_csv(SS2)
    assert list(table) == ref["subject"].tolist() == [
        "sub-01_T1w", "sub-02_ses-1_T1w", "sub-02_ses-2_T1w"]
    for (subject, vs), (_, row) in zip(table.items(), ref.iterrows(), strict=True):
        assert vs.method == "synthseg-2" and vs.like_freesurfer
        assert vs.icv_method == "SynthSeg total intracranial"
        assert vs.icv_mm3 == pytest.approx(row["total intracranial"], rel=1e-12)
        structures = [c for c in ref.columns if c not in ("subject", "total intracranial")]
        assert vs.table["region"].tolist() == structures and len(structures) == 32
        np.testing.assert_allclose(vs.table["volume_mm3"], row[structures].astype(float),
                                   rtol=1e-12)
        # SynthSeg's total intracranial is the sum of every segmented structure, csf in
        np.testing.assert_allclose(vs.table["volume_mm3"].sum(), vs.icv_mm3, rtol=1e-9)
        assert vs.provenance["subject"] == subject and vs.provenance["version"] == 2
        assert not vs.provenance["parc"]
        assert vs.table["qc"].eq("").all()
    t = table["sub-01_T1w"].table.set_index("region")
    assert t.loc["csf", "hemisphere"] == "midline"
    assert t.loc["left caudate", "enigma"] == "Lcaud"
    assert t.loc["right accumbens area", "enigma"] == "Raccumb"
    assert t.loc["left thalamus", "enigma"] == "Lthal"
    assert set(t.loc[t["enigma"] != "", "enigma"]) == ENIGMA_14
    assert (t["hemisphere"] == "L").sum() == (t["hemisphere"] == "R").sum() == 14


def test_synthseg_select_participant_and_session():
    assert read_synthseg_volumes(SS2, "sub-01").provenance["subject"] == "sub-01_T1w"
    assert read_synthseg_volumes(SS2, "01").provenance["subject"] == "sub-01_T1w"
    vs = read_synthseg_volumes(SS2, "sub-02", session="ses-2")
    assert vs.provenance["subject"] == "sub-02_ses-2_T1w"
    assert vs.provenance["session"] == "ses-2" and vs.provenance["line"] == 4
    assert read_synthseg_volumes(SS2, "02", "1").provenance["subject"] == "sub-02_ses-1_T1w"
    with pytest.raises(InputError, match=r"names sub-02, found 2 rows .*give the session"):
        read_synthseg_volumes(SS2, "sub-02")
    with pytest.raises(InputError, match=r"names sub-09, found no row"):
        read_synthseg_volumes(SS2, "sub-09")
    with pytest.raises(InputError, match=r"holds 3 images"):
        read_synthseg_volumes(SS2)
    assert read_volumes(SS1).provenance["subject"] == "sub-03_T1w"  # a one-row file


def test_synthseg_one_row_without_participant_name(tmp_path):
    text = SS1.read_text().replace("sub-03_T1w", "T1w_scan")
    vs = read_synthseg_volumes(_write(tmp_path / "v.csv", text), participant_id="sub-03")
    assert vs.provenance["participant_id"] is None
    text = SS1.read_text().replace("sub-03_T1w", "sub-07_T1w")
    with pytest.raises(InputError, match=r"names sub-03, found no row"):
        read_synthseg_volumes(_write(tmp_path / "v.csv", text), participant_id="sub-03")


def test_synthseg1_has_no_icv(caplog):
    ref = pd.read_csv(SS1)
    with caplog.at_level(logging.WARNING, logger="danemap"):
        vs = read_synthseg_volumes(SS1, "sub-03")
    assert "total intracranial" not in ref.columns and "csf" not in ref.columns
    assert vs.method == "synthseg-1" and vs.icv_mm3 is None and vs.icv_method == ""
    assert vs.table["qc"].eq(ICV_MISSING).all()
    assert "the ICV is missing" in caplog.text
    np.testing.assert_allclose(vs.table["volume_mm3"], ref.iloc[0, 1:].astype(float),
                               rtol=1e-12)
    assert len(vs.table) == 31
    assert set(vs.table.loc[vs.table["enigma"] != "", "enigma"]) == ENIGMA_14


@pytest.mark.parametrize("style", ["ctx", "words"])
def test_synthseg2_parc(tmp_path, style):
    path = SS2_PARC
    if style == "words":  # 'left bankssts' instead of 'ctx-lh-bankssts'
        text = SS2_PARC.read_text().replace("ctx-lh-", "left ").replace("ctx-rh-", "right ")
        path = _write(tmp_path / "parc.csv", text)
    vs = read_synthseg_volumes(path, "sub-04")
    ref = pd.read_csv(path)
    assert vs.method == "synthseg-2" and vs.provenance["parc"] is True
    assert len(vs.table) == 32 + 68
    np.testing.assert_allclose(vs.table["volume_mm3"],
                               ref.drop(columns=["subject", "total intracranial"]).iloc[0]
                               .astype(float), rtol=1e-12)
    t = vs.table.set_index("region")
    lh = "ctx-lh-" if style == "ctx" else "left "
    rh = "ctx-rh-" if style == "ctx" else "right "
    parcels_l = [r for r in t.index if r.startswith(lh) and r[len(lh):] in (
        "bankssts", "insula", "precuneus")]
    assert len(parcels_l) == 3 and (t.loc[parcels_l, "hemisphere"] == "L").all()
    lh_parc = t.index[t.index.str.startswith(lh)
                      & ~t.index.isin(list(ENIGMA_SYNTHSEG) + [
                          f"left {s}" for s in ("cerebral white matter", "cerebral cortex",
                                                "lateral ventricle",
                                                "inferior lateral ventricle",
                                                "cerebellum white matter",
                                                "cerebellum cortex", "ventral DC")])]
    assert len(lh_parc) == 34
    # the parcels subdivide the cortex label: they sum to it
    np.testing.assert_allclose(t.loc[lh_parc, "volume_mm3"].sum(),
                               t.loc["left cerebral cortex", "volume_mm3"], rtol=1e-9)
    assert t.loc[f"{rh}insula", "hemisphere"] == "R"
    assert t.loc[f"{rh}insula", "enigma"] == ""


def test_synthseg_malformed(tmp_path):
    good = SS2.read_text()
    p = tmp_path / "bad.csv"

    def check(text, pattern):
        with pytest.raises(InputError, match=pattern):
            read_synthseg_table(_write(p, text))

    check(good.replace("subject,", "image,", 1),
          r"bad\.csv: line 1: not a SynthSeg volume table: expected a 'subject' column")
    lines = good.splitlines()
    fields = lines[2].split(",")
    fields[9] = "big"  # left caudate
    check("\n".join([*lines[:2], ",".join(fields), *lines[3:]]) + "\n",
          r"bad\.csv: line 3: column 'left caudate': expected a finite number, found 'big'")
    fields[9] = "-3"
    check("\n".join([*lines[:2], ",".join(fields), *lines[3:]]) + "\n",
          r"line 3: column 'left caudate': expected a non-negative volume")
    check("\n".join([*lines[:2], lines[2] + ",12.5", *lines[3:]]) + "\n",
          r"line 3: expected 34 fields, found 35")
    check("\n".join([*lines, lines[1]]) + "\n",
          r"line 5: subject 'sub-01_T1w' is repeated \(first on line 2\)")
    check(lines[0] + "\n", r"bad\.csv: the table is empty")
    check("", r"bad\.csv: expected a SynthSeg volume CSV .* empty file")
    no_csf = SS2.read_text().replace(",csf,", ",csf_x,", 1)
    check(no_csf, r"found 'total intracranial' without 'csf'")
    check("subject,general white matter,general grey matter,general csf\ns,0.9,0.8,0.7\n",
          r"SynthSeg QC-score table")
    check(good.replace("left caudate", "left putamen", 1), r"repeated \['left putamen'\]")


# ------------------------------------------------------------------ dseg + LUT

ZOOMS = (1.2, 0.9, 1.5)


def _dseg(tmp_path: Path, data: np.ndarray, name: str = "sub-01_desc-aseg_dseg.nii.gz",
          zooms=ZOOMS) -> Path:
    affine = np.diag([*zooms[:3], 1.0])
    img = nib.Nifti1Image(data, affine)
    img.header.set_zooms(zooms)
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)
    return path


PLANTED = {11: 37, 12: 51, 50: 29, 17: 8, 24: 64, 999: 5}  # label -> voxel count


def _planted(dtype=np.int16) -> np.ndarray:
    flat = np.zeros(10 * 12 * 9, dtype=dtype)
    rng = np.random.default_rng(3)
    order = rng.permutation(flat.size)
    start = 0
    for label, n in PLANTED.items():
        flat[order[start:start + n]] = label
        start += n
    return flat.reshape(10, 12, 9)


def test_dseg_volumes_planted_and_bincount(tmp_path, caplog):
    data = _planted()
    path = _dseg(tmp_path, data)
    lut = _write(tmp_path / "FreeSurferColorLUT.txt",
                 "#No. Label Name:                R   G   B   A\n\n"
                 "  0  Unknown                    0   0   0   0\n"
                 " 11  Left-Caudate             122 186 220   0\n"
                 " 12  Left-Putamen             236  13 176   0\n"
                 " 17  Left-Hippocampus         220 216  20   0\n"
                 " 24  CSF                       60  60  60   0\n"
                 " 50  Right-Caudate            122 186 220   0\n"
                 " 51  Right-Putamen            236  13 176   0   # absent\n")
    with caplog.at_level(logging.INFO, logger="danemap"):
        vs = read_dseg(path, lut=lut)
    # reference: numpy's bincount x the product of the header's (float32) zooms
    zooms = [float(z) for z in nib.load(path).header.get_zooms()]
    voxel = zooms[0] * zooms[1] * zooms[2]
    counts = np.bincount(data.ravel().astype(np.int64))
    labels = np.flatnonzero(counts)[1:]
    np.testing.assert_allclose(vs.table["volume_mm3"], counts[labels] * voxel, rtol=1e-12)
    # planted truth: the decimal voxel size, to float32 pixdim precision (3 x 6e-8)
    planted = [PLANTED[k] * 1.2 * 0.9 * 1.5 for k in sorted(PLANTED)]
    np.testing.assert_allclose(vs.table["volume_mm3"], planted, rtol=1e-6)
    assert vs.table["region"].tolist() == ["Left-Caudate", "Left-Putamen", "Left-Hippocampus",
                                           "CSF", "Right-Caudate", "label-999"]
    assert vs.table["enigma"].tolist() == ["Lcaud", "Lput", "Lhippo", "", "Rcaud", ""]
    assert vs.table["hemisphere"].tolist() == ["L", "L", "L", "midline", "R", "midline"]
    assert vs.method == "dseg-lut" and vs.icv_mm3 is None and vs.like_freesurfer
    assert vs.table["qc"].iloc[-1] == f"{ICV_MISSING};{UNKNOWN_LABEL}"
    assert vs.table["qc"].iloc[:-1].eq(ICV_MISSING).all()
    assert vs.provenance["unknown_labels"] == [999]
    assert vs.provenance["absent_labels"] == [51]
    assert vs.provenance["voxel_volume_mm3"] == pytest.approx(voxel, rel=1e-12)
    assert "not in the lookup table" in caplog.text and "Right-Putamen" in caplog.text


def test_dseg_lut_sources(tmp_path, caplog):
    data = _planted(np.uint8 if max(PLANTED) < 256 else np.int32)
    # BIDS dseg.tsv inherited from the derivatives root (fMRIPrep's desc-aseg_dseg.tsv)
    root = tmp_path / "fmriprep"
    path = _dseg(root / "sub-01" / "anat", data)
    _write(root / "dataset_description.json", "{}")
    _write(root / "desc-aseg_dseg.tsv", "index\tname\n11\tLeft-Caudate\n999\tMy-Label\n")
    vs = read_dseg(path)
    assert vs.provenance["lut"] == str(root / "desc-aseg_dseg.tsv")
    assert "My-Label" in vs.table["region"].tolist()
    # the same-name sidecar wins
    _write(path.parent / "sub-01_desc-aseg_dseg.tsv", "index\tname\n999\tOther\n")
    assert "Other" in read_dseg(path).table["region"].tolist()
    # no sidecar: the built-in aseg table
    bare = _dseg(tmp_path / "bare", data)
    with caplog.at_level(logging.INFO, logger="danemap"):
        vs = read_dseg(bare)
    assert vs.provenance["lut"] == "builtin FreeSurfer aseg"
    assert vs.table["region"].tolist()[:3] == [ASEG_LUT[11], ASEG_LUT[12], ASEG_LUT[17]]
    assert "built-in FreeSurfer aseg" in caplog.text
    # a mapping; no FreeSurfer ENIGMA names -> not FreeSurfer-like
    vs = read_dseg(bare, lut={11: "GM", 12: "WM"})
    assert not vs.like_freesurfer and vs.table["enigma"].eq("").all()
    assert read_volumes(bare, lut={11: "GM"}).method == "dseg-lut"


def test_dseg_float_labels(tmp_path):
    data = _planted().astype(np.float32)
    vs = read_dseg(_dseg(tmp_path, data, "a_dseg.nii.gz"))  # integral floats are labels
    np.testing.assert_allclose(vs.table["volume_mm3"].sum(),
                               sum(PLANTED.values()) * np.prod(ZOOMS), rtol=1e-6)
    data[0, 0, 0] = 11.5
    with pytest.raises(InputError, match=r"b_dseg\.nii\.gz: labels must be integers, found 1 "
                                         r"voxels with non-integer values \(e\.g\. 11\.5\)"):
        read_dseg(_dseg(tmp_path, data, "b_dseg.nii.gz"))
    data[0, 0, 0] = np.nan
    with pytest.raises(InputError, match=r"labels must be finite integers, found 1 NaN"):
        read_dseg(_dseg(tmp_path, data, "c_dseg.nii.gz"))


def test_dseg_malformed(tmp_path):
    with pytest.raises(InputError, match=r"expected labelled voxels, found only background"):
        read_dseg(_dseg(tmp_path, np.zeros((4, 4, 4), np.int16), "z_dseg.nii.gz"))
    with pytest.raises(InputError, match=r"labels must be non-negative, found -2"):
        read_dseg(_dseg(tmp_path, np.full((4, 4, 4), -2, np.int16), "n_dseg.nii.gz"))
    with pytest.raises(InputError, match=r"expected a 3D image, found a 4D image"):
        read_dseg(_dseg(tmp_path, np.ones((4, 4, 4, 2), np.int16), "f_dseg.nii.gz",
                        zooms=(1, 1, 1, 2)))
    path = _dseg(tmp_path, _planted(), "ok_dseg.nii.gz")
    bad = _write(tmp_path / "lut.txt", "11 Left-Caudate 122 186 220 0\n12 Left-Putamen 1 2\n")
    with pytest.raises(InputError, match=r"lut\.txt: line 2: expected '<index> <name> R G B A'"):
        read_dseg(path, lut=bad)
    bad = _write(tmp_path / "lut.txt", "11 Left-Caudate 122 186 220 0\n11 Again 1 2 3 0\n")
    with pytest.raises(InputError, match=r"lut\.txt: line 2: label 11 is repeated"):
        read_lut(bad)
    bad = _write(tmp_path / "x_dseg.tsv", "label\tname\n11\tA\n")
    with pytest.raises(InputError, match=r"x_dseg\.tsv: line 1: expected the BIDS dseg\.tsv "
                                         r"columns 'index' and 'name'"):
        read_lut(bad)
    bad = _write(tmp_path / "y_dseg.tsv", "index\tname\neleven\tA\n")
    with pytest.raises(InputError, match=r"y_dseg\.tsv: line 2: column 'index': expected an "
                                         r"integer, found 'eleven'"):
        read_lut(bad)
    truncated = tmp_path / "t_dseg.nii"
    raw = nib.Nifti1Image(np.ones((20, 20, 20), np.int16), np.eye(4))
    nib.save(raw, truncated)
    truncated.write_bytes(truncated.read_bytes()[:600])  # the header is checked first
    with pytest.raises(InputError, match=r"t_dseg\.nii: file is truncated"):
        read_dseg(truncated)


# ------------------------------------------------------------------ dispatch


def test_read_volumes_dispatch(tmp_path):
    assert read_volumes(FS7).method == "freesurfer-aseg"
    assert read_volumes(SS2, participant_id="sub-01").method == "synthseg-2"
    with pytest.raises(InputError, match=r"aseg\.mgz: unsupported volume file type "
                                         r"\(a FreeSurfer \.mgz: convert it"):
        read_volumes(tmp_path / "aseg.mgz")
    with pytest.raises(InputError, match=r"x\.txt: unsupported volume file type"):
        read_volumes(tmp_path / "x.txt")
    with pytest.raises(InputError, match=r"read_aseg_stats does not take \['lut'\]"):
        read_volumes(FS7, lut="x")


def test_enigma_constants():
    assert set(ENIGMA_FREESURFER.values()) == ENIGMA_14
    assert set(ENIGMA_SYNTHSEG.values()) == ENIGMA_14
    assert ENIGMA_FREESURFER["Left-Thalamus-Proper"] == ENIGMA_FREESURFER["Left-Thalamus"]


@pytest.mark.real
def test_enigma_names_are_the_enigma_table(shared_data):
    table = pd.read_csv(shared_data / "enigma-adhd" / "adhdallages_case-controls_SubVol.csv")
    # every mapped name is an ENIGMA-ADHD structure (the table adds the lateral ventricles)
    assert ENIGMA_14 <= set(table["Structure"])
    assert set(table["Structure"]) - ENIGMA_14 == {"LLatVent", "RLatVent"}


def test_dseg_large_labels_and_voxel_size_mismatch(tmp_path, caplog):
    data = np.zeros((6, 5, 4), np.int32)
    data[:2] = 70000  # above the bincount range: counted with numpy.unique
    data[2, :3] = 11
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.int32)
    hdr.set_qform(np.eye(4), code=1)  # pixdim 1 mm
    hdr.set_sform(np.diag([2.0, 2.0, 2.0, 1.0]), code=1)  # the affine nibabel uses: 8 mm3
    path = tmp_path / "m_dseg.nii.gz"
    nib.save(nib.Nifti1Image(data, None, hdr), path)
    with caplog.at_level(logging.WARNING, logger="danemap"):
        vs = read_dseg(path, lut={11: "Left-Caudate", 70000: "Big"})
    t = vs.table.set_index("region")
    assert t.loc["Big", "volume_mm3"] == pytest.approx(40.0, rel=1e-12)  # 40 voxels x 1 mm3
    assert t.loc["Left-Caudate", "volume_mm3"] == pytest.approx(12.0, rel=1e-12)  # 3 x 4
    assert t["qc"].eq(f"{ICV_MISSING};voxel_volume_mismatch").all()
    assert "differs from the header zooms" in caplog.text
