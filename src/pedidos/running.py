"""Running one order, or a batch of direct orders, to its end: commit, reject, or fail
after bounded retries of transient database errors."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from pedidos import solicitacoes
from pedidos.batch import place_batch
from pedidos.models import Estado
from pedidos.service import (
    PedidoRejeitado,
    PedidoRequest,
    PedidoResult,
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
