"""Benchmark danemap.stats against the reference tools, in one run.

1. Max-T permutation: danemap ``permutation_test`` vs nilearn ``permuted_ols`` on
   n = 1000 participants x 4,950 edges, 5,000 permutations. nilearn is timed on fewer
   permutations (``--nilearn-perms``, default 500) and scaled linearly; the output says so.
2. ComBat: danemap ``ComBat.fit_transform`` vs ``neuroHarmonize.harmonizationLearn`` on the
   same data (3 sites, covariates age, sex, group).
3. Peak memory of the group stage (ComBat + case-control GLM + FDR + a chunked permutation
   batch) on 10,000 participants x 4,950 features, measured as ``ru_maxrss`` of a fresh
   subprocess (includes the interpreter and the data themselves).

Run: ``.venv/bin/python benchmarks/bench_stats.py [--repeats 3] [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import subprocess
import sys
import time

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


def bench_permutation(repeats: int, n_perm: int, nilearn_perms: int) -> None:
    from nilearn.mass_univariate import permuted_ols

    from danemap.stats.multiple import permutation_test

    n, m = 1000, 4950
    X, _site, group, age, sex = _data(n, m)
    conf = np.column_stack([age, sex])
    ours, times = _median_time(
        lambda: permutation_test(X, group, conf, n_permutations=n_perm, seed=0), repeats)
    ours32, _ = _median_time(
        lambda: permutation_test(X, group, conf, n_permutations=n_perm, seed=0,
                                 dtype=np.float32), repeats)
    nl_reps = max(1, min(repeats, 3))
    nl, _ = _median_time(
        lambda: permuted_ols(group[:, None], X, conf, n_perm=nilearn_perms, random_state=0,
                             two_sided_test=True, output_type="dict", verbose=0, n_jobs=1),
        nl_reps)
    nl_scaled = nl * n_perm / nilearn_perms
    print(f"[permutation] n={n}, features={m}, permutations={n_perm}, max-T, two-sided")
    print(f"  danemap float64: median {ours:.2f} s over {repeats} runs {np.round(times, 2)}")
    print(f"  danemap float32: median {ours32:.2f} s")
    print(f"  nilearn permuted_ols: {nl:.2f} s for {nilearn_perms} permutations (median of "
          f"{nl_reps}), scaled linearly to {n_perm}: {nl_scaled:.1f} s "
          f"({nl / nilearn_perms * 1000:.2f} s per 1000)")
    print(f"  ratio nilearn / danemap: float64 {nl_scaled / ours:.1f}x, "
          f"float32 {nl_scaled / ours32:.1f}x (target >= 10x)")


def bench_combat(repeats: int) -> None:
    from neuroHarmonize import harmonizationLearn

    from danemap.stats.combat import ComBat

    n, m = 1000, 4950
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


_MEMORY_CHILD = r"""
import json, resource, sys
import numpy as np, pandas as pd
from danemap.stats.combat import ComBat
from danemap.stats.glm import case_control
from danemap.stats.multiple import permutation_test
n, m = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
X = rng.standard_normal((n, m))
site = rng.choice(["A", "B", "C", "D"], n)
ids = [f"sub-{i}" for i in range(n)]
parts = pd.DataFrame({"participant_id": ids, "site": site,
                      "group": rng.choice(["ADHD", "TD"], n),
                      "age": rng.uniform(7, 18, n), "sex": rng.choice(["M", "F"], n)})
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
Xh = ComBat().fit_transform(X, site, parts[["age", "sex", "group"]])
del X
feats = pd.DataFrame(Xh, columns=[f"e{j}" for j in range(m)], copy=False)
del Xh
feats.insert(0, "participant_id", ids)
res = case_control(feats, parts, site=None)
g = (parts["group"] == "ADHD").to_numpy(float)
Y = feats.drop(columns="participant_id").to_numpy()
del feats
perm = permutation_test(Y, g, parts[["age"]].to_numpy(), n_permutations=100, seed=0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_mib": peak / 1024, "after_data_mib": base / 1024,
                  "rows": len(res)}))
"""


def bench_memory(n: int, m: int) -> None:
    out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(n), str(m)],
                         capture_output=True, text=True, check=True)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    data_mib = n * m * 8 / 2**20
    print(f"[memory] group stage (ComBat + case_control GLM + FDR + 100 permutations in "
          f"chunks) on {n} x {m}")
    print(f"  peak RSS {info['peak_mib']:.0f} MiB (process incl. interpreter; the float64 "
          f"data alone are {data_mib:.0f} MiB; RSS after creating data "
          f"{info['after_data_mib']:.0f} MiB) -> {'under' if info['peak_mib'] < 2048 else 'OVER'}"
          " the 2 GB target")


def main(argv: list[str] | None = None) -> None:
    """Run the three benchmarks and print medians and ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-perm", type=int, default=5000)
    ap.add_argument("--nilearn-perms", type=int, default=500)
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats, args.n_perm, args.nilearn_perms = 1, 200, 50
    bench_permutation(args.repeats, args.n_perm, args.nilearn_perms)
    bench_combat(args.repeats)
    bench_memory(2000 if args.quick else 10_000, 4950)


if __name__ == "__main__":
    main()
