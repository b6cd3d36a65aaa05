"""The single package logger and the progress-bar helper.

Library code logs to ``logging.getLogger("danemap")`` and never attaches
handlers; only the CLI does (:func:`setup_cli_logging`, and :func:`run_log` for the
run log of each BIDS-App level).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence, Sized
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

logger = logging.getLogger("danemap")

#: Level of the few lines a user sees by default (between INFO and WARNING): one summary
#: per level, progress per group table, where the outputs are.
SUMMARY = 25
logging.addLevelName(SUMMARY, "SUMMARY")

T = TypeVar("T")


def get_logger(name: str | None = None) -> logging.Logger:
    """Return the danemap logger, or a child of it (``danemap.<name>``)."""
    return logger if name is None else logger.getChild(name)


#: Format of the console lines (stderr): one line per message, ISO-8601 UTC time.
CONSOLE_FORMAT = "%(asctime)sZ %(levelname)s %(message)s"
#: ``datefmt`` of the console and the run log (UTC, ``Z`` appended by the formats).
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"

#: Warning categories of libraries logged at debug level only (meant for developers).
_DEVELOPER_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


def console_level(verbose: int = 0, quiet: bool = False) -> int:
    """Return the console level of the CLI's ``-v`` count and ``-q`` flag.

    Parameters
    ----------
    verbose : int
        0 shows :data:`SUMMARY` lines, warnings and errors; 1 adds info; 2 or more debug.
    quiet : bool
        Show warnings and errors only (wins over ``verbose``).

    Returns
    -------
    int
        A :mod:`logging` level.
    """
    if quiet:
        return logging.WARNING
    return SUMMARY if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG


class _StderrHandler(logging.StreamHandler):
    """A stream handler writing to the *current* ``sys.stderr``.

    Resolved at each message, so that a rich progress bar (which redirects ``sys.stderr``
    while it is drawn) prints the line above the bar, and pytest's capture sees it.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:  # the base class assigns it; always stderr
        pass


class _ConsoleFormatter(logging.Formatter):
    """``2026-12-01T13:45:07Z WARNING message``; a traceback only at debug level."""

    def __init__(self, tracebacks: bool) -> None:
        super().__init__(CONSOLE_FORMAT, datefmt=DATE_FORMAT)
        self.converter = time.gmtime
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        if self.tracebacks or not (record.exc_info or record.exc_text or record.stack_info):
            return super().format(record)
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def _show_warning(message: Warning | str, category: type[Warning], filename: str,
                  lineno: int, file: Any = None, line: str | None = None) -> None:
    """``warnings.showwarning`` of the CLI: one log line instead of Python's two.

    A :class:`~danemap.errors.DanemapWarning` is logged as a warning with its message
    only; another library's warning as a warning naming its category and origin
    (deprecation and future warnings at debug level).
    """
    from danemap.errors import DanemapWarning

    if issubclass(category, DanemapWarning):
        logger.warning("%s", message)
        return
    origin = f"{Path(filename).name}:{lineno}"
    level = logging.DEBUG if issubclass(category, _DEVELOPER_WARNINGS) else logging.WARNING
    logger.getChild("warnings").log(level, "%s (%s, %s)", message, category.__name__, origin)


def setup_cli_logging(verbose: int = 0, logfile: str | None = None, quiet: bool = False) -> None:
    """Attach the console handler (and optionally a file handler) for the CLI.

    Console lines go to ``sys.stderr``, one line per message with an ISO-8601 UTC time
    (``2026-12-01T13:45:07Z WARNING sub-04: ...``); stdout is left to the commands'
    output. Python warnings are routed through the logger (:func:`_show_warning`), once
    each. Only the CLI calls this; library code never attaches handlers. Prefer
    :func:`cli_logging`, which undoes it.

    Parameters
    ----------
    verbose : int
        0 shows :data:`SUMMARY` lines, warnings and errors; 1 adds info; 2 or more debug.
    logfile : str or None
        If given, the run log is also written to this file at debug level.
    quiet : bool
        Show warnings and errors only.
    """
    level = console_level(verbose, quiet)
    logger.handlers.clear()
    console = _StderrHandler()
    console.setLevel(level)
    console.setFormatter(_ConsoleFormatter(tracebacks=level <= logging.DEBUG))
    logger.addHandler(console)
    logger.setLevel(logging.DEBUG if logfile else level)
    if logfile:
        fh = logging.FileHandler(logfile, encoding="utf-8")
        fh.setLevel(logging.DEBUG)
        fmt = logging.Formatter(LOG_FORMAT, datefmt=DATE_FORMAT)
        fmt.converter = time.gmtime
        fh.setFormatter(fmt)
        logger.addHandler(fh)
    logger.propagate = False
    warnings.showwarning = _show_warning


@contextlib.contextmanager
def cli_logging(verbose: int = 0, quiet: bool = False) -> Iterator[logging.Logger]:
    """Set up the CLI's console logging for a ``with`` block, and undo it on exit.

    The package logger's handlers, level and propagation and ``warnings.showwarning``
    are restored afterwards, so that a command run in-process (tests, notebooks) leaves
    logging as it found it.

    Parameters
    ----------
    verbose : int
        0 shows :data:`SUMMARY` lines, warnings and errors; 1 adds info; 2 or more debug.
    quiet : bool
        Show warnings and errors only.

    Yields
    ------
    logging.Logger
        The package logger.
    """
    saved = (list(logger.handlers), logger.level, logger.propagate, warnings.showwarning)
    setup_cli_logging(verbose, quiet=quiet)
    try:
        yield logger
    finally:
        for handler in logger.handlers:
            if handler not in saved[0]:
                handler.close()
        logger.handlers[:] = saved[0]
        logger.setLevel(saved[1])
        logger.propagate = saved[2]
        warnings.showwarning = saved[3]


#: Format of the run log's lines (times in UTC).
LOG_FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s [%(processName)s]: %(message)s"


@contextlib.contextmanager
def run_log(output_dir: str | os.PathLike[str], level: str,
            argv: Sequence[str] | None = None) -> Iterator[Path]:
    """Write the run log of one level to ``output_dir/danemap/logs/<level>-<UTC>.log``.

    For the duration of the ``with`` block a file handler at debug level is attached to
    the package logger (whose level is lowered to debug; the console handlers keep
    theirs), so the file holds every message, the engine's worker tracebacks included.
    An exception leaving the block is logged with its traceback. The handler is removed
    and the logger's level restored on exit.

    Parameters
    ----------
    output_dir : str or os.PathLike
        The BIDS-App output folder (the log goes to ``output_dir/danemap/logs``).
    level : str
        The analysis level (``"participant"``, ``"group"``), the file name's prefix.
    argv : sequence of str or None
        The command line, recorded first; default ``sys.argv``.

    Yields
    ------
    Path
        The log file, e.g. ``logs/participant-20250101T120000Z.log``.
    """
    from danemap._version import __version__

    folder = Path(output_dir) / "danemap" / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = folder / f"{level}-{stamp}.log"
    n = 1
    while path.exists():  # two runs in one second: never mix their logs
        n += 1
        path = folder / f"{level}-{stamp}-{n}.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    fmt = logging.Formatter(LOG_FORMAT, datefmt=DATE_FORMAT)
    fmt.converter = time.gmtime
    handler.setFormatter(fmt)
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        logger.debug("danemap %s, %s level, python %s, command: %s", __version__, level,
                     sys.version.split()[0], " ".join(sys.argv if argv is None else argv))
        try:
            yield path
        except BaseException as exc:
            logger.debug("%s level stopped by %s", level, type(exc).__name__, exc_info=True)
            raise
        logger.debug("%s level finished", level)
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(previous)


def progress(items: Iterable[T], description: str, total: int | None = None,
             verbose: bool = True) -> Iterator[T]:
    """Iterate over ``items`` with a rich progress bar on stderr.

    The bar shows the count, the elapsed time and the estimated time remaining. It is
    drawn only when ``verbose`` is true *and* stderr is a terminal, so that it never
    garbles a log file or a pipe; log lines emitted meanwhile print above it.

    Parameters
    ----------
    items : iterable
        What to iterate over.
    description : str
        Text shown beside the bar.
    total : int or None
        Number of items, if ``items`` has no ``len``.
    verbose : bool
        If false, iterate silently.

    Yields
    ------
    object
        The items of ``items``, in order.
    """
    if not verbose or not _stderr_is_terminal():
        yield from items
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if total is None and isinstance(items, Sized):
        total = len(items)
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(),
               MofNCompleteColumn(), TextColumn("elapsed"), TimeElapsedColumn(),
               TextColumn("remaining"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        yield from bar.track(items, total=total, description=description)


def _stderr_is_terminal() -> bool:
    """Whether ``sys.stderr`` is an interactive terminal (where a progress bar may draw)."""
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # replaced or closed stream
        return False
