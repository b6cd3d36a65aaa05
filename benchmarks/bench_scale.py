"""Benchmark: the participant level at cohort scale, and the group stage at 10,000 rows.

1. Throughput of ``run_participant`` (the BIDS-App participant level, the functional
   markers by default) on ``--n`` simulated participants at 3 mm (simulated once, into a
   temporary folder): participants per minute with 1 worker (in-process) and with 2 local
   worker processes (``run.n_jobs``), the speed-up (target >= 1.7x on 2 free cores), the
   peak resident memory of each worker process per participant (as the local pool
   measures it: ``VmHWM`` reset for each participant, so it is the participant's own
   peak, including what the worker inherited from the parent at the fork), and the same
   cohort on a Dask ``LocalCluster`` of 2 single-threaded worker processes on loopback
   (``run.backend = "dask"``; the cluster's start-up is included in its time). Each
   configuration runs in a fresh subprocess, into its own output folder.
2. Group stage at ``--group-n`` synthetic participants (default 10,000): the functional
   group table that the group level builds from the simulated outputs (its columns, e.g.
   ``connectivity_corr.tsv``) is widened to that many synthetic rows, with a matching
   synthetic ``participants.tsv``, and ``danemap.stats.pipeline.run_stats`` runs the
   analyses the group level runs on that table, from the TSV files to the result files,
   in a fresh subprocess: wall time and peak resident memory (``VmHWM``; target < 2 GB).

Run: ``.venv/bin/python benchmarks/bench_scale.py [--n 200] [--group-n 10000]``; the lead
runs it with the defaults on a quiet machine. ``--n 20`` for a quick look (the machine is
shared: the speed-up needs two free cores).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

_CHILD = r"""
import json, sys, time
import danemap.engine as engine
from danemap.config import Config
from danemap.pipeline import run_participant

bids, out, run = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
seen = []
original = engine.run_many
def spy(*args, **kwargs):  # keep the outcomes: per-worker peak memory
    outcomes = original(*args, **kwargs)
    seen.extend(outcomes)
    return outcomes
engine.run_many = spy
t0 = time.perf_counter()
code = run_participant(bids, out, Config().updated({"run": run}))
wall = time.perf_counter() - t0
with open("/proc/self/status") as fh:
    parent = next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:")) / 1024
print(json.dumps({"code": code, "wall_s": wall, "parent_peak_mib": parent,
                  "ok": sum(o.status == "ok" for o in seen),
                  "failed": [o.item for o in seen if o.status == "failed"],
                  "errors": [o.error for o in seen if o.status == "failed"][:3],
                  "peaks_mib": [o.peak_mib for o in seen if o.peak_mib],
                  "seconds": [o.seconds for o in seen if o.status == "ok"]}))
"""

_GROUP_CHILD = r"""
import json, sys, time
from danemap.config import Config
from danemap.stats.pipeline import run_stats

features, participants, out, analyses, n_perm = sys.argv[1:6]
config = Config().updated({"stats": {"n_permutations": int(n_perm)}}) if int(n_perm) else Config()
def mib():
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:")) / 1024
import danemap.stats.combat, danemap.stats.glm, danemap.stats.multiple  # noqa: F401
after_imports = mib()
t0 = time.perf_counter()
res = run_stats(features, participants, out, config, analyses=analyses.split(","),
                on_error="record")
s = res["summary"]
print(json.dumps({"wall_s": time.perf_counter() - t0, "peak_mib": mib(),
                  "after_imports_mib": after_imports, "errors": s.get("errors", {}),
                  "status": {a: v["status"] for a, v in s["analyses"].items()}}))
"""


def _child(code: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"benchmark step failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_throughput(bids: Path, work: Path, n: int, markers: list[str],
                     dask: bool) -> Path:
    """Time the participant level with 1 and 2 local workers, and on a Dask cluster."""
    runs = {"1 worker (in-process)": {"n_jobs": 1},
            "2 workers (local pool)": {"n_jobs": 2}}
    if dask:
        runs["Dask LocalCluster, 2 workers"] = {"n_jobs": 2, "backend": "dask"}
    results = {}
    for name, run in runs.items():
        out = work / f"out-{len(results)}"
        info = _child(_CHILD, str(bids), str(out),
                      json.dumps({**run, "markers": markers, "resolution": 3}))
        results[name] = info
        rate = info["ok"] / info["wall_s"] * 60
        line = (f"[throughput] {name}: {info['ok']}/{n} ok in {info['wall_s']:.1f} s -> "
                f"{rate:.1f} participants/min (median {np.median(info['seconds']):.2f} s "
                "per participant)")
        if info["failed"]:
            line += f"; FAILED {info['failed']}: {info['errors']}"
        print(line, flush=True)
        if info["peaks_mib"]:
            peaks = np.asarray(info["peaks_mib"])
            print(f"  peak resident memory per worker process and participant: median "
                  f"{np.median(peaks):.0f} MiB, max {peaks.max():.0f} MiB "
                  f"(parent process peak {info['parent_peak_mib']:.0f} MiB)")
        elif name.startswith("1 worker"):
            print(f"  peak resident memory of the process: {info['parent_peak_mib']:.0f} MiB")
    one, two = (results[k]["wall_s"] / max(results[k]["ok"], 1) for k in list(runs)[:2])
    print(f"speed-up danemap 2 workers vs 1 worker: {one / two:.2f}x (target >= 1.7x with "
          "2 free cores)")
    if dask:
        d = results["Dask LocalCluster, 2 workers"]
        print(f"speed-up danemap Dask LocalCluster (2 workers) vs 1 worker: "
              f"{one / (d['wall_s'] / max(d['ok'], 1)):.2f}x")
    return work / "out-0"


def _group_table(out_root: Path) -> tuple[Path, tuple[str, ...]]:
    """The functional connectivity table the group level builds, and its analyses."""
    from danemap.atlas import atlas_name
    from danemap.config import Config
    from danemap.markers.base import families

    config = Config()
    tables = [t for f in families(["functional"])
              for t in f.collect(out_root, atlas_name(config.run.atlas), config)]
    table = next((t for t in tables if t.name.endswith("connectivity_corr")),
                 next(t for t in tables if t.analysed))
    return table.path, tuple(table.analyses)


def bench_group(out_root: Path, work: Path, n_rows: int, n_perm: int) -> None:
    """Run the group statistics of the functional table widened to ``n_rows`` rows."""
    path, analyses = _group_table(out_root / "danemap")
    template = pd.read_csv(path, sep="\t", na_values="n/a")
    features = [c for c in template.columns
                if c not in ("participant_id", "session", "run")
                and pd.api.types.is_numeric_dtype(template[c])]
    rng = np.random.default_rng(0)
    ids = [f"sub-{i:05d}" for i in range(n_rows)]
    mean = template[features].mean().to_numpy()
    sd = template[features].std().fillna(0.1).to_numpy() + 1e-3
    rows = work / "group_input"
    rows.mkdir()
    table = rows / path.name
    with table.open("w") as fh:  # in blocks, so this process stays small
        fh.write("participant_id\t" + "\t".join(features) + "\n")
        for start in range(0, n_rows, 1000):
            block = ids[start:start + 1000]
            values = rng.normal(mean, sd, (len(block), len(features)))
            pd.DataFrame(values, index=block).to_csv(fh, sep="\t", header=False,
                                                     float_format="%.6g")
    parts = pd.DataFrame({
        "participant_id": ids, "group": rng.choice(["ADHD", "TD"], n_rows),
        "age": rng.uniform(7, 18, n_rows).round(2), "sex": rng.choice(["M", "F"], n_rows),
        "site": rng.choice(["A", "B", "C", "D"], n_rows),
        **{s: rng.normal(50, 10, n_rows).round(1)
           for s in ("adhd_index", "inattentive", "hyperimpulsive")}})
    participants = rows / "participants.tsv"
    parts.to_csv(participants, sep="\t", index=False)
    info = _child(_GROUP_CHILD, str(table), str(participants), str(work / "group_out"),
                  ",".join(analyses), str(n_perm))
    perms = f"{n_perm} permutations" if n_perm else "the configured permutations"
    print(f"[group] run_stats on {path.name} widened to {n_rows} synthetic participants x "
          f"{len(features)} features ({', '.join(analyses)}; {perms}): "
          f"{info['wall_s']:.1f} s")
    status = ", ".join(f"{a} {v}" for a, v in info["status"].items())
    print(f"  status: {status}" + (f"; ERRORS {info['errors']}" if info["errors"] else ""))
    peak = info["peak_mib"]
    print(f"  peak resident memory {peak:.0f} MiB (after imports "
          f"{info['after_imports_mib']:.0f} MiB) -> {'under' if peak < 2048 else 'OVER'} "
          "the 2 GB target")


def main(argv: list[str] | None = None) -> None:
    """Simulate once, then time the participant level and the group stage."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="simulated participants")
    ap.add_argument("--n-volumes", type=int, default=120, help="BOLD volumes per participant")
    ap.add_argument("--modalities", default="func",
                    help="simulated modalities (comma-separated: func, anat, pet)")
    ap.add_argument("--group-n", type=int, default=10_000,
                    help="synthetic participant rows of the group stage")
    ap.add_argument("--group-permutations", type=int, default=0,
                    help="permutations of the group stage (0: the configured default)")
    ap.add_argument("--no-dask", action="store_true", help="skip the Dask LocalCluster run")
    args = ap.parse_args(argv)
    from danemap.simulate import simulate_cohort

    modalities = tuple(m for m in args.modalities.split(",") if m)
    markers = [{"func": "functional", "anat": "structural", "pet": "pet"}[m]
               for m in modalities]
    with tempfile.TemporaryDirectory(prefix="danemap-bench-scale-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        bids = simulate_cohort(work / "bids", n_subjects=args.n, n_sites=2, seed=0,
                               resolution=3, modalities=modalities, n_volumes=args.n_volumes)
        print(f"[setup] simulated {args.n} participants ({', '.join(modalities)}, 3 mm, "
              f"{args.n_volumes} volumes) in {time.perf_counter() - t0:.0f} s", flush=True)
        out = bench_throughput(bids, work, args.n, markers, dask=not args.no_dask)
        if "functional" in markers:
            bench_group(out, work, args.group_n, args.group_permutations)


if __name__ == "__main__":
    main()
