"""BIDS-App command line: ``danemap BIDS_DIR OUT_DIR {participant,group}`` and sub-commands.

Sub-commands: ``demo``, ``simulate``, ``atlas``, ``stats``, ``slurm``. Every entry point is
reachable through :func:`main`, which returns an exit code and never calls
``sys.exit`` itself (so it is testable).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import textwrap
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


#: The exit codes, shown at the end of every ``--help``.
EXIT_CODES = (
    "exit codes:\n"
    "  0  success\n"
    "  1  partial: some participants, group tables or analyses failed while the others "
    "completed (each failure is logged on stderr and recorded in the outputs)\n"
    "  2  usage or input error, or nothing done (every participant failed)\n"
    "\n"
    "Messages go to stderr, one line each with an ISO-8601 UTC time: by default summaries, "
    "warnings and errors (-q: warnings and errors only; -v adds info; -vv debug). stdout "
    "holds only the command's output (paths, tables), so it can be piped. Each BIDS-App "
    "level also writes its full run log to OUTPUT_DIR/danemap/logs/.")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help with every option's default, and descriptions and epilogs kept line by line.

    A default is appended as ``(default: X)`` unless the help text already names it, or
    the default is ``None`` / ``False`` (flags, and options whose default comes from the
    configuration, which their help text names).
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("%(default)" in text or "default" in text.lower()
                or any(action.default is v for v in (None, False, argparse.SUPPRESS))
                or not (action.option_strings
                        or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))):
            return text
        return text + " (default: %(default)s)"

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines = []
        for line in text.splitlines():
            if not line.strip():
                lines.append("")
                continue
            body = line.lstrip()
            pad = indent + line[: len(line) - len(body)]
            more = "   " if len(pad) > len(indent) else ""  # an indented item: hang
            lines.append(textwrap.fill(body, width, initial_indent=pad,
                                       subsequent_indent=pad + more))
        return "\n".join(lines)


def config_default(key: str) -> str:
    """Return the built-in default of a configuration key as help text shows it.

    Parameters
    ----------
    key : str
        Dotted key, e.g. ``"functional.strategy"`` or ``"stats.nbs.threshold"``.

    Returns
    -------
    str
        The value (a list space-separated; ``''`` shown as ``none``).
    """
    from danemap.config import Config

    value: Any = Config()
    for part in key.split("."):
        value = getattr(value, part)
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value) or "none"
    if value == "":
        return "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _positive(kind: type[int] | type[float]) -> Any:
    """Return an argparse ``type`` accepting a number > 0 (``kind``: int or float)."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__} > 0, found "
                                             f"{text!r}") from None
        if not value > 0 or value != value:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__} > 0, found {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _add_common(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("output and configuration")
    g.add_argument("--version", action="version", version=f"danemap {__version__}",
                   help="print the version and exit")
    g.add_argument("-v", "--verbose", action="count", default=0,
                   help="more messages on stderr: -v adds info, -vv debug (default: "
                   "summaries, warnings and errors)")
    g.add_argument("-q", "--quiet", action="store_true",
                   help="only warnings and errors on stderr (wins over -v)")
    g.add_argument("--config", metavar="FILE.toml", default=None,
                   help="TOML configuration file (defaults < file < environment < flags; "
                   "default: none)")


def build_bids_app_parser() -> argparse.ArgumentParser:
    """Return the parser of the BIDS-App form ``danemap BIDS_DIR OUT_DIR LEVEL``.

    Returns
    -------
    argparse.ArgumentParser
        Positional ``bids_dir``, ``output_dir``, ``analysis_level`` and grouped options.
    """
    from danemap.markers.base import BUILTIN_FAMILIES

    d = config_default
    p = argparse.ArgumentParser(
        prog="danemap", formatter_class=HelpFormatter, epilog=EXIT_CODES,
        description="DopAmine/NorEpinephrine imaging markers of ADHD from a BIDS dataset. "
        "A research tool, not a diagnostic device. Sub-commands: "
        + ", ".join(SUBCOMMANDS) + " (see 'danemap SUBCOMMAND --help'). Defaults of the "
        "options below are the built-in configuration's; a --config file or the "
        "DANEMAP_* environment changes them.",
    )
    p.add_argument("bids_dir", type=Path, help="the input BIDS dataset (never written to)")
    p.add_argument("output_dir", type=Path, help="outputs go to OUTPUT_DIR/danemap")
    p.add_argument("analysis_level", choices=["participant", "group"],
                   help="participant: markers of each participant; group: statistics over "
                   "the participants' outputs")
    g = p.add_argument_group("participant selection")
    g.add_argument("--participant-label", "--participant_label", nargs="+", default=None,
                   metavar="LABEL",
                   help="participants to process ('01' or 'sub-01'; default: all)")
    g.add_argument("--session-label", "--session_label", nargs="+", default=None,
                   metavar="LABEL", help="sessions to process ('1' or 'ses-1'; default: all)")
    g = p.add_argument_group("inputs")
    g.add_argument("--derivatives", action="append", type=Path, default=None, metavar="PATH",
                   help="a derivative dataset (e.g. fMRIPrep output stored outside BIDS_DIR) "
                   "searched for preprocessed inputs; repeatable, the first to provide a "
                   "file wins (default: the derivatives found in BIDS_DIR)")
    g.add_argument("--atlas", default=None, metavar="danemap|LABELS.nii.gz",
                   help="'danemap' (the built-in DA/NE atlas) or a user label image "
                   "with its region table (same stem, .tsv) beside it (default: "
                   f"{d('run.atlas')})")
    g.add_argument("--resolution", type=int, choices=[1, 2, 3], default=None,
                   help="grid (mm) of the atlas resampled onto each image (default: "
                   f"{d('run.resolution')})")
    g.add_argument("--markers", nargs="+", default=None, metavar="FAMILY",
                   choices=list(BUILTIN_FAMILIES),
                   help=f"marker families to run, of {', '.join(BUILTIN_FAMILIES)} "
                   "(default: every family, each on the data it finds)")
    g = p.add_argument_group("execution")
    g.add_argument("--n-jobs", type=_positive(int), default=None, metavar="N",
                   help=f"participants processed in parallel (default: {d('run.n_jobs')})")
    g.add_argument("--dask-scheduler", default=None, metavar="ADDRESS",
                   help="run the participants on an existing Dask cluster, e.g. "
                   "tcp://HOST:8786 (dask-jobqueue on SLURM/PBS/SGE); default: the local "
                   "process pool")
    g.add_argument("--memory-limit", type=_positive(float), default=None, metavar="GIB",
                   help="memory limit per worker in GiB; a worker exceeding it is stopped and "
                   "its participant marked failed (default: no limit)")
    g.add_argument("-w", "--work-dir", default=None, metavar="DIR",
                   help="intermediate files (kept for a participant that fails; default: "
                   "the system temporary folder)")
    g = p.add_argument_group("functional")
    g.add_argument("--denoise-strategy", default=None,
                   choices=["simple", "scrubbing", "compcor", "custom"],
                   help="confound strategy of the resting-state denoising (default: "
                   f"{d('functional.strategy')})")
    g.add_argument("--fd-threshold", type=_positive(float), default=None, metavar="MM",
                   help="framewise displacement (mm) above which a volume is scrubbed "
                   f"(scrubbing strategy; default: {d('functional.fd_threshold')})")
    g.add_argument("--repetition-time", type=_positive(float), default=None, metavar="SECONDS",
                   help="repetition time that overrides the BOLD header and sidecar, for "
                   "files whose two disagree (default: read from the files)")
    g.add_argument("--allow-missing-confounds", action="store_const", const=True,
                   default=None,
                   help="accept a run without its confounds file; the run is flagged "
                   "(qc_exclude) so the group level leaves it out (default: a missing "
                   "confounds file is an error)")
    g = p.add_argument_group("structural")
    g.add_argument("--quick", action="store_const", const=True, default=None,
                   help="raw-T1w path: coarser registration, fewer iterations (default: "
                   "off)")
    g.add_argument("--atlas-space", default=None, choices=["auto", "colin27", "mni152"],
                   help="raw-T1w path: read the atlas through Colin27, where AAL3 was drawn "
                   "(needs mricron-data), or on the MNI152 grid directly (default: "
                   f"{d('structural.atlas_space')}: colin27 when installed)")
    g.add_argument("--structural-inputs", nargs="+", default=None, metavar="KIND",
                   choices=["aseg", "synthseg", "dseg", "t1w"],
                   help="structural inputs in order of preference (default: "
                   f"{d('structural.inputs')})")
    g = p.add_argument_group("PET/SPECT")
    g.add_argument("--pet-space", default=None, choices=["auto", "MNI", "native"],
                   help="whether PET images are already in MNI space (default: "
                   f"{d('pet.space')})")
    g.add_argument("--pet-template", default=None, metavar="TEMPLATE.nii.gz",
                   help="tracer template (MNI) for PET without a T1w (default: none)")
    g.add_argument("--pet-reference", default=None, metavar="REGION",
                   help="reference region (occipital, cerebellum, caudate, a region name or "
                   "a mask); default: the tracer's")
    g.add_argument("--pvc", default=None, choices=["gtm", "rbv", "none"],
                   help="partial-volume correction reported beside the uncorrected values "
                   f"(default: {d('pet.pvc')})")
    _add_common(p)
    return p


def _subcommand_module(command: str) -> Any:
    return importlib.import_module(SUBCOMMANDS[command])


def build_parser(command: str) -> argparse.ArgumentParser:
    """Return the parser of one sub-command.

    Parameters
    ----------
    command : str
        A key of ``SUBCOMMANDS`` (``demo``, ``simulate``, ``atlas``, ``stats``, ``report``,
        ``slurm``).

    Returns
    -------
    argparse.ArgumentParser
        The parser, with the common options and the sub-command's own; its help shows
        every default and ends with the exit codes.
    """
    p = argparse.ArgumentParser(prog=f"danemap {command}", formatter_class=HelpFormatter,
                                epilog=EXIT_CODES)
    _add_common(p)
    _subcommand_module(command).add_arguments(p)
    return p


def _run_subcommand(command: str, args: argparse.Namespace) -> int:
    from danemap.config import load_config

    config = load_config(args.config)
    return int(_subcommand_module(command).run(args, config))


def _bids_app_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Return the configuration overrides of the BIDS-App flags (``None``: not given)."""

    def absolute(path: Any) -> str | None:
        return None if path is None else str(Path(path).resolve())

    run: dict[str, Any] = {
        "participant_label": args.participant_label,
        "session_label": args.session_label,
        "n_jobs": args.n_jobs,
        "resolution": args.resolution,
        # absolute, so SLURM tasks and Dask workers find them from any folder
        "atlas": args.atlas if args.atlas in (None, "danemap") else absolute(args.atlas),
        "markers": args.markers,
        "work_dir": absolute(args.work_dir),
        "derivatives": None if args.derivatives is None
        else [str(Path(d).resolve()) for d in args.derivatives],
        "memory_limit_gib": args.memory_limit,
    }
    if args.dask_scheduler is not None:
        run.update(backend="dask", dask_address=args.dask_scheduler)
    return {
        "run": run,
        "functional": {"strategy": args.denoise_strategy, "fd_threshold": args.fd_threshold,
                       "repetition_time": args.repetition_time,
                       "allow_missing_confounds": args.allow_missing_confounds},
        "structural": {"quick": args.quick, "inputs": args.structural_inputs,
                       "atlas_space": args.atlas_space},
        "pet": {"space": args.pet_space, "reference_region": args.pet_reference,
                "pvc": args.pvc, "template": absolute(args.pet_template)},
    }


def _run_bids_app(args: argparse.Namespace, argv: list[str]) -> int:
    from danemap._utils.logging import get_logger, run_log
    from danemap.config import load_config
    from danemap.io import check_output_not_in_input
    from danemap.pipeline import run_group, run_participant

    log = get_logger()
    overrides = _bids_app_overrides(args)
    # refused before the run log is opened: nothing is ever written into the input
    check_output_not_in_input(args.bids_dir, args.output_dir)
    with run_log(args.output_dir, args.analysis_level, ["danemap", *argv]) as logfile:
        log.info("run log: %s", logfile)
        try:
            config = load_config(args.config, overrides=overrides)
            if args.analysis_level == "participant":
                return run_participant(args.bids_dir, args.output_dir, config, verbose=True)
            return run_group(args.bids_dir, args.output_dir, config, verbose=True)
        except (DanemapError, OSError) as exc:  # logged here, so the run log has it too
            log.error("%s", exc)
            log.debug("%s level stopped by %s", args.analysis_level, type(exc).__name__,
                      exc_info=True)
            return 2


def _parse(argv: list[str]) -> tuple[str | None, argparse.Namespace]:
    """Return the sub-command (``None``: the BIDS-App form) and the parsed arguments."""
    if argv and argv[0] in SUBCOMMANDS:
        return argv[0], build_parser(argv[0]).parse_args(argv[1:])
    return None, build_bids_app_parser().parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the danemap command line and return its exit code.

    Messages go to stderr, one line each with an ISO-8601 UTC time (by default the
    summaries, warnings and errors; ``-q`` warnings and errors, ``-v`` info, ``-vv``
    debug); stdout holds only the command's output. An error is reported once.

    Parameters
    ----------
    argv : sequence of str or None
        Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns
    -------
    int
        0 on success; 1 when some participants, group tables or group analyses
        (permutation, normative, classify...) failed while the others completed (each
        failure is logged); 2 on a usage, input or file-system error, or when nothing was
        done (every participant failed).
    """
    from danemap._utils.logging import cli_logging

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        command, args = _parse(argv)
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        return int(exc.code) if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except (DanemapError, OSError) as exc:  # a sub-command's parser setup
        print(f"danemap: error: {exc}", file=sys.stderr)
        return 2
    with cli_logging(args.verbose, args.quiet) as log:
        try:
            if command is None:
                return _run_bids_app(args, argv)
            return _run_subcommand(command, args)
        except SystemExit as exc:  # a sub-command's own parser.error
            return int(exc.code) if isinstance(exc.code, int) else (0 if exc.code is None
                                                                      else 2)
        except (DanemapError, OSError) as exc:  # OSError: disk full, permission denied, ...
            log.error("%s", exc)
            return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
