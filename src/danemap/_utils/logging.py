"""The single package logger and the progress-bar helper.

Library code logs to ``logging.getLogger("danemap")`` and never attaches
handlers; only the CLI does (:func:`setup_cli_logging`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TypeVar

logger = logging.getLogger("danemap")

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
