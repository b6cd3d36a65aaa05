"""Tests of BIDS label validation and participants.tsv reading."""

from __future__ import annotations

import numpy as np
import pytest

from danemap.errors import InputError
from danemap.io import read_participants, validate_label


@pytest.mark.parametrize("label, entity, expected", [
    ("01", "participant", "01"),
    ("sub-01", "participant", "01"),
    ("sub-ADHD007", "sub", "ADHD007"),
    ("ses-1", "session", "1"),
    ("task-rest", "task", "rest"),
    ("rest", "task", "rest"),
    (2, "run", "2"),
    ("desc-corr", "desc", "corr"),
])
def test_validate_label_accepts(label, entity, expected):
    assert validate_label(label, entity) == expected


@pytest.mark.parametrize("label", ["../x", "01/..", "", "a b", "sub-", "01_x", "é1", " 01"])
def test_validate_label_refuses(label):
    with pytest.raises(InputError, match=r"participant label '.*' is not a valid BIDS label: "
                                         r"expected letters and digits only"):
        validate_label(label)


def test_validate_label_type():
    with pytest.raises(InputError, match=r"session label must be a str, found NoneType"):
        validate_label(None, "session")  # type: ignore[arg-type]


def _tsv(tmp_path, text, name="participants.tsv", bom=False, crlf=False):
    if crlf:
        text = text.replace("\n", "\r\n")
    data = text.encode("utf-8")
    if bom:
        data = b"\xef\xbb\xbf" + data
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_read_participants_bom_crlf(tmp_path):
    p = _tsv(tmp_path, "participant_id\tage\tsex\tgroup\n01\t9.5\tM\tADHD\nsub-02\tn/a\tF\tTD\n",
             bom=True, crlf=True)
    df = read_participants(p, groups={"ADHD", "TD"})
    assert list(df.columns) == ["participant_id", "age", "sex", "group"]
    assert list(df["participant_id"]) == ["sub-01", "sub-02"]
    assert df["age"].iloc[0] == 9.5
    assert np.isnan(df["age"].iloc[1])
    assert list(df["group"]) == ["ADHD", "TD"]
    assert df["sex"].iloc[1] == "F"  # no trailing \r


def test_read_participants_reports_all_problems_at_once(tmp_path):
    p = _tsv(tmp_path, "participant_id\tage\tgroup\n"
                       "sub-01\t10\tADHD\n"
                       "sub-01\t11\tTD\n"
                       "../x\t12\tTD\n"
                       "sub-04\tten\tADHDD\n"
                       "sub-05\t9\tcontrol\n")
    with pytest.raises(InputError) as err:
        read_participants(p, groups=["ADHD", "TD"])
    msg = str(err.value)
    assert "participants.tsv: 4 problem(s) found" in msg
    assert "invalid participant_id" in msg and "line 4: '../x'" in msg
    assert "duplicate participant_id: sub-01 (lines 2, 3)" in msg
    assert "line 5: 'ADHDD' (did you mean 'ADHD'?)" in msg
    assert "line 6: 'control'" in msg
    assert "non-numeric value in column 'age': line 5: 'ten'" in msg


def test_read_participants_missing_columns(tmp_path):
    p = _tsv(tmp_path, "participant\tdiagnosis\n01\tADHD\n")
    with pytest.raises(InputError, match=r"(?s)missing required column 'participant_id' \(did "
                                         r"you mean 'participant'\?\).*missing column 'group'"):
        read_participants(p, groups={"ADHD", "TD"})


def test_read_participants_missing_id_and_file(tmp_path):
    p = _tsv(tmp_path, "participant_id\tage\nn/a\t3\n")
    with pytest.raises(InputError, match=r"line 2: missing participant_id"):
        read_participants(p)
    with pytest.raises(InputError, match=r"nope.tsv: file not found"):
        read_participants(tmp_path / "nope.tsv")
    bad = tmp_path / "latin.tsv"
    bad.write_bytes(b"participant_id\tname\n01\t\xe9\xff\n")
    with pytest.raises(InputError, match=r"cannot be read as a UTF-8"):
        read_participants(bad)
