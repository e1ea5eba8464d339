"""The order processor: a bounded queue and a pool of workers, each taking the orders that
wait into one transaction (a batch) and settling every order with its own outcome."""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar, cast

from sqlalchemy.orm import Session, sessionmaker

from pedidos import metrics
from pedidos.config import ExecutorKind
from pedidos.orders.batches import BatchOutcome, Job, JobOutcome, run_batch
from pedidos.orders.outcome_log import BatchLog
from pedidos.orders.transaction import PedidoRejeitado, PedidoResult, Work, place_pedidos
from pedidos.tracing import request_id

log = logging.getLogger(__name__)


class Overloaded(Exception):
    """The processor is full; the caller should come back after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


class ShuttingDown(Exception):
    """The processor was shut down and takes no more orders."""


@dataclass(frozen=True)
class ProcessorStats:
    """A consistent snapshot of the processor's counters (served as is by GET /status).

    `queued` orders wait for a worker, `running` ones are inside a transaction, and
    `in_progress` is both; `batches` counts the transactions that ran several orders together.
    """

    executor: ExecutorKind
    workers: int
    queue_capacity: int
    queued: int
    running: int
    in_progress: int
    completed: int
    failed: int
    overloaded: int
    batches: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    retries: dict[str, int] = field(default_factory=dict)


T = TypeVar("T")


class Answer(Generic[T]):
    """The outcome of one order, set once by its worker and awaited by its caller.

    One lock, held until the outcome is set: the cheapest hand-off between two threads, where
    a concurrent.futures.Future takes a condition variable, its lock and a fresh waiter lock
    for every wait (the callbacks, cancellation and waiting on many are not needed here).
    """

    __slots__ = ("_error", "_given", "_set", "_value")

    def __init__(self) -> None:
        self._set = threading.Lock()
        self._set.acquire()
        self._given = False
        self._value: T | None = None
        self._error: BaseException | None = None

    def set_result(self, value: T) -> None:
        self._give(value, None)

    def set_exception(self, error: BaseException) -> None:
        self._give(None, error)

    def _give(self, value: T | None, error: BaseException | None) -> None:
        # Only the order's one worker sets it, once; a second outcome must not replace the
        # first under a caller that is reading it.
        if self._given:
            raise RuntimeError("this answer was already given")
        self._given = True
        self._value, self._error = value, error
        self._set.release()

    def result(self, timeout: float | None = None) -> T:
        """The outcome, or its exception raised; TimeoutError when not set within `timeout`."""
        if not self._set.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
            raise TimeoutError()
        self._set.release()  # the next call (or another waiter) returns at once
        error = self._error
        if error is None:
            return cast(T, self._value)
        try:
            raise error
        finally:
            # The traceback holds this frame: drop its references, so that no cycle keeps
            # the error and the caller's frames alive until the garbage collector runs.
            del self, error


@dataclass(frozen=True)
class _Entry:
    """One admitted order: what to run, who waits for it, and for the log line, since when
    and for which request."""

    job: Job
    answer: Answer[PedidoResult]
    admitted: float
    caller: str | None


# State of a ProcessPoolExecutor worker: each worker process builds its own engine.
_worker_sessions: sessionmaker[Session] | None = None
_worker_work: Work = place_pedidos
_worker_max_retries = 0


def _init_process_worker(database_url: str, work: Work, max_retries: int) -> None:
    global _worker_sessions, _worker_work, _worker_max_retries
    from pedidos.storage.engine import make_engine, make_sessions

    _worker_sessions = make_sessions(make_engine(database_url, pool_size=1))
    _worker_work = work
    _worker_max_retries = max_retries


def _run_in_process_worker(jobs: list[Job]) -> BatchOutcome:
    if _worker_sessions is None:
        raise RuntimeError("process worker was not initialised")
    return run_batch(_worker_sessions, _worker_work, jobs, _worker_max_retries)


class PedidoProcessor:
    """Runs orders in parallel with bounded admission.

    `concurrent.futures` executors queue without limit, so admission is bounded here: at
    most `workers + queue_size` orders are in flight; beyond that `submit` raises
    Overloaded instead of letting memory grow. Each of the `workers` threads takes up to
    `batch_size` waiting orders into one transaction; with the process executor the
    transaction runs in a worker process instead of the thread.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        workers: int,
        queue_size: int,
        max_retries: int,
        work: Work = place_pedidos,
        executor: ExecutorKind = "thread",
        database_url: str | None = None,
        batch_size: int = 1,
    ) -> None:
        self._sessions = sessions
        self._work = work
        self._max_retries = max_retries
        self._batch_size = batch_size
        self._kind: ExecutorKind = executor
        self._workers = workers
        self._capacity = workers + queue_size
        self._queue_size = queue_size
        self._lock = threading.Lock()
        self._waiting: deque[_Entry] = deque()
        self._draining = 0  # workers busy taking batches off the queue
        self._running = 0
        self._closed = False
        self._completed = 0
        self._failed = 0
        self._overloaded = 0
        self._batches = 0
        self._rejected: Counter[str] = Counter()
        self._retries: Counter[str] = Counter()
        self._processes: ProcessPoolExecutor | None = None
        if executor == "process":
            if database_url is None:
                raise ValueError("the process executor needs the database URL")
            # forkserver: workers never inherit the parent's pooled connections.
            self._processes = ProcessPoolExecutor(
                workers,
                mp_context=multiprocessing.get_context("forkserver"),
                initializer=_init_process_worker,
                initargs=(database_url, work, max_retries),
            )
        self._threads = ThreadPoolExecutor(workers, thread_name_prefix="pedidos-worker")

    def free_slots(self) -> int:
        """How many more orders would be admitted right now."""
        with self._lock:
            return self._capacity - len(self._waiting) - self._running

    def ensure_capacity(self) -> None:
        """Raise Overloaded, and count it, when no order would be admitted right now."""
        if self.free_slots() <= 0:
            self._count_refusal()
            raise Overloaded(retry_after=1)

    def submit(self, job: Job, *, count_refusal: bool = True) -> Answer[PedidoResult]:
        """Queue one order; its answer yields its result or raises its rejection or error.

        `count_refusal=False` is for a caller that has a fallback when the queue is full (a
        solicitacao waits for recovery), so its refusal is no overload seen by a client.
        """
        with self._lock:
            if self._closed:
                raise ShuttingDown()
            if len(self._waiting) + self._running >= self._capacity:
                refused = True
            else:
                refused = False
                entry = _Entry(job, Answer(), time.perf_counter(), request_id.get())
                self._waiting.append(entry)
                self._publish_depth()
                # Decided under the lock that a worker also holds when it stops: an order is
                # never left waiting with no worker to take it.
                if self._draining < self._workers:
                    try:
                        self._threads.submit(self._drain)
                    except RuntimeError:  # the interpreter is exiting
                        self._waiting.remove(entry)
                        raise ShuttingDown() from None
                    self._draining += 1
        if refused:
            if count_refusal:
                self._count_refusal()
            raise Overloaded(retry_after=1)
        metrics.IN_FLIGHT.inc()
        return entry.answer

    def _count_refusal(self) -> None:
        with self._lock:
            self._overloaded += 1
        metrics.OVERLOADED.inc()

    def _drain(self) -> None:
        """A worker: take what waits (up to batch_size) into one transaction, settle it, and
        go on until nothing waits."""
        while True:
            with self._lock:
                if not self._waiting:
                    self._draining -= 1
                    return
                batch = [
                    self._waiting.popleft()
                    for _ in range(min(self._batch_size, len(self._waiting)))
                ]
                self._running += len(batch)
                if len(batch) > 1:
                    self._batches += 1
                self._publish_depth()
            self._settle(batch, self._run([entry.job for entry in batch]))

    def _run(self, jobs: list[Job]) -> BatchOutcome:
        try:
            if self._processes is not None:
                return self._processes.submit(_run_in_process_worker, jobs).result()
            return run_batch(self._sessions, self._work, jobs, self._max_retries)
        except Exception as error:  # the pool itself failed: every order shares its fate
            log.error("batch of %d could not run", len(jobs), exc_info=error)
            return BatchOutcome([error] * len(jobs))

    def _settle(self, batch: Sequence[_Entry], outcome: BatchOutcome) -> None:
        """Count the batch once, then answer each order and write its log line."""
        labels = [_label(result) for result in outcome.outcomes]
        reasons = Counter(labels)
        retries = outcome.retries
        with self._lock:
            self._running -= len(batch)
            self._retries.update(retries)
            self._completed += reasons[("concluido", "")]
            for (kind, reason), n in reasons.items():
                if kind == "rejeitado":
                    self._rejected[reason] += n
                elif kind == "falhou":
                    self._failed += n
            self._publish_depth()
        metrics.IN_FLIGHT.dec(len(batch))
        for code, n in Counter(retries).items():
            metrics.RETRIES.labels(code).inc(n)
        for (kind, reason), n in reasons.items():
            metrics.ORDERS.labels(kind, reason).inc(n)
        now = time.perf_counter()
        lines = BatchLog(log)
        for entry, result, label in zip(batch, outcome.outcomes, labels, strict=True):
            seconds = now - entry.admitted
            metrics.ORDER_SECONDS.observe(seconds)
            _log_outcome(lines, result, label, seconds, len(batch), entry.caller)
            if isinstance(result, PedidoResult):
                entry.answer.set_result(result)
            else:
                entry.answer.set_exception(result)

    def _publish_depth(self) -> None:
        metrics.QUEUE_DEPTH.set(len(self._waiting))

    def stats(self) -> ProcessorStats:
        """Counters now: `queued` wait for a worker, `running` are inside a transaction."""
        with self._lock:
            return ProcessorStats(
                executor=self._kind,
                workers=self._workers,
                queue_capacity=self._queue_size,
                queued=len(self._waiting),
                running=self._running,
                in_progress=len(self._waiting) + self._running,
                completed=self._completed,
                failed=self._failed,
                overloaded=self._overloaded,
                batches=self._batches,
                rejected=dict(self._rejected),
                retries=dict(self._retries),
            )

    def shutdown(self) -> None:
        """Finish what was accepted, then stop the workers."""
        with self._lock:
            self._closed = True
        self._threads.shutdown(wait=True)
        if self._processes is not None:
            self._processes.shutdown(wait=True)


def _label(result: JobOutcome) -> tuple[str, str]:
    """The metric labels of an outcome: (concluido|rejeitado|falhou, reason or error)."""
    if isinstance(result, PedidoResult):
        return "concluido", ""
    if isinstance(result, PedidoRejeitado):
        return "rejeitado", result.reason
    return "falhou", type(result).__name__


def _log_outcome(
    lines: BatchLog,
    result: JobOutcome,
    label: tuple[str, str],
    seconds: float,
    batch: int,
    caller: str | None,
) -> None:
    """The one log line of an order's outcome (`label`: its metric labels), with the id of
    the request that placed it."""
    kind, reason = label
    fields: dict[str, object] = {"outcome": kind, "ms": round(seconds * 1000, 2), "batch": batch}
    if caller is not None:
        fields["request_id"] = caller
    if isinstance(result, PedidoResult):
        fields["pedido_id"] = result.id
    elif kind == "rejeitado":
        fields["reason"] = reason
    else:
        fields["error"] = reason
    lines.write(kind, fields)
