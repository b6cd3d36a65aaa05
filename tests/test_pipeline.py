"""The participant and group levels: atomic promotion, resume after SIGKILL, failure
isolation, exit codes, settings checks and the SUMMARY lines."""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from danemap._utils.logging import SUMMARY
from danemap.cli import main
from danemap.config import Config
from danemap.errors import InputError
from danemap.pipeline import process_participant, run_group, run_participant

BOLD = "sub-{sub}_task-rest_space-MNI152NLin2009cAsym_res-3_desc-preproc_bold.nii.gz"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """Four simulated participants (functional only, 3 mm, 50 volumes)."""
    from danemap.simulate import simulate_cohort

    root = tmp_path_factory.mktemp("pipeline") / "bids"
    simulate_cohort(root, n_subjects=4, n_sites=1, seed=5, resolution=3,
                    modalities=("func",), n_volumes=50)
    return root


def _clone(base: Path, dest: Path, n: int) -> Path:
    """A dataset of ``n`` participants, each a hard-linked copy of one of ``base``'s.

    Simulating 20 participants takes longer than processing them; these copies have the
    same files under new labels (the group statistics are not run on them).
    """
    dest.mkdir(parents=True)
    for name in ("dataset_description.json", "README"):
        if (base / name).is_file():
            shutil.copy(base / name, dest / name)
    fmriprep = base / "derivatives" / "fmriprep"
    (dest / "derivatives" / "fmriprep").mkdir(parents=True)
    shutil.copy(fmriprep / "dataset_description.json",
                dest / "derivatives" / "fmriprep" / "dataset_description.json")
    sources = sorted(p.name for p in fmriprep.glob("sub-*"))
    rows = pd.read_csv(base / "participants.tsv", sep="\t", dtype=str)
    new_rows = []
    for k in range(1, n + 1):
        src, sub = sources[(k - 1) % len(sources)], f"sub-{k:02d}"
        for f in (fmriprep / src).rglob("*"):
            if f.is_dir():
                continue
            target = dest / "derivatives" / "fmriprep" / sub / str(
                f.relative_to(fmriprep / src)).replace(src, sub)
            target.parent.mkdir(parents=True, exist_ok=True)
            if f.suffix == ".json":
                target.write_text(f.read_text().replace(src, sub))
            else:
                os.link(f, target)
        row = rows[rows["participant_id"] == src].iloc[0].copy()
        row["participant_id"] = sub
        new_rows.append(row)
    pd.DataFrame(new_rows).to_csv(dest / "participants.tsv", sep="\t", index=False)
    return dest


def _truncate(bids: Path, sub: str) -> Path:
    bold = bids / "derivatives" / "fmriprep" / f"sub-{sub}" / "func" / BOLD.format(sub=sub)
    data = gzip.decompress(bold.read_bytes())
    bold.unlink()  # a hard link: the others keep the intact file
    bold.write_bytes(gzip.compress(data[: len(data) // 2]))
    return bold


def _config(**run) -> Config:
    return Config().updated({"run": run}) if run else Config()


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns
            for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def cohort20(base, tmp_path_factory):
    """Twenty participants; sub-20's BOLD is truncated."""
    bids = _clone(base, tmp_path_factory.mktemp("c20") / "bids", 20)
    _truncate(bids, "20")
    return bids


# --------------------------------------------------------------------------- promotion


def test_a_failing_participant_shows_nothing_and_names_its_stage(base, tmp_path,
                                                                 monkeypatch):
    from danemap.markers.functional._family import FunctionalFamily

    def boom(self, result):  # after the outputs were written
        raise ValueError("qc exploded")

    monkeypatch.setattr(FunctionalFamily, "qc_excluded", boom)
    out = tmp_path / "out"
    with pytest.raises(ValueError) as info:
        process_participant("01", str(base), str(out), _config(markers=["functional"]))
    assert str(info.value) == "qc exploded"  # the original error, kept as it was
    assert info.value.danemap_stage == f"functional: {BOLD.format(sub='01')}"
    assert any("stage: functional: " in n for n in info.value.__notes__)
    root = out / "danemap"
    assert not (root / "sub-01").exists()
    assert not (root / ".partial").exists()  # the staging folder went with the failure


def test_a_failed_write_is_the_write_stage_and_keeps_the_old_outputs(base, tmp_path,
                                                                     monkeypatch):
    out = tmp_path / "out"
    cfg = _config(markers=["functional"])
    first = process_participant("02", str(base), str(out), cfg)
    folder = out / "danemap" / "sub-02"
    assert first["files"] and all(Path(f).is_file() and folder in Path(f).parents
                                  for f in first["files"])
    before = _files(folder)

    from danemap.markers.functional._family import FunctionalFamily

    real = FunctionalFamily.write

    def half_then_fail(self, result, writer, item, atlas_name):
        real(self, result, writer, item, atlas_name)
        raise OSError("disk full")

    monkeypatch.setattr(FunctionalFamily, "write", half_then_fail)
    with pytest.raises(OSError, match="disk full") as info:
        process_participant("02", str(base), str(out), cfg)
    assert info.value.danemap_stage.startswith("write: functional: sub-02_task-rest")
    assert _files(folder) == before  # the old participant, untouched
    assert not (out / "danemap" / ".partial").exists()


def test_group_collectors_never_see_a_staged_participant(base, tmp_path):
    from danemap.markers.base import families

    out = tmp_path / "out"
    cfg = _config(markers=["functional"], participant_label=["01", "02"])
    assert run_participant(base, out, cfg) == 0
    root = out / "danemap"
    # a participant half-written by a killed run
    shutil.copytree(root / "sub-02", root / ".partial" / "sub-03")
    (fam,) = families(["functional"])
    tables = fam.collect(root, "danemap", cfg)
    nets = pd.read_csv(next(t.path for t in tables if t.name == "networks"), sep="\t")
    assert sorted(nets["participant_id"]) == ["sub-01", "sub-02"]


# --------------------------------------------------------------------------- SIGKILL


def test_sigkill_mid_run_then_resume_completes_only_the_missing(base, tmp_path):
    out = tmp_path / "out"
    root = out / "danemap"
    cmd = [sys.executable, "-m", "danemap.cli", str(base), str(out), "participant",
           "--markers", "functional"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        # kill when one participant is done and the next one is being written
        while time.monotonic() < deadline and proc.poll() is None:
            if any(root.glob("logs/done-*/*.done.json")) and any(root.glob(".partial/sub-*")):
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the run ended before it could be killed mid-participant"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    done = sorted(p.name.removesuffix(".done.json")
                  for p in root.glob("logs/done-*/*.done.json"))
    visible = sorted(p.name for p in root.glob("sub-*") if p.is_dir())
    assert done and len(done) < 4
    assert any(root.glob(".partial/sub-*"))  # the killed participant, out of sight
    # nothing partial is visible: every folder shown is complete (done, or promoted in
    # the instant before its marker), and has the full set of files
    assert set(done) <= set(visible) and len(visible) <= len(done) + 1
    reference = {k.replace(done[0], "sub-XX") for k in _files(root / done[0])}
    for sub in visible:
        assert {k.replace(sub, "sub-XX") for k in _files(root / sub)} == reference
    kept = {sub: _files(root / sub) for sub in done}

    time.sleep(1.1)  # the run log is named to the second
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert not (root / ".partial").exists()  # the killed run's leftovers are cleaned
    assert sorted(p.name for p in root.glob("sub-*") if p.is_dir()) == [
        "sub-01", "sub-02", "sub-03", "sub-04"]
    for sub, files in kept.items():
        assert _files(root / sub) == files  # not recomputed
    log_text = sorted(root.glob("logs/participant-*.log"))[-1].read_text(encoding="utf-8")
    for sub in ("sub-01", "sub-02", "sub-03", "sub-04"):
        resumed = f"{sub}: already done, skipped (resume)" in log_text
        computed = f"{sub}: done in " in log_text
        assert resumed == (sub in done) and computed == (sub not in done), sub
    assert "resumed" in rerun.stderr and f"{len(done)} resumed" in rerun.stderr


# --------------------------------------------------------------------------- isolation


def test_one_corrupt_participant_among_20(cohort20, tmp_path, caplog):
    out = tmp_path / "out"
    t0 = time.perf_counter()
    with caplog.at_level(SUMMARY, logger="danemap"):
        rc = run_participant(cohort20, out, _config(n_jobs=2))
    seconds = time.perf_counter() - t0
    assert rc == 1
    root = out / "danemap"
    assert sorted(p.name for p in root.glob("sub-*")) == [f"sub-{k:02d}" for k in range(1, 20)]
    assert not (root / ".partial").exists()
    failures = pd.read_csv(root / "logs" / "failures.tsv", sep="\t")
    assert list(failures.columns) == ["participant_id", "stage", "error"]
    assert list(failures["participant_id"]) == ["sub-20"]
    assert failures.loc[0, "stage"] == f"functional: {BOLD.format(sub='20')}"
    assert "truncated" in failures.loc[0, "error"]
    assert not failures.loc[0, "error"].startswith("[")  # the stage is its own column
    side = json.loads((root / "logs" / "failures.json").read_text())
    assert {"participant_id", "stage", "error"} <= set(side)
    # the one-line summary, shown by default (SUMMARY level)
    lines = [r.getMessage() for r in caplog.records if r.levelno == SUMMARY]
    assert any(m.startswith("participant level: 19 ok, 0 resumed, 1 failed (sub-20); "
                            f"status: {root / 'logs' / 'participant_status.tsv'}")
               for m in lines), lines
    assert any(str(root / "logs" / "failures.tsv") in m for m in lines)
    # counts are integers, n/a for the failed participant
    text = (root / "logs" / "participant_status.tsv").read_text().splitlines()
    header = text[0].split("\t")
    rows = {r.split("\t")[0]: dict(zip(header, r.split("\t"), strict=True)) for r in text[1:]}
    assert rows["sub-01"]["runs"] == "1" and rows["sub-01"]["qc_excluded_runs"] == "0"
    assert rows["sub-20"]["runs"] == "n/a" and rows["sub-20"]["status"] == "failed"
    assert rows["sub-20"]["stage"].startswith("functional: sub-20")
    assert seconds < 120, seconds


def test_exit_codes(cohort20, tmp_path):
    out = tmp_path / "out"
    args = [str(cohort20), str(out), "participant", "--participant-label"]
    assert main([*args, "20"]) == 2  # every selected participant failed: nothing done
    assert main([*args, "01"]) == 0
    assert main([*args, "01"]) == 0  # resumed only
    assert main([*args, "01", "20"]) == 1  # resumed + failed
    assert main([*args, "02", "20"]) == 1  # ok + failed
    status = pd.read_csv(out / "danemap" / "logs" / "participant_status.tsv", sep="\t",
                         dtype=str, keep_default_na=False)
    assert dict(zip(status["participant_id"], status["status"], strict=True)) == {
        "sub-01": "ok", "sub-02": "ok", "sub-20": "failed"}


# --------------------------------------------------------------------------- atlas


@pytest.mark.parametrize("level", ["participant", "group"])
def test_a_bad_atlas_path_stops_the_level_before_anything_is_written(base, tmp_path,
                                                                     level, capsys):
    out = tmp_path / "out"
    missing = tmp_path / "atlas-none_dseg.nii.gz"
    assert main([str(base), str(out), level, "--atlas", str(missing)]) == 2
    assert "atlas setting" in capsys.readouterr().err
    # only the run log of the level is written
    assert sorted(p.name for p in (out / "danemap").iterdir()) == ["logs"]
    assert [p.name.split("-")[0] for p in (out / "danemap" / "logs").iterdir()] == [level]


def test_run_participant_checks_the_atlas_first(base, tmp_path):
    with pytest.raises(InputError, match=r"atlas setting .*found no such file"):
        run_participant(base, tmp_path / "out", _config(atlas=str(tmp_path / "x.nii.gz")))
    assert not (tmp_path / "out").exists()


def test_the_memory_limit_reaches_the_engine(base, tmp_path, monkeypatch):
    import danemap.engine

    seen = {}

    def fake_run_many(func, items, **kwargs):
        seen.update(kwargs)
        return []

    monkeypatch.setattr(danemap.engine, "run_many", fake_run_many)
    run_participant(base, tmp_path / "out", _config(memory_limit_gib=3.5))
    assert seen["memory_limit_gib"] == 3.5


# --------------------------------------------------------------------------- settings


def _stub_group_outputs(monkeypatch, tmp_path):
    """Replace the statistics and the reports by stand-ins (their own tests cover them)."""
    import danemap.report.group as group_report
    import danemap.report.participant as participant_report
    import danemap.stats.pipeline as stats_pipeline

    monkeypatch.setattr(stats_pipeline, "run_stats",
                        lambda *a, **k: {"summary": {"errors": {}}})
    monkeypatch.setattr(group_report, "write_group_report",
                        lambda group_dir, *a, **k: Path(group_dir) / "report.html")
    monkeypatch.setattr(participant_report, "write_participant_reports",
                        lambda root, n_jobs=1: [Path(root) / "sub-01.html",
                                                Path(root) / "sub-03.html"])


def test_mixed_settings_in_one_output_folder_are_refused_by_the_group_level(
        base, tmp_path, monkeypatch, caplog):
    out = tmp_path / "out"
    root = out / "danemap"
    args = [str(base), str(out), "participant", "--participant-label"]
    assert main([*args, "01", "02", "03"]) == 0
    sub02 = _files(root / "sub-02")
    with caplog.at_level(logging.WARNING, logger="danemap"):
        assert run_participant(base, out, Config().updated({
            "run": {"participant_label": ["01"]},
            # 6 motion regressors: 50 volumes less the censored ones keep enough
            # degrees of freedom
            "functional": {"strategy": "scrubbing", "motion": "basic"}})) == 0
    assert "strategy = \"scrubbing\"" in (root / "config.toml").read_text()
    assert _files(root / "sub-02") == sub02  # only sub-01 was reprocessed
    assert "the group level will refuse" in caplog.text
    status = {p.stem: json.loads(p.read_text()) for p in (root / "logs" / "status").iterdir()}
    assert status["sub-01"]["settings"]["functional.strategy"] == "scrubbing"
    assert status["sub-02"]["settings"]["functional.strategy"] == "simple"
    assert status["sub-01"]["settings_sha256"] != status["sub-02"]["settings_sha256"]
    table = pd.read_csv(root / "logs" / "participant_status.tsv", sep="\t", dtype=str)
    assert table["settings"].nunique() == 2

    with pytest.raises(InputError, match=r"different participant-level settings") as info:
        run_group(base, out, Config())
    msg = str(info.value)
    assert "functional.strategy='simple'): sub-02, sub-03" in msg
    assert "functional.strategy='scrubbing'): sub-01" in msg
    assert "new output folder" in msg
    assert not (root / "group").exists()  # refused before writing anything

    # back to simple: sub-01 is recomputed, not resumed from its old simple marker
    # (its folder holds the scrubbing outputs)
    assert main([*args, "01"]) == 0
    again = json.loads((root / "logs" / "status" / "sub-01.json").read_text())
    assert again["status"] == "ok" and again["settings"]["functional.strategy"] == "simple"
    _stub_group_outputs(monkeypatch, tmp_path)
    assert run_group(base, out, Config()) == 0  # one set of settings again


def test_group_level_progress_and_outputs_at_summary_level(base, tmp_path, monkeypatch,
                                                           caplog):
    out = tmp_path / "out"
    assert run_participant(base, out, _config(participant_label=["01", "03"])) == 0
    _stub_group_outputs(monkeypatch, tmp_path)
    with caplog.at_level(SUMMARY, logger="danemap"):
        assert run_group(base, out, Config()) == 0
    lines = [r.getMessage() for r in caplog.records if r.levelno == SUMMARY]
    progress = [m for m in lines if m.startswith("group statistics ")]
    assert progress and progress[0].startswith(f"group statistics 1/{len(progress)}: ")
    assert any("networks.tsv" in m for m in progress)
    root = out / "danemap"
    assert f"group report: {root / 'group' / 'report.html'}" in lines
    assert any(m.startswith(f"participant reports: 2 in {root}") for m in lines)
    # the participants table the statistics used is kept with them, for the report
    assert (root / "group" / "participants.tsv").read_bytes() == \
        (base / "participants.tsv").read_bytes()


def test_group_level_names_a_covariate_missing_from_participants_tsv(tmp_path):
    from danemap.config import Config
    from danemap.errors import InputError
    from danemap.pipeline import run_group

    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "participants.tsv").write_text(
        "participant_id\tgroup\tage\nsub-01\tADHD\t10\nsub-02\tTD\t11\n")
    cfg = Config().updated({"stats": {"covariates": ["age", "handedness"]}})
    with pytest.raises(InputError, match="handedness"):
        run_group(bids, tmp_path / "out", cfg)
    assert not (tmp_path / "out" / "danemap" / "group").exists()
