"""The order processor: a bounded pool that runs each order (or batch) in its own transaction."""

from __future__ import annotations

import contextvars
import logging
import multiprocessing
import threading
import time
from collections import Counter, deque
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from typing import NoReturn

from sqlalchemy.orm import Session, sessionmaker

from pedidos import metrics
from pedidos.config import ExecutorKind
from pedidos.logs import request_id
from pedidos.running import (
    Durable,
    Job,
    Outcome,
    RetriesExhausted,
    Work,
    run_batch,
    run_order,
)
from pedidos.service import PedidoRequest, PedidoResult, place_pedido

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
    """A consistent snapshot of the processor's counters."""

    executor: ExecutorKind
    workers: int
    queue_capacity: int
    queued: int
    running: int
    completed: int
    failed: int
    overloaded: int
    batches: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    retries: dict[str, int] = field(default_factory=dict)

    @property
    def in_progress(self) -> int:
        """Admitted and not yet settled: waiting for a worker or running."""
        return self.queued + self.running


# State of a ProcessPoolExecutor worker: each worker process builds its own engine.
_worker_sessions: sessionmaker[Session] | None = None
_worker_work: Work = place_pedido
_worker_max_retries = 0


def _init_process_worker(database_url: str, work: Work, max_retries: int) -> None:
    global _worker_sessions, _worker_work, _worker_max_retries
    from pedidos.db import make_engine, make_sessions

    _worker_sessions = make_sessions(make_engine(database_url, pool_size=1))
    _worker_work = work
    _worker_max_retries = max_retries


def _run_in_process_worker(job: Job) -> Outcome:
    if _worker_sessions is None:
        raise RuntimeError("process worker was not initialised")
    return run_order(_worker_sessions, _worker_work, job, _worker_max_retries)


def _retries_of(outcome: Outcome | None, error: BaseException | None) -> tuple[str, ...]:
    """The error code of every retry the order took, whether it ended well or not."""
    if isinstance(error, RetriesExhausted):
        return (error.code,) * (error.attempts - 1)
    return outcome.retries if outcome is not None else ()


def _observe(
    outcome: Outcome | None,
    error: BaseException | None,
    retries: tuple[str, ...],
    seconds: float,
    caller: str | None,
) -> None:
    """Metrics and the one log line of an order's outcome."""
    metrics.ORDER_SECONDS.observe(seconds)
    for code in retries:
        metrics.RETRIES.labels(code).inc()
    fields: dict[str, object] = {"ms": round(seconds * 1000, 2), "retries": len(retries)}
    if caller is not None:
        fields["request_id"] = caller
    if outcome is None:
        metrics.ORDERS.labels("falhou", type(error).__name__).inc()
        fields |= {"outcome": "falhou", "error": type(error).__name__}
    elif outcome.rejection is not None:
        metrics.ORDERS.labels("rejeitado", outcome.rejection.reason).inc()
        fields |= {"outcome": "rejeitado", "reason": outcome.rejection.reason}
    else:
        metrics.ORDERS.labels("concluido", "").inc()
        fields |= {"outcome": "concluido", "pedido_id": outcome.result and outcome.result.id}
    log.info("order %s", fields["outcome"], extra=fields)


class PedidoProcessor:
    """Runs orders in parallel on a thread (or process) pool with bounded admission.

    `concurrent.futures` executors queue without limit, so admission is bounded here by a
    semaphore: at most `workers + queue_size` orders are in flight; beyond that `submit`
    raises Overloaded instead of letting memory grow. With `batch_size > 1`, direct orders
    that wait for a worker are run together (see `run_batch`).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        workers: int,
        queue_size: int,
        max_retries: int,
        work: Work = place_pedido,
        executor: ExecutorKind = "thread",
        database_url: str | None = None,
        batch_size: int = 1,
    ) -> None:
        self._sessions = sessions
        # Direct orders waiting for a worker; whichever worker runs first takes up to
        # batch_size of them into one transaction (only with the standard work, on threads).
        self._batch_size = batch_size if work is place_pedido and executor == "thread" else 1
        self._waiting: deque[tuple[PedidoRequest | None, Future[Outcome]]] = deque()
        self._work = work
        self._max_retries = max_retries
        self._kind: ExecutorKind = executor
        self._workers = workers
        self._queue_size = queue_size
        self._slots = threading.BoundedSemaphore(workers + queue_size)
        self._lock = threading.Lock()
        self._in_flight = 0
        self._completed = 0
        self._failed = 0
        self._overloaded = 0
        self._batches = 0
        self._rejected: Counter[str] = Counter()
        self._retries: Counter[str] = Counter()
        self._executor: Executor
        if executor == "process":
            if database_url is None:
                raise ValueError("the process executor needs the database URL")
            # forkserver: workers never inherit the parent's pooled connections.
            self._executor = ProcessPoolExecutor(
                workers,
                mp_context=multiprocessing.get_context("forkserver"),
                initializer=_init_process_worker,
                initargs=(database_url, work, max_retries),
            )
        else:
            self._executor = ThreadPoolExecutor(workers, thread_name_prefix="pedidos-worker")

    def free_slots(self) -> int:
        """How many more orders would be admitted right now."""
        with self._lock:
            return self._workers + self._queue_size - self._in_flight

    def ensure_capacity(self) -> None:
        """Raise Overloaded, and count it, when no order would be admitted right now."""
        if self.free_slots() <= 0:
            self._refuse()

    def _refuse(self) -> NoReturn:
        with self._lock:
            self._overloaded += 1
        metrics.OVERLOADED.inc()
        raise Overloaded(retry_after=1)

    def submit(self, job: Job) -> Future[PedidoResult]:
        """Queue one order; the future yields its result or raises its rejection or error."""
        if not self._slots.acquire(blocking=False):
            self._refuse()
        admitted = time.perf_counter()
        with self._lock:
            self._in_flight += 1
            self._publish_depth()
        metrics.IN_FLIGHT.inc()
        public: Future[PedidoResult] = Future()
        # The worker runs in the submitter's context, so its log lines carry the request id.
        context = contextvars.copy_context()
        try:
            if self._batch_size > 1 and not isinstance(job, Durable):
                task: Future[Outcome] = Future()
                entry = (job, task)
                self._waiting.append(entry)
                try:
                    self._executor.submit(context.run, self._run_waiting)
                except RuntimeError:
                    with suppress(ValueError):  # a running worker may have taken it already
                        self._waiting.remove(entry)
                    raise
            elif self._kind == "process":
                task = self._executor.submit(_run_in_process_worker, job)
            else:
                task = self._executor.submit(
                    context.run, run_order, self._sessions, self._work, job, self._max_retries
                )
        except RuntimeError:
            # The executor refuses new work once shut down (draining for exit).
            self._finish()
            raise ShuttingDown() from None
        except BaseException:
            self._finish()
            raise
        caller = request_id.get()
        task.add_done_callback(lambda done: self._settle(done, public, admitted, caller))
        return public

    def _run_waiting(self) -> None:
        """Take up to batch_size waiting orders and run them in one transaction."""
        batch: list[tuple[PedidoRequest | None, Future[Outcome]]] = []
        while len(batch) < self._batch_size:
            try:
                batch.append(self._waiting.popleft())
            except IndexError:
                break  # the others were taken by workers that started earlier
        if not batch:
            return
        outcomes: list[Outcome | BaseException]
        try:
            if len(batch) == 1:  # nothing to share: the single-order path is cheaper
                outcomes = [run_order(self._sessions, place_pedido, batch[0][0], self._max_retries)]
            else:
                with self._lock:
                    self._batches += 1
                outcomes = run_batch(self._sessions, [job for job, _ in batch], self._max_retries)
        except BaseException as error:
            outcomes = [error] * len(batch)
        for (_, task), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                task.set_exception(outcome)
            else:
                task.set_result(outcome)

    def _finish(self) -> None:
        with self._lock:
            self._in_flight -= 1
            self._publish_depth()
        metrics.IN_FLIGHT.dec()
        self._slots.release()

    def _publish_depth(self) -> None:
        metrics.QUEUE_DEPTH.set(max(0, self._in_flight - self._workers))

    def _settle(
        self,
        task: Future[Outcome],
        public: Future[PedidoResult],
        admitted: float,
        caller: str | None,
    ) -> None:
        error = task.exception()
        outcome = None if error is not None else task.result()
        retries = _retries_of(outcome, error)
        with self._lock:
            self._retries.update(retries)
            if outcome is None:
                self._failed += 1
            elif outcome.rejection is not None:
                self._rejected[outcome.rejection.reason] += 1
            else:
                self._completed += 1
        self._finish()
        _observe(outcome, error, retries, time.perf_counter() - admitted, caller)
        if outcome is None:
            if not isinstance(error, RetriesExhausted):
                log.error("order failed unexpectedly", exc_info=error)
            public.set_exception(error or RuntimeError("task ended without outcome"))
        elif outcome.rejection is not None:
            public.set_exception(outcome.rejection)
        elif outcome.result is not None:
            public.set_result(outcome.result)

    def stats(self) -> ProcessorStats:
        """Counters now; `running` is the in-flight orders that have a worker."""
        with self._lock:
            running = min(self._in_flight, self._workers)
            return ProcessorStats(
                executor=self._kind,
                workers=self._workers,
                queue_capacity=self._queue_size,
                queued=self._in_flight - running,
                running=running,
                completed=self._completed,
                failed=self._failed,
                overloaded=self._overloaded,
                batches=self._batches,
                rejected=dict(self._rejected),
                retries=dict(self._retries),
            )

    def shutdown(self) -> None:
        """Finish what was accepted, then stop the workers."""
        self._executor.shutdown(wait=True)
