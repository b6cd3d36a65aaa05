"""PET sidecar timing: static and dynamic images, and every timing error named."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from danemap.errors import InputError
from danemap.io import discover
from danemap.markers.pet._inputs import pet_inputs, read_timing

DUR = [30.0] * 4 + [60.0] * 4


def _meta(**kw):
    starts = list(np.concatenate([[0.0], np.cumsum(DUR)[:-1]]))
    meta = {"TracerName": "FE-PE2I", "FrameTimesStart": starts, "FrameDuration": DUR,
            "TimeZero": "10:00:00", "InjectionStart": 0, "ScanStart": 0}
    meta.update(kw)
    return meta


def test_dynamic_timing_is_read_in_seconds_and_minutes_from_the_injection():
    frames = read_timing(_meta(), 8, "x_pet.nii.gz")
    assert frames is not None and frames.n == 8
    np.testing.assert_allclose(frames.mid_min[:2], [0.25, 0.75], rtol=1e-12)
    np.testing.assert_allclose(frames.end_min[-1], sum(DUR) / 60, rtol=1e-12)


def test_injection_after_timezero_shifts_the_time_origin():
    meta = _meta(FrameTimesStart=[s + 20 for s in _meta()["FrameTimesStart"]],
                 InjectionStart=20, ScanStart=20)
    frames = read_timing(meta, 8, "x")
    assert frames is not None
    assert frames.start_s[0] == pytest.approx(0.0, abs=1e-12)


def test_a_static_image_needs_no_timing():
    assert read_timing({"TracerName": "FP-CIT"}, 1, "x") is None
    assert read_timing({"FrameTimesStart": [10800], "FrameDuration": [1800]}, 1, "x") is None


@pytest.mark.parametrize(("change", "words"), [
    ({"FrameTimesStart": None}, ["FrameTimesStart", "needs"]),
    ({"FrameDuration": DUR[:-1]}, ["FrameDuration", "expected 8 values", "found 7"]),
    ({"FrameDuration": [30.0] * 3 + [0.0] + [60.0] * 4}, ["FrameDuration", "positive"]),
    ({"FrameTimesStart": [0, 30, 20, 90, 120, 180, 240, 300]}, ["frame 2", "overlapping"]),
    ({"TimeZero": None}, ["TimeZero", "hh:mm:ss"]),
    ({"TimeZero": "ten o'clock"}, ["TimeZero"]),
    ({"InjectionStart": 60}, ["before the injection"]),
    ({"ScanStart": 600}, ["ScanStart", "disagrees"]),
    ({"FrameDuration": ["a"] * 8}, ["FrameDuration", "numbers"]),
])
def test_each_timing_problem_is_an_input_error_naming_the_file_and_field(change, words):
    meta = _meta(**change)
    meta = {k: v for k, v in meta.items() if v is not None}
    with pytest.raises(InputError) as err:
        read_timing(meta, 8, "sub-01_trc-FEPE2I_pet.nii.gz")
    msg = str(err.value)
    assert "sub-01_trc-FEPE2I_pet.nii.gz" in msg
    for w in words:
        assert w in msg


def test_static_image_with_a_multi_frame_sidecar_is_refused():
    with pytest.raises(InputError, match="1 frame but the sidecar lists 8"):
        read_timing(_meta(), 1, "x")


def _dataset(tmp_path, shape, meta):
    root = tmp_path / "bids"
    (root / "sub-01" / "pet").mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "t", "BIDSVersion": "1.9.0"}))
    img = nib.Nifti1Image(np.ones(shape, np.float32), np.eye(4))
    nib.save(img, root / "sub-01" / "pet" / "sub-01_trc-FEPE2I_pet.nii.gz")
    (root / "sub-01" / "pet" / "sub-01_trc-FEPE2I_pet.json").write_text(json.dumps(meta))
    return discover(root).get("sub-01")


def test_pet_inputs_reads_the_frame_count_from_the_header(tmp_path):
    session = _dataset(tmp_path, (4, 4, 4, 8), _meta())
    (item,) = pet_inputs(session)
    assert item.dynamic and item.n_frames == 8 and item.tracer == "FE-PE2I"


def test_pet_inputs_refuses_timing_that_disagrees_with_the_frame_count(tmp_path):
    session = _dataset(tmp_path, (4, 4, 4, 6), _meta())
    with pytest.raises(InputError, match="expected 6 values"):
        pet_inputs(session)


def test_tracer_falls_back_to_the_trc_entity(tmp_path):
    meta = {k: v for k, v in _meta().items() if k != "TracerName"}
    session = _dataset(tmp_path, (4, 4, 4), meta | {"FrameTimesStart": [0],
                                                    "FrameDuration": [60]})
    (item,) = pet_inputs(session)
    assert item.tracer == "FEPE2I" and not item.dynamic
