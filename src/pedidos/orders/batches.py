"""Running a batch of orders to its end: commit, reject, or fail after bounded retries of
transient database errors. A lone order is a batch of one."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from pedidos.orders import solicitacoes, statements
from pedidos.orders.transaction import (
    PedidoRejeitado,
    PedidoRequest,
    PedidoResult,
    RandomPedido,
    Settled,
    Work,
    random_pedido_request,
)
from pedidos.storage.engine import mysql_code, skip_ping
from pedidos.storage.models import Estado

log = logging.getLogger(__name__)

# MariaDB/MySQL errors after which the whole transaction is retried from fresh reads:
# 1213 deadlock (also a Galera certification failure at COMMIT, already rolled back),
# 1205 lock wait timeout (rolls back only the statement, so we roll back the rest),
# 1020 record changed since last read (innodb_snapshot_isolation), and lost connections
# (2006 gone away, 2013 lost during query, 2055 lost at handshake, 1927 killed).
RETRYABLE_MYSQL_ERRORS = frozenset({1213, 1205, 1020, 1927, 2006, 2013, 2055})
LOST_CONNECTION_ERRORS = frozenset({1927, 2006, 2013, 2055})
BACKOFF_BASE_SECONDS = 0.005
BACKOFF_CAP_SECONDS = 0.25
# How often to ask, after a dropped COMMIT, whether it landed before saying "unknown".
COMMIT_CHECKS = 5
# Backoff jitter; seeding a generator per batch would cost a syscall each.
_JITTER = random.Random()


class RetriesExhausted(Exception):
    """A transient database error persisted through every retry."""

    def __init__(self, code: str, attempts: int) -> None:
        super().__init__(code, attempts)
        self.code = code
        self.attempts = attempts

    def __str__(self) -> str:
        return f"transient database error {self.code} persisted after {self.attempts} attempts"


class CommitOutcomeUnknown(Exception):
    """The connection dropped during COMMIT and the outcome could not be read back yet."""

    def __init__(self, solicitacao_id: int) -> None:
        super().__init__(solicitacao_id)
        self.solicitacao_id = solicitacao_id


def retry_code(error: DBAPIError) -> str | None:
    """The label under which `error` is retried, or None when retrying cannot help."""
    if error.connection_invalidated:
        return "connection_lost"
    code = mysql_code(error)
    if code in RETRYABLE_MYSQL_ERRORS:
        return str(code)
    # SQLite's busy timeout expired while another writer held the database.
    if "database is locked" in str(error.orig):
        return "sqlite_busy"
    return None


def backoff_seconds(attempt: int, rng: random.Random) -> float:
    """Exponential backoff with full jitter, so that colliding retries spread out."""
    return rng.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt))


@dataclass(frozen=True)
class SolicitacaoRef:
    """An order recorded first as a solicitacao: run it by id, exactly once."""

    solicitacao_id: int


# What a task runs: an order, a random order, or a solicitacao.
Job = PedidoRequest | RandomPedido | SolicitacaoRef
# What a job ends as: its order, its rejection, or the error that kept it from either.
JobOutcome = PedidoResult | PedidoRejeitado | Exception


@dataclass(frozen=True)
class BatchOutcome:
    """One outcome per job, in the jobs' order, and the retries the batch took."""

    outcomes: list[JobOutcome]
    retries: tuple[str, ...] = ()


def run_batch(
    sessions: sessionmaker[Session], work: Work, jobs: Sequence[Job], max_retries: int
) -> BatchOutcome:
    """Run the jobs in one transaction. A transient error retries the whole batch from fresh
    reads; anything else (or retries running out) runs each job on its own, so that one bad
    order cannot fail the others.

    A lost connection is one of those transient errors, so the batch's checkouts skip the
    pool's liveness ping: a round trip saved on every batch."""
    token = skip_ping.set(True)
    try:
        return _run_with_retries(sessions, work, jobs, max_retries)
    finally:
        skip_ping.reset(token)


def _run_with_retries(
    sessions: sessionmaker[Session], work: Work, jobs: Sequence[Job], max_retries: int
) -> BatchOutcome:
    retries: list[str] = []
    failure: Exception
    while True:
        try:
            return BatchOutcome(_run_once(sessions, work, jobs), tuple(retries))
        except DBAPIError as error:
            code = retry_code(error)
            failure = error
            if code is not None and len(retries) < max_retries:
                retries.append(code)
                time.sleep(backoff_seconds(len(retries), _JITTER))
                continue
            if code is not None:
                failure = RetriesExhausted(code, len(retries) + 1)
        except Exception as error:
            failure = error
        break
    if len(jobs) == 1:
        if not isinstance(failure, RetriesExhausted | DBAPIError):
            log.error("order failed unexpectedly", exc_info=failure)
        return BatchOutcome([failure], tuple(retries))
    log.warning(
        "batch of %d failed (%s); running its orders one by one", len(jobs), _brief(failure)
    )
    alone = [_run_with_retries(sessions, work, [job], max_retries) for job in jobs]
    return BatchOutcome(
        [one.outcomes[0] for one in alone],
        tuple(retries) + tuple(code for one in alone for code in one.retries),
    )


@dataclass
class _Prepared:
    """The jobs turned into orders to place. Per job, a slot: the index of its order in
    `requests`, or the outcome it already has (a settled request, an empty catalogue)."""

    requests: list[PedidoRequest]
    slots: list[int | JobOutcome]

    def add(self, request: PedidoRequest) -> int:
        self.requests.append(request)
        return len(self.requests) - 1

    def outcomes(self, placed: Sequence[Settled]) -> list[JobOutcome]:
        return [placed[slot] if isinstance(slot, int) else slot for slot in self.slots]


def _prepare(session: Session, jobs: Sequence[Job]) -> _Prepared:
    """Lock the solicitacoes (the first locks of the transaction), pick random orders."""
    durable_ids = [job.solicitacao_id for job in jobs if isinstance(job, SolicitacaoRef)]
    locked = solicitacoes.lock_pending(session, durable_ids) if durable_ids else {}
    prepared = _Prepared([], [])
    first_of: dict[int, int] = {}  # a request id seen twice is placed once
    for job in jobs:
        slot: int | JobOutcome
        if isinstance(job, SolicitacaoRef):
            found = locked.get(job.solicitacao_id)
            if found is None:
                slot = LookupError(f"solicitacao {job.solicitacao_id} does not exist")
            elif isinstance(found, solicitacoes.SolicitacaoSnapshot):
                slot = _solicitacao_outcome(session, found)
            elif job.solicitacao_id in first_of:
                slot = first_of[job.solicitacao_id]
            else:
                slot = first_of[job.solicitacao_id] = prepared.add(found)
        elif isinstance(job, RandomPedido):
            try:
                slot = prepared.add(random_pedido_request(session))
            except PedidoRejeitado as rejection:
                slot = rejection
        else:
            slot = prepared.add(job)
        prepared.slots.append(slot)
    return prepared


def _solicitacao_outcome(session: Session, stored: solicitacoes.SolicitacaoSnapshot) -> JobOutcome:
    try:
        return solicitacoes.outcome_of(session, stored)
    except Exception as error:  # ERRO: the request failed for good
        return error


def _brief(error: Exception) -> str:
    """A failure as a log line says it: for a database error the driver's own message, not
    the statement, whose text holds every order of the batch."""
    if isinstance(error, DBAPIError) and error.orig is not None:
        return f"{type(error.orig).__name__}: {error.orig}"
    return f"{type(error).__name__}: {error}"


def _run_once(sessions: sessionmaker[Session], work: Work, jobs: Sequence[Job]) -> list[JobOutcome]:
    placed: list[Settled] | None = None
    try:
        with sessions.begin() as session:
            prepared = _prepare(session, jobs)
            placed = work(session, prepared.requests) if prepared.requests else []
            outcomes = prepared.outcomes(placed)
    except DBAPIError as error:
        if placed is None or not _connection_lost(error):
            # Failed before COMMIT, or the server answered the COMMIT with an error (a
            # Galera certification failure is 1213 at COMMIT): rolled back, safe to retry.
            raise
        return _after_dropped_commit(sessions, error, prepared, placed, outcomes, jobs)
    return outcomes


def _connection_lost(error: DBAPIError) -> bool:
    """Whether the COMMIT's answer never came back, so its outcome is unknown."""
    return error.connection_invalidated or mysql_code(error) in LOST_CONNECTION_ERRORS


def _after_dropped_commit(
    sessions: sessionmaker[Session],
    error: DBAPIError,
    prepared: _Prepared,
    placed: Sequence[Settled],
    outcomes: list[JobOutcome],
    jobs: Sequence[Job],
) -> list[JobOutcome]:
    """COMMIT failed: did it land? Every request row the transaction settled commits with
    it, so one of them tells. Raises `error` (the caller retries) when it surely did not."""
    probe = _probe(prepared.requests, placed)
    if probe is None:
        return outcomes  # only rejections of direct orders: nothing else was at stake
    solicitacao_id, landed_as = probe
    for attempt in range(1, COMMIT_CHECKS + 1):
        try:
            with sessions.begin() as session:
                estado = session.execute(
                    statements.FIND_ESTADO_LOCKING, {"solicitacao": solicitacao_id}
                ).scalar_one_or_none()
        except DBAPIError:
            time.sleep(backoff_seconds(attempt, _JITTER) + 0.1 * attempt)
            continue
        if estado == landed_as.value:
            return outcomes
        raise error  # it rolled back: the retry runs the orders as if for the first time
    return [_unknown(outcome, job) for outcome, job in zip(outcomes, jobs, strict=True)]


def _probe(
    requests: Sequence[PedidoRequest], placed: Sequence[Settled]
) -> tuple[int, Estado] | None:
    """A request row this transaction settled, and the state it left it in."""
    for settled in placed:
        if isinstance(settled, PedidoResult):
            return settled.id, Estado.CONCLUIDO
    for request in requests:
        if request.solicitacao_id is not None:
            return request.solicitacao_id, Estado.REJEITADO
    return None


def _unknown(outcome: JobOutcome, job: Job) -> JobOutcome:
    """Each caller's own answer when the COMMIT's fate cannot be read back: its own id to
    look up later, or the rejection of its direct order, which holds either way."""
    if isinstance(outcome, PedidoResult):
        return CommitOutcomeUnknown(outcome.id)
    if isinstance(outcome, PedidoRejeitado) and isinstance(job, SolicitacaoRef):
        return CommitOutcomeUnknown(job.solicitacao_id)  # its rejection may not be stored
    return outcome
