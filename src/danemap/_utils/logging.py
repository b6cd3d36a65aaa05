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
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

logger = logging.getLogger("danemap")

#: Level of the few lines a user sees by default (between INFO and WARNING): one summary
#: per level, progress per group table, where the outputs are.
SUMMARY = 25
logging.addLevelName(SUMMARY, "SUMMARY")

T = TypeVar("T")


def get_logger(name: str | None = None) -> logging.Logger:
    """Return the danemap logger, or a child of it (``danemap.<name>``)."""
    return logger if name is None else logger.getChild(name)


def setup_cli_logging(verbose: int = 0, logfile: str | None = None) -> None:
    """Attach a rich console handler (and optionally a file handler) for the CLI.

    Parameters
    ----------
    verbose : int
        0 shows warnings, 1 info, 2 or more debug.
    logfile : str or None
        If given, the run log is also written to this file at debug level.
    """
    from rich.logging import RichHandler

    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logger.handlers.clear()
    console = RichHandler(show_path=False, rich_tracebacks=False, markup=False)
    console.setLevel(level)
    logger.addHandler(console)
    logger.setLevel(logging.DEBUG if logfile else level)
    if logfile:
        fh = logging.FileHandler(logfile, encoding="utf-8")
        fh.setLevel(logging.DEBUG)
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(fh)
    logger.propagate = False


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
    fmt = logging.Formatter(LOG_FORMAT, datefmt="%Y-%m-%dT%H:%M:%S")
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
    """Iterate over ``items`` with a rich progress bar when ``verbose`` is true.

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
    """
    if not verbose:
        yield from items
        return
    from rich.progress import track

    yield from track(items, description=description, total=total, transient=True)
