"""Runs blocks on a Dask cluster: a `LocalCluster` of worker processes, a running scheduler,
or a user's `Client` (e.g. from dask-jobqueue on Slurm).

Dask is imported only when an executor connects, so that ``import ndframework`` stays fast
and works without the ``dask`` extra.

How a run maps onto Dask:

- Each block is one task, ``client.submit(...)`` with ``retries=0``: only the block's
  coordinates go out and its small outcome comes back. Workers read and write their own data.
- The run session (the processor and the source, cloudpickled) reaches every worker, those
  that join later included, as a worker plugin registered once per run session, so that
  tasks carry only its id. Its tasks run in a small pool of threads of the worker's own
  per session (one per Dask thread of the worker), where each thread sets up its worker
  (the processor's ``setup``) with its first task and tears it down as the pool ends, in
  the same thread, as the worker state of `ndframework._worker` requires. With
  ``threads_per_worker=1`` (the `LocalCluster` this executor starts) that is once per worker
  process. Sessions are kept across pools, so a pool replaced after a worker died costs no
  new ``setup`` on the workers that live on; `DaskExecutor.close` tears them down.
- A worker that dies settles its tasks with `concurrent.futures.BrokenExecutor`, as a broken
  process pool does, so that the pipeline retries them and counts the tries itself.
- Workers show which block they run by logging small events (ticket, worker address) that
  the coordinator receives; that is the `WorkerBoard` the pipeline uses to stop a block past
  its ``block_timeout``: its task is settled broken at once and its worker restarted through
  its nanny.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import logging
import os
import threading
import time
import uuid
from concurrent import futures
from typing import Any, Callable

import attrs

from ..errors import ConfigError
from ._base import Executor, check_workers, default_workers
from ._session import WorkerSession
from ._main_script import guard_advice, unguarded_script
from ._threads import _WorkerThreadPool

__all__ = ["DaskExecutor", "DaskBoard"]

INSTALL_HINT = 'pip install "ndframework[dask]"'

_THREADS_FRESH = 2.0
"""Seconds for which a cluster's count of worker threads is taken as it was last asked."""

_MIN_IN_FLIGHT = 16
"""Blocks kept handed out on a cluster this executor did not start, whose size it cannot
know without connecting (and which may grow, as adaptive clusters do)."""


def _require_dask() -> None:
    if importlib.util.find_spec("distributed") is None:
        raise ConfigError(
            f"the 'dask' executor needs dask.distributed, which is not installed: "
            f"{INSTALL_HINT}", "dask")


def _check_address(instance: Any, attribute: Any, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"address must be a scheduler address such as "
                          f"'tcp://scheduler:8786', got {value!r}", value)


def _check_workers(value: int | None) -> int | None:
    return None if value is None else check_workers(value)


@attrs.define(eq=False, repr=False)
class DaskExecutor(Executor):
    """Blocks run as tasks on a Dask cluster, each worker reading and writing its own blocks.

    With no arguments, starts a `LocalCluster` of ``workers`` worker processes (one thread
    each) when the run starts and closes it when the executor is closed. With ``address``,
    connects to a running scheduler; with ``client``, uses that `distributed.Client` (e.g.
    one made from a dask-jobqueue ``SLURMCluster``) and leaves it open.

    The executor keeps its cluster from one pool to the next (a pool is replaced when a
    worker dies); `close` ends the workers' run sessions (``teardown``) and closes the
    client and cluster it made itself. It is also a context manager that keeps the cluster
    up for several runs.

    Parameters
    ----------
    workers:
        Worker processes of the local cluster; default: every CPU this process may use.
        Not with ``address`` or ``client``, whose cluster has the workers it has.
    address:
        A scheduler to connect to, e.g. ``"tcp://scheduler:8786"``.
    client:
        A `distributed.Client` to use; it stays open.

    >>> DaskExecutor(workers=2)
    DaskExecutor(workers=2)
    >>> DaskExecutor(address="tcp://scheduler:8786").describe()
    'dask (scheduler tcp://scheduler:8786)'
    """

    name = "dask"
    shares_memory = False
    can_stop_blocks = True
    batches = True
    breaks_whole = False  # a lost worker fails its own tasks only
    opens_sessions = True  # by the session's worker plugin

    _workers: int | None = attrs.field(default=None, converter=_check_workers,
                                       alias="workers")
    """Worker processes of the local cluster (None: the default, or the cluster's own)."""
    address: str | None = attrs.field(default=None, validator=_check_address, kw_only=True)
    """The scheduler to connect to, if any."""
    client: Any = attrs.field(default=None, kw_only=True)
    """The user's client, if any."""
    _state: _Connection = attrs.field(init=False, factory=lambda: _Connection())

    def __attrs_post_init__(self) -> None:
        if self.address is not None and self.client is not None:
            raise ConfigError("give DaskExecutor an address or a client, not both",
                              self.address)
        if self._workers is not None and (self.address is not None or self.client is not None):
            raise ConfigError(
                f"workers={self._workers!r} applies to the local cluster DaskExecutor starts; "
                f"with an address or a client the cluster has the workers it has", self._workers)
        if self.client is None:
            _require_dask()

    def __repr__(self) -> str:
        if self.client is not None:
            return f"DaskExecutor(client={self.client!r})"
        if self.address is not None:
            return f"DaskExecutor(address={self.address!r})"
        return f"DaskExecutor(workers={self.workers})"

    # -- sizes and names -----------------------------------------------------------------

    @property
    def workers(self) -> int:  # type: ignore[override]
        """Worker processes of the local cluster; for another cluster, its worker threads
        (at least 1) when connected, or as last seen."""
        if self.address is None and self.client is None:
            return self._workers or default_workers()
        state = self._state
        client = state.client or self.client
        if client is None:  # not connected (any more): as last seen
            return state.threads
        now = time.monotonic()
        if now - state.threads_seen < _THREADS_FRESH:  # asked per batch: a scheduler call
            return state.threads
        try:
            threads = sum(info.get("nthreads", 1)
                          for info in client.scheduler_info()["workers"].values())
        except Exception:  # not connected yet
            return 1
        state.threads, state.threads_seen = max(1, threads), now
        return state.threads

    @property
    def default_in_flight(self) -> int:
        if self.address is None and self.client is None:
            return 2 * self.workers
        return max(_MIN_IN_FLIGHT, 2 * self.workers)

    def describe(self) -> str:
        if self.client is not None:
            address = getattr(getattr(self.client, "scheduler", None), "address", None)
            return f"dask (client of {address or 'a cluster'})"
        if self.address is not None:
            return f"dask (scheduler {self.address})"
        return f"dask (local cluster, {self.workers} worker{'s' if self.workers != 1 else ''})"

    # -- the cluster ---------------------------------------------------------------------

    def connect(self) -> Any:
        """The client, connected (and the local cluster started) on first use."""
        state = self._state
        with state.lock:
            if state.client is not None:
                return state.client
            try:
                import dask
                import distributed
            except ImportError as error:
                raise ConfigError(f"the 'dask' executor needs dask.distributed: {INSTALL_HINT}",
                                  "dask") from error
            if self.client is not None:
                state.client = self.client
            elif self.address is not None:
                state.client = distributed.Client(self.address, set_as_default=False)
            else:
                script = unguarded_script()
                if script is not None:
                    raise ConfigError(guard_advice(script, "the LocalCluster's worker "
                                                           "processes"), script)
                # Attempts are counted by the pipeline: the scheduler must not rerun a task
                # whose worker died, it must report it.
                with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
                    state.cluster = distributed.LocalCluster(
                        n_workers=self.workers, threads_per_worker=1, processes=True,
                        dashboard_address=None, silence_logs=logging.ERROR,
                        # no dashboard; the scheduler's own HTTP routes on a free local
                        # port, not on 8787, which another cluster may hold
                        scheduler_kwargs={"dashboard": False,
                                          "dashboard_address": "127.0.0.1:0"},
                    )
                state.client = distributed.Client(state.cluster, set_as_default=False)
            state.owned = self.client is None
            state.threads_seen = float("-inf")
        if self.address is not None or self.client is not None:
            _ = self.workers  # a cluster not started here: count its threads now
        return state.client

    def close(self) -> None:
        """End the run sessions on the workers (each worker's ``teardown``) and, unless a
        ``with`` block holds the executor, close the client and cluster it made itself. It
        connects again when started again."""
        state = self._state
        with state.lock:
            client, tokens, pool = state.client, list(state.tokens), state.pool
            state.tokens.clear()
            state.pool = None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        if client is None:
            return
        if tokens:
            try:
                client.run(_finish_sessions, tokens, on_error="ignore")
            except Exception:  # workers gone: nothing left to tear down
                pass
            for token in tokens:
                try:
                    client.unregister_worker_plugin(_plugin_name(token))
                except Exception:  # the scheduler is gone
                    pass
        with state.lock:
            if state.held:
                return
            cluster, owned, board = state.cluster, state.owned, state.board
            state.client = state.cluster = state.board = None
            state.owned = False
        if owned:
            client.close()
            if cluster is not None:
                cluster.close()
        elif board is not None:
            try:
                client.unsubscribe_topic(board.topic)
            except Exception:
                pass

    def __enter__(self) -> DaskExecutor:
        self.connect()
        self._state.held += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._state.held -= 1
        self.close()

    # -- pools ---------------------------------------------------------------------------

    def make_board(self) -> DaskBoard:
        """A board on which this executor's workers show which block they run."""
        client = self.connect()
        board = DaskBoard(self._state.topic)
        board.listen(client, self._state.begun)
        self._state.board = board
        return board

    def start(self, session: WorkerSession) -> futures.Executor:
        client = self.connect()
        state = self._state
        # The same run session gives the same token, so that workers that live on keep
        # their set-up processor when the pool is replaced.
        token = session.id
        if token not in state.tokens:
            from ._dask_plugin import SessionPlugin

            state.tokens.add(token)
            client.run(_halt, state.topic, False, on_error="ignore")  # a new run session
            # the workers of a local cluster share the machine's default chunk cache
            sharing = self.workers if state.cluster is not None else 1
            client.register_plugin(SessionPlugin(session, sharing),
                                   name=_plugin_name(token))
        state.pool = _DaskPool(client, token)
        return state.pool

    def stop_worker(self, pid: Any) -> None:  # type: ignore[override]
        """Stop the block(s) running on worker ``pid`` (its address): settle them broken at
        once, and restart the worker process through its nanny, in the background."""
        state = self._state
        address = str(pid)
        if state.board is not None and state.pool is not None:
            state.pool.break_tasks(state.board.keys_on(address),
                                   f"the worker {address} was stopped")
        client = state.client
        if client is not None:
            threading.Thread(target=_restart_worker, args=(client, address),
                             name="ndframework-dask-restart", daemon=True).start()


@attrs.define
class _Connection:
    """What a `DaskExecutor` keeps from one pool to the next."""

    client: Any = None
    cluster: Any = None
    owned: bool = False
    held: int = 0
    pool: _DaskPool | None = None
    board: DaskBoard | None = None
    tokens: set[str] = attrs.field(factory=set)
    topic: str = attrs.field(factory=lambda: f"ndframework-board-{uuid.uuid4().hex}")
    threads: int = 1
    """Worker threads of a cluster this executor did not start, as last asked."""
    threads_seen: float = float("-inf")
    """When ``threads`` was asked (`time.monotonic`)."""
    lock: Any = attrs.field(factory=threading.RLock)

    def begun(self, key: str) -> None:
        if self.pool is not None:
            self.pool.begun(key)


def _restart_worker(client: Any, address: str) -> None:
    try:
        result = client.restart_workers([address], raise_for_error=False)
        if result.get(address) == "OK":
            return
    except Exception:  # no nanny, or the worker is gone already
        pass
    try:
        client.run(_exit_soon, workers=[address], on_error="ignore")
    except Exception:
        pass


async def _exit_soon() -> None:
    """End this worker process just after replying (a worker without a nanny to restart
    it)."""
    asyncio.get_running_loop().call_later(0.1, os._exit, 1)


# -- the board -------------------------------------------------------------------------


class DaskBoard:
    """Which block each Dask worker runs and since when, from events the workers log
    (``begin``, ``end``), as received by the coordinator. It pickles to its topic only."""

    in_process = False
    """Workers are processes of their own."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._running: dict[int, tuple[str, float, str]] = {}
        self._forgotten: set[int] = set()
        self._lock = threading.Lock()
        self._rows = itertools.count()
        self._tickets: dict[int, int] = {}
        self._on_begin: Callable[[str], None] | None = None
        self._client: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"topic": self.topic}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["topic"])  # type: ignore[misc]

    # -- in the coordinator --------------------------------------------------------------

    def listen(self, client: Any, on_begin: Callable[[str], None]) -> None:
        self._client = client
        self._on_begin = on_begin
        client.subscribe_topic(self.topic, self._receive)

    def _receive(self, event: tuple[float, Any]) -> None:
        kind, ticket, address, key = event[1]
        with self._lock:
            if ticket in self._forgotten:
                return
            if kind == "begin":
                self._running[ticket] = (address, time.monotonic(), key)
            else:
                self._running.pop(ticket, None)
        if kind == "begin" and self._on_begin is not None:
            self._on_begin(key)

    def running(self) -> dict[int, tuple[str, float]]:
        """``{ticket: (worker address, started)}`` of the blocks being run now, ``started``
        on this process's `time.monotonic` clock (as the event arrived)."""
        with self._lock:
            return {ticket: (address, started)
                    for ticket, (address, started, _) in self._running.items()}

    def halt(self) -> None:
        """Have workers start no more blocks of the batches they hold (until a new run
        session starts on this executor)."""
        if self._client is not None:
            try:
                self._client.run(_halt, self.topic, True, on_error="ignore")
            except Exception:  # workers gone: nothing to halt
                pass

    def forget(self, tickets: list[int]) -> None:
        """Drop ``tickets`` (tries whose worker was lost, and which will never end), and
        ignore events of them that arrive later."""
        with self._lock:
            self._forgotten.update(tickets)
            for ticket in tickets:
                self._running.pop(ticket, None)

    def keys_on(self, address: str) -> list[str]:
        """The task keys running on worker ``address``."""
        with self._lock:
            return [key for worker, _, key in self._running.values() if worker == address]

    # -- in the worker (the protocol of `WorkerBoard`) -----------------------------------

    def claim(self) -> int:
        with self._lock:
            return next(self._rows)

    def halted(self) -> bool:
        return self.topic in _halted

    def begin(self, row: int, ticket: int) -> None:
        self._tickets[row] = ticket
        self._log("begin", ticket)

    def end(self, row: int) -> None:
        ticket = self._tickets.pop(row, None)
        if ticket is not None:
            self._log("end", ticket)

    def _log(self, kind: str, ticket: int) -> None:
        worker, key = getattr(_current, "worker", None), getattr(_current, "key", None)
        if worker is not None:
            worker.log_event(self.topic, [kind, ticket, worker.address, str(key)])


# -- the pool --------------------------------------------------------------------------


class _TaskFuture(futures.Future):
    """The future of a Dask task. Cancelling it (a stopping run takes back blocks not
    started) also cancels the task, and tells its waiters at once: no worker will ever
    start it to do so, as the standard pools do for the calls they take back."""

    task: Any = None

    def cancel(self) -> bool:
        if not super().cancel():
            return False
        self.set_running_or_notify_cancel()  # CANCELLED -> CANCELLED_AND_NOTIFIED
        if self.task is not None:
            try:
                self.task.cancel()
            except Exception:  # the client is closing: the task goes with it
                pass
        return True


class _DaskPool(futures.Executor):
    """A `concurrent.futures.Executor` over ``client.submit``: each call runs in a worker's
    threads for run session ``token`` (which its plugin opened there)."""

    def __init__(self, client: Any, token: str) -> None:
        self._client = client
        self._token = token
        self._lock = threading.Lock()
        self._tasks: dict[str, tuple[futures.Future, Any]] = {}
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future:
        future = _TaskFuture()
        key = f"ndframework-{getattr(fn, '__name__', 'call')}-{uuid.uuid4().hex}"
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit to a pool that was shut down")
            self._tasks[key] = (future, None)
            task = self._client.submit(_call, self._token, fn, args, kwargs,
                                       key=key, pure=False, retries=0)
            self._tasks[key] = (future, task)
            future.task = task
        task.add_done_callback(self._settle)
        return future

    def begun(self, key: str) -> None:
        """The worker began task ``key``: its future is running (no longer cancellable)."""
        with self._lock:
            entry = self._tasks.get(key)
            if entry is not None and not entry[0].running() and not entry[0].done():
                entry[0].set_running_or_notify_cancel()

    def _take(self, key: str) -> tuple[futures.Future, Any] | None:
        """The future of task ``key``, running, unless it is settled or was cancelled."""
        with self._lock:
            entry = self._tasks.pop(key, None)
            if entry is None:
                return None
            future = entry[0]
            if future.done() or (not future.running()
                                 and not future.set_running_or_notify_cancel()):
                entry[1] is not None and entry[1].cancel()
                return None
            return entry

    def _settle(self, task: Any) -> None:
        entry = self._take(task.key)
        if entry is None:
            return
        future = entry[0]
        if task.status == "finished":
            try:
                result = task.result()
            except BaseException as error:  # e.g. an outcome that cannot be unpickled,
                # or lost before it came back with the worker that held it
                if _is_lost_worker(error):
                    broken = futures.BrokenExecutor(
                        f"the Dask worker holding this task's outcome was lost ({error})")
                    broken.__cause__ = error
                    error = broken
                future.set_exception(error)
            else:
                future.set_result(result)
            return
        try:
            error = task.exception() if task.status == "error" else None
        except BaseException as lost:  # cancelled by the scheduler: its data were lost
            error = lost
        if error is None or _is_lost_worker(error):
            broken = futures.BrokenExecutor(
                f"the Dask worker running this task was lost ({task.status}: {error})")
            broken.__cause__ = error
            future.set_exception(broken)
        else:
            future.set_exception(error)

    def break_tasks(self, keys: list[str], reason: str) -> None:
        """Settle tasks ``keys`` with `BrokenExecutor` now (their worker is being ended)."""
        for key in keys:
            entry = self._take(key)
            if entry is not None:
                entry[0].set_exception(futures.BrokenExecutor(reason))
                if entry[1] is not None:
                    entry[1].cancel()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking calls. With ``cancel_futures``, every call not finished is settled
        with `BrokenExecutor` at once (a Dask task cannot be stopped where it runs, and one
        still queued is given back to be run again, not dropped) and its task cancelled;
        otherwise, with ``wait``, wait for them. The cluster and the workers' run sessions
        stay (`DaskExecutor.close` ends them)."""
        with self._lock:
            self._shutdown = True
            keys = list(self._tasks)
            pending = [future for future, _ in self._tasks.values()]
        if cancel_futures:
            self.break_tasks(keys, "the pool was shut down before this task finished")
        elif wait:
            futures.wait(pending)


def _is_lost_worker(error: BaseException) -> bool:
    try:
        from distributed.scheduler import KilledWorker
    except ImportError:  # pragma: no cover
        return False
    # A cancelled task was not cancelled by us (we drop those): the scheduler lost it or
    # what it needs, with a worker. The coordinator must not take it for a block given back.
    return isinstance(error, (KilledWorker, futures.CancelledError, asyncio.CancelledError))


# -- in the worker ---------------------------------------------------------------------

_current = threading.local()
"""The Dask worker and task key of the call a session thread is running."""

_sessions: dict[str, _WorkerThreadPool] = {}
"""Run sessions' threads in this worker process."""
_halted: set[str] = set()
"""Topics of boards whose coordinator halted them."""
_sessions_lock = threading.Lock()


def _plugin_name(token: str) -> str:
    return f"ndframework-session-{token}"


def _session(token: str, threads: int) -> _WorkerThreadPool:
    with _sessions_lock:
        pool = _sessions.get(token)
        if pool is None:
            pool = _sessions[token] = _WorkerThreadPool(threads, token)
        return pool


def _call(token: str, fn: Callable[..., Any], args: tuple[Any, ...],
          kwargs: dict[str, Any]) -> Any:
    """A Dask task: run ``fn(*args, **kwargs)`` in this worker process's threads for run
    session ``token``, started the first time the process meets it."""
    from distributed import get_worker

    worker = get_worker()
    key = worker.get_current_task()
    pool = _session(token, worker.state.nthreads)
    return pool.submit(_in_session, worker, key, fn, args, kwargs).result()


def _in_session(worker: Any, key: str, fn: Callable[..., Any], args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Any:
    _current.worker, _current.key = worker, key
    try:
        return fn(*args, **kwargs)
    finally:
        _current.worker = _current.key = None


def _halt(topic: str, halted: bool) -> None:
    if halted:
        _halted.add(topic)
    else:
        _halted.discard(topic)


async def _finish_sessions(tokens: list[str]) -> list[str]:
    """End run sessions ``tokens`` in this worker process (``teardown`` in each session
    thread), off the worker's event loop."""
    finished = []
    for token in tokens:
        with _sessions_lock:
            pool = _sessions.pop(token, None)
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, True)
            finished.append(token)
    return finished
