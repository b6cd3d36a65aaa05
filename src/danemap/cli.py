"""BIDS-App command line: ``danemap BIDS_DIR OUT_DIR {participant,group}`` and sub-commands.

Sub-commands: ``demo``, ``simulate``, ``atlas``, ``stats``. Every entry point is
reachable through :func:`main`, which returns an exit code and never calls
``sys.exit`` itself (so it is testable).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from danemap._version import __version__
from danemap.errors import DanemapError

__all__ = ["build_parser", "main"]

SUBCOMMANDS = ("demo", "simulate", "atlas", "stats")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more output (-v info, -vv debug)")
    parser.add_argument("--config", metavar="FILE.toml", default=None,
                        help="TOML configuration file (defaults < file < environment < flags)")


def build_bids_app_parser() -> argparse.ArgumentParser:
    """Return the parser of the BIDS-App form ``danemap BIDS_DIR OUT_DIR LEVEL``."""
    p = argparse.ArgumentParser(
        prog="danemap",
        description="DopAmine/NorEpinephrine imaging markers of ADHD from a BIDS dataset. "
        "A research tool, not a diagnostic device. Sub-commands: "
        + ", ".join(SUBCOMMANDS) + " (see 'danemap SUBCOMMAND --help').",
    )
    p.add_argument("--version", action="version", version=f"danemap {__version__}")
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
                   help="atlas resolution in mm (default 2)")
    g = p.add_argument_group("functional")
    g.add_argument("--denoise-strategy", default=None,
                   choices=["simple", "scrubbing", "compcor", "custom"])
    g.add_argument("--fd-threshold", type=float, default=None)
    _add_common(p)
    return p


def build_parser(command: str) -> argparse.ArgumentParser:
    """Return the parser of one sub-command (``demo``, ``simulate``, ``atlas``, ``stats``)."""
    p = argparse.ArgumentParser(prog=f"danemap {command}")
    _add_common(p)
    if command == "demo":
        from danemap import demo

        demo.add_arguments(p)
    elif command == "simulate":
        from danemap.simulate import _cli as sim_cli

        sim_cli.add_arguments(p)
    elif command == "atlas":
        from danemap.atlas import _cli as atlas_cli

        atlas_cli.add_arguments(p)
    elif command == "stats":
        from danemap.stats import _cli as stats_cli

        stats_cli.add_arguments(p)
    else:  # pragma: no cover - guarded by main
        raise ValueError(command)
    return p


def _run_subcommand(command: str, argv: list[str]) -> int:
    from danemap._utils.logging import setup_cli_logging
    from danemap.config import load_config

    args = build_parser(command).parse_args(argv)
    setup_cli_logging(args.verbose)
    config = load_config(args.config)
    if command == "demo":
        from danemap import demo

        return demo.run(args, config)
    if command == "simulate":
        from danemap.simulate import _cli as sim_cli

        return sim_cli.run(args, config)
    if command == "atlas":
        from danemap.atlas import _cli as atlas_cli

        return atlas_cli.run(args, config)
    from danemap.stats import _cli as stats_cli

    return stats_cli.run(args, config)


def _run_bids_app(argv: list[str]) -> int:
    from danemap._utils.logging import setup_cli_logging
    from danemap.config import load_config
    from danemap.pipeline import run_group, run_participant

    args = build_bids_app_parser().parse_args(argv)
    setup_cli_logging(args.verbose)
    overrides = {
        "run": {
            "participant_label": args.participant_label,
            "session_label": args.session_label,
            "n_jobs": args.n_jobs,
            "resolution": args.resolution,
        },
        "functional": {"strategy": args.denoise_strategy, "fd_threshold": args.fd_threshold},
    }
    config = load_config(args.config, overrides=overrides)
    if args.analysis_level == "participant":
        return run_participant(args.bids_dir, args.output_dir, config)
    return run_group(args.bids_dir, args.output_dir, config)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the danemap command line and return its exit code.

    Parameters
    ----------
    argv : sequence of str or None
        Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns
    -------
    int
        0 on success, 1 when some participants failed, 2 on a usage or input error.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            return _run_subcommand(argv[0], argv[1:])
        return _run_bids_app(argv)
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        return int(exc.code) if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except DanemapError as exc:
        from danemap._utils.logging import get_logger

        get_logger().error("%s", exc)
        print(f"danemap: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
