"""Run one function over many participants with failure isolation and resume.

Back-ends
---------
- in this process (``n_jobs=1``, no memory limit);
- a pool of local worker processes (:func:`_run_pool`): each worker runs one item at a
  time, its BLAS/OpenMP threads limited so that ``n_jobs x threads <= cores``; the parent
  watches each worker's resident memory and stops one that exceeds the memory limit (its
  item fails, the others go on, and a fresh worker takes its place). A worker that dies
  for any other reason (a segfault, the kernel's OOM killer) fails only its own item.
  Workers' log records are sent back to the parent, so they reach its console and run log;
- a Dask cluster (:func:`_run_dask`), local or remote (``dask_address``).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import traceback
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from danemap._utils.logging import get_logger
from danemap.errors import ConfigError, DanemapError

__all__ = ["Outcome", "blas_threads", "run_many", "usable_cores"]

log = get_logger("engine")

BACKENDS = ("local", "dask")

#: Environment variables that size the thread pools of BLAS and OpenMP libraries; each
#: worker sets them (for the libraries it loads later and for its child processes).
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
              "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")

#: Seconds between two memory checks of a busy worker (with a memory limit).
POLL_SECONDS = 0.05

_GIB = 2**30


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
    peak_mib : float
        Peak resident memory (MiB) of the worker process (and its children) while it ran
        the item, as the local pool measured it; 0 where not measured (in-process, Dask).
    """

    item: str
    status: str
    seconds: float = 0.0
    result: Any = None
    error: str = ""
    detail: str = field(default="", repr=False)
    peak_mib: float = 0.0


def usable_cores() -> int:
    """Return the number of CPU cores this process may run on (its affinity mask).

    Returns
    -------
    int
        ``len(os.sched_getaffinity(0))`` where available, else ``os.cpu_count()``.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def blas_threads(n_jobs: int, cores: int | None = None) -> int:
    """Return the BLAS/OpenMP threads of each of ``n_jobs`` workers: ``n_jobs x it <= cores``.

    Parameters
    ----------
    n_jobs : int
        Worker processes running at once.
    cores : int or None
        Cores available; default :func:`usable_cores`.

    Returns
    -------
    int
        ``max(1, cores // n_jobs)`` (one thread each when there are more workers than cores).
    """
    return max(1, (cores or usable_cores()) // max(1, n_jobs))


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
    memory_limit_gib: float = 0,
) -> list[Outcome]:
    """Run ``func(item)`` for every item; one failure never stops the others.

    Parameters
    ----------
    func : callable
        A picklable function of one item (a module-level function or a
        ``functools.partial`` of one) when ``n_jobs > 1``, ``memory_limit_gib > 0`` or
        ``backend="dask"``.
    items : sequence of str
        Participant labels (or any string keys), processed in this order.
    backend : {"local", "dask"}
        ``"local"`` runs in this process (``n_jobs=1`` without a memory limit) or in a
        pool of worker processes; ``"dask"`` submits to a ``dask.distributed`` cluster
        (``pip install 'danemap[dask]'``).
    n_jobs : int
        Worker processes of the local back-end, or of the local Dask cluster started when
        no ``dask_address`` is given. Each local worker's BLAS/OpenMP threads are limited
        to :func:`blas_threads` (``n_jobs x threads <= cores``).
    state_dir : path-like or None
        Where per-item completion markers are kept. With ``resume=True``, items whose
        marker exists are skipped, so an interrupted cohort run continues where it stopped.
    resume : bool
        Skip items already marked done in ``state_dir``.
    description : str
        Progress-bar label.
    verbose : bool
        Show a progress bar (count, elapsed time, time remaining).
    dask_address : str or None
        Scheduler address for ``backend="dask"`` (``tcp://HOST:PORT``); ``None`` starts a
        local cluster on the loopback interface.
    memory_limit_gib : float
        Resident memory (GiB) one worker process, with its children, may use; 0 for no
        limit. The local pool checks each busy worker's RSS every
        :data:`POLL_SECONDS` (pages it shares with the parent since the fork count too),
        stops a worker past the limit and fails its item with the limit and the peak; the
        others go on, and a fresh worker takes its place. A local Dask cluster gets it as
        each worker's ``memory_limit`` (Dask's nanny restarts a worker near it); a remote
        cluster keeps its own workers' limits.

    Returns
    -------
    list of Outcome
        One per item, in the order of ``items``.

    Raises
    ------
    ConfigError
        For an unknown back-end, ``n_jobs < 1``, a negative memory limit, or a Dask
        scheduler that cannot be reached.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"run.backend: expected one of {BACKENDS}, found {backend!r}")
    if n_jobs < 1:
        raise ConfigError(f"run.n_jobs: expected an integer >= 1, found {n_jobs}")
    if not memory_limit_gib >= 0:
        raise ConfigError("run.memory_limit_gib: expected a number of GiB >= 0 (0 for no "
                          f"limit), found {memory_limit_gib}")
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

    from danemap._utils.logging import progress

    stream: Iterator[Outcome]
    if backend == "dask":
        stream = _run_dask(func, todo, dask_address, n_jobs, memory_limit_gib)
    elif (n_jobs == 1 and not memory_limit_gib) or not todo:
        stream = (_call(func, item) for item in todo)
    else:
        stream = _run_pool(func, todo, n_jobs, memory_limit_gib)
    try:
        for outcome in progress(stream, description, total=len(todo), verbose=verbose):
            record(outcome)
    finally:
        close = getattr(stream, "close", None)
        if close is not None:  # stop the workers now, also after an interrupt
            close()
    return [outcomes[item] for item in items]


# --------------------------------------------------------------------------- local pool


class _PipeHandler(logging.Handler):
    """A worker's log handler: sends each record, formatted, to the parent."""

    def __init__(self, send: Callable[[Any], None]) -> None:
        super().__init__(logging.DEBUG)
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            clean = logging.makeLogRecord(record.__dict__)
            clean.msg, clean.args, clean.exc_info = msg, None, None
            self._send(("log", clean))
        except Exception:  # a log line must never fail the participant
            self.handleError(record)


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this worker when its parent dies (a killed run leaves none)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover - no prctl
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _reset_peak() -> bool:
    """Reset this process's peak RSS (``VmHWM``), so it measures one item; Linux only."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def _own_peak_mib() -> float:
    """Return this process's peak resident memory, MiB (``VmHWM``, else ``ru_maxrss``)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _limit_threads(threads: int) -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)


def _worker_main(conn: Connection, func: Callable[[str], Any], threads: int, log_level: int,
                 route_warnings: bool, parent_pid: int) -> None:
    """Loop of one pool worker: receive items until ``None``, send back each outcome."""
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the workers
    # a forked worker must not write through the parent's progress bar (rich redirects
    # the streams while it draws; its lock may be held by the bar's thread at the fork)
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    for var in THREAD_ENV:  # before the function's modules load BLAS
        os.environ[var] = str(threads)
    lock = threading.Lock()

    def send(message: Any) -> None:
        with lock:
            conn.send(message)

    logger = logging.getLogger("danemap")
    logger.handlers[:] = [_PipeHandler(send)]
    logger.setLevel(log_level)
    logger.propagate = False
    if route_warnings:
        from danemap._utils.logging import _show_warning

        warnings.showwarning = _show_warning
    while True:
        try:
            item = conn.recv()
        except (EOFError, OSError):
            return
        if item is None:
            return
        _limit_threads(threads)  # also for libraries the previous item loaded
        exact = _reset_peak()
        outcome = _call(func, item)
        outcome.peak_mib = _own_peak_mib() if exact else 0.0
        try:
            send(("done", outcome))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            send(("done", Outcome(item, "failed", outcome.seconds,
                                  error=f"the result of {item} cannot be sent back to the "
                                        f"parent process: {type(exc).__name__}: {exc}")))


class _Worker:
    """One pool worker process, seen from the parent."""

    def __init__(self, ctx: Any, func: Callable[[str], Any], threads: int, index: int) -> None:
        from danemap._utils.logging import _show_warning

        parent_conn, child_conn = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(
            target=_worker_main, name=f"danemap-worker-{index}",
            args=(child_conn, func, threads, logging.getLogger("danemap").getEffectiveLevel(),
                  warnings.showwarning is _show_warning, os.getpid()))
        try:
            self.proc.start()
        except (pickle.PicklingError, TypeError, AttributeError) as exc:  # spawn pickles func
            parent_conn.close()
            raise TypeError(f"run_many: with n_jobs > 1 or a memory limit, the function must "
                            f"be picklable on this platform (a module-level function or a "
                            f"functools.partial of one): {exc}") from exc
        finally:
            child_conn.close()
        self.conn: Connection = parent_conn
        self.item: str | None = None
        self.t0 = 0.0
        self.peak = 0
        self._ps: Any = None

    def assign(self, item: str) -> None:
        self.conn.send(item)
        self.item, self.t0, self.peak = item, time.perf_counter(), 0

    def rss(self) -> int:
        """Resident memory of the worker and its children (bytes); 0 once it is gone."""
        import psutil

        try:
            if self._ps is None:
                self._ps = psutil.Process(self.proc.pid)
            procs = [self._ps, *self._ps.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        self.peak = max(self.peak, total)
        return total

    def kill(self) -> None:
        """SIGKILL the worker and its children."""
        import psutil

        try:
            victims = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            victims = []
        for p in victims:
            try:
                p.kill()
            except psutil.Error:
                pass
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()

    def stop(self) -> None:
        """Ask an idle worker to exit; kill it if it does not within a few seconds."""
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(2 if self.item is None else 0)
        if self.proc.is_alive():
            self.kill()
        else:
            self.conn.close()


def _death(proc: Any) -> str:
    code = proc.exitcode
    if code is not None and code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _run_pool(func: Callable[[str], Any], items: Sequence[str], n_jobs: int,
              memory_limit_gib: float) -> Iterator[Outcome]:
    """Yield the outcome of each item as the pool's workers finish them."""
    # fork where it exists (Linux): a worker starts at once, with the parent's imports, and
    # needs no pickling of the function; the worker touches no lock of the parent's threads
    # (its log handler is replaced first). Elsewhere a fresh interpreter (spawn).
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    ctx = multiprocessing.get_context(method)
    threads = blas_threads(n_jobs)
    limit = int(memory_limit_gib * _GIB)
    pending = deque(items)
    workers: list[_Worker] = []
    started = 0

    def start() -> _Worker:
        nonlocal started
        started += 1
        return _Worker(ctx, func, threads, started)

    log.debug("local pool: %d worker processes, %d BLAS thread(s) each (%d cores)%s",
              min(n_jobs, len(items)), threads, usable_cores(),
              f", memory limit {memory_limit_gib:g} GiB each" if limit else "")
    try:
        workers = [start() for _ in range(min(n_jobs, len(items)))]
        while True:
            for i, w in enumerate(workers):
                if w.item is None and pending:
                    item = pending.popleft()
                    try:
                        w.assign(item)
                    except OSError:  # it died while idle: a fresh one takes the item
                        log.debug("an idle worker died (%s); starting another",
                                  _death(w.proc))
                        w.kill()
                        workers[i] = start()
                        workers[i].assign(item)
            busy = [w for w in workers if w.item is not None]
            if not busy:
                return
            wait([w.conn for w in busy] + [w.proc.sentinel for w in busy],
                 timeout=POLL_SECONDS if limit else 1.0)
            for i, w in enumerate(workers):
                if w.item is None:
                    continue
                done: Outcome | None = None
                try:
                    while w.conn.poll():
                        kind, data = w.conn.recv()
                        if kind == "log":
                            logging.getLogger(data.name).handle(data)
                        else:
                            done = data
                            break
                except (EOFError, OSError):
                    pass
                if done is not None:
                    done.peak_mib = max(done.peak_mib, w.peak / 2**20)
                    w.item = None
                    yield done
                    continue
                if not w.proc.is_alive():
                    item, seconds = w.item, time.perf_counter() - w.t0
                    w.kill()
                    workers[i] = start()
                    yield Outcome(item, "failed", seconds, peak_mib=w.peak / 2**20,
                                  error=f"[worker] the worker process running {item} died "
                                        f"({_death(w.proc)}) after {seconds:.1f} s; the "
                                        "kernel's out-of-memory killer or a crash in a "
                                        "compiled library are the usual causes")
                    continue
                if limit and w.rss() > limit:
                    item, seconds = w.item, time.perf_counter() - w.t0
                    w.kill()
                    workers[i] = start()
                    yield Outcome(
                        item, "failed", seconds, peak_mib=w.peak / 2**20,
                        error=f"[memory limit] stopped after {seconds:.1f} s: its worker "
                              f"process reached {w.peak / _GIB:.3f} GiB of resident memory, "
                              f"over the limit of {memory_limit_gib:g} GiB "
                              "(run.memory_limit_gib, --memory-limit); raise the limit, or "
                              "run fewer participants at once")
    finally:
        for w in workers:
            w.stop()


# --------------------------------------------------------------------------------- Dask


def _run_dask(func: Callable[[str], Any], items: list[str], address: str | None,
              n_jobs: int, memory_limit_gib: float) -> Iterator[Outcome]:
    """Yield the outcome of each item as a Dask cluster finishes them."""
    if not items:
        return
    from danemap._utils.optional import import_optional

    distributed = import_optional("dask.distributed", extra="dask", package="dask[distributed]",
                                  purpose="backend='dask'")
    import dask

    if address:
        try:
            # waits distributed.comm.timeouts.connect (Dask's configuration; 30 s)
            client = distributed.Client(address)
        except OSError as exc:
            raise ConfigError(f"run.dask_address: cannot reach the Dask scheduler at "
                              f"{address!r}: {exc}") from exc
        if memory_limit_gib:
            log.info("run.memory_limit_gib is not applied to an existing Dask cluster: its "
                     "workers keep their own memory limits")
    else:
        # one single-threaded worker process per job (warnings filters and BLAS threads are
        # per process), on loopback; a worker that dies fails its participant at once
        # rather than being retried on another worker
        kwargs: dict[str, Any] = {"n_workers": n_jobs, "threads_per_worker": 1,
                                  "processes": True, "dashboard_address": None,
                                  "host": "127.0.0.1"}
        if memory_limit_gib:
            kwargs["memory_limit"] = int(memory_limit_gib * _GIB)
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            client = distributed.Client(**kwargs)
    with client:
        # the function (with the cohort's discovered sessions bound to it) travels to each
        # worker once, not pickled into every one of thousands of tasks
        [shared] = client.scatter([func], broadcast=True, hash=False)
        futures = {client.submit(_call, shared, item, pure=False): item for item in items}
        for fut in distributed.as_completed(list(futures)):
            item = futures[fut]
            try:
                outcome = fut.result()
            except Exception as exc:  # the worker died, or the task could not run
                killed = type(exc).__name__ == "KilledWorker"
                limit = (f"over the {memory_limit_gib:g} GiB each local worker may use "
                         "(run.memory_limit_gib), or a crash" if memory_limit_gib and not address
                         else "its memory limit, or a crash")
                what = (f"its Dask worker died while running it ({limit}; see the worker's "
                        "log)" if killed else f"the Dask task failed: {type(exc).__name__}: {exc}")
                outcome = Outcome(item, "failed", error=f"[worker] {what}",
                                  detail=traceback.format_exc())
            fut.release()
            yield outcome


def _write_marker(state: Path, outcome: Outcome) -> None:
    from danemap.io import atomic_write_text

    info = {k: v for k, v in asdict(outcome).items() if k in {"item", "status", "seconds"}}
    state.mkdir(parents=True, exist_ok=True)
    atomic_write_text(_done_marker(state, outcome.item), json.dumps(info, indent=2) + "\n")
