"""Run one function over many participants with failure isolation and resume."""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from danemap._utils.logging import get_logger
from danemap.errors import ConfigError, DanemapError

__all__ = ["Outcome", "run_many"]

log = get_logger("engine")

BACKENDS = ("local", "dask")


@dataclass
class Outcome:
    """What happened to one item.

    Attributes
    ----------
    item : str
        The item (participant label).
    status : str
        ``"ok"``, ``"failed"`` or ``"skipped"`` (already done, resumed).
    seconds : float
        Wall time spent on the item.
    result : object
        The function's return value (``None`` when failed or skipped).
    error : str
        One-line error message when failed.
    detail : str
        The failure's full traceback, formatted in the worker (it travels back from a
        process pool or a Dask worker as text); logged at debug level for the run log.
    """

    item: str
    status: str
    seconds: float = 0.0
    result: Any = None
    error: str = ""
    detail: str = field(default="", repr=False)


def _call(func: Callable[[str], Any], item: str) -> Outcome:
    """Run ``func(item)`` and turn any exception into a failed :class:`Outcome`."""
    t0 = time.perf_counter()
    try:
        result = func(item)
    except DanemapError as exc:  # expected, already a clear message
        return Outcome(item, "failed", time.perf_counter() - t0, error=str(exc),
                       detail=traceback.format_exc())
    except Exception as exc:  # isolate genuine bugs too, but keep the traceback
        return Outcome(item, "failed", time.perf_counter() - t0,
                       error=f"{type(exc).__name__}: {exc}", detail=traceback.format_exc())
    return Outcome(item, "ok", time.perf_counter() - t0, result=result)


def _done_marker(state_dir: Path, item: str) -> Path:
    return state_dir / f"{item}.done.json"


def run_many(
    func: Callable[[str], Any],
    items: Sequence[str],
    *,
    backend: str = "local",
    n_jobs: int = 1,
    state_dir: str | Path | None = None,
    resume: bool = True,
    description: str = "participants",
    verbose: bool = True,
    dask_address: str | None = None,
) -> list[Outcome]:
    """Run ``func(item)`` for every item; one failure never stops the others.

    Parameters
    ----------
    func : callable
        A picklable function of one item (a module-level function or a
        ``functools.partial`` of one) when ``n_jobs > 1`` or ``backend="dask"``.
    items : sequence of str
        Participant labels (or any string keys), processed in this order.
    backend : {"local", "dask"}
        ``"local"`` runs in this process (``n_jobs=1``) or a process pool;
        ``"dask"`` submits to a ``dask.distributed`` cluster (``pip install 'danemap[dask]'``).
    n_jobs : int
        Worker processes of the local back-end, or of the local Dask cluster started when
        no ``dask_address`` is given.
    state_dir : path-like or None
        Where per-item completion markers are kept. With ``resume=True``, items whose
        marker exists are skipped, so an interrupted cohort run continues where it stopped.
    resume : bool
        Skip items already marked done in ``state_dir``.
    description : str
        Progress-bar label.
    verbose : bool
        Show a progress bar.
    dask_address : str or None
        Scheduler address for ``backend="dask"``; ``None`` starts a local cluster.

    Returns
    -------
    list of Outcome
        One per item, in the order of ``items``.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"run.backend: expected one of {BACKENDS}, found {backend!r}")
    if n_jobs < 1:
        raise ConfigError(f"run.n_jobs: expected an integer >= 1, found {n_jobs}")
    state = Path(state_dir) if state_dir is not None else None
    outcomes: dict[str, Outcome] = {}
    todo: list[str] = []
    for item in items:
        if state is not None and resume and _done_marker(state, item).exists():
            outcomes[item] = Outcome(item, "skipped")
            log.info("%s: already done, skipped (resume)", item)
        else:
            todo.append(item)

    def record(outcome: Outcome) -> None:
        outcomes[outcome.item] = outcome
        if outcome.status == "ok":
            log.info("%s: done in %.1f s", outcome.item, outcome.seconds)
            if state is not None:
                _write_marker(state, outcome)
        else:
            log.error("%s: failed: %s", outcome.item, outcome.error)
            if outcome.detail:
                log.debug("%s: worker traceback:\n%s", outcome.item, outcome.detail.rstrip())

    if backend == "dask":
        for outcome in _run_dask(func, todo, dask_address, n_jobs, description, verbose):
            record(outcome)
    elif n_jobs == 1 or len(todo) <= 1:
        from danemap._utils.logging import progress

        for item in progress(todo, f"{description}", total=len(todo), verbose=verbose):
            record(_call(func, item))
    else:
        with ProcessPoolExecutor(max_workers=n_jobs) as pool:
            futures = [pool.submit(_call, func, item) for item in todo]
            for outcome in _completed(futures, description, verbose):
                record(outcome)
    return [outcomes[item] for item in items]


def _completed(futures: Iterable[Future[Outcome]], description: str,
               verbose: bool) -> Iterable[Outcome]:
    from danemap._utils.logging import progress

    futures = list(futures)
    for fut in progress(as_completed(futures), description, total=len(futures),
                        verbose=verbose):
        yield fut.result()


def _run_dask(func: Callable[[str], Any], items: list[str], address: str | None,
              n_jobs: int, description: str, verbose: bool) -> Iterable[Outcome]:
    from danemap._utils.logging import progress
    from danemap._utils.optional import import_optional

    distributed = import_optional("dask.distributed", extra="dask", package="dask[distributed]",
                                  purpose="backend='dask'")
    Client, dask_completed = distributed.Client, distributed.as_completed

    # a local cluster uses one single-threaded worker process per job: the markers are not
    # written for concurrent threads in one process (warnings filters, BLAS threads)
    client = Client(address) if address else Client(n_workers=n_jobs, threads_per_worker=1,
                                                    processes=True, dashboard_address=None)
    with client:
        futures = [client.submit(_call, func, item, pure=False) for item in items]
        for fut in progress(dask_completed(futures), description, total=len(futures),
                            verbose=verbose):
            yield fut.result()


def _write_marker(state: Path, outcome: Outcome) -> None:
    from danemap.io import atomic_write_text

    info = {k: v for k, v in asdict(outcome).items() if k in {"item", "status", "seconds"}}
    state.mkdir(parents=True, exist_ok=True)
    atomic_write_text(_done_marker(state, outcome.item), json.dumps(info, indent=2) + "\n")
