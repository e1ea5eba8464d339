"""Solicitacoes, the durable order requests: record, find by key, claim for recovery, settle."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pedidos.orders.contadores import count_errors
from pedidos.orders.lookup import pedido_result
from pedidos.orders.transaction import (
    PedidoRejeitado,
    PedidoRequest,
    PedidoResult,
    RandomPedido,
    random_pedido_request,
    rejection_from_motivo,
)
from pedidos.storage.models import PENDENTES, Estado, Solicitacao, utc_now

RANDOM_ORDER_FINGERPRINT = "random-order"


class ProcessingFailed(Exception):
    """The request ended in ERRO: it failed on every attempt recovery allowed."""


@dataclass(frozen=True)
class SolicitacaoSnapshot:
    """A request as the database holds it."""

    id: int
    estado: Estado
    impressao: str | None
    tentativas: int
    criado_em: datetime
    atualizado_em: datetime
    motivo: dict[str, Any] | None

    @property
    def final(self) -> bool:
        return self.estado not in PENDENTES


_COLUMNS = (
    Solicitacao.id,
    Solicitacao.estado,
    Solicitacao.impressao,
    Solicitacao.tentativas,
    Solicitacao.criado_em,
    Solicitacao.atualizado_em,
    Solicitacao.motivo,
)


# Solicitacoes, locked before their orders' rows: the first step of the lock order.
_LOCK_PENDING = (
    select(*_COLUMNS, Solicitacao.payload)
    .where(Solicitacao.id.in_(bindparam("ids", expanding=True)))
    .order_by(Solicitacao.id)
    .with_for_update()
)


def _snapshot(row: Any) -> SolicitacaoSnapshot:
    motivo = json.loads(row.motivo) if row.motivo else None
    return SolicitacaoSnapshot(
        row.id,
        Estado(row.estado),
        row.impressao,
        row.tentativas,
        row.criado_em,
        row.atualizado_em,
        motivo,
    )


def fingerprint(request: PedidoRequest | RandomPedido) -> str:
    """Hash of what the client asked for; a reused key must come with the same request."""
    canonical = (
        request.to_payload() if isinstance(request, PedidoRequest) else RANDOM_ORDER_FINGERPRINT
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def find(session: Session, solicitacao_id: int) -> SolicitacaoSnapshot | None:
    row = session.execute(select(*_COLUMNS).where(Solicitacao.id == solicitacao_id)).one_or_none()
    return _snapshot(row) if row is not None else None


def find_by_key(session: Session, chave: str) -> SolicitacaoSnapshot | None:
    row = session.execute(select(*_COLUMNS).where(Solicitacao.chave == chave)).one_or_none()
    return _snapshot(row) if row is not None else None


class IdempotencyKeyTaken(Exception):
    """Another request took the idempotency key between our lookup and our insert."""


def record_solicitacao(
    sessions: sessionmaker[Session],
    request: PedidoRequest | RandomPedido,
    chave: str | None,
    grace: timedelta,
    release: int | None = None,
) -> int:
    """Durably record a request as RECEBIDO and return its id.

    A random order gets its cliente and produto now, so that what
    was accepted is fixed. Recovery may claim the request once `grace` has passed. `release`
    names an earlier request whose expired key this one takes over.
    """
    try:
        with sessions.begin() as session:
            now = utc_now()
            if release is not None:
                session.execute(
                    update(Solicitacao)
                    .where(Solicitacao.id == release)
                    .values(chave=None)
                    .execution_options(synchronize_session=False)
                )
            order = (
                request if isinstance(request, PedidoRequest) else random_pedido_request(session)
            )
            solicitacao = Solicitacao(
                chave=chave,
                impressao=fingerprint(request),
                payload=order.to_payload(),
                estado=Estado.RECEBIDO,
                tentativas=1,
                prazo=now + grace,
                criado_em=now,
                atualizado_em=now,
            )
            session.add(solicitacao)
            session.flush()
            return solicitacao.id
    except IntegrityError as error:
        if chave is None:
            raise
        raise IdempotencyKeyTaken(chave) from error


def lock_pending(
    session: Session, ids: Sequence[int]
) -> dict[int, PedidoRequest | SolicitacaoSnapshot]:
    """Lock the request rows, in ascending id; a pending request comes back as the order to
    run, a settled one as it is stored. Under these locks a request is settled exactly once,
    whoever runs it. Ids that do not exist are left out."""
    locked: dict[int, PedidoRequest | SolicitacaoSnapshot] = {}
    for row in session.execute(_LOCK_PENDING, {"ids": sorted(set(ids))}):
        stored = _snapshot(row)
        pending = not stored.final and row.payload is not None
        locked[row.id] = PedidoRequest.from_payload(row.payload, row.id) if pending else stored
    return locked


def outcome_of(session: Session, stored: SolicitacaoSnapshot) -> PedidoResult | PedidoRejeitado:
    """The committed order or the rejection of a settled request; ERRO raises."""
    if stored.estado is Estado.CONCLUIDO:
        result = pedido_result(session, stored.id)
        if result is None:
            raise LookupError(f"solicitacao {stored.id} is CONCLUIDO but has no pedido")
        return result
    if stored.estado is Estado.REJEITADO and stored.motivo is not None:
        return rejection_from_motivo(stored.motivo)
    detail = (stored.motivo or {}).get("detail", "processing failed")
    raise ProcessingFailed(f"solicitacao {stored.id}: {detail}")


def claim_due(session: Session, lease: timedelta, max_attempts: int, limit: int) -> list[int]:
    """Claim pending requests whose deadline passed (crashed or stuck), for this instance.

    SKIP LOCKED lets several instances claim side by side without waiting on each other.
    Requests that already used `max_attempts` are settled as ERRO instead.
    """
    now = utc_now()
    due = session.execute(
        select(Solicitacao.id, Solicitacao.tentativas)
        .where(Solicitacao.estado.in_(PENDENTES), Solicitacao.prazo < now)
        .order_by(Solicitacao.prazo)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    exhausted = [row.id for row in due if row.tentativas >= max_attempts]
    claimed = [row.id for row in due if row.tentativas < max_attempts]
    if exhausted:
        motivo = {"reason": "erro", "detail": f"no outcome after {max_attempts} attempts"}
        session.execute(
            update(Solicitacao)
            .where(Solicitacao.id.in_(exhausted))
            .values(estado=Estado.ERRO, motivo=json.dumps(motivo), prazo=None, atualizado_em=now)
            .execution_options(synchronize_session=False)
        )
        count_errors(session, len(exhausted))
    if claimed:
        session.execute(
            update(Solicitacao)
            .where(Solicitacao.id.in_(claimed))
            .values(
                estado=Estado.PROCESSANDO,
                prazo=now + lease,
                tentativas=Solicitacao.tentativas + 1,
                atualizado_em=now,
            )
            .execution_options(synchronize_session=False)
        )
    return claimed
