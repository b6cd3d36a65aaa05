"""``danemap atlas OUT_DIR [--resolution {1,2,3}]``: write the DA/NE atlas files."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from danemap._utils.logging import get_logger

log = get_logger("atlas")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``atlas`` sub-command arguments to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The sub-command parser.
    """
    parser.description = (
        "Write the danemap DA/NE atlas (label image, region table, networks) into OUT_DIR."
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="output folder")
    parser.add_argument("--resolution", type=int, choices=[1, 2, 3], default=2,
                        help="MNI152 grid resolution in mm (default 2)")


def run(args: argparse.Namespace, config: Any) -> int:
    """Write the atlas files and print their paths.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments (``out_dir``, ``resolution``).
    config : danemap.config.Config
        The run configuration (unused: the flags decide).

    Returns
    -------
    int
        0 on success.
    """
    from danemap.atlas import write_atlas

    paths = write_atlas(args.out_dir, resolution=args.resolution)
    for key, path in paths.items():
        log.info("atlas %s: %s", key, path)
        print(path)
    return 0
