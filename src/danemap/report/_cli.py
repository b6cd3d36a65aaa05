"""``danemap report OUT_DIR``: rebuild every report from the outputs alone (no recomputation).

Writes ``OUT_DIR/danemap/sub-XX.html`` for every participant and, when the group level has
run, ``OUT_DIR/danemap/group/group_report.html``; prints the paths.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from danemap._utils.logging import get_logger
from danemap.errors import InputError

__all__ = ["add_arguments", "derivatives_root", "run"]

log = get_logger("report")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``report`` sub-command arguments to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The sub-command parser.
    """
    parser.description = (
        "Rebuild the participant reports (OUT_DIR/danemap/sub-XX.html) and the group report "
        "(OUT_DIR/danemap/group/group_report.html) from the outputs alone, without "
        "recomputing anything.")
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path,
                        help="the output folder of the BIDS App (holding danemap/), or its "
                        "danemap/ folder itself")
    parser.add_argument("--participant-label", "--participant_label", nargs="+", default=None,
                        metavar="LABEL", help="only these participants ('01' or 'sub-01') "
                        "(default: all)")
    parser.add_argument("--skip-group", action="store_true",
                        help="do not rebuild the group report")
    parser.add_argument("--skip-participants", action="store_true",
                        help="do not rebuild the participant reports")


def derivatives_root(out_dir: str | Path) -> Path:
    """Return the danemap derivatives folder of an output folder.

    Parameters
    ----------
    out_dir : path-like
        ``OUT_DIR`` (holding ``danemap/``) or ``OUT_DIR/danemap``.

    Returns
    -------
    pathlib.Path
        The folder holding ``dataset_description.json`` / ``sub-*`` / ``group``.

    Raises
    ------
    InputError
        If neither the folder nor its ``danemap/`` holds danemap outputs.
    """
    out = Path(out_dir)
    for cand in (out / "danemap", out):
        if (cand / "dataset_description.json").is_file() or (cand / "group").is_dir() \
                or any(cand.glob("sub-*")):
            return cand
    raise InputError(f"danemap report: {out} holds no danemap outputs (expected "
                     f"{out / 'danemap'} with dataset_description.json, sub-*/ or group/)")


def run(args: argparse.Namespace, config: Any) -> int:
    """Rebuild the reports and print their paths.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments (``out_dir``, ``participant_label``, ``skip_group``,
        ``skip_participants``).
    config : danemap.config.Config
        The run configuration (unused: the reports read the outputs' own provenance).

    Returns
    -------
    int
        0 on success.

    Raises
    ------
    InputError
        If the folder holds no outputs, or a requested participant has none.
    """
    from danemap.report.group import write_group_report
    from danemap.report.participant import write_participant_report, write_participant_reports

    root = derivatives_root(args.out_dir)
    paths: list[Path] = []
    if not args.skip_participants:
        if args.participant_label:
            paths += [write_participant_report(root, label) for label in args.participant_label]
        elif any(root.glob("sub-*")) or (root / "logs" / "participant_status.tsv").is_file():
            paths += write_participant_reports(root)
        else:
            log.warning("danemap report: %s has no participant outputs", root)
    if not args.skip_group:
        if (root / "group").is_dir():
            paths.append(write_group_report(root / "group"))
        else:
            log.warning("danemap report: no group level outputs in %s (the group level has "
                        "not run); no group report", root)
    if not paths:
        raise InputError(f"danemap report: nothing to report in {root}")
    for path in paths:
        log.info("report: %s", path)
        print(path)
    return 0
