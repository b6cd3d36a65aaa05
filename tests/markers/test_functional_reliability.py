"""Functional inputs that fail clearly (issue 13): confounds, degrees of freedom, short runs,
signal-free BOLD, confounds tables, the TR override and raw BOLD without fMRIPrep output.

Each test builds a small synthetic run (a 9 x 9 x 6 grid, 4 regions) so that it stays fast.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from danemap.atlas import Atlas
from danemap.config import Config, FunctionalConfig
from danemap.errors import ConfigError, DanemapWarning, InputError
from danemap.markers import collect_functional_group, process_run, process_timeseries, write_run
from danemap.markers.functional import FunctionalFamily
from danemap.markers.functional._clean import (
    MIN_RESIDUAL_DOF,
    filter_min_volumes,
    residual_dof,
)
from danemap.markers.functional._confounds import read_confounds, select_confounds

SHAPE = (9, 9, 6)
AFFINE = np.diag([3.0, 3.0, 3.0, 1.0])
NAMES = ["Caudate_L", "Putamen_L", "DLPFC_L", "Thal_L"]
NETS = {"frontostriatal": [("Caudate_L", "DLPFC_L"), ("Putamen_L", "DLPFC_L")]}
SPACE = "space-MNI152NLin2009cAsym"
NO_FILTER = {"high_pass": 0.0, "low_pass": 0.0}


def _atlas() -> Atlas:
    lab = np.zeros(SHAPE, dtype=np.int16)
    lab[1:4, 1:4, 1:3] = 1
    lab[5:8, 1:4, 1:3] = 2
    lab[1:8, 5:8, 3:5] = 3
    lab[4, 4, 1:3] = 4
    regions = pd.DataFrame({"index": [1, 2, 3, 4], "name": NAMES})
    return Atlas(nib.Nifti1Image(lab, AFFINE), regions, NETS, "test")


def _confounds(n_t: int, rng: np.random.Generator) -> pd.DataFrame:
    """An fMRIPrep-like table: 24 motion, csf/wm with expansions, FD, DVARS, 2 cosines."""
    cols: dict[str, np.ndarray] = {}
    for base in ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z", "csf",
                 "white_matter"]:
        x = np.cumsum(rng.normal(0, 0.05, n_t))
        d = np.r_[np.nan, np.diff(x)]  # fMRIPrep writes n/a in the first row
        cols[base] = x
        cols[base + "_derivative1"] = d
        cols[base + "_power2"] = x**2
        cols[base + "_derivative1_power2"] = d**2
    cols["framewise_displacement"] = np.r_[np.nan, np.abs(rng.normal(0.1, 0.03, n_t - 1))]
    cols["std_dvars"] = np.r_[np.nan, np.abs(rng.normal(1.0, 0.1, n_t - 1))]
    for i in range(2):
        cols[f"cosine{i:02d}"] = np.cos(np.pi * (np.arange(n_t) + 0.5) * (i + 1) / n_t)
    return pd.DataFrame(cols)


def _bold_data(n_t: int, rng: np.random.Generator) -> np.ndarray:
    lab = np.asarray(_atlas().img.dataobj)
    shared = rng.normal(size=n_t)
    data = 1000 + 20 * rng.normal(size=(*SHAPE, n_t))
    for k in range(1, 5):
        data[lab == k] += 15 * (shared * (0.4 + 0.1 * k) + rng.normal(size=n_t))
    return data.astype(np.float32)


def _run(root: Path, sub: str = "01", n_t: int = 60, seed: int = 0, tr: float = 2.0,
         header_tr: float | None = None, data: np.ndarray | None = None,
         confounds: bool = True, sidecar: bool = True) -> tuple[Path, Path]:
    """Write an fMRIPrep-named BOLD (+ sidecar, + confounds) and return (bold, confounds)."""
    rng = np.random.default_rng(seed)
    d = root / "derivatives" / "fmriprep" / f"sub-{sub}" / "func"
    d.mkdir(parents=True, exist_ok=True)
    stem = f"sub-{sub}_task-rest"
    img = nib.Nifti1Image(_bold_data(n_t, rng) if data is None else data, AFFINE)
    img.header.set_xyzt_units("mm", "sec")
    img.header["pixdim"][4] = tr if header_tr is None else header_tr
    bold = d / f"{stem}_{SPACE}_desc-preproc_bold.nii.gz"
    nib.save(img, bold)
    if sidecar:
        bold.with_name(bold.name.replace(".nii.gz", ".json")).write_text(
            json.dumps({"RepetitionTime": tr}))
    conf = d / f"{stem}_desc-confounds_timeseries.tsv"
    if confounds:
        _confounds(n_t, rng).to_csv(conf, sep="\t", index=False, na_rep="n/a")
    return bold, conf


def _process(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DanemapWarning)
        return process_run(*args, **kwargs)


def _bids(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "t", "BIDSVersion": "1.9.0"}))
    return root


# ------------------------------------------------------------------ 1. missing confounds
def test_missing_confounds_is_an_error_naming_bold_and_expected_file(tmp_path):
    bold, conf = _run(tmp_path, confounds=False)
    with pytest.raises(InputError) as err:
        _process(bold, None, _atlas())
    msg = str(err.value)
    assert str(bold) in msg
    assert str(conf) in msg  # the path fMRIPrep would have written
    assert "--allow-missing-confounds" in msg


def test_missing_confounds_through_the_family_is_an_error(tmp_path):
    from danemap.io import discover

    root = _bids(tmp_path / "bids")
    _run(root, confounds=False)
    (root / "derivatives" / "fmriprep" / "dataset_description.json").write_text(
        json.dumps({"Name": "fmriprep", "BIDSVersion": "1.9.0", "DatasetType": "derivative"}))
    session = discover(root).get("01")
    family = FunctionalFamily()
    items = family.inputs(session, Config())
    assert len(items) == 1
    with pytest.raises(InputError, match=r"no fMRIPrep confounds file: expected .*"
                                         r"sub-01_task-rest_desc-confounds_timeseries\.tsv, "
                                         "not found"):
        family.compute(items[0], _atlas(), Config())


def test_allowed_missing_confounds_are_flagged_and_left_out_of_group_tables(tmp_path, caplog):
    from danemap.io import DerivativesWriter

    writer = DerivativesWriter(tmp_path / "out")
    allow = FunctionalConfig(allow_missing_confounds=True)
    bold1, conf1 = _run(tmp_path / "in", sub="01", seed=1)
    bold2, _ = _run(tmp_path / "in", sub="02", seed=2, confounds=False)
    ok = _process(bold1, conf1, _atlas(), allow)
    with caplog.at_level(logging.WARNING, logger="danemap"):
        flagged = _process(bold2, None, _atlas(), allow)
    assert "no confounds" in caplog.text and "excluded from the group tables" in caplog.text
    assert flagged.qc["qc_reason"] == "no confounds"
    assert flagged.qc["exclude"] is True
    assert flagged.meta["Denoising"]["strategy"] == "none"
    assert ok.qc["exclude"] is False and ok.qc["qc_reason"] is None
    assert FunctionalFamily().qc_excluded(flagged)
    write_run(ok, writer, "sub-01", atlas="test")
    write_run(flagged, writer, "sub-02", atlas="test")
    out = collect_functional_group(writer.root, writer.root / "group", atlas="test")
    nets = pd.read_csv(out["networks"], sep="\t")
    assert nets["participant_id"].tolist() == ["sub-01"]
    corr = pd.read_csv(out["connectivity_corr"], sep="\t")
    assert corr["participant_id"].tolist() == ["sub-01"]
    qc = pd.read_csv(out["motion_qc"], sep="\t").set_index("participant_id")
    assert qc.loc["sub-02", "qc_reason"] == "no confounds"
    assert bool(qc.loc["sub-02", "exclude"]) and not bool(qc.loc["sub-01", "exclude"])


# ------------------------------------------------------------------ 2. degrees of freedom
@pytest.mark.parametrize("kind", ["correlation", "partial correlation"])
def test_more_confounds_than_volumes_is_an_error(tmp_path, kind):
    # the case: a 20-volume BOLD, 'simple' confounds (2 cosines + 24 motion + 2
    # wm/csf = 28 columns), no filtering: the residuals would be rounding noise
    bold, conf = _run(tmp_path, n_t=20)
    cfg = FunctionalConfig(strategy="simple", connectivity=[kind], **NO_FILTER)
    with pytest.raises(InputError) as err:
        _process(bold, conf, _atlas(), cfg)
    msg = str(err.value)
    assert str(bold) in msg
    assert "20 volumes" in msg and "30 regressors" in msg  # 28 confounds + mean + trend
    assert f"minimum of {MIN_RESIDUAL_DOF}" in msg


@pytest.mark.parametrize("kind", ["correlation", "partial correlation"])
def test_too_few_dof_from_precomputed_series_is_an_error(kind):
    rng = np.random.default_rng(0)
    ts = pd.DataFrame(rng.normal(size=(30, 4)), columns=NAMES)
    conf = pd.DataFrame(rng.normal(size=(30, 19)))
    cfg = FunctionalConfig(connectivity=[kind], **NO_FILTER)
    with pytest.raises(InputError, match=r"30 volumes .* 21 regressors .* leave 9 residual"):
        process_timeseries(ts, 2.0, confounds=conf, config=cfg, networks={})
    res = process_timeseries(ts, 2.0, confounds=conf.iloc[:, :18], config=cfg, networks={})
    assert res.qc["residual_dof"] == MIN_RESIDUAL_DOF  # exactly the minimum is accepted
    assert np.isfinite(next(iter(res.connectivity.values())).to_numpy()).all()


def test_residual_dof_counts_every_regressor():
    # 200 volumes, 10 censored, 30 confounds of which 2 cosines, detrend, high-pass
    # 0.01 Hz at TR 2 s: floor(2 * 200 * 2 * 0.01) = 8 cosine terms, 6 beyond the 2 given
    dof, reg = residual_dof(200, 190, 30, 2, 2.0, True, 0.01)
    assert reg == {"confounds": 30, "mean_and_trend": 2, "high_pass": 6,
                   "censored_volumes": 10}
    assert dof == 200 - 48
    assert residual_dof(200, 200, 0, 0, 2.0, False, 0.0) == (199, {
        "confounds": 0, "mean_and_trend": 1, "high_pass": 0, "censored_volumes": 0})


def test_scrubbed_volumes_count_against_the_dof(tmp_path):
    bold, conf = _run(tmp_path, n_t=60, seed=3)
    df = pd.read_csv(conf, sep="\t", na_values="n/a")
    cfg = FunctionalConfig(strategy="custom", confounds=["trans_x"], **NO_FILTER)
    assert _process(bold, df, _atlas(), cfg).qc["residual_dof"] == 60 - 3
    # 48 non-steady-state volumes: 12 kept - 1 confound - 2 = 9 < 10
    df["non_steady_state_outlier00"] = (np.arange(60) < 48).astype(float)
    with pytest.raises(InputError, match=r"60 volumes \(12 kept after censoring\)"):
        _process(bold, df, _atlas(), cfg)


# ------------------------------------------------------------------ 3. short / empty runs
def test_filter_minimum_is_computed_from_the_filter():
    from scipy import signal as sp_signal

    need = filter_min_volumes(2.0, 0.01, 0.1)
    assert need == 34
    assert filter_min_volumes(2.0, 0.01, None) == filter_min_volumes(2.0, None, 0.1) == 19
    assert filter_min_volumes(2.0, None, None) == 0
    sos = sp_signal.butter(5, [0.01, 0.1], btype="band", output="sos", fs=0.5)
    sp_signal.sosfiltfilt(sos, np.ones(need))  # the minimum works...
    with pytest.raises(ValueError, match="padlen"):
        sp_signal.sosfiltfilt(sos, np.ones(need - 1))  # ...and one less does not


def test_run_too_short_for_the_band_pass_names_file_and_minimum(tmp_path):
    cfg = FunctionalConfig(strategy="custom", confounds=["trans_x"])
    bold, conf = _run(tmp_path / "a", n_t=33)
    with pytest.raises(InputError) as err:
        _process(bold, conf, _atlas(), cfg)
    msg = str(err.value)
    assert str(bold) in msg and "has 33 volumes" in msg and "needs at least 34" in msg
    assert "padlen" not in msg
    bold, conf = _run(tmp_path / "b", n_t=34)
    res = _process(bold, conf, _atlas(), cfg)
    assert res.qc["n_volumes_analysed"] == 34
    # high-pass only: the order-5 high-pass needs 19 volumes
    bold, conf = _run(tmp_path / "c", n_t=18)
    with pytest.raises(InputError, match="needs at least 19"):
        _process(bold, conf, _atlas(), FunctionalConfig(strategy="custom",
                                                        confounds=["trans_x"], low_pass=0))


def test_one_volume_and_3d_bold_are_input_errors(tmp_path):
    atlas = _atlas()
    one = tmp_path / "sub-01_task-rest_bold.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((*SHAPE, 1), np.float32), AFFINE), one)
    with pytest.raises(InputError, match=r"at least 3 volumes; found 1"):
        _process(one, None, atlas, tr=2.0)
    flat = tmp_path / "sub-02_task-rest_bold.nii.gz"
    nib.save(nib.Nifti1Image(np.ones(SHAPE, np.float32), AFFINE), flat)
    with pytest.raises(InputError, match=r"sub-02_task-rest_bold.nii.gz.*4"):
        _process(flat, None, atlas, tr=2.0)
    with pytest.raises(InputError, match="expected a 4D image"):
        _process(nib.Nifti1Image(np.ones(SHAPE, np.float32), AFFINE), None, atlas, tr=2.0)


@pytest.mark.parametrize("value", [0.0, 731.0])
def test_signal_free_bold_is_an_input_error(tmp_path, value):
    data = np.full((*SHAPE, 60), value, dtype=np.float32)
    bold, conf = _run(tmp_path, data=data)
    with pytest.raises(InputError, match=r"no signal: every atlas region's mean series is "
                                         r"constant over the 60 volumes"):
        _process(bold, conf, _atlas())


def test_mask_without_atlas_voxels_is_not_called_no_signal(tmp_path):
    bold, conf = _run(tmp_path)
    empty_mask = nib.Nifti1Image(np.zeros(SHAPE, np.uint8), AFFINE)
    with pytest.raises(InputError, match=rf"{bold.name}: no atlas region has a voxel"):
        _process(bold, conf, _atlas(), mask=empty_mask)


# ------------------------------------------------------------------ 4. confounds tables
def test_empty_confounds_file_names_it(tmp_path):
    bold, conf = _run(tmp_path)
    conf.write_text("")
    with pytest.raises(InputError, match=rf"{conf.name}: the confounds file is empty"):
        _process(bold, conf, _atlas())
    conf.write_text("trans_x\ttrans_y\n")
    with pytest.raises(InputError, match=rf"{conf.name}: .*header \(2 columns\) but no rows"):
        _process(bold, conf, _atlas())


@pytest.mark.parametrize("n_rows", [50, 61])
def test_confounds_rows_must_match_the_volumes(tmp_path, n_rows):
    bold, conf = _run(tmp_path, n_t=60)
    full = pd.read_csv(conf, sep="\t", na_values="n/a")
    table = pd.concat([full, full]).iloc[:n_rows]
    table.to_csv(conf, sep="\t", index=False, na_rep="n/a")
    with pytest.raises(InputError, match=rf"{conf.name}: has {n_rows} rows but .*"
                                         rf"{bold.name} has 60 volumes"):
        _process(bold, conf, _atlas())


def test_requested_confound_column_missing_names_the_tsv(tmp_path):
    bold, conf = _run(tmp_path)
    with pytest.raises(InputError, match=rf"{conf.name}: denoising needs user-listed columns "
                                         r"\['global_signal'\]"):
        _process(bold, conf, _atlas(), FunctionalConfig(strategy="custom",
                                                        confounds=["global_signal"]))
    table = pd.read_csv(conf, sep="\t", na_values="n/a").drop(columns=["white_matter"])
    table.to_csv(conf, sep="\t", index=False, na_rep="n/a")
    with pytest.raises(InputError, match=rf"{conf.name}: .*wm_csf columns \['white_matter'\]"):
        _process(bold, conf, _atlas())


def test_non_numeric_and_infinite_confounds_name_the_tsv(tmp_path):
    bold, conf = _run(tmp_path)
    table = pd.read_csv(conf, sep="\t", na_values="n/a").astype(object)
    table.loc[7, "trans_y"] = "0,25"
    table.to_csv(conf, sep="\t", index=False, na_rep="n/a")
    with pytest.raises(InputError, match=rf"{conf.name}: confound columns must be numeric.*"
                                         r"'trans_y' line 9: '0,25'"):
        _process(bold, conf, _atlas())
    table.loc[7, "trans_y"] = "inf"
    table.to_csv(conf, sep="\t", index=False, na_rep="n/a")
    with pytest.raises(InputError, match=rf"{conf.name}: confound columns \['trans_y'\] have "
                                         "infinite values"):
        _process(bold, conf, _atlas())


def test_first_row_na_is_filled_as_nilearn_does(tmp_path):
    from nilearn.interfaces.fmriprep import load_confounds_strategy

    bold, conf = _run(tmp_path, n_t=60)
    raw = pd.read_csv(conf, sep="\t", na_values="n/a")
    assert raw["trans_x_derivative1"].isna().iloc[0]  # as fMRIPrep writes it
    cfg = FunctionalConfig(strategy="simple", motion="full", wm_csf="basic")
    ours = select_confounds(read_confounds(conf), cfg, None, str(conf)).confounds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, mask = load_confounds_strategy(str(bold), "simple", motion="full",
                                            wm_csf="basic")
    assert mask is None
    ref = ref[list(ours.columns)]
    np.testing.assert_allclose(ours.to_numpy(), ref.to_numpy(), rtol=1e-9, atol=1e-12)
    deriv = ours["trans_x_derivative1"].to_numpy()
    assert deriv[0] == pytest.approx(deriv[1], rel=1e-12)  # row 0 filled with row 1
    res = _process(bold, conf, _atlas(), cfg)
    assert np.isfinite(res.connectivity["corr"].to_numpy()).all()
    # n/a beyond the first row is not what fMRIPrep writes: an error naming the file
    raw.loc[1, "trans_x_derivative1"] = np.nan
    raw.to_csv(conf, sep="\t", index=False, na_rep="n/a")
    with pytest.raises(InputError, match=rf"{conf.name}: confound columns "
                                         r"\['trans_x_derivative1'\] have missing values"):
        _process(bold, conf, _atlas(), cfg)


# ------------------------------------------------------------------ 5. TR override
def test_tr_disagreement_names_bold_and_sidecar_and_the_fix(tmp_path):
    # like nibabel's example4d: header 2000 (in seconds), sidecar 2.0 s
    bold, conf = _run(tmp_path, tr=2.0, header_tr=2000.0)
    side = bold.with_name(bold.name.replace(".nii.gz", ".json"))
    with pytest.raises(InputError) as err:
        _process(bold, conf, _atlas())
    msg = str(err.value)
    assert str(bold) in msg and str(side) in msg
    assert "RepetitionTime=2.0 s" in msg and "pixdim[4]=2000.0 s" in msg
    assert "--repetition-time SECONDS" in msg and "[functional]" in msg
    assert "(mapping)" not in msg


def test_tr_disagreement_through_the_family_names_the_inherited_sidecar(tmp_path):
    from danemap.io import discover

    root = _bids(tmp_path / "bids")
    bold, _ = _run(root, tr=2.0, header_tr=1.0, sidecar=False)  # nibabel's default pixdim
    fp = root / "derivatives" / "fmriprep"
    (fp / "dataset_description.json").write_text(
        json.dumps({"Name": "fmriprep", "BIDSVersion": "1.9.0", "DatasetType": "derivative"}))
    top = fp / "task-rest_bold.json"
    top.write_text(json.dumps({"RepetitionTime": 2.0}))
    session = discover(root).get("01")
    family = FunctionalFamily()
    (item,) = family.inputs(session, Config())
    config = Config()
    with pytest.raises(InputError) as err:
        family.compute(item, _atlas(), config)
    msg = str(err.value)
    assert item[1].preproc.sidecars == [top]  # the inherited sidecar is named
    assert str(top) in msg
    assert str(bold) in msg and "(mapping)" not in msg
    config.functional.repetition_time = 2.0
    assert family.compute(item, _atlas(), config).tr == 2.0


def test_repetition_time_setting_reaches_the_filter(tmp_path):
    bold, conf = _run(tmp_path, tr=2.0, header_tr=2000.0)
    atlas = _atlas()
    res2 = _process(bold, conf, atlas, FunctionalConfig(repetition_time=2.0))
    res15 = _process(bold, conf, atlas, FunctionalConfig(repetition_time=1.5))
    explicit = _process(bold, conf, atlas, FunctionalConfig(), tr=1.5)
    assert res2.tr == 2.0 and res15.tr == 1.5
    assert res15.meta["RepetitionTime"] == 1.5
    # the filter used 1.5 s: the same series as an explicit tr=1.5, not those of 2.0 s
    np.testing.assert_allclose(res15.timeseries.to_numpy(), explicit.timeseries.to_numpy(),
                               rtol=1e-10, atol=1e-9)
    assert not np.allclose(res15.timeseries.to_numpy(), res2.timeseries.to_numpy(),
                           rtol=1e-3)
    with pytest.raises(ConfigError, match=r"functional\.repetition_time: expected seconds > 0"):
        _process(bold, conf, atlas, FunctionalConfig(repetition_time=-1.0))


# ------------------------------------------------------------------ 6. raw BOLD only
def _raw_only(tmp_path: Path) -> Path:
    """A ds001-like dataset: raw func/*_bold.nii.gz, no fMRIPrep output."""
    root = _bids(tmp_path / "ds001")
    func = root / "sub-01" / "func"
    func.mkdir(parents=True)
    img = nib.Nifti1Image(np.ones((*SHAPE, 40), np.float32), AFFINE)
    for run in (1, 2):
        nib.save(img, func / f"sub-01_task-balloonanalogrisktask_run-{run}_bold.nii.gz")
    (root / "task-balloonanalogrisktask_bold.json").write_text(
        json.dumps({"RepetitionTime": 2.0, "TaskName": "balloon analog risk task"}))
    return root


def test_missing_input_hint_says_raw_bold_needs_fmriprep(tmp_path):
    from danemap.io import discover

    root = _raw_only(tmp_path)
    sessions = list(discover(root))
    hint = FunctionalFamily().missing_input_hint(sessions)
    assert "2 raw, unpreprocessed BOLD" in hint
    assert "sub-01_task-balloonanalogrisktask_run-1_bold.nii.gz" in hint
    assert "needs fMRIPrep" in hint
    assert "--derivatives PATH" in hint and "BIDS_DIR/derivatives/fmriprep" in hint
    plain = FunctionalFamily().missing_input_hint()
    assert "raw" not in plain and "derivatives/fmriprep" in plain


def test_participant_error_for_raw_bold_only(tmp_path):
    from danemap.pipeline import process_participant

    root = _raw_only(tmp_path)
    config = Config()
    config.run.markers = ["functional"]
    with pytest.raises(InputError) as err:
        process_participant("sub-01", str(root), str(tmp_path / "out"), config)
    msg = str(err.value)
    assert msg.startswith("sub-01")
    assert "raw, unpreprocessed BOLD" in msg and "--derivatives PATH" in msg
