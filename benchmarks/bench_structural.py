"""Benchmark the raw-T1w structural path (ANTsPy) at 1 mm on 2 threads: full and quick.

Input: the real Colin27 T1 (``/usr/share/mricron/templates/ch2.nii.gz``, Debian
mricron-data, 1 mm, 181 x 217 x 181) turned by 6 degrees and shifted by 5 mm, so the
registration is not the identity. Each mode runs in its own process so that its peak
memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, ANTs runs in-process) is its own.

Targets: full <= 5 min, quick <= 90 s, peak memory <= 4 GB per subject.

The atlas is read through Colin27 (``atlas_space="colin27"``, see
:mod:`danemap.markers.structural._ants`): the Colin27 -> MNI152 map is computed once per
machine and cached; the benchmark computes it first, in a fresh cache folder, and prints
that one-time cost on its own line; the per-subject times then read it from the cache.

Run: ``.venv/bin/python benchmarks/bench_structural.py`` (both modes) or
``... --mode quick``.

``--validate {colin27,mni152} [--n 4] [--full] [--atlas-space SPACE]`` instead runs the
planted-truth check of ``tests/markers/structural/test_ants.py`` on a simulated 2 mm
cohort with that base brain (head pose, bias field, Rician noise, site contrast) and
prints, per participant, the median |error| of the listed regions and the ICV error, and
the recovered vs planted striatal group difference (for the MNI152-base comparison that the
test budget leaves out).

``--tracking [--plant -0.10] [--seed 5] [--full]`` measures how much of a planted local
volume change the registration follows, with the noise of a group comparison removed: one
Colin27-based participant is simulated twice with the same seed (so the same head pose,
bias field and noise), its six striatal regions' log volume factors set to ``--plant`` and
to 0; per region it prints recovered log ratio / true log ratio (1 = followed fully).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "2")

COLIN27 = Path("/usr/share/mricron/templates/ch2.nii.gz")
FASTSURFER_CPU_S = 90 * 60.0  # published anchor, not a measured run
FREESURFER_S = 7 * 3600.0  # published anchor (6-8 h), not a measured run


def _posed_input(folder: Path) -> Path:
    import nibabel as nib
    import numpy as np

    from danemap.simulate._common import resample_to_grid

    img = nib.load(COLIN27)
    a = np.deg2rad(6.0)
    world = np.eye(4)
    world[:3, :3] = [[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]
    world[:3, 3] = (5.0, -3.0, 2.0)
    data = resample_to_grid(np.asarray(img.dataobj), world @ img.affine, img.shape,
                            img.affine, order=1)
    path = folder / "sub-colin_T1w.nii.gz"
    nib.save(nib.Nifti1Image(data.astype(np.float32), img.affine), path)
    return path


def _one(mode: str) -> dict[str, object]:
    from danemap.atlas import load_atlas
    from danemap.markers.structural._ants import segment_t1w

    with tempfile.TemporaryDirectory() as tmp:
        path = _posed_input(Path(tmp))
        atlas = load_atlas(1)
        t0 = time.perf_counter()
        res = segment_t1w(path, atlas, quick=(mode == "quick"), work_dir=tmp)
        wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return {"mode": mode, "wall_s": wall, "peak_bytes": peak, "timings": res.timings,
            "qc": {k: v for k, v in res.qc.items() if k != "flags"}, "flags": res.qc["flags"]}


def _map() -> dict[str, object]:
    from danemap.markers.structural._ants import colin27_map

    t0 = time.perf_counter()
    colin27_map()
    return {"wall_s": time.perf_counter() - t0}


LISTED = ("Caudate_L", "Caudate_R", "Putamen_L", "Putamen_R", "NAcc_L", "NAcc_R",
          "DLPFC_L", "DLPFC_R", "Cerebellum_L", "Cerebellum_R")
STRIATAL = LISTED[:6]


def _validate(base: str, n: int, quick: bool, space: str, n_jobs: int) -> None:
    import numpy as np
    import pandas as pd

    from danemap.config import Config
    from danemap.pipeline import run_participant
    from danemap.simulate import SimulationEffects, simulate_cohort
    from danemap.simulate._anat import group_difference_pct

    # one ITK thread per worker (deterministic, and the workers share the cores)
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = "1"
    eff = SimulationEffects(effect_scale=35.0, vol_subject_sd=0.02, icv_sd=0.03)
    with tempfile.TemporaryDirectory() as tmp:
        root = simulate_cohort(Path(tmp) / "ds", n_subjects=n, n_sites=1, seed=11,
                               modalities=("anat",), effects=eff, anat_base=base,
                               anat_realistic=True)
        truth = json.loads((root / "ground_truth.json").read_text())["participants"]
        cfg = Config().updated({
            "run": {"n_jobs": n_jobs, "resolution": 2, "markers": ["structural"],
                    "work_dir": str(Path(tmp) / "work")},
            "structural": {"quick": quick, "atlas_space": space}})
        t0 = time.perf_counter()
        if run_participant(root, Path(tmp) / "out", cfg) != 0:
            raise SystemExit("the participant level failed")
        print(f"{n} participants in {time.perf_counter() - t0:.0f} s ({n_jobs} workers)")
        got: dict[str, dict[str, float]] = {}
        for sub, p in truth.items():
            f = (Path(tmp) / "out" / "danemap" / sub / "anat"
                 / f"{sub}_atlas-danemap_desc-volumes_stats.tsv")
            tab = pd.read_csv(f, sep="\t").set_index("region")["volume_mm3"]
            got[sub] = {r: float(tab[r]) for r in LISTED}
            err = [got[sub][r] / p["anat"]["volume_mm3"][r] - 1.0 for r in LISTED]
            icv = float(tab["ICV"]) / p["anat"]["icv_mm3"] - 1.0
            med = 100 * np.median(np.abs(err))
            print(f"{base} {sub} ({p['group']}): median |error| {med:.2f} %"
                  f", ICV error {100 * icv:+.2f} %, per region "
                  + " ".join(f"{r} {100 * e:+.1f}" for r, e in zip(LISTED, err, strict=True)),
                  flush=True)

    groups = {s: p["group"] for s, p in truth.items()}
    planted = group_difference_pct({s: p["anat"]["volume_mm3"] for s, p in truth.items()},
                                   groups, STRIATAL)
    recovered = group_difference_pct(got, groups, STRIATAL)
    mode = "quick" if quick else "full"
    print(f"{base} (atlas space {space}, {mode} mode): striatal ADHD vs TD difference "
          f"planted {planted:+.2f} %, recovered {recovered:+.2f} % (difference "
          f"{recovered - planted:+.2f} pp)")


def _tracking_one(plant: str, *, folder: str, seed: int, log_factor: float,
                  quick: bool) -> dict[str, dict[str, float]]:
    import nibabel as nib

    from danemap.atlas import load_atlas
    from danemap.markers.structural._ants import segment_t1w
    from danemap.simulate import SimulationEffects
    from danemap.simulate._anat import realistic_t1w_arrays

    atlas = load_atlas(2)
    factors = {n: 0.0 for n in atlas.regions["name"]}
    factors.update({r: (log_factor if plant == "planted" else 0.0) for r in STRIATAL})
    t1, _, affine, truth = realistic_t1w_arrays(atlas, seed, "TD", SimulationEffects(),
                                                base="colin27", log_volume_factors=factors)
    path = Path(folder) / f"{plant}_T1w.nii.gz"
    nib.save(nib.Nifti1Image(t1, affine), path)
    tab = segment_t1w(path, atlas, quick=quick, work_dir=folder,
                      atlas_space="colin27").volumes.table.set_index("region")
    return {"got": {r: float(tab.loc[r, "volume_mm3"]) for r in STRIATAL},
            "true": {r: float(truth["volume_mm3"][r]) for r in STRIATAL}}


def _tracking(seed: int, log_factor: float, quick: bool) -> None:
    import functools

    import numpy as np

    from danemap.engine import run_many
    from danemap.markers.structural._ants import colin27_map

    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = "1"
    colin27_map()  # cached: computed at most once, before the two workers start
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        runs = run_many(functools.partial(_tracking_one, folder=tmp, seed=seed,
                                          log_factor=log_factor, quick=quick),
                        ["planted", "unchanged"], n_jobs=2, verbose=False)
        wall = time.perf_counter() - t0
    if any(o.status != "ok" for o in runs):
        raise SystemExit("; ".join(o.error for o in runs if o.error))
    a, b = runs[0].result, runs[1].result
    track = [np.log(a["got"][r] / b["got"][r]) / np.log(a["true"][r] / b["true"][r])
             for r in STRIATAL]
    print(f"tracking ({'quick' if quick else 'full'} mode, seed {seed}, planted log factor "
          f"{log_factor:+.2f}, {wall:.0f} s with 2 workers): "
          + " ".join(f"{r} {t:.2f}" for r, t in zip(STRIATAL, track, strict=True))
          + f"; mean {np.mean(track):.2f}")
    print("unchanged participant's errors: " + " ".join(
        f"{r} {100 * (b['got'][r] / b['true'][r] - 1):+.1f} %" for r in STRIATAL))


def main() -> int:
    """Run the benchmark and print the per-subject wall time and peak memory."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["full", "quick", "both", "map"], default="both")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--validate", choices=["colin27", "mni152"], default=None)
    ap.add_argument("--n", type=int, default=4, help="participants of --validate")
    ap.add_argument("--full", action="store_true",
                    help="--validate and --tracking in full mode")
    ap.add_argument("--n-jobs", type=int, default=2, help="--validate: workers")
    ap.add_argument("--atlas-space", choices=["auto", "colin27", "mni152"], default="auto",
                    help="--validate: where the atlas is read")
    ap.add_argument("--tracking", action="store_true",
                    help="measure the fraction of a planted local change followed")
    ap.add_argument("--plant", type=float, default=-0.10,
                    help="--tracking: striatal log volume factor planted")
    ap.add_argument("--seed", type=int, default=5, help="--tracking: simulation seed")
    args = ap.parse_args()
    if args.tracking:
        _tracking(args.seed, args.plant, not args.full)
        return 0
    if args.validate is not None:
        _validate(args.validate, args.n, not args.full, args.atlas_space, args.n_jobs)
        return 0
    if not COLIN27.is_file():
        print(f"{COLIN27} missing: install the Debian package mricron-data")
        return 1
    if args.child:
        print(json.dumps(_map() if args.mode == "map" else _one(args.mode)))
        return 0
    modes = ["quick", "full"] if args.mode == "both" else [args.mode]
    print(f"raw-T1w path, Colin27 1 mm (181x217x181), "
          f"{os.environ['ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS']} ITK threads")
    cache = tempfile.TemporaryDirectory()
    os.environ["DANEMAP_CACHE_DIR"] = cache.name  # the one-time map, measured here
    out = subprocess.run([sys.executable, __file__, "--mode", "map", "--child"],
                         check=True, capture_output=True, text=True).stdout
    print(f"Colin27 atlas-space map, once per machine: "
          f"{json.loads(out.strip().splitlines()[-1])['wall_s']:.1f} s")
    for mode in modes:
        out = subprocess.run([sys.executable, __file__, "--mode", mode, "--child"],
                             check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in r["timings"].items())
        target = 90.0 if mode == "quick" else 300.0
        print(f"{mode:5s}: {r['wall_s']:.1f} s per subject (target <= {target:.0f} s), "
              f"peak memory {r['peak_bytes'] / 2**30:.2f} GiB (target <= 4 GB)")
        print(f"       steps: {steps}")
        print(f"       qc: {r['qc']} flags {r['flags']}")
        print(f"       speed-up danemap {mode} vs FastSurfer (CPU, 90 min published anchor, "
              f"not a measured run): {FASTSURFER_CPU_S / r['wall_s']:.1f}x")
        print(f"       speed-up danemap {mode} vs FreeSurfer (6-8 h published anchor, 7 h, "
              f"not a measured run): {FREESURFER_S / r['wall_s']:.0f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
