"""``danemap slurm``: the array, its throttle, the group job's dependency, quoting."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from danemap.engine import write_slurm_array
from danemap.errors import ConfigError

LABELS = ["01", "sub-02", "03"]

#: A stand-in for ``danemap`` that records its arguments (one JSON list per call).
FAKE = """#!{python}
import json, os, sys
with open(os.environ["DANEMAP_FAKE_LOG"], "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\\n")
"""


def _fake_danemap(folder: Path) -> Path:
    path = folder / "fake danemap"
    path.write_text(FAKE.format(python=sys.executable))
    path.chmod(0o755)
    return path


@pytest.fixture
def spaced(tmp_path):
    """An input and an output folder whose paths have spaces and a quote in them."""
    bids = tmp_path / "my data" / "bids"
    bids.mkdir(parents=True)
    out = tmp_path / "out dir's" / "results"
    cfg = tmp_path / "my config.toml"
    cfg.write_text("[run]\nresolution = 3\n")
    return bids, out, cfg


def _write(spaced, tmp_path, **kwargs):
    bids, out, cfg = spaced
    exe = shlex.quote(str(_fake_danemap(tmp_path)))
    return write_slurm_array(bids, out, LABELS, config_file=cfg, executable=exe, **kwargs)


def test_every_script_is_valid_bash(spaced, tmp_path):
    s = _write(spaced, tmp_path)
    for path in (s.array, s.group, s.submit):
        assert path.is_file() and os.access(path, os.X_OK)
        subprocess.run(["bash", "-n", str(path)], check=True)


def test_array_range_throttle_and_resources(spaced, tmp_path):
    s = _write(spaced, tmp_path, max_parallel=2, time="1-00:00", mem="4000M", cpus=2,
               partition="short", account="lab")
    text = s.array.read_text()
    assert s.n_tasks == 3
    assert s.participants.read_text().split() == ["01", "02", "03"]
    for line in ("#SBATCH --array=1-3%2", "#SBATCH --time=1-00:00", "#SBATCH --mem=4000M",
                 "#SBATCH --cpus-per-task=2", "#SBATCH --partition=short",
                 "#SBATCH --account=lab"):
        assert line in text.splitlines()
    group = s.group.read_text().splitlines()
    assert "#SBATCH --array" not in s.group.read_text()
    assert "#SBATCH --mem=16G" in group and "#SBATCH --partition=short" in group


def test_sbatch_output_path_is_quoted_for_sbatch(spaced, tmp_path):
    s = _write(spaced, tmp_path)
    line = next(x for x in s.array.read_text().splitlines() if x.startswith("#SBATCH --output"))
    logs = s.array.parent / "logs"
    assert line == f'#SBATCH --output="{logs}/participant-%A_%a.log"'
    assert (logs).is_dir()


def _run_fake_sbatch(s, tmp_path, dependency="afterany"):
    """Run submit.sh with a fake ``sbatch`` on PATH; return its recorded calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "sbatch_calls.jsonl"
    (bin_dir / "sbatch").write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"with open({str(calls)!r}, 'a') as log:\n"
        "    log.write(json.dumps(sys.argv[1:]) + '\\n')\n"
        f"n = sum(1 for _ in open({str(calls)!r}))\nprint(f'{{1000 + n}};cluster')\n")
    (bin_dir / "sbatch").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(s.submit)], env=env, capture_output=True, text=True,
                          check=True)
    return [json.loads(x) for x in calls.read_text().splitlines()], done.stdout


@pytest.mark.parametrize("dependency", ["afterany", "afterok"])
def test_group_job_depends_on_the_array(spaced, tmp_path, dependency):
    s = _write(spaced, tmp_path, group_dependency=dependency)
    calls, stdout = _run_fake_sbatch(s, tmp_path)
    assert calls == [["--parsable", str(s.array)],
                     ["--parsable", f"--dependency={dependency}:1001", str(s.group)]]
    assert "array 1001 (3 tasks, at most 20 at once) and the group job 1002" in stdout


def test_each_task_runs_its_participant_with_paths_intact(spaced, tmp_path):
    from danemap.cli import build_bids_app_parser

    bids, out, cfg = spaced
    s = _write(spaced, tmp_path)
    log = tmp_path / "calls.jsonl"
    env = {**os.environ, "DANEMAP_FAKE_LOG": str(log), "SLURM_CPUS_PER_TASK": "1"}
    for task in (1, 2, 3):
        subprocess.run(["bash", str(s.array)], env={**env, "SLURM_ARRAY_TASK_ID": str(task)},
                       check=True)
    subprocess.run(["bash", str(s.group)], env=env, check=True)
    calls = [json.loads(x) for x in log.read_text().splitlines()]
    parser = build_bids_app_parser()
    for argv, label in zip(calls[:3], ["01", "02", "03"], strict=True):
        args = parser.parse_args(argv)
        assert (args.bids_dir, args.output_dir) == (bids.resolve(), out.resolve())
        assert args.analysis_level == "participant"
        assert args.participant_label == [label]
        assert args.n_jobs == 1 and Path(args.config) == cfg.resolve()
    args = parser.parse_args(calls[3])
    assert args.analysis_level == "group" and args.output_dir == out.resolve()
    # a task beyond the list stops with a clear message instead of running everyone
    bad = subprocess.run(["bash", str(s.array)], env={**env, "SLURM_ARRAY_TASK_ID": "9"},
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "no participant on line 9" in bad.stderr


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"time": "02:00:00\n#SBATCH --x"}, "--time"),
    ({"mem": "lots"}, "--mem"),
    ({"partition": "a b"}, "--partition"),
    ({"max_parallel": 0}, "--max-parallel"),
    ({"group_dependency": "afternotok"}, "--group-dependency"),
])
def test_bad_settings_are_config_errors(tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=re.escape(match)):
        write_slurm_array(tmp_path / "bids", tmp_path / "out", ["01"], **kwargs)


def test_the_slurm_subcommand_writes_all_three_scripts(tmp_path, capsys):
    from danemap.cli import main
    from danemap.simulate import simulate_cohort

    bids = tmp_path / "bids"
    simulate_cohort(bids, n_subjects=3, n_sites=1, seed=1, resolution=3, modalities=("func",),
                    n_volumes=40)
    out = tmp_path / "out"
    assert main(["slurm", str(bids), str(out), "--max-parallel", "2",
                 "--group-dependency", "afterok"]) == 0
    folder = out / "danemap" / "slurm"
    printed = capsys.readouterr().out
    for name in ("danemap_array.sbatch", "danemap_group.sbatch", "submit.sh"):
        assert str(folder / name) in printed
    assert "#SBATCH --array=1-3%2" in (folder / "danemap_array.sbatch").read_text()
    assert "--dependency=afterok:" in (folder / "submit.sh").read_text()


def _controller() -> bool:
    if not shutil.which("sbatch") or not shutil.which("scontrol"):
        return False
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return ping.returncode == 0 and "UP" in ping.stdout


@pytest.mark.skipif(not _controller(), reason="no SLURM controller answers (scontrol ping)")
def test_real_sbatch_accepts_and_runs_the_scripts(spaced, tmp_path):
    s = _write(spaced, tmp_path, max_parallel=2, mem="100M", group_mem="100M",
               time="00:05:00", group_time="00:05:00")
    for path in (s.array, s.group):
        test = subprocess.run(["sbatch", "--test-only", str(path)], capture_output=True,
                              text=True, timeout=30)
        assert test.returncode == 0, test.stderr
    # the real thing: the array, the dependent group job, the log files under a spaced path
    log = tmp_path / "calls.jsonl"
    env = {**os.environ, "DANEMAP_FAKE_LOG": str(log)}
    done = subprocess.run(["bash", str(s.submit)], env=env, capture_output=True, text=True,
                          timeout=30, check=True)
    array, group = re.search(r"array (\d+) .* group job (\d+)", done.stdout).groups()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        queue = subprocess.run(["squeue", "-h", "-j", f"{array},{group}"],
                               capture_output=True, text=True).stdout
        if not queue.strip():
            break
        time.sleep(1)
    calls = [json.loads(x) for x in log.read_text().splitlines()]
    labels = sorted(c[c.index("--participant-label") + 1] for c in calls if "participant" in c)
    assert labels == ["01", "02", "03"]
    assert calls[-1][2] == "group"  # after every task
    logs = sorted(p.name for p in (s.array.parent / "logs").iterdir())
    assert [n for n in logs if n.startswith("participant-")] == [
        f"participant-{array}_{k}.log" for k in (1, 2, 3)]
    assert f"group-{group}.log" in logs
