"""The one TSV + JSON sidecar writer: same bytes as the writers it replaced."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from danemap.errors import InputError
from danemap.io import read_tsv, table_sidecar, write_table


def _table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(40, 5)) * 10.0 ** rng.integers(-20, 20, size=(40, 5)),
                      columns=[f"f{j}" for j in range(5)])
    df.iloc[3, 1] = np.nan
    df.insert(0, "participant_id", [f"sub-{i:02d}" for i in range(40)])
    df["n"] = np.arange(40)
    df["label"] = ["a", None] * 20
    return df


@pytest.mark.parametrize("float_format", [None, "%.10g", "%.8g"])
def test_same_bytes_as_one_to_csv_string(tmp_path, float_format):
    # None: the derivatives (shortest round trip); %.10g: statistics; %.8g: group tables
    df = _table()
    path = write_table(df, tmp_path / "t.tsv", {"Description": "x"}, float_format=float_format,
                       block_cells=12)  # 2 rows per block
    want = df.to_csv(sep="\t", index=False, na_rep="n/a", float_format=float_format,
                     lineterminator="\n")
    assert path.read_bytes() == want.encode()
    assert "n/a" in path.read_text() and "\r" not in path.read_text()
    if float_format is None:  # exact round trip
        pd.testing.assert_frame_equal(read_tsv(path)[df.columns[1:6]], df[df.columns[1:6]])


def test_index_and_no_sidecar(tmp_path):
    df = pd.DataFrame({"v": [0.5, np.nan]}, index=pd.Index(["a", "b"], name="region"))
    path = write_table(df, tmp_path / "t.tsv", index=True)
    assert path.read_text() == "region\tv\na\t0.5\nb\tn/a\n"
    assert not (tmp_path / "t.json").exists()


def test_sidecar_is_strict_json_and_checked_before_any_file(tmp_path):
    df = pd.DataFrame({"a": [1.0]})
    write_table(df, tmp_path / "t.tsv", {"nan": np.float64(np.nan), "i": np.int64(3)})
    assert json.loads((tmp_path / "t.json").read_text()) == {"nan": None, "i": 3}
    with pytest.raises(InputError, match=r"cannot write a object value to JSON"):
        write_table(df, tmp_path / "u.tsv", {"bad": object()})
    assert not (tmp_path / "u.tsv").exists() and not (tmp_path / "u.json").exists()
    with pytest.raises(InputError, match=r"write_table: path must end in \.tsv, found u\.csv"):
        write_table(df, tmp_path / "u.csv")


def test_table_sidecar_describes_every_column_then_metadata():
    side = table_sidecar(["volume", "region"], {"volume": {"Description": "V", "Units": "mm^3"}},
                         {"Description": "Volumes"})
    assert list(side) == ["volume", "region", "Description"]
    assert side["volume"] == {"Description": "V", "Units": "mm^3"}
    assert side["region"] == {"Description": "region (no description provided)"}
    with pytest.raises(InputError, match=r"t\.tsv: sidecar describes columns not in the "
                                         r"table: 'volum' \(did you mean 'volume'\?\)"):
        table_sidecar(["volume"], {"volum": "x"}, where="t.tsv")
