"""Tests of atomic writes and the BIDS-derivatives writer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from danemap._version import __version__
from danemap.config import Config
from danemap.errors import InputError
from danemap.io import (
    DerivativesWriter,
    atomic_open,
    atomic_write_bytes,
    atomic_write_text,
    check_output_not_in_input,
    read_tsv,
    write_json,
)


def test_atomic_write_creates_and_replaces(tmp_path):
    p = tmp_path / "a" / "b.txt"
    atomic_write_text(p, "one")
    atomic_write_bytes(p, b"two")
    assert p.read_bytes() == b"two"
    assert os.listdir(p.parent) == ["b.txt"]
    assert (p.stat().st_mode & 0o777) == (0o666 & ~_umask())


def test_atomic_write_renames_a_synced_temp_file_from_the_same_folder(tmp_path, monkeypatch):
    p = tmp_path / "sub" / "t.tsv"
    events: list[tuple[str, object]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", fd))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", (Path(src), Path(dst))))
        assert Path(src).read_bytes() == b"data"  # complete before it becomes visible
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    atomic_write_bytes(p, b"data")
    kinds = [k for k, _ in events]
    assert kinds.index("fsync") < kinds.index("replace")  # data synced before the rename
    src, dst = next(v for k, v in events if k == "replace")
    assert src.parent == dst.parent == p.parent and dst == p  # same folder: atomic rename


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_atomic_write_failure_keeps_old_file(tmp_path, monkeypatch):
    p = tmp_path / "x.json"
    write_json(p, {"v": 1})

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match=r"disk full"):
        write_json(p, {"v": 2})
    monkeypatch.undo()
    assert json.loads(p.read_text()) == {"v": 1}
    assert os.listdir(tmp_path) == ["x.json"]  # no temp file left


def test_atomic_open_streams_to_a_temp_file_renamed_when_complete(tmp_path, monkeypatch):
    p = tmp_path / "t.tsv"
    p.write_text("old\n")
    real_replace = os.replace
    renamed: list[tuple[Path, Path]] = []

    def replace(src, dst):
        renamed.append((Path(src), Path(dst)))
        assert Path(src).read_bytes() == b"a\tb\r\n1\t2\n\xc3\xa9\n"  # complete at rename
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with atomic_open(p) as fh:
        for line in ("a\tb\r\n", "1\t2\n", "\u00e9\n"):  # streamed in pieces
            fh.write(line)
        fh.flush()
        tmp = [f for f in os.listdir(tmp_path) if f != "t.tsv"]
        assert len(tmp) == 1 and tmp[0].startswith(".t.tsv.")  # same folder, hidden
        assert p.read_text() == "old\n"  # readers see the old file meanwhile
    src, dst = renamed[0]
    assert src.parent == dst.parent == tmp_path and dst == p
    assert p.read_bytes() == b"a\tb\r\n1\t2\n\xc3\xa9\n"  # UTF-8, no newline translation
    assert os.listdir(tmp_path) == ["t.tsv"]
    monkeypatch.undo()
    with atomic_open(tmp_path / "new" / "b.bin", "wb") as bfh:
        bfh.write(b"\x00\x01")
    assert (tmp_path / "new" / "b.bin").read_bytes() == b"\x00\x01"


def test_atomic_open_failure_keeps_old_file_and_no_temp_file(tmp_path):
    p = tmp_path / "t.tsv"
    p.write_text("old\n")
    with pytest.raises(RuntimeError, match="half way"), atomic_open(p) as fh:
        fh.write("new, partial\n")
        raise RuntimeError("half way")
    assert p.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["t.tsv"]
    with pytest.raises(InputError, match=r"atomic_open: mode must be 'w' or 'wb', found 'a'"):
        with atomic_open(p, "a"):  # type: ignore[call-overload]
            pass
    assert os.listdir(tmp_path) == ["t.tsv"]


def test_write_json_unserialisable_leaves_nothing(tmp_path):
    p = tmp_path / "x.json"
    write_json(p, {"v": 1})
    with pytest.raises(InputError, match=r"cannot write a object value to JSON"):
        write_json(p, {"v": object()})
    assert json.loads(p.read_text()) == {"v": 1}
    assert os.listdir(tmp_path) == ["x.json"]


def test_write_json_numpy_and_nan(tmp_path):
    p = write_json(tmp_path / "n.json", {"a": np.float32(1.5), "b": np.arange(3),
                                         "c": float("nan"), "d": np.int64(4)})
    assert json.loads(p.read_text()) == {"a": 1.5, "b": [0, 1, 2], "c": None, "d": 4}


def test_dataset_description_and_config(tmp_path):
    cfg = Config()
    bids = tmp_path / "bids"
    bids.mkdir()
    w = DerivativesWriter(tmp_path / "out", config=cfg, bids_dir=bids)
    assert w.root == tmp_path / "out" / "danemap"
    desc = json.loads((w.root / "dataset_description.json").read_text())
    assert desc["BIDSVersion"] == "1.9.0"
    assert desc["DatasetType"] == "derivative"
    gen = desc["GeneratedBy"][0]
    assert gen["Name"] == "danemap"
    assert gen["Version"] == __version__
    assert gen["ConfigHash"] == cfg.results_sha256()
    assert desc["SourceDatasets"] == [{"URL": bids.resolve().as_uri()}]
    assert (w.root / "config.toml").read_text() == cfg.to_toml()


def test_source_datasets_given(tmp_path):
    w = DerivativesWriter(tmp_path / "out", source_datasets=[
        "https://openneuro.org/datasets/ds000030", {"DOI": "doi:10.1/x"}])
    desc = w.dataset_description()
    assert desc["SourceDatasets"] == [{"URL": "https://openneuro.org/datasets/ds000030"},
                                      {"DOI": "doi:10.1/x"}]
    assert "ConfigHash" not in desc["GeneratedBy"][0]


def test_paths_in_canonical_order(tmp_path):
    w = DerivativesWriter(tmp_path / "out")
    p = w.path("01", "func", "connectivity", ".tsv", desc="corr", atlas="danemap", task="rest")
    assert p == (tmp_path / "out/danemap/sub-01/func/"
                 "sub-01_task-rest_atlas-danemap_desc-corr_connectivity.tsv")
    p = w.path("sub-02", "pet", "stats", ".tsv", desc="sbr", atlas="danemap", trc="FPCIT",
               ses="1", run=2)
    assert p == (tmp_path / "out/danemap/sub-02/ses-1/pet/"
                 "sub-02_ses-1_trc-FPCIT_run-2_atlas-danemap_desc-sbr_stats.tsv")
    assert w.path(None, "group", "effects", ".tsv", desc="dx") == (
        tmp_path / "out/danemap/group/desc-dx_effects.tsv")


def test_path_errors(tmp_path):
    w = DerivativesWriter(tmp_path / "out")
    with pytest.raises(InputError, match=r"participant label '../x' is not a valid BIDS label"):
        w.path("../x", "anat", "stats", ".tsv")
    with pytest.raises(InputError, match=r"desc label 'a_b' is not a valid BIDS label"):
        w.path("01", "anat", "stats", ".tsv", desc="a_b")
    with pytest.raises(InputError, match=r"unknown entity 'atals'.*did you mean 'atlas'"):
        w.path("01", "anat", "stats", ".tsv", atals="x")
    with pytest.raises(InputError, match=r"extension must look like"):
        w.path("01", "anat", "stats", "tsv")
    with pytest.raises(InputError, match=r"datatype label '../anat'"):
        w.path("01", "../anat", "stats", ".tsv")


def test_refuse_output_inside_input(tmp_path):
    bids = tmp_path / "bids"
    (bids / "sub-01").mkdir(parents=True)
    with pytest.raises(InputError, match=r"is inside the input BIDS dataset"):
        DerivativesWriter(bids, bids_dir=bids)
    with pytest.raises(InputError, match=r"is inside the input BIDS dataset"):
        check_output_not_in_input(bids, bids / "sub-01" / "out")
    link = tmp_path / "link"
    link.symlink_to(bids / "sub-01")
    with pytest.raises(InputError, match=r"is inside the input BIDS dataset"):
        check_output_not_in_input(bids, link)
    # <bids>/derivatives is inside the input too: refused unless explicitly allowed
    with pytest.raises(InputError, match=r"inside the input"):
        check_output_not_in_input(bids, bids / "derivatives")
    check_output_not_in_input(bids, bids / "derivatives", allow_derivatives=True)
    check_output_not_in_input(bids, tmp_path / "bids-danemap")


def test_write_tsv_round_trip_and_sidecar(tmp_path):
    w = DerivativesWriter(tmp_path / "out")
    df = pd.DataFrame({"region": ["caudate_L", "putamen_R", None],
                       "volume": [1 / 3, np.nan, 1e-17],
                       "n": [1, 2, 3]})
    p = w.path("01", "anat", "stats", ".tsv", atlas="danemap", desc="volumes")
    w.write_tsv(df, p, sidecar={"volume": {"Description": "Volume", "Units": "mm^3"},
                                "region": "Region name"})
    text = p.read_text()
    assert text.splitlines()[0] == "region\tvolume\tn"
    assert "n/a" in text and "\r" not in text
    back = read_tsv(p)
    assert back["volume"].iloc[0] == 1 / 3  # exact round trip
    assert back["volume"].iloc[2] == 1e-17
    assert np.isnan(back["volume"].iloc[1])
    assert pd.isna(back["region"].iloc[2])
    side = json.loads(p.with_suffix(".json").read_text())
    assert side["volume"] == {"Description": "Volume", "Units": "mm^3"}
    assert side["region"] == {"Description": "Region name"}
    assert "Description" in side["n"]


def test_write_tsv_errors(tmp_path):
    w = DerivativesWriter(tmp_path / "out")
    df = pd.DataFrame({"volume": [1.0]})
    with pytest.raises(InputError, match=r"sidecar describes columns not in the table: "
                                         r"'volum' \(did you mean 'volume'\?\)"):
        w.write_tsv(df, w.root / "x.tsv", sidecar={"volum": "x"})
    with pytest.raises(InputError, match=r"path must end in .tsv"):
        w.write_tsv(df, w.root / "x.csv")
    assert not (w.root / "x.tsv").exists()


def test_read_tsv_errors(tmp_path):
    with pytest.raises(InputError, match=r"nope.tsv: file not found"):
        read_tsv(tmp_path / "nope.tsv")
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    with pytest.raises(InputError, match=r"cannot be read as a tab-separated table"):
        read_tsv(empty)


# --------------------------------------------------------------------------- staging


def _tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_staged_participant_is_invisible_until_complete(tmp_path):
    w = DerivativesWriter(tmp_path, describe=False)
    with w.staged("01") as stage:
        p = w.path("01", "func", "stats", ".tsv", task="rest")
        assert stage == tmp_path / "danemap" / ".partial" / "sub-01"
        assert p.parent == stage / "func"
        w.write_json(p.with_suffix(".json"), {"a": 1})
        assert not (tmp_path / "danemap" / "sub-01").exists()  # nothing visible yet
        assert list((tmp_path / "danemap").glob("sub-*")) == []
    final = tmp_path / "danemap" / "sub-01"
    assert _tree(final) == ["func/sub-01_task-rest_stats.json"]
    assert w.final_path(p) == final / "func" / "sub-01_task-rest_stats.tsv"
    assert not (tmp_path / "danemap" / ".partial").exists()  # cleaned when empty
    assert w.path("01", "func", "stats", ".tsv").parent == final / "func"


def test_promotion_keeps_outputs_the_new_run_did_not_rewrite(tmp_path):
    w = DerivativesWriter(tmp_path, describe=False)
    with w.staged("01"):
        w.write_json(w.path("01", "anat", "stats", ".json"), {"v": "anat"})
        w.write_json(w.path("01", "func", "stats", ".json"), {"v": "old"})
    with w.staged("01"):  # e.g. --markers functional later
        w.write_json(w.path("01", "func", "stats", ".json"), {"v": "new"})
    final = tmp_path / "danemap" / "sub-01"
    assert json.loads((final / "func" / "sub-01_stats.json").read_text()) == {"v": "new"}
    assert json.loads((final / "anat" / "sub-01_stats.json").read_text()) == {"v": "anat"}
    assert not (tmp_path / "danemap" / ".partial").exists()


def test_a_failed_participant_leaves_its_previous_outputs_intact(tmp_path):
    w = DerivativesWriter(tmp_path, describe=False)
    with w.staged("sub-02"):
        w.write_json(w.path("02", "func", "stats", ".json"), {"v": 1})
    with pytest.raises(RuntimeError, match="boom"), w.staged("02"):
        w.write_json(w.path("02", "func", "stats", ".json"), {"v": 2})
        w.write_json(w.path("02", "func", "other", ".json"), {"v": 2})
        raise RuntimeError("boom")
    final = tmp_path / "danemap" / "sub-02"
    assert _tree(final) == ["func/sub-02_stats.json"]
    assert json.loads((final / "func" / "sub-02_stats.json").read_text()) == {"v": 1}
    assert not (tmp_path / "danemap" / ".partial").exists()


def test_recover_cleans_what_a_killed_run_left(tmp_path):
    w = DerivativesWriter(tmp_path, describe=False)
    root = tmp_path / "danemap"
    # killed while writing: a staging folder, no visible participant
    (root / ".partial" / "sub-01" / "func").mkdir(parents=True)
    (root / ".partial" / "sub-01" / "func" / "half.tsv").write_text("x")
    # killed between the two renames of a promotion: the old folder is aside
    (root / ".partial" / "sub-02.old" / "func").mkdir(parents=True)
    (root / ".partial" / "sub-02.old" / "func" / "old.tsv").write_text("old")
    (root / ".partial" / "sub-02" / "func").mkdir(parents=True)
    assert w.recover("01") and w.recover("02")
    assert not (root / "sub-01").exists()
    assert (root / "sub-02" / "func" / "old.tsv").read_text() == "old"  # never lost
    assert not (root / ".partial").exists()
    assert not w.recover("03")


def test_staging_clears_a_stale_folder_first(tmp_path):
    w = DerivativesWriter(tmp_path, describe=False)
    stale = tmp_path / "danemap" / ".partial" / "sub-01" / "func"
    stale.mkdir(parents=True)
    (stale / "sub-01_stale.tsv").write_text("x")
    with w.staged("01"):
        w.write_json(w.path("01", "func", "stats", ".json"), {})
    assert _tree(tmp_path / "danemap" / "sub-01") == ["func/sub-01_stats.json"]


def test_promote_refuses_an_empty_stage(tmp_path):
    w = DerivativesWriter(tmp_path, describe=False)
    with pytest.raises(InputError, match=r"promote sub-01: nothing staged"), w.staged("01"):
        pass
