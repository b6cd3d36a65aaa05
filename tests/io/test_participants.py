"""Tests of BIDS label validation and participants.tsv reading."""

from __future__ import annotations

import numpy as np
import pytest

from danemap.errors import InputError
from danemap.io import read_participants, validate_label
from danemap.io._participants import closest


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


# --- issue 13 --------------------------------------------------------------------------

@pytest.mark.parametrize("label", ["sub-../../etc", "sub-01/anat", "sub-01\x00", "sub-01\n",
                                   "sub-..", ".."])
def test_validate_label_refuses_traversal_and_separators(label):
    with pytest.raises(InputError, match=r"is not a valid BIDS label"):
        validate_label(label)


SIXTEEN = [f"sub-{i:02d}" for i in range(1, 17)]


@pytest.mark.parametrize("value, expected", [
    ("sub-1", ["sub-01"]),
    ("sub-001", ["sub-01"]),
    ("sub-16", ["sub-16"]),  # (not reached by discovery: sub-16 exists)
    ("1", ["sub-01"]),
])
def test_closest_prefers_the_same_number(value, expected):
    assert closest(value, SIXTEEN) == expected


def test_closest_falls_back_to_spelling_and_case():
    assert closest("sub-adhd01", ["sub-ADHD01", "sub-ADHD02"]) == ["sub-ADHD01"]
    assert closest("sub-17", SIXTEEN)[0].startswith("sub-1")  # no sub-17: close spellings
    assert closest("ses-2", ["ses-02", "ses-1"]) == ["ses-02"]
    assert closest("group", ["participant_id", "Group"]) == ["Group"]
    assert closest("zzz", SIXTEEN) == []


def _covariate_table(tmp_path):
    return _tsv(tmp_path, "participant_id\tgroup\tage\tsex\tiq\n"
                          "sub-01\tADHD\t30\tM\t101\n"
                          "sub-02\tTD\t89+\tF\t99\n"
                          "sub-03\tTD\t35-40\tF\t<70\n"
                          "sub-04\tADHD\tn/a\tM\t110\n")


def test_columns_are_checked_only_when_the_caller_uses_them(tmp_path):
    p = _covariate_table(tmp_path)
    # discovery (ids only): the age of 89+ and the IQ of <70 stay text
    df = read_participants(p, age_column=None)
    assert list(df["age"].iloc[:3]) == ["30", "89+", "35-40"] and df["age"].isna().iloc[3]
    # a group level whose covariates are sex alone does not need them either
    df = read_participants(p, groups={"ADHD", "TD"}, covariates=["sex"])
    assert list(df["sex"]) == ["M", "F", "F", "M"]


def test_a_non_numeric_covariate_names_file_column_values_and_fix(tmp_path):
    p = _covariate_table(tmp_path)
    with pytest.raises(InputError) as err:
        read_participants(p, groups={"ADHD", "TD"}, covariates=["age", "sex", "iq"])
    msg = str(err.value)
    assert msg.startswith(f"{p}: 2 problem(s) found")
    assert ("covariate 'age' must be a number, found non-numeric value(s) '89+' (line 3); "
            "'35-40' (line 4); recode '89+', '35-40' as a number, or remove 'age' from "
            "[stats] covariates") in msg
    # iq: mostly numbers, so a number column with a code in it
    assert "covariate 'iq' must be a number" in msg and "'<70' (line 4)" in msg
    # sex (text) is categorical: not a problem
    assert "'sex'" not in msg
    # an absent covariate is named with the columns found, and the fix
    with pytest.raises(InputError, match=r"missing column 'handedness' required as a "
                                         r"covariate; found columns \['participant_id', "
                                         r"'group', 'age', 'sex', 'iq'\]; add it, or remove "
                                         r"'handedness' from \[stats\] covariates"):
        read_participants(p, covariates=["sex", "handedness"])


def test_age_checked_by_default_says_the_fix(tmp_path):
    p = _covariate_table(tmp_path)
    with pytest.raises(InputError, match=r"non-numeric value in column 'age': line 3: '89\+'; "
                                         r"line 4: '35-40'; recode '89\+', '35-40' as a "
                                         r"number"):
        read_participants(p)


@pytest.mark.parametrize("content", [b"", b"\xef\xbb\xbf", b"\n\n", b"  \r\n"])
def test_empty_participants_tsv_is_an_input_error_naming_it(tmp_path, content):
    p = tmp_path / "participants.tsv"
    p.write_bytes(content)
    with pytest.raises(InputError, match=rf"{p}: the file is empty; expected a tab-separated "
                                         r"header line with a 'participant_id' column"):
        read_participants(p)


def test_header_only_participants_tsv_has_no_rows(tmp_path):
    df = read_participants(_tsv(tmp_path, "participant_id\tgroup\n"), groups={"ADHD"})
    assert df.empty and list(df.columns) == ["participant_id", "group"]


def test_bom_alone_and_crlf_alone_work(tmp_path):
    bom = read_participants(_tsv(tmp_path, "participant_id\tsex\n01\tM\n", bom=True))
    assert list(bom.columns) == ["participant_id", "sex"]  # not '\ufeffparticipant_id'
    crlf = read_participants(_tsv(tmp_path, "participant_id\tsex\n01\tM\n02\tF\n",
                                  name="crlf.tsv", crlf=True))
    assert list(crlf["sex"]) == ["M", "F"]


def test_duplicate_ids_after_normalisation_are_listed(tmp_path):
    p = _tsv(tmp_path, "participant_id\tage\n01\t1\nsub-01\t2\nsub-02\t3\n02\t4\n")
    with pytest.raises(InputError, match=rf"{p}: 1 problem\(s\) found:\n  - duplicate "
                                         r"participant_id: sub-01 \(lines 2, 3\); sub-02 "
                                         r"\(lines 4, 5\)$"):
        read_participants(p)


def test_missing_participant_id_and_group_columns_list_the_columns_found(tmp_path):
    p = _tsv(tmp_path, "participant_id,age\n01,3\n")
    with pytest.raises(InputError, match=r"missing required column 'participant_id'; found "
                                         r"columns \['participant_id,age'\] \(the header has "
                                         r"no tab: .* looks comma-separated\)"):
        read_participants(p)
    p = _tsv(tmp_path, "participant_id\tdiagnosis\tage\n01\tADHD\t3\n", name="g.tsv")
    with pytest.raises(InputError, match=rf"(?s){p}: 1 problem.*missing column 'dx' required for "
                                         r"groups \['ADHD', 'TD'\]; found columns "
                                         r"\['participant_id', 'diagnosis', 'age'\]"):
        read_participants(p, groups=["ADHD", "TD"], group_column="dx")


def test_rows_longer_than_the_header_and_repeated_columns_are_named(tmp_path):
    # a longer row used to become pandas' index (a ValueError with repeated ids)
    p = _tsv(tmp_path, "participant_id\tgroup\nsub-01\tADHD\n\nsub-02\tTD\textra\n")
    with pytest.raises(InputError, match=rf"{p}: 1 problem.*\n  - row\(s\) with more cells "
                                         r"than the 2 columns of the header: line 4 \(3 "
                                         r"cells\)$"):
        read_participants(p)
    p = _tsv(tmp_path, "participant_id\tparticipant_id\tage\na\tb\t\t\na\tb\n", name="r.tsv")
    with pytest.raises(InputError, match=r"the header names the same column more than "
                                         r"once: \['participant_id'\]; the columns must "
                                         r"have unique names"):
        read_participants(p)


def test_trailing_tabs_are_harmless(tmp_path):
    p = _tsv(tmp_path, "\nparticipant_id\tgroup\t\nsub-01\tADHD\t\nsub-02\tTD\t\t\n")
    df = read_participants(p, groups={"ADHD", "TD"})
    assert list(df.columns) == ["participant_id", "group"]
    assert list(df["group"]) == ["ADHD", "TD"]


@pytest.mark.parametrize("column, values, expected", [
    ("iq", ["101", "99", "<70"], True),  # a censored value in a number column
    ("iq", ["101", "99", ">= 130", "35-40", "89+"], False),  # not mostly numbers
    ("x", ["1", "2", "3", "35-40"], True),
    ("site", ["1", "2", "X"], False),  # site codes: categorical
    ("site", ["1", "2", "3", "S3"], False),
    ("sex", ["M", "F"], False),
    ("age", ["child", "adult"], True),  # age is a number whatever it holds
    ("Age", [None, float("nan")], True),
    ("iq", [None, float("nan")], False),
])
def test_must_be_numeric(column, values, expected):
    from danemap.io._participants import must_be_numeric

    assert must_be_numeric(column, values) is expected


def test_a_site_coded_with_numbers_and_letters_is_categorical(tmp_path):
    p = _tsv(tmp_path, "participant_id\tsite\tage\n01\t1\t9\n02\t2\t10\n03\tX\t11\n")
    df = read_participants(p, covariates=["age", "site"])
    assert list(df["site"]) == ["1", "2", "X"]
