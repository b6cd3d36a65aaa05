"""Benchmark danemap.stats against the reference tools, in one run.

1. Max-T permutation: danemap ``permutation_test`` vs nilearn ``permuted_ols`` on
   n = 1000 participants x 4,950 edges, 5,000 permutations, two-sided max-T, in the
   default precision (float32 products, every undecided comparison redone in float64:
   the p-values of float64), in float64 and in float32 alone. By default nilearn runs the
   full 5,000 permutations too (about 26 s on 2 cores); ``--nilearn-perms N`` times it on
   N permutations and scales linearly (quicker; the output says so). The BLAS kernel
   threadpoolctl reports is printed: where OPENBLAS_CORETYPE or OPENBLAS_L2_SIZE are set
   in the environment, run ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python ...`` to
   time numpy's own kernel choice.
   Meta-analysis (4,950 features x 20 sites, target < 1 s): a marked placeholder, see
   ``bench_meta``.
2. ComBat: danemap ``ComBat.fit_transform`` vs ``neuroHarmonize.harmonizationLearn`` on the
   same data (3 sites, covariates age, sex, group).
3. Peak memory of the group stage on 10,000 participants x 4,950 connectivity edges: the
   code the BIDS-App group level runs (``run_stats``) from the TSV files to the result
   files, with the analyses it runs on a connectivity table (harmonise, GLM + FDR, max-T
   permutations, NBS) plus symptom association, at the configured 5,000 permutations.
   Measured as the peak resident set size (``VmHWM``) of a fresh subprocess (includes the
   interpreter, the imports and the data themselves), with the peak reached by the end of
   each step. ``VmHWM`` rather than ``ru_maxrss``: on Linux a child's ``ru_maxrss`` keeps
   the high-water mark of the process it was forked from (this benchmark, which wrote
   the input files), so it overstates the group stage; it is printed too, for reference.

Run: ``.venv/bin/python benchmarks/bench_stats.py [--repeats 3] [--nilearn-perms 500]``;
``--quick`` (or the size options) for a smoke test on small sizes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def _median_time(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def _data(n: int, m: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    site = rng.choice(["A", "B", "C"], n)
    group = rng.integers(0, 2, n).astype(float)
    age = rng.uniform(7, 18, n)
    sex = rng.integers(0, 2, n).astype(float)
    X = rng.normal(size=(n, m)) + 0.3 * group[:, None]
    for k, s in enumerate("ABC"):
        X[site == s] = X[site == s] * (1 + 0.3 * k) + k
    return X, site, group, age, sex


def bench_permutation(n: int, m: int, repeats: int, n_perm: int, nilearn_perms: int,
                      nilearn_repeats: int) -> None:
    from nilearn.mass_univariate import permuted_ols

    from danemap.stats.multiple import permutation_test

    X, _site, group, age, sex = _data(n, m)
    conf = np.column_stack([age, sex])

    def ours(dtype):
        return _median_time(lambda: permutation_test(X, group, conf, n_permutations=n_perm,
                                                     seed=0, dtype=dtype), repeats)

    default, times = ours(None)
    d64, times64 = ours(np.float64)
    d32, times32 = ours(np.float32)
    nl, nl_times = _median_time(
        lambda: permuted_ols(group[:, None], X, conf, n_perm=nilearn_perms, random_state=0,
                             two_sided_test=True, output_type="dict", verbose=0, n_jobs=1),
        nilearn_repeats)
    nl_full = nl * n_perm / nilearn_perms
    print(f"[permutation] n={n}, features={m}, permutations={n_perm}, max-T, two-sided")
    print(f"  BLAS: {_blas_info()}")
    print(f"  danemap default (float32 products, float64 decisions): median {default:.2f} s "
          f"over {repeats} runs {np.round(times, 2)}")
    print(f"  danemap float64: median {d64:.2f} s over {repeats} runs {np.round(times64, 2)}")
    print(f"  danemap float32 (no float64 recomputation): median {d32:.2f} s "
          f"{np.round(times32, 2)}")
    if nilearn_perms == n_perm:
        print(f"  nilearn permuted_ols (n_jobs=1): median {nl:.2f} s for all {n_perm} "
              f"permutations (of {nilearn_repeats} {np.round(nl_times, 2)}; "
              f"{nl / n_perm * 1000:.2f} s per 1000)")
    else:
        print(f"  nilearn permuted_ols (n_jobs=1): median {nl:.2f} s for {nilearn_perms} "
              f"permutations (of {nilearn_repeats}), SCALED linearly to {n_perm}: "
              f"{nl_full:.1f} s ({nl / nilearn_perms * 1000:.2f} s per 1000)")
    print(f"  speed-up danemap vs nilearn permuted_ols: {nl_full / default:.2f}x "
          f"(default precision; target >= 10x)")
    print(f"  speed-up danemap vs nilearn permuted_ols: {nl_full / d64:.2f}x (float64)")
    print(f"  (float32 without recomputation: {nl_full / d32:.2f}x)")


def _blas_info() -> str:
    """Which BLAS kernel ran, as threadpoolctl reports it, and the OpenBLAS overrides."""
    import os

    from threadpoolctl import threadpool_info

    libs = [f"{i.get('prefix')} ({i.get('internal_api')} {i.get('version')}) kernel "
            f"{i.get('architecture')}, {i.get('num_threads')} threads" for i in threadpool_info()
            if i.get("user_api") == "blas"]
    env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
           if k in os.environ}
    return "; ".join(libs) + (f"; environment {env}" if env else "; no OPENBLAS_* override")


def bench_meta(n_features: int, n_sites: int, repeats: int = 3) -> None:
    """Meta-analysis across sites: danemap vs statsmodels, and the whole per-site stage.

    1. Pooling: danemap ``random_effects`` (vectorised over features) against
       ``statsmodels.stats.meta_analysis.combine_effects`` called once per feature, both
       DerSimonian-Laird with the Hartung-Knapp variance, on the same per-site d's.
    2. The whole meta-analysis danemap runs (``site_meta_analysis``: the GLM within every
       site, exact CIs of every site d, REML pooling) on 50 participants per site; target
       under 1 s at 4,950 features x 20 sites.
    """
    import warnings

    from statsmodels.stats.meta_analysis import combine_effects

    from danemap.stats.meta import random_effects, site_meta_analysis

    rng = np.random.default_rng(3)
    per = 50
    n = n_sites * per
    P = pd.DataFrame({"site": np.repeat([f"s{i:02d}" for i in range(n_sites)], per),
                      "group": np.where(rng.random(n) < 0.5, "ADHD", "TD"),
                      "age": rng.uniform(7, 18, n), "sex": rng.choice(["M", "F"], n)},
                     index=[f"sub-{i:05d}" for i in range(n)])
    F = pd.DataFrame(rng.standard_normal((n, n_features)), index=P.index,
                     columns=[f"e{j}" for j in range(n_features)])
    y = rng.normal(0.1, 0.2, (n_sites, n_features))
    v = rng.uniform(0.02, 0.1, (n_sites, n_features))
    t_ours, _ = _median_time(lambda: random_effects(y, v, method="dl"), repeats)

    def reference() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for j in range(n_features):
                combine_effects(y[:, j], v[:, j], method_re="dl", use_t=True)

    t_ref, _ = _median_time(reference, 1)
    print(f"[meta pooling] {n_features} features x {n_sites} sites: danemap median "
          f"{t_ours * 1e3:.1f} ms, statsmodels combine_effects {t_ref:.2f} s")
    print(f"speed-up danemap vs statsmodels combine_effects: {t_ref / t_ours:.2f}x")
    t_all, times = _median_time(lambda: site_meta_analysis(F, P), repeats)
    print(f"[meta-analysis] {n_features} features x {n_sites} sites x {per} participants "
          f"(within-site GLMs, exact CIs, REML): median {t_all:.2f} s over {repeats} "
          f"({', '.join(f'{x:.2f}' for x in times)}); target < 1 s: "
          f"{'met' if t_all < 1 else 'NOT met'}")


def bench_combat(n: int, m: int, repeats: int) -> None:
    from neuroHarmonize import harmonizationLearn

    from danemap.stats.combat import ComBat

    X, site, group, age, sex = _data(n, m, seed=1)
    nh_cov = pd.DataFrame({"SITE": site, "age": age, "sex": sex, "group": group})
    cov = pd.DataFrame({"age": age, "sex": sex, "group": group})

    def run_nh():
        with contextlib.redirect_stdout(io.StringIO()):
            return harmonizationLearn(X, nh_cov)

    ours, _ = _median_time(lambda: ComBat().fit_transform(X, site, cov), repeats)
    ref, _ = _median_time(run_nh, repeats)
    diff = np.max(np.abs(ComBat().fit_transform(X, site, cov) - run_nh()[1]))
    print(f"[combat] n={n}, features={m}, 3 sites, parametric EB")
    print(f"  danemap ComBat: median {ours:.2f} s; neuroHarmonize harmonizationLearn: "
          f"median {ref:.2f} s (of {repeats})")
    print(f"  ratio neuroHarmonize / danemap: {ref / ours:.1f}x (target >= 1x); "
          f"max |difference| {diff:.1e}")


#: Analyses of the memory benchmark: what the group level runs on a connectivity table
#: (``danemap.pipeline``: harmonize, glm, permutation, nbs) plus symptom association.
MEMORY_ANALYSES = ("harmonize", "glm", "permutation", "nbs", "symptoms")

_MEMORY_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import danemap.stats.pipeline as pl
from danemap.config import StatsConfig

features, participants, out, n_perm = sys.argv[1:5]
analyses = sys.argv[5].split(",")
maxrss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
def mib():
    try:  # this process's own peak (Linux)
        with open("/proc/self/status") as fh:
            return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return maxrss()
import danemap.stats.combat, danemap.stats.glm, danemap.stats.multiple  # noqa: F401
import danemap.stats.symptoms  # noqa: F401
after_imports = mib()
steps = {}
for name, step in list(pl._STEPS.items()):
    def wrapped(run, _step=step, _name=name):
        steps.setdefault("load tables", mib())
        t0 = time.perf_counter()
        _step(run)
        steps[_name] = mib()
        steps[_name + "_s"] = time.perf_counter() - t0
    pl._STEPS[name] = wrapped
t0 = time.perf_counter()
res = pl.run_stats(features, participants, out, StatsConfig(n_permutations=int(n_perm)),
                   analyses=analyses)
s = res["summary"]
print(json.dumps({"peak_mib": mib(), "maxrss_mib": maxrss(),
                  "after_imports_mib": after_imports, "steps": steps,
                  "wall_s": time.perf_counter() - t0, "errors": s["errors"],
                  "status": {a: v["status"] for a, v in s["analyses"].items()},
                  "files": sorted(s["files"].values())}))
"""


def _memory_inputs(folder: Path, n: int, m: int) -> tuple[Path, Path]:
    """Write a connectivity-edge table and participants.tsv (4 sites, symptoms)."""
    from itertools import combinations

    from danemap.atlas import NETWORKS

    atlas = list(dict.fromkeys(r for net in NETWORKS.values() for e in net for r in e))
    k = int(np.ceil((1 + np.sqrt(1 + 8 * m)) / 2))  # regions giving >= m edges
    regions = (atlas + [f"Region{j:03d}" for j in range(k)])[:max(k, len(atlas))]
    edges = [f"{a}__{b}" for a, b in combinations(regions, 2)][:m]
    rng = np.random.default_rng(0)
    ids = [f"sub-{i:05d}" for i in range(n)]
    group = rng.choice(["ADHD", "TD"], n)
    site = rng.choice(["A", "B", "C", "D"], n)
    parts = pd.DataFrame({"participant_id": ids, "site": site, "group": group,
                          "age": rng.uniform(7, 18, n).round(2), "sex": rng.choice(["M", "F"], n),
                          **{s: rng.normal(50, 10, n).round(1)
                             for s in ("adhd_index", "inattentive", "hyperimpulsive")}})
    pp = folder / "participants.tsv"
    parts.to_csv(pp, sep="\t", index=False)
    fp = folder / "connectivity.tsv"
    with fp.open("w") as fh:  # in row blocks, so this parent process stays small
        fh.write("participant_id\t" + "\t".join(edges) + "\n")
        for start in range(0, n, 500):
            rows = ids[start:start + 500]
            block = np.tanh(rng.normal(0.2, 0.3, (len(rows), len(edges))))
            pd.DataFrame(block, index=rows).to_csv(fh, sep="\t", header=False,
                                                   float_format="%.7g")
    return fp, pp


def bench_memory(n: int, m: int, n_perm: int, analyses: tuple[str, ...]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fp, pp = _memory_inputs(Path(tmp), n, m)
        out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(fp), str(pp),
                              str(Path(tmp) / "out"), str(n_perm), ",".join(analyses)],
                             capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"memory benchmark failed:\n{out.stderr[-3000:]}")
        info = json.loads(out.stdout.strip().splitlines()[-1])
    data_mib = n * m * 8 / 2**20
    peak = info["peak_mib"]
    print(f"[memory] group stage, run_stats from the TSV files to the result files, on "
          f"{n} participants x {m} edges ({data_mib:.0f} MiB as float64)")
    print(f"  included: loading and joining the tables, {', '.join(analyses)} "
          f"({n_perm} permutations for the max-T test and the NBS), writing every TSV, "
          "JSON sidecar and summary.json")
    print("  not included: normative model and classification (the group level runs them on "
          "regional tables, not on connectivity edges)")
    status = ", ".join(f"{a} {v}" for a, v in info["status"].items())
    print(f"  status: {status}; wall {info['wall_s']:.0f} s")
    if info["errors"]:
        print(f"  ERRORS: {info['errors']}")
    steps = info["steps"]
    print(f"  peak RSS (cumulative) after imports {info['after_imports_mib']:.0f} MiB; "
          + "; ".join(f"after {k} {v:.0f} MiB" + (f" ({steps[k + '_s']:.0f} s)"
                                                  if k + "_s" in steps else "")
                      for k, v in steps.items() if not k.endswith("_s")))
    print(f"  peak RSS {peak:.0f} MiB (whole process) -> "
          f"{'under' if peak < 2048 else 'OVER'} the 2 GB target (ru_maxrss, which on Linux "
          f"also counts this benchmark's own RSS at the fork: {info['maxrss_mib']:.0f} MiB)")


def main(argv: list[str] | None = None) -> None:
    """Run the three benchmarks and print medians and ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="runs of danemap and neuroHarmonize")
    ap.add_argument("--n", type=int, default=1000, help="participants (permutation, ComBat)")
    ap.add_argument("--features", type=int, default=4950, help="features (all three)")
    ap.add_argument("--n-perm", type=int, default=5000,
                    help="permutations (permutation and memory benchmarks)")
    ap.add_argument("--nilearn-perms", type=int, default=None,
                    help="time nilearn on this many permutations and scale linearly to "
                         "--n-perm (default: run all --n-perm)")
    ap.add_argument("--nilearn-repeats", type=int, default=1, help="runs of nilearn")
    ap.add_argument("--memory-n", type=int, default=10_000,
                    help="participants of the memory benchmark")
    ap.add_argument("--memory-analyses", default=",".join(MEMORY_ANALYSES),
                    help="run_stats analyses of the memory benchmark (comma-separated)")
    ap.add_argument("--only", choices=["permutation", "meta", "combat", "memory"],
                    default=None)
    ap.add_argument("--quick", action="store_true",
                    help="small sizes for a smoke test (n 200, 500 features, 100 permutations,"
                         " memory on 1000 participants)")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats, args.n, args.features, args.n_perm = 1, 200, 500, 100
        args.memory_n = 1000
    nilearn_perms = args.n_perm if args.nilearn_perms is None else args.nilearn_perms
    analyses = tuple(a for a in args.memory_analyses.split(",") if a)
    if args.only in (None, "permutation"):
        bench_permutation(args.n, args.features, args.repeats, args.n_perm, nilearn_perms,
                          args.nilearn_repeats)
    if args.only in (None, "meta"):
        bench_meta(args.features, 20, args.repeats)
    if args.only in (None, "combat"):
        bench_combat(args.n, args.features, args.repeats)
    if args.only in (None, "memory"):
        bench_memory(args.memory_n, args.features, args.n_perm, analyses)


if __name__ == "__main__":
    main()
