"""``danemap slurm BIDS_DIR OUT_DIR``: a throttled SLURM array and a group job after it."""

from __future__ import annotations

import argparse
from pathlib import Path

from danemap.config import Config

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``danemap slurm`` options to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The sub-command's parser.
    """
    parser.description = (
        "Write OUTPUT_DIR/danemap/slurm/: a SLURM job array running the participant level "
        "(one task per participant, at most --max-parallel at once), a group-level job "
        "that depends on it, and submit.sh, which submits both. Resubmitting skips the "
        "participants already done. For a Dask cluster on SLURM (dask-jobqueue), use "
        "'danemap BIDS_DIR OUTPUT_DIR participant --dask-scheduler ADDRESS' instead.")
    parser.add_argument("bids_dir", type=Path, help="the input BIDS dataset (never written to)")
    parser.add_argument("output_dir", type=Path,
                        help="outputs go to OUTPUT_DIR/danemap; the scripts to "
                        "OUTPUT_DIR/danemap/slurm")
    g = parser.add_argument_group("participant tasks")
    g.add_argument("--participant-label", nargs="+", default=None, metavar="LABEL",
                   help="participants to submit ('01' or 'sub-01'; default: all)")
    g.add_argument("--max-parallel", type=int, default=20, metavar="K",
                   help="array throttle: tasks running at once (--array=1-N%%K)")
    g.add_argument("--time", default="02:00:00", help="wall-time limit of each task")
    g.add_argument("--mem", default="8G", help="memory of each task")
    g.add_argument("--cpus", type=int, default=1, help="CPUs of each task")
    g = parser.add_argument_group("group job")
    g.add_argument("--group-time", default="04:00:00", help="wall-time limit of the group job")
    g.add_argument("--group-mem", default="16G", help="memory of the group job")
    g.add_argument("--group-cpus", type=int, default=1, help="CPUs of the group job")
    g.add_argument("--group-dependency", choices=["afterany", "afterok"], default="afterany",
                   help="afterany: run the group level once every task has ended, on the "
                   "participants that succeeded; afterok: only if every task succeeded")
    g = parser.add_argument_group("both jobs")
    g.add_argument("--partition", default=None, help="SLURM partition (default: the cluster's)")
    g.add_argument("--account", default=None, help="SLURM account (default: the user's)")


def run(args: argparse.Namespace, config: Config) -> int:
    """Discover participants, write the scripts and print how to submit them.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed ``danemap slurm`` arguments.
    config : Config
        Effective configuration (unused beyond ``--config``, which every task receives).

    Returns
    -------
    int
        0 on success.
    """
    from danemap._utils.logging import SUMMARY, get_logger
    from danemap.engine._slurm import write_slurm_array
    from danemap.io import check_output_not_in_input, discover

    check_output_not_in_input(args.bids_dir, args.output_dir)
    dataset = discover(args.bids_dir, participant_label=args.participant_label)
    scripts = write_slurm_array(
        args.bids_dir, args.output_dir, dataset.participants,
        max_parallel=args.max_parallel, time=args.time, mem=args.mem, cpus=args.cpus,
        partition=args.partition, account=args.account, group_time=args.group_time,
        group_mem=args.group_mem, group_cpus=args.group_cpus,
        group_dependency=args.group_dependency, config_file=args.config,
    )
    get_logger("engine").log(SUMMARY, "slurm: %d participant tasks (at most %d at once) and "
                             "a group job (%s)", scripts.n_tasks, args.max_parallel,
                             args.group_dependency)
    print(f"wrote {scripts.array}\nwrote {scripts.group}\nwrote {scripts.submit}\n"
          f"submit with: bash {scripts.submit}")
    return 0
