"""The structural family end to end on FreeSurfer-style inputs: participant and group levels.

The cohort's aseg.stats files come from :mod:`danemap.simulate._aseg` (ENIGMA-ADHD sized d
on the ICV-adjusted log volume). The statistics must take ICV as a covariate (not as a
feature), recover the planted d within its CI, and write the ENIGMA comparison
automatically for the like-for-like structures only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from danemap.config import Config
from danemap.io import read_tsv
from danemap.markers.structural import ENIGMA_COLUMNS  # (importing it registers the family)
from danemap.pipeline import run_group, run_participant
from danemap.simulate._aseg import write_freesurfer_subject

REFERENCE_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "enigma-adhd"


def _cohort(root, n=240, effect_scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "aseg cohort", "BIDSVersion": "1.9.0"}))
    rows, truth = [], {}
    for i in range(n):
        sub = f"sub-{i + 1:03d}"
        group = "ADHD" if i % 2 else "TD"
        (root / sub).mkdir()
        truth[sub] = write_freesurfer_subject(root, sub, group, [seed, i],
                                              effect_scale=effect_scale)
        rows.append({"participant_id": sub, "group": group, "age": rng.uniform(8, 18),
                     "sex": rng.choice(["M", "F"]), "site": "A" if i < n // 2 else "B"})
    pd.DataFrame(rows).to_csv(root / "participants.tsv", sep="\t", index=False)
    return truth


@pytest.fixture(scope="module")
def group_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("aseg")
    bids, out = tmp / "bids", tmp / "out"
    # effects raised 3x so that the planted d is recoverable in 240 participants
    truth = _cohort(bids, effect_scale=3.0)
    cfg = Config().updated({"run": {"markers": ["structural"]},
                            "stats": {"n_permutations": 100, "classify_permutations": 5,
                                      "reference": str(REFERENCE_DIR) if REFERENCE_DIR.is_dir()
                                      else "auto"}})
    assert run_participant(bids, out, cfg) == 0
    assert run_group(bids, out, cfg) == 0
    return out / "danemap", truth


def test_per_participant_table_has_method_enigma_names_and_icv(group_run):
    root, truth = group_run
    table = read_tsv(root / "sub-001" / "anat" / "sub-001_atlas-danemap_desc-volumes_stats.tsv")
    assert set(table["method"].iloc[:-1]) == {"freesurfer-aseg"}
    caud = table.set_index("region").loc["Left-Caudate"]
    assert caud["enigma"] == "Lcaud"
    # Volume_mm3, read back exactly (the writer keeps 0.1 mm3, the reader round-trips)
    assert caud["volume_mm3"] == pytest.approx(truth["sub-001"]["volume_mm3"]["Left-Caudate"],
                                               abs=0.051)
    icv = table.iloc[-1]
    assert icv["region"] == "ICV" and icv["method"] == "eTIV"
    assert icv["volume_mm3"] == pytest.approx(truth["sub-001"]["etiv_mm3"], rel=1e-9)
    side = json.loads((root / "sub-001" / "anat"
                       / "sub-001_atlas-danemap_desc-volumes_stats.json").read_text())
    assert side["LikeFreeSurfer"] is True and side["Method"] == "freesurfer-aseg"


def test_group_table_holds_the_enigma_structures_and_icv(group_run):
    root, truth = group_run
    group = read_tsv(root / "group" / "volumes.tsv")
    assert len(group) == 240
    assert list(group.columns) == ["participant_id", *ENIGMA_COLUMNS.values(), "ICV"]
    row = group.set_index("participant_id").loc["sub-002"]
    assert row["Right-Putamen"] == pytest.approx(
        truth["sub-002"]["volume_mm3"]["Right-Putamen"], abs=0.051)
    manifest = json.loads((root / "group" / "tables.json").read_text())
    entry = next(t for t in manifest["tables"] if t["name"] == "volumes")
    assert entry["icv"] == "ICV" and "reference" in entry["analyses"]


def test_glm_takes_icv_as_covariate_and_recovers_the_planted_d(group_run):
    root, _ = group_run
    stats = root / "group" / "stats" / "volumes"
    eff = read_tsv(stats / "effects.tsv")
    eff = eff[eff["term"] == "group"].set_index("feature") if "term" in eff else \
        eff.set_index("feature")
    assert "ICV" not in eff.index  # the ICV is the covariate, not a feature
    summary = json.loads((stats / "summary.json").read_text())
    assert summary["icv"] == "ICV"
    # planted: 3 x ENIGMA d on the ICV-adjusted log volume; the GLM's d is on the raw
    # volume with ICV linear, close to it at a 10% SD. Each CI must cover it, and the
    # striatal d's must all be negative (the sign is what must never flip)
    planted = {"Left-Caudate": -0.33, "Right-Putamen": -0.42, "Left-Accumbens-area": -0.45,
               "Right-Amygdala": -0.57, "Left-Pallidum": 0.0}
    for feature, d in planted.items():
        row = eff.loc[feature]
        assert row["d_ci_low"] - 0.05 <= d <= row["d_ci_high"] + 0.05, (feature, row["d"])
    for feature in ("Left-Caudate", "Right-Caudate", "Left-Putamen", "Right-Putamen"):
        assert eff.loc[feature, "d"] < 0, feature


@pytest.mark.real
def test_the_enigma_comparison_runs_by_itself_on_like_for_like_structures(group_run,
                                                                          shared_data):
    root, _ = group_run
    ref = read_tsv(root / "group" / "stats" / "volumes" / "reference_comparison.tsv")
    assert len(ref) == 14  # the seven ENIGMA structures, per hemisphere
    caud = ref.set_index("feature").loc["Left-Caudate"]
    assert caud["reference_d"] == pytest.approx(-0.11)
    assert {"structure", "hemisphere"} <= set(ref.columns)


def test_raw_t1w_volumes_in_two_atlas_spaces_are_flagged(tmp_path):
    """Atlas volumes read through Colin27 and on the MNI152 grid in one table: a warning;
    volumes from the earlier quick mode (Mattes MI SyN, or a schedule without its metric):
    another, which today's quick mode (CC SyN) does not get."""
    from danemap.errors import DanemapWarning
    from danemap.markers.structural._group import collect_volumes

    root = tmp_path / "danemap"
    for sub, space, metric in (("01", "colin27", "CC"), ("02", "mni152", "mattes"),
                               ("03", "colin27", "CC"), ("04", "colin27", None)):
        anat = root / f"sub-{sub}" / "anat"
        anat.mkdir(parents=True)
        stem = anat / f"sub-{sub}_atlas-danemap_desc-volumes_stats"
        pd.DataFrame({"region": ["Caudate_L", "ICV"], "hemisphere": ["L", "midline"],
                      "volume_mm3": [7000.0, 1.5e6], "method": ["ants-atlas", "brain mask"],
                      "enigma": ["n/a", "n/a"], "qc": ["n/a", "n/a"]}).to_csv(
            stem.with_suffix(".tsv"), sep="\t", index=False)
        stem.with_suffix(".json").write_text(json.dumps({
            "Method": "ants-atlas", "LikeFreeSurfer": False,
            "Provenance": {"atlas_space": space, "mode": "full" if sub == "01" else "quick",
                           "schedule": {} if metric is None else {"syn_metric": metric}}}))
    with pytest.warns(DanemapWarning) as record:
        out = collect_volumes(root, root / "group")
    said = " | ".join(str(w.message) for w in record)
    assert "(ants-atlas (atlas space colin27), ants-atlas (atlas space mni152))" in said
    assert "2 participant(s) (sub-02, sub-04) have raw-T1w volumes from the earlier quick " \
        "mode" in said
    side = json.loads((root / "group" / "volumes.json").read_text())
    assert side["Methods"] == ["ants-atlas (atlas space colin27)",
                               "ants-atlas (atlas space mni152)"]
    assert read_tsv(out["volumes"][0])["Caudate_L"].tolist() == pytest.approx([7000.0] * 4,
                                                                               rel=1e-12)
