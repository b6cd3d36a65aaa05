"""BIDS-App command line: ``danemap BIDS_DIR OUT_DIR {participant,group}`` and sub-commands.

Sub-commands: ``demo``, ``simulate``, ``atlas``, ``stats``, ``slurm``. Every entry point is
reachable through :func:`main`, which returns an exit code and never calls
``sys.exit`` itself (so it is testable).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from danemap._version import __version__
from danemap.errors import DanemapError

__all__ = ["build_parser", "main"]

# sub-command -> module providing ``add_arguments(parser)`` and ``run(args, config) -> int``
SUBCOMMANDS = {
    "demo": "danemap.demo",
    "simulate": "danemap.simulate._cli",
    "atlas": "danemap.atlas._cli",
    "stats": "danemap.stats._cli",
    "report": "danemap.report._cli",
    "slurm": "danemap.engine._cli",
}


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=f"danemap {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more output (-v info, -vv debug)")
    parser.add_argument("--config", metavar="FILE.toml", default=None,
                        help="TOML configuration file (defaults < file < environment < flags)")


def build_bids_app_parser() -> argparse.ArgumentParser:
    """Return the parser of the BIDS-App form ``danemap BIDS_DIR OUT_DIR LEVEL``.

    Returns
    -------
    argparse.ArgumentParser
        Positional ``bids_dir``, ``output_dir``, ``analysis_level`` and grouped options.
    """
    p = argparse.ArgumentParser(
        prog="danemap",
        description="DopAmine/NorEpinephrine imaging markers of ADHD from a BIDS dataset. "
        "A research tool, not a diagnostic device. Sub-commands: "
        + ", ".join(SUBCOMMANDS) + " (see 'danemap SUBCOMMAND --help').",
    )
    p.add_argument("bids_dir", type=Path, help="the input BIDS dataset (never written to)")
    p.add_argument("output_dir", type=Path, help="outputs go to OUTPUT_DIR/danemap")
    p.add_argument("analysis_level", choices=["participant", "group"])
    g = p.add_argument_group("participant selection")
    g.add_argument("--participant-label", "--participant_label", nargs="+", default=None,
                   metavar="LABEL", help="participants to process ('01' or 'sub-01')")
    g.add_argument("--session-label", nargs="+", default=None, metavar="LABEL")
    g = p.add_argument_group("execution")
    g.add_argument("--n-jobs", type=int, default=None, help="parallel participants (local)")
    g.add_argument("--resolution", type=int, choices=[1, 2, 3], default=None,
                   help="grid (mm) of the atlas resampled onto each image (default 1)")
    g.add_argument("--atlas", default=None, metavar="danemap|LABELS.nii.gz",
                   help="'danemap' (the built-in DA/NE atlas, default) or a user label image "
                   "with its region table (same stem, .tsv) beside it")
    g.add_argument("--markers", nargs="+", default=None, metavar="FAMILY",
                   choices=["functional", "structural", "pet"],
                   help="marker families to run (default: every family, each on the data "
                   "it finds)")
    g.add_argument("-w", "--work-dir", default=None, metavar="DIR",
                   help="intermediate files (kept for a participant that fails; default: "
                   "the system temporary folder)")
    g = p.add_argument_group("functional")
    g.add_argument("--denoise-strategy", default=None,
                   choices=["simple", "scrubbing", "compcor", "custom"])
    g.add_argument("--fd-threshold", type=float, default=None)
    g = p.add_argument_group("structural")
    g.add_argument("--quick", action="store_const", const=True, default=None,
                   help="raw-T1w path: coarser registration, fewer iterations")
    g.add_argument("--structural-inputs", nargs="+", default=None, metavar="KIND",
                   choices=["aseg", "synthseg", "dseg", "t1w"],
                   help="structural inputs in order of preference (default: aseg synthseg "
                   "dseg t1w)")
    g = p.add_argument_group("PET/SPECT")
    g.add_argument("--pet-space", default=None, choices=["auto", "MNI", "native"],
                   help="whether PET images are already in MNI space (default: auto)")
    g.add_argument("--pet-template", default=None, metavar="TEMPLATE.nii.gz",
                   help="tracer template (MNI) for PET without a T1w")
    g.add_argument("--pet-reference", default=None, metavar="REGION",
                   help="reference region (occipital, cerebellum, caudate, a region name or "
                   "a mask); default: the tracer's")
    g.add_argument("--pvc", default=None, choices=["gtm", "rbv", "none"],
                   help="partial-volume correction reported beside the uncorrected values")
    _add_common(p)
    return p


def _subcommand_module(command: str) -> Any:
    return importlib.import_module(SUBCOMMANDS[command])


def build_parser(command: str) -> argparse.ArgumentParser:
    """Return the parser of one sub-command.

    Parameters
    ----------
    command : str
        A key of ``SUBCOMMANDS`` (``demo``, ``simulate``, ``atlas``, ``stats``, ``slurm``).

    Returns
    -------
    argparse.ArgumentParser
        The parser, with the common options and the sub-command's own.
    """
    p = argparse.ArgumentParser(prog=f"danemap {command}")
    _add_common(p)
    _subcommand_module(command).add_arguments(p)
    return p


def _run_subcommand(command: str, argv: list[str]) -> int:
    from danemap._utils.logging import setup_cli_logging
    from danemap.config import load_config

    args = build_parser(command).parse_args(argv)
    setup_cli_logging(args.verbose)
    config = load_config(args.config)
    return int(_subcommand_module(command).run(args, config))


def _run_bids_app(argv: list[str]) -> int:
    from danemap._utils.logging import get_logger, run_log, setup_cli_logging
    from danemap.config import load_config
    from danemap.io import check_output_not_in_input
    from danemap.pipeline import run_group, run_participant

    log = get_logger()

    args = build_bids_app_parser().parse_args(argv)
    setup_cli_logging(args.verbose)
    overrides = {
        "run": {
            "participant_label": args.participant_label,
            "session_label": args.session_label,
            "n_jobs": args.n_jobs,
            "resolution": args.resolution,
            # absolute, so SLURM tasks and Dask workers find it from any folder
            "atlas": (args.atlas if args.atlas in (None, "danemap")
                      else str(Path(args.atlas).resolve())),
        },
        "functional": {"strategy": args.denoise_strategy, "fd_threshold": args.fd_threshold},
        "structural": {"quick": args.quick, "inputs": args.structural_inputs},
        "pet": {"space": args.pet_space, "reference_region": args.pet_reference,
                "pvc": args.pvc,
                "template": None if args.pet_template is None
                else str(Path(args.pet_template).resolve())},
    }
    overrides["run"].update(markers=args.markers,
                            work_dir=None if args.work_dir is None
                            else str(Path(args.work_dir).resolve()))
    # refused before the run log is opened: nothing is ever written into the input
    check_output_not_in_input(args.bids_dir, args.output_dir)
    with run_log(args.output_dir, args.analysis_level, ["danemap", *argv]) as logfile:
        log.info("run log: %s", logfile)
        config = load_config(args.config, overrides=overrides)
        if args.analysis_level == "participant":
            return run_participant(args.bids_dir, args.output_dir, config, verbose=True)
        return run_group(args.bids_dir, args.output_dir, config, verbose=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the danemap command line and return its exit code.

    Parameters
    ----------
    argv : sequence of str or None
        Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns
    -------
    int
        0 on success; 1 when some participants, group tables or group analyses
        (permutation, normative, classify...) failed while the others completed (the
        failed ones are listed in the log, and for ``danemap stats`` on stderr); 2 on a
        usage, input or file-system error.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            return _run_subcommand(argv[0], argv[1:])
        return _run_bids_app(argv)
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        return int(exc.code) if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except (DanemapError, OSError) as exc:  # OSError: disk full, permission denied, ...
        from danemap._utils.logging import get_logger

        get_logger().error("%s", exc)
        print(f"danemap: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
