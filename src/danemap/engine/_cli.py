"""``danemap slurm BIDS_DIR OUT_DIR``: write a throttled SLURM array for the participant level."""

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
    parser.add_argument("bids_dir", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--participant-label", nargs="+", default=None, metavar="LABEL")
    parser.add_argument("--max-parallel", type=int, default=20, help="array throttle")
    parser.add_argument("--time", default="02:00:00")
    parser.add_argument("--mem", default="8G")
    parser.add_argument("--cpus", type=int, default=1)
    parser.add_argument("--partition", default=None)


def run(args: argparse.Namespace, config: Config) -> int:
    """Discover participants, write the array script and print how to submit it.

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
    from danemap.engine._slurm import write_slurm_array
    from danemap.io import check_output_not_in_input, discover

    check_output_not_in_input(args.bids_dir, args.output_dir)
    dataset = discover(args.bids_dir, participant_label=args.participant_label)
    script = write_slurm_array(
        args.bids_dir, args.output_dir, dataset.participants,
        max_parallel=args.max_parallel, time=args.time, mem=args.mem, cpus=args.cpus,
        partition=args.partition, config_file=args.config,
    )
    print(f"wrote {script}\nsubmit with: sbatch {script}")
    return 0
