"""The order processor: a bounded pool that runs each order in its own transaction."""

from __future__ import annotations

import logging
import multiprocessing
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field, replace

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from pedidos import solicitacoes
from pedidos.config import ExecutorKind
from pedidos.models import Estado
from pedidos.service import (
    PedidoRejeitado,
    PedidoRequest,
    PedidoResult,
    place_batch,
    place_pedido,
    random_pedido_request,
)

log = logging.getLogger(__name__)

Work = Callable[[Session, PedidoRequest], PedidoResult]

# MariaDB/MySQL errors after which the whole transaction is retried from fresh reads:
# 1213 deadlock, 1205 lock wait timeout (rolls back only the statement, so we roll back the
# rest), 1020 record changed since last read (innodb_snapshot_isolation), and lost
# connections (2006 gone away, 2013 lost during query, 2055 lost at handshake, 1927 killed).
RETRYABLE_MYSQL_ERRORS = frozenset({1213, 1205, 1020, 1927, 2006, 2013, 2055})
BACKOFF_BASE_SECONDS = 0.005
BACKOFF_CAP_SECONDS = 0.25


class Overloaded(Exception):
    """The processor is full; the caller should come back after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


class ShuttingDown(Exception):
    """The processor was shut down and takes no more orders."""


class RetriesExhausted(Exception):
    """A transient database error persisted through every retry."""

    def __init__(self, code: str, attempts: int) -> None:
        super().__init__(code, attempts)
        self.code = code
        self.attempts = attempts

    def __str__(self) -> str:
        return f"transient database error {self.code} persisted after {self.attempts} attempts"


def retry_code(error: DBAPIError) -> str | None:
    """The label under which `error` is retried, or None when retrying cannot help."""
    if error.connection_invalidated:
        return "connection_lost"
    args = getattr(error.orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in RETRYABLE_MYSQL_ERRORS:
        return str(args[0])
    # SQLite's busy timeout expired while another writer held the database.
    if "database is locked" in str(error.orig):
        return "sqlite_busy"
    return None


def backoff_seconds(attempt: int, rng: random.Random) -> float:
    """Exponential backoff with full jitter, so that colliding retries spread out."""
    return rng.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt))


@dataclass(frozen=True)
class Durable:
    """An order recorded first as a solicitacao: run it by id, exactly once."""

    solicitacao_id: int


# What a task runs: an order, None for a random order, or a recorded request.
Job = PedidoRequest | Durable | None


class CommitIndeterminado(Exception):
    """The connection dropped during COMMIT and the outcome could not be read back yet."""

    def __init__(self, solicitacao_id: int) -> None:
        super().__init__(solicitacao_id)
        self.solicitacao_id = solicitacao_id


@dataclass(frozen=True)
class Outcome:
    """What one task produced: a committed order or a rejection, and the retries it took."""

    result: PedidoResult | None
    rejection: PedidoRejeitado | None
    retries: tuple[str, ...] = ()

    @classmethod
    def of(cls, settled: PedidoResult | PedidoRejeitado) -> Outcome:
        if isinstance(settled, PedidoRejeitado):
            return cls(None, settled)
        return cls(settled, None)


def run_order(sessions: sessionmaker[Session], work: Work, job: Job, max_retries: int) -> Outcome:
    """Run one order to its end: commit, reject, or raise after bounded retries."""
    rng = random.Random()
    retries: list[str] = []
    while True:
        try:
            if isinstance(job, Durable):
                outcome = _run_recorded(sessions, work, job.solicitacao_id)
            else:
                outcome = _run_direct(sessions, work, job, rng)
            return replace(outcome, retries=tuple(retries))
        except DBAPIError as error:
            code = retry_code(error)
            if code is None:
                raise
            if len(retries) >= max_retries:
                raise RetriesExhausted(code, len(retries) + 1) from error
            retries.append(code)
        time.sleep(backoff_seconds(len(retries), rng))


def _run_direct(
    sessions: sessionmaker[Session], work: Work, request: PedidoRequest | None, rng: random.Random
) -> Outcome:
    result: PedidoResult | None = None
    try:
        with sessions.begin() as session:
            result = work(session, request or random_pedido_request(session, rng))
    except PedidoRejeitado as rejection:
        return Outcome(None, rejection)
    except DBAPIError:
        if result is None:
            raise  # failed before COMMIT: nothing persisted, safe to retry
        if _committed(sessions, result.id, rng):
            return Outcome(result, None)
        raise
    return Outcome(result, None)


def _committed(sessions: sessionmaker[Session], solicitacao_id: int, rng: random.Random) -> bool:
    """After COMMIT failed: did it land? The request row commits with the order, so look."""
    for attempt in range(1, 6):
        try:
            with sessions.begin() as session:
                return solicitacoes.find(session, solicitacao_id) is not None
        except DBAPIError:
            time.sleep(backoff_seconds(attempt, rng) + 0.1 * attempt)
    raise CommitIndeterminado(solicitacao_id)


def _run_recorded(sessions: sessionmaker[Session], work: Work, solicitacao_id: int) -> Outcome:
    try:
        with sessions.begin() as session:
            pending = solicitacoes.lock_pending(session, solicitacao_id)
            if isinstance(pending, solicitacoes.Stored):
                return Outcome.of(solicitacoes.outcome_of(session, pending))
            return Outcome(work(session, pending), None)
    except PedidoRejeitado as rejection:
        # The order rolled back; record the rejection, unless someone settled it meanwhile.
        with sessions.begin() as session:
            settled = solicitacoes.settle(
                session, solicitacao_id, Estado.REJEITADO, rejection.motivo()
            )
            if settled is not None:
                return Outcome.of(solicitacoes.outcome_of(session, settled))
        return Outcome(None, rejection)


def run_batch(
    sessions: sessionmaker[Session], jobs: list[PedidoRequest | None], max_retries: int
) -> list[Outcome | BaseException]:
    """Run direct orders together in one transaction (see service.place_batch).

    A transient error retries the whole batch. Anything else falls back to running each
    order on its own, so that one bad order cannot fail the others.
    """
    rng = random.Random()
    retries: list[str] = []
    while True:
        try:
            settled = [Outcome.of(s) for s in _run_batch_once(sessions, jobs, rng)]
            if retries:  # counted once, on the first order of the batch
                settled[0] = replace(settled[0], retries=tuple(retries))
            outcomes: list[Outcome | BaseException] = []
            outcomes.extend(settled)
            return outcomes
        except DBAPIError as error:
            code = retry_code(error)
            if code is None or len(retries) >= max_retries:
                break
            retries.append(code)
        except CommitIndeterminado:
            raise  # running the orders again could apply them twice
        except Exception:
            break
        time.sleep(backoff_seconds(len(retries), rng))
    log.warning("batch of %d failed; running its orders one by one", len(jobs))
    one_by_one: list[Outcome | BaseException] = []
    for job in jobs:
        try:
            one_by_one.append(run_order(sessions, place_pedido, job, max_retries))
        except Exception as error:
            one_by_one.append(error)
    return one_by_one


def _run_batch_once(
    sessions: sessionmaker[Session], jobs: list[PedidoRequest | None], rng: random.Random
) -> list[PedidoResult | PedidoRejeitado]:
    settled: list[PedidoResult | PedidoRejeitado] = []
    decided = False
    try:
        with sessions.begin() as session:
            requests: list[PedidoRequest | PedidoRejeitado] = []
            for job in jobs:
                try:
                    requests.append(job or random_pedido_request(session, rng))
                except PedidoRejeitado as rejection:
                    requests.append(rejection)
            orders = [r for r in requests if isinstance(r, PedidoRequest)]
            placed = iter(place_batch(session, orders) if orders else [])
            settled = [r if isinstance(r, PedidoRejeitado) else next(placed) for r in requests]
            decided = True
    except DBAPIError:
        if not decided:
            raise  # failed before COMMIT: nothing persisted, safe to retry
        committed = [s for s in settled if isinstance(s, PedidoResult)]
        if not committed:
            return settled  # only rejections: there was nothing to commit
        # COMMIT failed: the batch's request rows commit with it, so one of them tells.
        if _committed(sessions, committed[0].id, rng):
            return settled
        raise
    return settled


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
            with self._lock:
                self._overloaded += 1
            raise Overloaded(retry_after=1)

    def submit(self, job: Job) -> Future[PedidoResult]:
        """Queue one order; the future yields its result or raises its rejection or error."""
        if not self._slots.acquire(blocking=False):
            with self._lock:
                self._overloaded += 1
            raise Overloaded(retry_after=1)
        with self._lock:
            self._in_flight += 1
        public: Future[PedidoResult] = Future()
        try:
            if self._batch_size > 1 and not isinstance(job, Durable):
                task: Future[Outcome] = Future()
                entry = (job, task)
                self._waiting.append(entry)
                try:
                    self._executor.submit(self._run_waiting)
                except RuntimeError:
                    with suppress(ValueError):  # a running worker may have taken it already
                        self._waiting.remove(entry)
                    raise
            elif self._kind == "process":
                task = self._executor.submit(_run_in_process_worker, job)
            else:
                task = self._executor.submit(
                    run_order, self._sessions, self._work, job, self._max_retries
                )
        except RuntimeError:
            # The executor refuses new work once shut down (draining for exit).
            self._finish()
            raise ShuttingDown() from None
        except BaseException:
            self._finish()
            raise
        task.add_done_callback(lambda done: self._settle(done, public))
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
        self._slots.release()

    def _settle(self, task: Future[Outcome], public: Future[PedidoResult]) -> None:
        error = task.exception()
        outcome = None if error is not None else task.result()
        with self._lock:
            if outcome is None:
                self._failed += 1
                if isinstance(error, RetriesExhausted):
                    self._retries[error.code] += error.attempts - 1
            else:
                self._retries.update(outcome.retries)
                if outcome.rejection is not None:
                    self._rejected[outcome.rejection.reason] += 1
                else:
                    self._completed += 1
        self._finish()
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
