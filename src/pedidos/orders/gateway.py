"""From an accepted order to its outcome: run it directly, or record it durably first."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from pedidos.orders.batches import CommitOutcomeUnknown, SolicitacaoRef
from pedidos.orders.processor import Overloaded, PedidoProcessor
from pedidos.orders.solicitacoes import (
    IdempotencyKeyTaken,
    ProcessingFailed,
    SolicitacaoSnapshot,
    find_by_key,
    fingerprint,
    outcome_of,
    record_solicitacao,
)
from pedidos.orders.transaction import PedidoRejeitado, PedidoRequest, PedidoResult, RandomPedido
from pedidos.storage.models import utc_now

log = logging.getLogger(__name__)


class AnswerTimedOut(Exception):
    """A direct order did not finish within the request timeout (it may still commit)."""


class IdempotencyKeyReused(Exception):
    """An Idempotency-Key came back with a different request."""


class StillProcessing(Exception):
    """The request holding this Idempotency-Key has no outcome yet."""

    def __init__(self, solicitacao_id: int | None) -> None:
        super().__init__(solicitacao_id)
        self.solicitacao_id = solicitacao_id


@dataclass(frozen=True)
class Gateway:
    """The two ways in for an order, over one processor and database."""

    processor: PedidoProcessor
    sessions: sessionmaker[Session]
    read_sessions: sessionmaker[Session]
    request_timeout: float
    lease: timedelta
    idempotency_ttl: timedelta

    def place(self, order: PedidoRequest | RandomPedido) -> PedidoResult:
        """One transaction on the pool; the caller waits for it. Nothing is stored on
        rejection but the count."""
        answer = self.processor.submit(order)
        try:
            return answer.result(timeout=self.request_timeout)
        except TimeoutError:
            raise AnswerTimedOut() from None

    def place_solicitacao(
        self, order: PedidoRequest | RandomPedido, chave: str | None, wait: float
    ) -> PedidoResult | int:
        """Record the request durably, then run it; return its outcome within `wait`
        seconds, or its id while it is still pending (it will finish even if this process
        dies). A reused idempotency key replays the first outcome; raises the rejection to
        replay one."""
        self.processor.ensure_capacity()  # refuse before recording: nothing to clean up
        recorded = self._record_solicitacao(order, chave)
        if isinstance(recorded, SolicitacaoSnapshot):
            return self._replay(recorded, order)
        try:
            answer = self.processor.submit(SolicitacaoRef(recorded), count_refusal=False)
        except Overloaded:
            return recorded  # recorded already: recovery runs it once its grace period ends
        try:
            return answer.result(timeout=wait)
        except (PedidoRejeitado, ProcessingFailed):
            raise
        except (TimeoutError, CommitOutcomeUnknown):
            return recorded
        except Exception as error:  # the request stays pending: recovery retries it
            log.warning("solicitacao %s will be retried by recovery: %s", recorded, error)
            return recorded

    def _record_solicitacao(
        self, order: PedidoRequest | RandomPedido, chave: str | None
    ) -> int | SolicitacaoSnapshot:
        """The new request's id, or the live request that already holds `chave`."""
        if chave is None:
            return record_solicitacao(self.sessions, order, None, self.lease)
        for _ in range(3):
            # A plain read first: a replay or an in-flight duplicate never waits on row locks.
            with self.read_sessions.begin() as session:
                existing = find_by_key(session, chave)
            if existing is not None and existing.criado_em >= utc_now() - self.idempotency_ttl:
                return existing
            try:
                release = existing.id if existing is not None else None
                return record_solicitacao(self.sessions, order, chave, self.lease, release)
            except IdempotencyKeyTaken:
                continue  # someone took the key just now: look again
        raise StillProcessing(None)

    def _replay(
        self, stored: SolicitacaoSnapshot, order: PedidoRequest | RandomPedido
    ) -> PedidoResult | int:
        if stored.impressao != fingerprint(order):
            raise IdempotencyKeyReused()
        if not stored.final:
            raise StillProcessing(stored.id)
        with self.read_sessions.begin() as session:
            settled = outcome_of(session, stored)
        if isinstance(settled, PedidoRejeitado):
            raise settled
        return settled
