"""From an accepted order to its outcome: run it directly, or record it durably first."""

from __future__ import annotations

import logging
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from pedidos.models import utc_now
from pedidos.processor import Overloaded, PedidoProcessor
from pedidos.running import CommitIndeterminado, Durable
from pedidos.service import PedidoRejeitado, PedidoRequest, PedidoResult
from pedidos.solicitacoes import (
    ChaveEmUso,
    ProcessamentoFalhou,
    Stored,
    find_by_key,
    fingerprint,
    outcome_of,
    record_request,
)

log = logging.getLogger(__name__)


class TempoEsgotado(Exception):
    """A direct order did not finish within the request timeout (it may still commit)."""


class ChaveReutilizada(Exception):
    """An Idempotency-Key came back with a different request."""


class EmAndamento(Exception):
    """The request holding this Idempotency-Key has no outcome yet."""

    def __init__(self, solicitacao_id: int | None) -> None:
        super().__init__(solicitacao_id)
        self.solicitacao_id = solicitacao_id


@dataclass(frozen=True)
class Intake:
    """The two ways in for an order, over one processor and database."""

    processor: PedidoProcessor
    sessions: sessionmaker[Session]
    read_sessions: sessionmaker[Session]
    request_timeout: float
    lease: timedelta
    idempotency_ttl: timedelta

    def run_direct(self, order: PedidoRequest | None) -> PedidoResult:
        """One transaction on the pool; the caller waits for it. Nothing is stored on
        rejection but the count."""
        future = self.processor.submit(order)
        try:
            return future.result(timeout=self.request_timeout)
        except FutureTimeout:
            raise TempoEsgotado() from None

    def run_recorded(
        self, order: PedidoRequest | None, chave: str | None, wait: float
    ) -> PedidoResult | int:
        """Record the request durably, then run it; return its outcome within `wait`
        seconds, or its id while it is still pending (it will finish even if this process
        dies). A reused idempotency key replays the first outcome; raises the rejection to
        replay one."""
        self.processor.ensure_capacity()  # refuse before recording: nothing to clean up
        recorded = self._record_once(order, chave)
        if isinstance(recorded, Stored):
            return self._replay(recorded, order)
        try:
            future = self.processor.submit(Durable(recorded), count_refusal=False)
        except Overloaded:
            return recorded  # recorded already: recovery runs it once its grace period ends
        try:
            return future.result(timeout=wait)
        except (PedidoRejeitado, ProcessamentoFalhou):
            raise
        except (FutureTimeout, CommitIndeterminado):
            return recorded
        except Exception as error:  # the request stays pending: recovery retries it
            log.warning("solicitacao %s will be retried by recovery: %s", recorded, error)
            return recorded

    def _record_once(self, order: PedidoRequest | None, chave: str | None) -> int | Stored:
        """The new request's id, or the live request that already holds `chave`."""
        if chave is None:
            return record_request(self.sessions, order, None, self.lease)
        for _ in range(3):
            # A plain read first: a replay or an in-flight duplicate never waits on row locks.
            with self.read_sessions.begin() as session:
                existing = find_by_key(session, chave)
            if existing is not None and existing.criado_em >= utc_now() - self.idempotency_ttl:
                return existing
            try:
                release = existing.id if existing is not None else None
                return record_request(self.sessions, order, chave, self.lease, release)
            except ChaveEmUso:
                continue  # someone took the key just now: look again
        raise EmAndamento(None)

    def _replay(self, stored: Stored, order: PedidoRequest | None) -> PedidoResult | int:
        if stored.impressao != fingerprint(order):
            raise ChaveReutilizada()
        if not stored.final:
            raise EmAndamento(stored.id)
        with self.read_sessions.begin() as session:
            settled = outcome_of(session, stored)
        if isinstance(settled, PedidoRejeitado):
            raise settled
        return settled
