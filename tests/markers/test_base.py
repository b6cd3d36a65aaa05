"""The marker-family interface: a family is one module, and the workflow picks it up."""

from __future__ import annotations

import importlib.util
import json
import sys

import pandas as pd
import pytest

import danemap.markers.base as base
from danemap.config import Config
from danemap.errors import InputError
from danemap.markers.base import GroupTable, MarkerFamily, families, register


def test_registry_refuses_what_is_not_a_family_and_unknown_names():
    with pytest.raises(InputError, match="named MarkerFamily"):
        register(dict)  # type: ignore[type-var]
    with pytest.raises(InputError, match="unknown"):
        families(["no_such_family"])
    assert "functional" in [f.name for f in families()]

    class Nameless(MarkerFamily):
        def inputs(self, session):
            return []

        def compute(self, item, atlas, config):
            return None

        def write(self, result, writer, item, atlas_name):
            return []

        def collect(self, out_root, atlas_name, config):
            return []

    with pytest.raises(InputError, match="named MarkerFamily"):
        register(Nameless)


def test_group_table_analysed():
    from pathlib import Path

    assert GroupTable("a", Path("a.tsv"), "A", "region", ("glm",)).analysed
    assert not GroupTable("b", Path("b.tsv"), "B", "region", ()).analysed


def _load_toy():
    spec = importlib.util.spec_from_file_location(
        "danemap_toy_family", __file__.replace("test_base.py", "toy_family.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_a_toy_family_in_one_module_runs_through_workflow_stats_and_report(tmp_path,
                                                                           monkeypatch):
    from danemap.pipeline import run_group, run_participant
    from danemap.simulate import simulate_cohort

    # the toy family alone (the functional family is registered too; leave it out here so
    # the test needs no BOLD): its module registers it into a fresh registry
    monkeypatch.setattr(base, "_REGISTRY", {})
    monkeypatch.setattr(base, "_load_builtin", lambda: None)
    _load_toy()
    assert [f.name for f in families()] == ["t1w_mean"]
    bids = simulate_cohort(tmp_path / "bids", n_subjects=8, n_sites=2, seed=5,
                           modalities=("anat",), anat_resolution=2)
    out = tmp_path / "out"
    cfg = Config().updated({"stats": {"n_permutations": 50}})
    assert run_participant(bids, out, cfg) == 0
    root = out / "danemap"
    per = sorted(root.glob("sub-*/anat/*_atlas-danemap_desc-t1wmean_stats.tsv"))
    assert len(per) == 8  # per-participant files
    assert run_group(bids, out, cfg) == 0
    group = pd.read_csv(root / "group" / "t1w_mean.tsv", sep="\t")
    assert len(group) == 8  # the group table
    eff = pd.read_csv(root / "group" / "stats" / "t1w_mean" / "effects.tsv", sep="\t")
    assert len(eff) == len(group.columns) - 1  # the statistics picked it up
    assert (root / "group" / "stats" / "t1w_mean" / "headline.tsv").is_file()
    manifest = json.loads((root / "group" / "tables.json").read_text())
    assert manifest["tables"][0]["family"] == "t1w_mean"
    html = (root / "group" / "group_report.html").read_text()
    assert "Toy: mean T1w intensity per region" in html  # and the report, by its title
