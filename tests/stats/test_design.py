"""Tests of the shared design-matrix helpers."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from danemap.errors import InputError
from danemap.stats._design import (
    CovariateEncoder,
    as_2d_float,
    as_labels,
    check_complete,
    drop_incomplete,
    join_features,
)


def test_encoder_drop_first_and_numeric():
    df = pd.DataFrame({"age": [8.0, 9.5, 11.0], "sex": ["M", "F", "M"],
                       "site": [2, 1, 2]})
    enc = CovariateEncoder(categorical=["site"]).fit(df)
    assert enc.names_ == ["age", "sex[M]", "site[2]"]
    np.testing.assert_array_equal(enc.transform(df), [[8.0, 1, 1], [9.5, 0, 0], [11.0, 1, 1]])


def test_encoder_errors():
    with pytest.raises(InputError, match="single level"):
        CovariateEncoder().fit(pd.DataFrame({"sex": ["M", "M"]}))
    enc = CovariateEncoder().fit(pd.DataFrame({"sex": ["M", "F"]}))
    with pytest.raises(InputError, match=r"expected column\(s\) \['sex'\]"):
        enc.transform(pd.DataFrame({"age": [1.0]}))


def test_as_2d_float_and_labels_errors():
    with pytest.raises(InputError, match="2-D"):
        as_2d_float(np.ones(3))
    with pytest.raises(InputError, match="non-numeric columns a"):
        as_2d_float(pd.DataFrame({"a": ["x"]}))
    with pytest.raises(InputError, match=r"rows \[1\] and columns \[0\]"):
        as_2d_float([[1.0], [np.inf]])
    with pytest.raises(InputError, match="expected 3 labels"):
        as_labels(["a", "b"], 3)


def test_check_complete_and_drop_incomplete(caplog):
    df = pd.DataFrame({"participant_id": ["s1", "s2", "s3"], "age": [1.0, np.nan, 3.0]})
    with pytest.raises(InputError, match=r"missing values in rows \[s2\]"):
        check_complete(df, ["age"])
    with pytest.raises(InputError, match=r"expected column\(s\) \['iq'\]"):
        check_complete(df, ["iq"])
    with caplog.at_level(logging.INFO, logger="danemap"):
        kept, n = drop_incomplete(df, ["age"])
    assert n == 1 and list(kept["participant_id"]) == ["s1", "s3"]
    assert "dropped 1 of 3 rows" in caplog.text
    with pytest.raises(InputError, match="no row is complete"):
        drop_incomplete(df.iloc[[1]], ["age"])


def test_join_features():
    feats = pd.DataFrame({"participant_id": ["a", "b", "c"], "f1": [1.0, 2, 3]})
    parts = pd.DataFrame({"participant_id": ["c", "a"], "age": [5, 6]})
    joined, names = join_features(feats, parts)
    assert names == ["f1"] and list(joined["participant_id"]) == ["a", "c"]
    with pytest.raises(InputError, match="duplicates"):
        join_features(pd.concat([feats, feats]), parts)
    with pytest.raises(InputError, match="also exist in participants"):
        join_features(feats.rename(columns={"f1": "age"}), parts)
    with pytest.raises(InputError, match="no 'participant_id' in common"):
        join_features(feats, parts.assign(participant_id=["x", "y"]))
    with pytest.raises(InputError, match="expected a 'participant_id' column"):
        join_features(feats.drop(columns="participant_id"), parts)


def test_encoder_keeps_missing_and_drops_single_levels_on_request(caplog):
    df = pd.DataFrame({"age": [8.0, np.nan, 11.0], "sex": ["M", None, "F"],
                       "site": ["A", "A", "A"]})
    with pytest.raises(InputError, match=r"missing values in rows \[1\]"):
        CovariateEncoder().fit(df[["age", "sex"]])
    with pytest.raises(InputError, match="single level"):
        CovariateEncoder(missing="keep").fit(df)
    enc = CovariateEncoder(missing="keep", single_level="drop")
    with caplog.at_level(logging.INFO, logger="danemap"):
        mat = enc.fit_transform(df, name="cov")
    assert "covariate 'site' has one level here" in caplog.text
    assert enc.names_ == ["age", "sex[M]"]
    np.testing.assert_array_equal(mat, [[8.0, 1.0], [np.nan, np.nan], [11.0, 0.0]])
    with pytest.raises(InputError, match="expected missing in"):
        CovariateEncoder(missing="drop").fit(df)
