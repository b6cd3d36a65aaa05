"""The task family end to end on a simulated fMRIPrep-style dataset (3 mm, short runs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from danemap.config import Config, TaskConfig
from danemap.errors import InputError
from danemap.simulate._task import TaskSimParams, task_subject

SHORT = TaskSimParams(n_trials=30)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    from danemap.atlas import load_atlas

    out = tmp_path_factory.mktemp("mid")
    (out / "dataset_description.json").write_text(json.dumps(
        {"Name": "mid", "BIDSVersion": "1.9.0"}))
    (out / "participants.tsv").write_text(
        "participant_id\tgroup\tsite\nsub-01\tTD\tsite-1\nsub-02\tADHD\tsite-1\n")
    fp = out / "derivatives" / "fmriprep"
    fp.mkdir(parents=True)
    (fp / "dataset_description.json").write_text(json.dumps(
        {"Name": "fmriprep", "BIDSVersion": "1.9.0", "DatasetType": "derivative"}))
    atlas = load_atlas(3)
    truth = {}
    for i, (sub, grp) in enumerate((("sub-01", "TD"), ("sub-02", "ADHD"))):
        truth[sub] = task_subject(out, sub, {"group": grp}, {}, atlas, i, 11, SHORT)
    return out, truth


def test_family_end_to_end(dataset: tuple[Path, dict[str, dict]], tmp_path: Path) -> None:
    from danemap.atlas import load_atlas
    from danemap.io import DerivativesWriter, discover, read_tsv
    from danemap.markers.task import TaskFamily

    root, truth = dataset
    fam = TaskFamily()
    cfg = Config()
    atlas = load_atlas(3)
    ds = discover(root)
    writer = DerivativesWriter(tmp_path / "danemap")
    for key in sorted(ds.data):
        session = ds.data[key]
        items = fam.inputs(session, cfg)
        assert len(items) == 1 and len(items[0].runs) == 1
        result = fam.compute(items[0], atlas, cfg)
        paths = fam.write(result, writer, items[0], atlas.name)
        names = [p.name for p in paths]
        sub = session.participant
        assert f"{sub}_task-mid_atlas-danemap_desc-contrasts_stats.tsv" in names
        assert any(n.endswith("desc-gainMinusNeutral_stat-effect_statmap.nii.gz")
                   for n in names)
        table = read_tsv(paths[0])
        assert list(table.columns[:5]) == ["contrast", "region", "effect", "variance", "t"]
        assert table["region"].iloc[:2].tolist() == ["NAcc_L", "NAcc_R"]
        g = table[table["contrast"] == "gain_minus_neutral"].set_index("region")
        true = truth[sub]["contrasts"]["gain_minus_neutral"]["NAcc_L"]
        assert np.isfinite(g["t"]).all()
        assert abs(g.loc["NAcc_L", "effect"] - true) < 4 * np.sqrt(g.loc["NAcc_L", "variance"])
    tables = fam.collect(writer.root, atlas.name, cfg)
    assert [t.name for t in tables] == ["task_mid"]
    grp = read_tsv(tables[0].path)
    assert tables[0].path.name == "task_mid.tsv" and tables[0].kind == "region"
    assert grp["participant_id"].tolist() == ["sub-01", "sub-02"]
    assert "gain_minus_neutral__NAcc_L" in grp.columns
    assert grp.shape[1] == 1 + 3 * len(atlas.names)


def test_voxelwise_run_matches_region_fit(dataset: tuple[Path, dict[str, dict]]) -> None:
    """Voxel-wise maps on the NAcc average close to the region-level estimate."""
    from danemap.atlas import load_atlas
    from danemap.markers.task import process_task_run

    root, _ = dataset
    fp = root / "derivatives" / "fmriprep" / "sub-01" / "func"
    bold = next(fp.glob("*_desc-preproc_bold.nii.gz"))
    atlas = load_atlas(3)
    run = process_task_run(bold, next(fp.glob("*_desc-confounds_timeseries.tsv")),
                           root / "sub-01" / "func" / "sub-01_task-mid_events.tsv", atlas,
                           TaskConfig(voxelwise=True), mask=next(fp.glob("*_mask.nii.gz")))
    eff = np.asarray(run.maps[("gain_minus_neutral", "effect")].dataobj)
    lab = np.asarray(atlas.resample_to(run.maps[("gain_minus_neutral", "effect")]).img.dataobj)
    idx = int(atlas.regions.set_index("name").loc["NAcc_L", "index"])
    vox_mean = float(np.nanmean(eff[lab == idx]))
    roi = run.table.set_index(["contrast", "region"]).loc[("gain_minus_neutral", "NAcc_L"),
                                                          "effect"]
    assert abs(vox_mean - roi) < 0.25 * abs(roi)


def test_missing_events_file_is_an_error(dataset: tuple[Path, dict[str, dict]],
                                         tmp_path: Path) -> None:
    import shutil

    from danemap.io import discover
    from danemap.markers.task import TaskFamily

    root, _ = dataset
    copy = tmp_path / "ds"
    shutil.copytree(root, copy)
    (copy / "sub-01" / "func" / "sub-01_task-mid_events.tsv").unlink()
    session = discover(copy).data[("sub-01", None)]
    with pytest.raises(InputError, match=r"sub-01: task run .* has no events file; expected "
                                         r"sub-01_task-mid_events\.tsv"):
        TaskFamily().inputs(session, Config())


def test_other_task_is_not_an_input(dataset: tuple[Path, dict[str, dict]]) -> None:
    from danemap.io import discover
    from danemap.markers.task import TaskFamily

    root, _ = dataset
    cfg = Config().updated({"task": {"task": "stopsignal"}})
    assert TaskFamily().inputs(discover(root).data[("sub-01", None)], cfg) == []


def test_tr_disagreement_names_the_sidecar_and_repetition_time_resolves_it(
        dataset: tuple[Path, dict[str, dict]], tmp_path: Path) -> None:
    import shutil

    from danemap.atlas import load_atlas
    from danemap.io import discover
    from danemap.markers.task import TaskFamily

    root, _ = dataset
    copy = tmp_path / "ds"
    shutil.copytree(root, copy)
    sidecars = sorted((copy / "derivatives" / "fmriprep" / "sub-01").rglob(
        "*task-mid*desc-preproc_bold.json"))
    assert sidecars, "the simulator writes the preprocessed BOLD's sidecar"
    meta = json.loads(sidecars[0].read_text())
    tr = float(meta["RepetitionTime"])
    meta["RepetitionTime"] = tr * 2  # disagrees with the header
    sidecars[0].write_text(json.dumps(meta))
    family, atlas = TaskFamily(), load_atlas(3)
    session = discover(copy).data[("sub-01", None)]
    item = family.inputs(session, Config())[0]
    with pytest.raises(InputError, match=sidecars[0].name + r".*--repetition-time"):
        family.compute(item, atlas, Config())
    result = family.compute(item, atlas,
                            Config().updated({"functional": {"repetition_time": tr}}))
    assert np.isfinite(result.table["effect"]).any()
