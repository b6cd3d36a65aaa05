"""Benchmark: danemap's ROI-level MID first level vs nilearn's voxel-wise FirstLevelModel.

Simulates N participants' MID runs on the 2 mm atlas grid (250 volumes, TR 2 s, a planted
NAcc gain response, fMRIPrep-style confounds; written as .nii.gz), then times per
participant, side by side in one run:

* danemap: ``process_task_run`` (events validated, confounds + censoring selected, region
  means streamed from the file, the ROI-level AR(1) GLM, three contrasts)
* nilearn: ``FirstLevelModel`` (Glover, cosine, AR(1), the same confounds) fitted to every
  brain voxel, the three contrasts computed, then averaged in the atlas regions
  (``NiftiLabelsMasker``)

and prints ``speed-up danemap vs nilearn FirstLevelModel: N.NNx`` (run it with 2 cores,
e.g. ``OMP_NUM_THREADS=2``).

Usage: ``python benchmarks/bench_task.py [--subjects 2]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path


def main() -> None:
    """Run the benchmark and print the per-participant times and their ratio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=2)
    args = ap.parse_args()

    from nilearn.glm.first_level import FirstLevelModel
    from nilearn.maskers import NiftiLabelsMasker

    from danemap.atlas import load_atlas
    from danemap.config import TaskConfig
    from danemap.markers.functional._confounds import read_confounds
    from danemap.markers.task import (
        parse_conditions,
        parse_contrasts,
        process_task_run,
        read_events,
        task_confounds,
    )
    from danemap.simulate._task import TaskSimParams, task_subject

    atlas = load_atlas(2)
    cfg = TaskConfig()
    params = TaskSimParams(n_trials=51)  # about 250 volumes at TR 2 s
    t_dm, t_nl, vols, agree = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i in range(args.subjects):
            sub = f"sub-{i + 1:02d}"
            task_subject(root, sub, {"group": "TD"}, {}, atlas, i, 0, params)
            func = root / "derivatives" / "fmriprep" / sub / "func"
            bold = next(func.glob("*_desc-preproc_bold.nii.gz"))
            conf = func / f"{sub}_task-mid_desc-confounds_timeseries.tsv"
            mask = next(func.glob("*_desc-brain_mask.nii.gz"))
            events = root / sub / "func" / f"{sub}_task-mid_events.tsv"

            t0 = time.perf_counter()
            run = process_task_run(bold, conf, events, atlas, cfg, mask=mask)
            t_dm.append(time.perf_counter() - t0)
            vols.append(int(run.qc["n_volumes"]))

            t0 = time.perf_counter()
            n_t = vols[-1]
            ev = read_events(events, n_t, 2.0, parse_conditions(cfg.conditions), cfg.ignore)
            sel = task_confounds(read_confounds(conf), cfg, None)
            flm = FirstLevelModel(t_r=2.0, mask_img=str(mask), noise_model="ar1",
                                  hrf_model="glover", drift_model="cosine", n_jobs=1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                flm.fit(str(bold), events=ev[["onset", "duration", "trial_type"]],
                        confounds=sel.confounds,
                        sample_masks=None if sel.sample_mask is None else [sel.sample_mask])
                masker = NiftiLabelsMasker(atlas.img, strategy="mean").fit()
                means = {}
                for name, w in parse_contrasts(cfg.contrasts).items():
                    expr = " + ".join(f"{v:+g}*{c}" for c, v in w.items()).replace("+-", "-")
                    img = flm.compute_contrast(expr, output_type="effect_size")
                    means[name] = masker.transform(img).ravel()
            t_nl.append(time.perf_counter() - t0)
            g = run.table[run.table["contrast"] == "gain_minus_neutral"].set_index("region")
            idx = [str(n) for n in atlas.names].index("NAcc_L")
            agree.append((g.loc["NAcc_L", "effect"], means["gain_minus_neutral"][idx]))
    dm, nl = statistics.median(t_dm), statistics.median(t_nl)
    print(f"participants: {args.subjects}, volumes: {vols}, 2 mm grid")
    print(f"danemap ROI-level path (per participant): {dm:8.2f} s")
    print(f"nilearn voxel-wise FirstLevelModel + ROI averaging: {nl:8.2f} s")
    for roi, vox in agree:
        print(f"NAcc_L gain-neutral: ROI-level {roi:.4f}, voxel-wise averaged {vox:.4f} "
              f"(differ by the AR(1) whitening and per-voxel scaling)")
    print(f"speed-up danemap vs nilearn FirstLevelModel: {nl / dm:.2f}x")


if __name__ == "__main__":
    main()
