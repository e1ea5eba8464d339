"""The order transaction: lock, re-check, debit, insert — all or nothing."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from pedidos import statements
from pedidos.models import (
    CENT,
    Estado,
    utc_now,
)
from pedidos.tallies import count_outcome


@dataclass(frozen=True)
class ItemRequest:
    produto_id: int
    quantidade: int


@dataclass(frozen=True)
class PedidoRequest:
    """A validated order as the client asked for it; prices are never part of it."""

    cliente_id: int
    itens: tuple[ItemRequest, ...]
    # Set when the order was first recorded durably: the transaction then completes that row.
    solicitacao_id: int | None = None

    def to_payload(self) -> str:
        """Canonical JSON of what was asked: stored, and hashed for idempotency checks."""
        itens = [[i.produto_id, i.quantidade] for i in self.itens]
        return json.dumps({"cliente_id": self.cliente_id, "itens": itens}, separators=(",", ":"))

    @classmethod
    def from_payload(cls, payload: str, solicitacao_id: int) -> PedidoRequest:
        data = json.loads(payload)
        itens = tuple(ItemRequest(p, q) for p, q in data["itens"])
        return cls(data["cliente_id"], itens, solicitacao_id)

    def merged_itens(self) -> list[ItemRequest]:
        """One line per produto, in ascending produto id: the lock order."""
        totals: Counter[int] = Counter()
        for item in self.itens:
            totals[item.produto_id] += item.quantidade
        return [ItemRequest(produto_id, q) for produto_id, q in sorted(totals.items())]


@dataclass(frozen=True)
class ItemResult:
    produto_id: int
    quantidade: int
    preco_unitario: Decimal

    @property
    def subtotal(self) -> Decimal:
        return (self.preco_unitario * self.quantidade).quantize(CENT)


@dataclass(frozen=True)
class PedidoResult:
    """A committed order, built inside its transaction so it never touches a live ORM object."""

    id: int
    cliente_id: int
    total: Decimal
    criado_em: datetime
    itens: tuple[ItemResult, ...]


class PedidoRejeitado(Exception):
    """Base of the business rejections: never retried, nothing persisted."""

    reason: str = "rejeitado"

    def details(self) -> dict[str, Any]:
        """The facts behind the rejection, JSON-ready (money as decimal strings)."""
        return {k: str(v) if isinstance(v, Decimal) else v for k, v in vars(self).items()}

    def motivo(self) -> dict[str, Any]:
        """What is stored for a rejected request, and replayed from it."""
        return {"reason": self.reason, "detail": str(self), **self.details()}

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take their facts, not a message: rebuild them from state (process pool).
        return (_rebuild_rejection, (type(self), self.args, vars(self)))


def _rebuild_rejection(
    cls: type[PedidoRejeitado], args: tuple[Any, ...], state: dict[str, Any]
) -> PedidoRejeitado:
    rejection = cls.__new__(cls)
    rejection.args = args
    rejection.__dict__.update(state)
    return rejection


def rejection_from_motivo(motivo: dict[str, Any]) -> PedidoRejeitado:
    """Rebuild a stored rejection, so that a replay answers exactly as the first time."""
    facts = dict(motivo)
    reason, detail = facts.pop("reason"), facts.pop("detail")
    kind = next((k for k in PedidoRejeitado.__subclasses__() if k.reason == reason), None)
    return _rebuild_rejection(kind or PedidoRejeitado, (detail,), facts)


class ClienteNaoEncontrado(PedidoRejeitado):
    reason = "cliente_nao_encontrado"

    def __init__(self, cliente_id: int) -> None:
        super().__init__(f"cliente {cliente_id} does not exist")
        self.cliente_id = cliente_id


class ProdutoNaoEncontrado(PedidoRejeitado):
    reason = "produto_nao_encontrado"

    def __init__(self, produto_ids: list[int]) -> None:
        super().__init__(f"produto(s) {', '.join(map(str, produto_ids))} do not exist")
        self.produto_ids = produto_ids


class EstoqueInsuficiente(PedidoRejeitado):
    reason = "estoque_insuficiente"

    def __init__(self, produto_id: int, disponivel: int, pedido: int) -> None:
        super().__init__(
            f"produto {produto_id} has estoque {disponivel}, the order asks for {pedido}"
        )
        self.produto_id = produto_id
        self.disponivel = disponivel
        self.pedido = pedido


class SaldoInsuficiente(PedidoRejeitado):
    reason = "saldo_insuficiente"

    def __init__(self, cliente_id: int, saldo: Decimal, total: Decimal) -> None:
        super().__init__(f"cliente {cliente_id} has saldo {saldo}, the order costs {total}")
        self.cliente_id = cliente_id
        self.saldo = saldo
        self.total = total


class NadaParaSimular(PedidoRejeitado):
    reason = "sem_dados"

    def __init__(self) -> None:
        super().__init__("there are no clientes or no produtos to simulate an order with")


@dataclass(frozen=True)
class PedidoPlan:
    """An order checked under its row locks: what to debit and what to record."""

    cliente_id: int
    itens: tuple[ItemResult, ...]
    total: Decimal
    solicitacao_id: int | None
    payload: str


def place_pedido(session: Session, request: PedidoRequest) -> PedidoResult:
    """Run one order inside the caller's open transaction; raise PedidoRejeitado to reject."""
    plan = lock_and_check(session, request)
    debit(session, plan)
    return record(session, plan)


def lock_and_check(session: Session, request: PedidoRequest) -> PedidoPlan:
    """Lock the order's rows and check estoque and saldo under the locks.

    Lock order, the same in every transaction so that no two can wait on each other in a
    cycle: produtos by ascending id, then the cliente.
    """
    itens = request.merged_itens()
    produto_ids = [item.produto_id for item in itens]
    locked = session.execute(statements.LOCK_PRODUTOS, {"produto_ids": produto_ids}).all()
    produtos = {row.id: row for row in locked}
    missing = [produto_id for produto_id in produto_ids if produto_id not in produtos]
    if missing:
        raise ProdutoNaoEncontrado(missing)
    for item in itens:
        estoque = produtos[item.produto_id].estoque
        if estoque < item.quantidade:
            raise EstoqueInsuficiente(item.produto_id, estoque, item.quantidade)

    results = tuple(
        ItemResult(item.produto_id, item.quantidade, produtos[item.produto_id].preco)
        for item in itens
    )
    total = sum((result.subtotal for result in results), Decimal("0.00"))

    saldo = session.execute(
        statements.LOCK_CLIENTE, {"cliente": request.cliente_id}
    ).scalar_one_or_none()
    if saldo is None:
        raise ClienteNaoEncontrado(request.cliente_id)
    if saldo < total:
        raise SaldoInsuficiente(request.cliente_id, saldo, total)
    return PedidoPlan(
        request.cliente_id, results, total, request.solicitacao_id, request.to_payload()
    )


def debit(session: Session, plan: PedidoPlan) -> None:
    """Take the stock and the money. Parent rows are updated before the child rows are
    inserted, so the inserts' foreign-key checks never need to upgrade a shared lock."""
    session.execute(
        statements.DEBIT_ESTOQUE,
        [{"produto": item.produto_id, "unidades": item.quantidade} for item in plan.itens],
    )
    session.execute(statements.DEBIT_SALDO, {"cliente": plan.cliente_id, "valor": plan.total})


def record(session: Session, plan: PedidoPlan) -> PedidoResult:
    """Conclude the request and insert the pedido (same id) and its items.

    The request row commits with the order, so a request is CONCLUIDO exactly when its order
    exists, and a caller that lost the connection during COMMIT can look the id up.
    """
    now = utc_now()
    if plan.solicitacao_id is None:
        pedido_id: int = session.execute(
            statements.NEW_SOLICITACAO, concluded_request_row(plan, now)
        ).scalar_one()
    else:
        pedido_id = plan.solicitacao_id
        session.execute(statements.CONCLUDE_SOLICITACAO, {"solicitacao": pedido_id, "agora": now})
    insert_pedidos(session, [pedido_id], [plan], now)
    unidades = sum(item.quantidade for item in plan.itens)
    count_outcome(session, Estado.CONCLUIDO, unidades=unidades, receita=plan.total)
    return PedidoResult(pedido_id, plan.cliente_id, plan.total, now, plan.itens)


def concluded_request_row(plan: PedidoPlan, now: datetime) -> dict[str, Any]:
    """The solicitacoes row of an order that commits without having been recorded first."""
    return {
        "payload": plan.payload,
        "estado": Estado.CONCLUIDO.value,
        "tentativas": 1,
        "criado_em": now,
        "atualizado_em": now,
    }


def insert_pedidos(
    session: Session, pedido_ids: Sequence[int], plans: Sequence[PedidoPlan], now: datetime
) -> None:
    """Insert the pedidos, each with its request's id, and all their items."""
    session.execute(
        statements.NEW_PEDIDO,
        [
            {"id": i, "cliente_id": plan.cliente_id, "total": plan.total, "criado_em": now}
            for i, plan in zip(pedido_ids, plans, strict=True)
        ],
    )
    session.execute(
        statements.NEW_ITENS,
        [
            {
                "pedido_id": i,
                "produto_id": item.produto_id,
                "quantidade": item.quantidade,
                "preco_unitario": item.preco_unitario,
            }
            for i, plan in zip(pedido_ids, plans, strict=True)
            for item in plan.itens
        ],
    )


def random_pedido_request(session: Session, rng: random.Random) -> PedidoRequest:
    """An arriving order: a random cliente buys one unit of a random produto."""
    cliente_id = _random_id(session, statements.RANDOM_CLIENTE, rng)
    produto_id = _random_id(session, statements.RANDOM_PRODUTO, rng)
    if cliente_id is None or produto_id is None:
        raise NadaParaSimular()
    return PedidoRequest(cliente_id, (ItemRequest(produto_id, 1),))


def _random_id(session: Session, pick: statements.RandomPick, rng: random.Random) -> int | None:
    bounds, seek = pick
    bound: tuple[int | None, int | None] = tuple(session.execute(bounds).one())
    low, high = bound
    if low is None or high is None:
        return None
    found = session.execute(seek, {"pick": rng.randint(low, high)}).scalar_one_or_none()
    return int(found if found is not None else low)
