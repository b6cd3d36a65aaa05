"""``danemap simulate OUT_DIR ...``: write a simulated BIDS cohort."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from danemap._utils.logging import SUMMARY, get_logger
from danemap.simulate._cohort import MODALITIES

log = get_logger("simulate")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``simulate`` options to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The sub-command parser.
    """
    parser.description = ("Write a seeded synthetic BIDS cohort with planted ADHD effects "
                          "(fMRI coupling, DAT SPECT, regional volumes) and ground_truth.json.")
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR",
                        help="dataset root to write: a missing or empty folder, or a previous "
                        "simulation with --overwrite")
    parser.add_argument("--overwrite", action="store_true",
                        help="remove a previous simulation in OUT_DIR (a folder holding "
                        "ground_truth.json) first; a folder with other content is refused "
                        "even then")
    parser.add_argument("--n-jobs", type=int, default=1,
                        help="participants simulated at once in worker processes (default "
                        "1; the output does not depend on it)")
    g = parser.add_argument_group("cohort")
    g.add_argument("--n-subjects", type=int, default=24,
                   help="participants (>= 2), ADHD and TD balanced within each site")
    g.add_argument("--n-sites", type=int, default=2, help="sites (1 to --n-subjects)")
    g.add_argument("--seed", type=int, default=0,
                   help="master seed: the same seed writes identical files")
    g.add_argument("--resolution", type=int, choices=[2, 3], default=3,
                   help="grid of the BOLD and PET images in mm")
    g.add_argument("--anat-resolution", type=int, choices=[2, 3], default=2,
                   help="T1w/label grid in mm")
    g.add_argument("--anat-base", choices=["mni152", "colin27"], default="mni152",
                   help="T1w base brain: the MNI152 template or the real Colin27 T1 "
                   "(needs the Debian package mricron-data; adds head pose, bias field, "
                   "Rician noise and site contrast)")
    g.add_argument("--modalities", nargs="+", choices=list(MODALITIES), default=list(MODALITIES),
                   metavar="MODALITY",
                   help=f"what to simulate, of {', '.join(MODALITIES)} (default: all)")
    g.add_argument("--n-volumes", type=int, default=120, help="BOLD volumes per run")
    g.add_argument("--tr", type=float, default=2.0, help="BOLD repetition time (s)")
    g.add_argument("--dynamic-pet", action="store_true",
                   help="also write a dynamic FE-PE2I PET series (SRTM)")
    g.add_argument("--no-site-effects", dest="site_effects", action="store_false",
                   help="identity site scales and no site shifts (except --site-scale; "
                   "default: site effects drawn from the seed)")
    g = parser.add_argument_group("planted effects")
    g.add_argument("--effect-frontostriatal", type=float, default=None, metavar="Z",
                   help="ADHD - TD frontostriatal coupling, Fisher z (default -0.045, "
                   "a latent d of -0.3)")
    g.add_argument("--effect-lc-pfc", type=float, default=None, metavar="Z",
                   help="ADHD - TD LC-PFC coupling, Fisher z (default -0.045, a latent d "
                   "of -0.3)")
    g.add_argument("--effect-dat-pct", type=float, default=None, metavar="P",
                   help="ADHD - TD striatal DAT binding, percent (default -5)")
    g.add_argument("--effect-scale", type=float, default=None, metavar="S",
                   help="multiplies every planted structural Cohen's d (default 1)")
    g.add_argument("--site-scale", type=float, nargs="+", default=None, metavar="F",
                   help="multiplicative site effect: one factor per site on the measured "
                   "signal (BOLD intensity, SPECT counts, T1w intensity); default: drawn")


def run(args: argparse.Namespace, config: Any) -> int:
    """Run the ``simulate`` sub-command and print the dataset path (stdout).

    A one-line summary (participants, sites, modalities, where the ground truth is) is
    logged at :data:`~danemap._utils.logging.SUMMARY` level (stderr).

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments of :func:`add_arguments`.
    config : danemap.config.Config
        Effective configuration (unused: the simulator takes its settings from ``args``).

    Returns
    -------
    int
        0 on success.

    Raises
    ------
    InputError
        On an invalid option, or an ``OUT_DIR`` that is not empty (see ``--overwrite``).
    """
    from danemap.simulate._cohort import simulate_cohort
    from danemap.simulate._effects import SimulationEffects

    changes = {
        "fc_frontostriatal_z": args.effect_frontostriatal,
        "fc_lc_pfc_z": args.effect_lc_pfc,
        "dat_adhd_pct": args.effect_dat_pct,
        "effect_scale": args.effect_scale,
        "site_scale": None if args.site_scale is None else tuple(args.site_scale),
    }
    effects = dataclasses.replace(
        SimulationEffects(), **{k: v for k, v in changes.items() if v is not None}
    )
    out = simulate_cohort(
        args.out_dir, n_subjects=args.n_subjects, n_sites=args.n_sites, seed=args.seed,
        resolution=args.resolution,
        anat_resolution=args.anat_resolution, modalities=tuple(args.modalities),
        n_volumes=args.n_volumes, tr=args.tr, effects=effects,
        site_effects=args.site_effects, dynamic_pet=args.dynamic_pet,
        verbose=True, anat_base=args.anat_base, overwrite=args.overwrite,
        n_jobs=args.n_jobs,
    )
    log.log(SUMMARY, "simulate: %d participants at %d site(s), %s, written to %s (planted "
            "effects in %s)", args.n_subjects, args.n_sites, ", ".join(args.modalities), out,
            out / "ground_truth.json")
    print(out)
    return 0
