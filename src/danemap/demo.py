"""``danemap demo``: simulate a small cohort, run every level that exists, summarise.

The demo is the end-to-end smoke test a new user runs first (``make demo``). It plants
known effects with :func:`danemap.simulate.simulate_cohort`, runs the BIDS-App
participant and group levels, and prints the recovered network effects, regional
volumes and DAT SBR next to the planted ones, then the paths of the outputs and the report.

Every participant has resting-state BOLD, a Monetary Incentive Delay run and DaTscan
SPECT; the raw-T1w structural path (ANTsPy registration, about 30-60 s per participant on
the ``--quick`` path) runs on ``--n-anat`` of them (default 6), balanced over sites, then
groups, so the demo stays a few minutes. The PVC is given the simulator's PSF (8 mm FWHM).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path
from typing import Any

from danemap.config import Config
from danemap.errors import InputError

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``danemap demo`` options to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The sub-command's parser.
    """
    parser.add_argument("--out", type=Path, default=Path("danemap-demo"),
                        help="folder for the simulated dataset and the outputs "
                        "(default ./danemap-demo)")
    parser.add_argument("--n-subjects", type=int, default=24,
                        help="simulated participants, ADHD and TD balanced within each site "
                        "(at least 3 per site)")
    parser.add_argument("--n-sites", type=int, default=2, help="simulated sites")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the simulation and of the statistics")
    parser.add_argument("--resolution", type=int, choices=[2, 3], default=3,
                        help="simulated BOLD/PET grid in mm (default 3, fast)")
    parser.add_argument("--n-volumes", type=int, default=150,
                        help="BOLD volumes per simulated run")
    parser.add_argument("--n-anat", type=int, default=6,
                        help="participants whose simulated T1w goes through the raw-T1w "
                        "structural path (quick mode; default 6, 0 for none)")
    parser.add_argument("--n-jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="parallel participants (default: 2, or 1 on a 1-core machine)")


def run(args: argparse.Namespace, config: Config) -> int:
    """Simulate the cohort, run the participant and group levels, print the summary.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``danemap demo`` options (see :func:`add_arguments`).
    config : Config
        Base configuration; the demo lowers the permutation counts.

    Returns
    -------
    int
        The worse of the participant and group levels' exit codes.

    Raises
    ------
    InputError
        If the cohort is too small for the statistics (under 3 participants per site).
    """
    from rich.console import Console

    from danemap.pipeline import run_group, run_participant
    from danemap.simulate import simulate_cohort

    if args.n_sites < 1 or args.n_subjects < 3 * args.n_sites:
        raise InputError(f"--n-subjects {args.n_subjects} with --n-sites {args.n_sites}: "
                         "expected at least 3 participants per site (ComBat refuses smaller "
                         "sites) and at least 1 site")

    console = Console(width=max(shutil.get_terminal_size((120, 24)).columns, 110))
    out = Path(args.out).resolve()
    bids = out / "bids"
    results = out / "results"
    # the demo owns OUT/bids and OUT/results: a previous demo is replaced whole (stale
    # results would be resumed against a new cohort); any other folder is refused
    previous = (bids / "ground_truth.json").is_file()
    if not previous and out.is_dir() and any(out.iterdir()):
        raise InputError(f"--out {out}: expected a new folder or a previous danemap demo "
                         "(with bids/ground_truth.json); found a folder with other contents")
    if previous:
        console.print(f"replacing the previous demo in {out}")
        shutil.rmtree(results, ignore_errors=True)
    console.print(f"[bold]danemap demo[/]: simulating {args.n_subjects} participants at "
                  f"{args.n_sites} sites into {bids}")
    simulate_cohort(bids, n_subjects=args.n_subjects, n_sites=args.n_sites, seed=args.seed,
                    resolution=args.resolution, n_volumes=args.n_volumes, verbose=True,
                    modalities=("anat", "func", "pet", "task"), overwrite=previous,
                    n_jobs=args.n_jobs,
                    # head pose, bias field and noise, with the truth measured on the
                    # atlas itself (the legacy T1w's truth is its own smoothed labels,
                    # whose caudate is a quarter smaller than the atlas')
                    anat_realistic=True)
    kept = _keep_anat(bids, args.n_anat)
    console.print(f"raw-T1w structural path (quick) on {len(kept)} participants: "
                  f"{', '.join(kept) or 'none'}")
    config = config.updated({"run": {"n_jobs": args.n_jobs},
                             # the demo's T1ws are the MNI152 template deformed and
                             # posed, with the atlas read on that template's grid as
                             # their truth: so it is read there too (no Colin27 map to
                             # compute)
                             "structural": {"quick": True, "atlas_space": "mni152"},
                             "pet": {"fwhm_mm": 8.0},
                             # the demo's classifiers: fewer label permutations and
                             # bootstrap draws than a study needs (nine tables to fit)
                             "stats": {"n_permutations": 1000, "classify_permutations": 5,
                                       "classify": {"n_bootstrap": 200},
                                       "seed": args.seed}})
    rc_part = run_participant(bids, results, config, verbose=True)
    rc_group = run_group(bids, results, config, verbose=True)
    small = _small_table_failures(results / "danemap" / "group", "volumes")
    if rc_group and small is not None:
        # the only failures are analyses of the volume table, whose 6 participants are too
        # few for them: expected in the demo, and said
        console.print(f"Volumes:   {', '.join(small)} need more than the {len(kept)} "
                      "participants the demo runs the raw-T1w path on (recorded as failed "
                      "in group/stats/volumes/summary.json)")
        rc_group = 0
    _print_summary(console, bids, results / "danemap")
    return max(rc_part, rc_group)


def _small_table_failures(group: Path, name: str) -> list[str] | None:
    """Return the failed analyses of table ``name`` when they are the run's only failures."""
    failures = group / "failures.json"
    if failures.is_file() and json.loads(failures.read_text()).get("tables"):
        return None
    if not any(group.parent.glob("sub-*.html")):  # the participant reports failed
        return None
    own: list[str] = []
    for summary in sorted(group.glob("stats/*/summary.json")):
        errors = json.loads(summary.read_text()).get("errors", {})
        if errors and summary.parent.name != name:
            return None
        if summary.parent.name == name:
            own = sorted(errors)
    # only the analyses a table of a few participants cannot support
    return own if own and set(own) <= {"permutation", "normative", "classify"} else None


def _keep_anat(bids: Path, n: int) -> list[str]:
    """Keep the simulated T1w of ``n`` participants, balanced over site x group; drop the rest.

    Returns the participants kept.
    """
    import pandas as pd

    parts = pd.read_csv(bids / "participants.tsv", sep="\t")
    # cells in (group, site) order, taken round robin: the sites stay balanced first
    cells = [list(g["participant_id"]) for _, g in parts.groupby(["group", "site"], sort=True)]
    order = [cell[k] for k in range(max(map(len, cells), default=0)) for cell in cells
             if k < len(cell)]
    kept = sorted(order[:max(n, 0)])
    for sub in parts["participant_id"]:
        if sub not in kept:
            shutil.rmtree(bids / sub / "anat", ignore_errors=True)
    return kept


def _print_summary(console: Any, bids: Path, root: Path) -> None:
    import pandas as pd
    from rich.table import Table

    truth = json.loads((bids / "ground_truth.json").read_text())
    planted = _planted_network_means(truth)
    stats_dir = root / "group" / "stats" / "networks"
    table = Table(title="Network scores, ADHD vs TD: measured (planted) mean Fisher z",
                  caption="d: the headline estimate (headline.tsv): the GLM after ComBat "
                          "with age, sex and site, or the per-site meta-analysis where the "
                          "site checks fail or the two disagree")
    for col in ("network", "n ADHD/TD", "ADHD", "TD", "d [95% CI]", "p", "source"):
        table.add_column(col, justify="left" if col == "network" else "right", no_wrap=True)
    if (stats_dir / "effects.tsv").exists() and (stats_dir / "headline.tsv").exists():
        eff = pd.read_csv(stats_dir / "effects.tsv", sep="\t", na_values="n/a")
        head = pd.read_csv(stats_dir / "headline.tsv", sep="\t",
                           na_values="n/a").set_index("feature")
        for row in eff.itertuples(index=False):
            name = str(row.feature)
            h = head.loc[name]
            truth_adhd, truth_td = planted.get(name, (float("nan"), float("nan")))
            table.add_row(
                name, f"{int(row.n_case)}/{int(row.n_control)}",
                f"{row.mean_case:.3f} ({truth_adhd:.3f})",
                f"{row.mean_control:.3f} ({truth_td:.3f})",
                f"{h.d:+.2f} [{h.d_ci_low:+.2f}, {h.d_ci_high:+.2f}]", f"{h.p:.3g}",
                f"{h.source}" + (" (disagree)" if str(h.agree) == "False" else ""),
            )
    console.print(table)
    nets = truth.get("functional", {}).get("networks", {})
    planted_d = ", ".join(f"{name} {info['cohens_d_latent']:+.2f}"
                          for name, info in sorted(nets.items())
                          if info.get("cohens_d_latent"))
    console.print(f"Planted: frontostriatal and LC-PFC coupling lower in ADHD (latent d: "
                  f"{planted_d or 'none'}, the simulator's realistic default); mesolimbic and "
                  "nigrostriatal unchanged. An effect this size is rarely significant in a "
                  "cohort this small: wide intervals are the honest answer, not a bug.")
    _print_volumes(console, truth, root)
    _print_pet(console, truth, root)
    _print_task(console, truth, root)
    console.print(f"Outputs:   {root}")
    report = root / "group" / "group_report.html"
    if report.exists():
        console.print(f"Report:    [bold]{report}[/]")
    pages = sorted(root.glob("sub-*.html"))
    if pages:
        console.print(f"Participant reports: {len(pages)} in {root} ({pages[0].name} ... "
                      f"{pages[-1].name})")
    console.print("danemap is a research tool, not a diagnostic device.")


def _print_volumes(console: Any, truth: dict[str, Any], root: Path) -> None:
    """Print the raw-T1w ICV accuracy and the striatal volume effects against the planted."""
    import numpy as np
    import pandas as pd

    from danemap.simulate._anat import group_difference_pct

    path = root / "group" / "volumes.tsv"
    if not path.is_file():
        console.print("Volumes:   none (no participant went through the structural path)")
        return
    vols = pd.read_csv(path, sep="\t", na_values="n/a").set_index("participant_id")
    parts = truth["participants"]
    anat = [s for s in vols.index if "anat" in parts.get(s, {})]
    icv = [vols.loc[s, "ICV"] / parts[s]["anat"]["icv_mm3"] - 1 for s in anat]
    striatal = [f"{r}_{h}" for r in ("Caudate", "Putamen", "NAcc") for h in "LR"
                if f"{r}_{h}" in vols.columns]
    err = [abs(vols.loc[s, r] / parts[s]["anat"]["volume_mm3"][r] - 1)
           for s in anat for r in striatal]
    groups = {s: parts[s]["group"] for s in anat}
    got = group_difference_pct({s: vols.loc[s] for s in anat}, groups, striatal)
    true = group_difference_pct({s: parts[s]["anat"]["volume_mm3"] for s in anat}, groups,
                                striatal)
    diff = f"striatal ADHD vs TD {got:+.1f}% (true {true:+.1f}%)"
    planted = truth.get("structural", {}).get("planted_cohens_d", {})
    head_path = root / "group" / "stats" / "volumes" / "headline.tsv"
    cells = []
    if head_path.is_file():
        head = pd.read_csv(head_path, sep="\t", na_values="n/a").set_index("feature")
        cells = [f"{r} d {head.loc[r, 'd']:+.2f} (planted {planted.get(r, 0.0):+.2f})"
                 for r in ("Caudate_L", "Putamen_L", "NAcc_L")
                 if r in head.index and np.isfinite(head.loc[r, "d"])]
    if not cells:
        cells = [f"no d: the GLM (group, age, sex, site, ICV) gave none on {len(vols)} "
                 "participants (the run log says why)"]
    console.print(f"Volumes:   raw T1w (quick) on {len(vols)} participants: ICV median |error| "
                  f"{np.median(np.abs(icv)):.1%}, striatal median |error| "
                  f"{np.median(err) if err else float('nan'):.1%}; {diff}; "
                  f"{'; '.join(cells)}. Registration errors in atlas volumes from a T1w are "
                  "as large as the effects sought (see the sidecar's Caution).")


def _print_pet(console: Any, truth: dict[str, Any], root: Path) -> None:
    """Print the putamen DAT SBR and its group difference, measured (GTM) and planted."""
    import numpy as np
    import pandas as pd

    path = root / "group" / "pet.tsv"
    if not path.is_file():
        console.print("DAT SBR:   none")
        return
    sbr = pd.read_csv(path, sep="\t", na_values="n/a").set_index("participant_id")
    parts = truth["participants"]
    adhd = np.array([parts[s]["group"] == "ADHD" for s in sbr.index])
    true = np.array([np.mean([parts[s]["pet"]["true_sbr"][f"Putamen_{h}"] for h in "LR"])
                     for s in sbr.index])
    put = sbr["putamen"].to_numpy()
    measured = 100 * (put[adhd].mean() / put[~adhd].mean() - 1)
    planted = 100 * (true[adhd].mean() / true[~adhd].mean() - 1)
    console.print(f"DAT SBR:   putamen (GTM PVC) median {np.median(put):.2f} (true "
                  f"{np.median(true):.2f}); ADHD vs TD {measured:+.1f}% (planted "
                  f"{planted:+.1f}%)")


def _print_task(console: Any, truth: dict[str, Any], root: Path) -> None:
    """Print the ventral-striatal MID contrast's headline d against the planted one."""
    import pandas as pd

    path = root / "group" / "stats" / "task_mid" / "headline.tsv"
    if not path.is_file():
        console.print("MID task:  none")
        return
    head = pd.read_csv(path, sep="\t", na_values="n/a").set_index("feature")
    planted = truth.get("task", {}).get("planted_d_nacc_gain_minus_neutral")
    cells = [f"{h} d {head.loc[f, 'd']:+.2f} [{head.loc[f, 'd_ci_low']:+.2f}, "
             f"{head.loc[f, 'd_ci_high']:+.2f}]"
             for h, f in (("L", "gain_minus_neutral__NAcc_L"), ("R", "gain_minus_neutral__NAcc_R"))
             if f in head.index]
    console.print(f"MID task:  ventral striatum (NAcc) gain - neutral anticipation, ADHD vs TD: "
                  f"{'; '.join(cells)} (planted d = "
                  f"{'n/a' if planted is None else -planted})")


def _planted_network_means(truth: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Return the expected (ADHD, TD) group-mean network scores the simulator recorded."""
    networks = truth.get("functional", {}).get("networks", {})
    out = {}
    for name, info in networks.items():
        means = info.get("expected_score_z_group_mean", {})
        adhd, td = (float("nan") if means.get(g) is None else float(means[g])
                    for g in ("ADHD", "TD"))
        out[name] = (adhd, td)
    return out
