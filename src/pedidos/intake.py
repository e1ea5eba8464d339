"""From an accepted order to its outcome: run it directly, or record it durably first."""

from __future__ import annotations

import logging
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import timedelta

from pedidos.models import utc_now
from pedidos.problems import Problem
from pedidos.processor import Overloaded
from pedidos.running import Durable
from pedidos.runtime import Runtime
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


def run_direct(rt: Runtime, order: PedidoRequest | None) -> PedidoResult:
    """One transaction on the pool; the caller waits for it. Nothing is stored on rejection."""
    future = rt.processor.submit(order)
    try:
        return future.result(timeout=rt.settings.request_timeout)
    except FutureTimeout:
        raise Problem(
            503,
            "tempo-esgotado",
            "Order still processing",
            "The order did not finish in time; look for it in GET /relatorio before sending "
            "it again, or send orders with an Idempotency-Key to retry safely.",
            headers={"Retry-After": "1"},
        ) from None


def run_recorded(
    rt: Runtime, order: PedidoRequest | None, chave: str | None, wait: float
) -> PedidoResult | int:
    """Record the request durably, then run it; return its outcome within `wait` seconds,
    or its id while it is still pending (it will finish even if this process dies).

    A reused idempotency key replays the first outcome; raises the rejection to replay one.
    """
    rt.processor.ensure_capacity()  # refuse before recording: nothing to clean up
    recorded = _record_once(rt, order, chave)
    if isinstance(recorded, Stored):
        return _replay(rt, recorded, order)
    try:
        future = rt.processor.submit(Durable(recorded))
    except Overloaded:
        return recorded  # recorded already: recovery runs it once its grace period ends
    try:
        return future.result(timeout=wait)
    except (PedidoRejeitado, ProcessamentoFalhou):
        raise
    except FutureTimeout:
        return recorded
    except Exception as error:  # the request stays pending: recovery retries it
        log.warning("solicitacao %s will be retried by recovery: %s", recorded, error)
        return recorded


def _record_once(rt: Runtime, order: PedidoRequest | None, chave: str | None) -> int | Stored:
    """The new request's id, or the live request that already holds `chave`."""
    grace = timedelta(seconds=rt.settings.lease_seconds)
    if chave is None:
        return record_request(rt.sessions, order, None, grace)
    ttl = timedelta(hours=rt.settings.idempotency_ttl_hours)
    for _ in range(3):
        # A plain read first: a replay or an in-flight duplicate never waits on row locks.
        with rt.read_sessions.begin() as session:
            existing = find_by_key(session, chave)
        if existing is not None and existing.criado_em >= utc_now() - ttl:
            return existing
        try:
            release = existing.id if existing is not None else None
            return record_request(rt.sessions, order, chave, grace, release)
        except ChaveEmUso:
            continue  # someone took the key just now: look again
    raise Problem(
        409,
        "em-andamento",
        "Request in progress",
        "This Idempotency-Key is being used right now.",
        headers={"Retry-After": "1"},
    )


def _replay(rt: Runtime, stored: Stored, order: PedidoRequest | None) -> PedidoResult | int:
    if stored.impressao != fingerprint(order):
        raise Problem(
            422,
            "chave-reutilizada",
            "Idempotency-Key reused",
            "This Idempotency-Key was already used for a different request.",
        )
    if not stored.final:
        raise Problem(
            409,
            "em-andamento",
            "Request in progress",
            f"The request with this Idempotency-Key (solicitacao {stored.id}) is still being "
            "processed; retry later.",
            headers={"Retry-After": "1", "Location": f"/pedido/{stored.id}"},
            solicitacao_id=stored.id,
        )
    with rt.read_sessions.begin() as session:
        settled = outcome_of(session, stored)
    if isinstance(settled, PedidoRejeitado):
        raise settled
    return settled
