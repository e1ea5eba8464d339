"""The order transaction: lock, re-check, debit, insert — all or nothing."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Integer, Select, Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from pedidos.models import (
    CENT,
    Base,
    Estado,
    Money,
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


# The order's statements, built once: each order only binds its values (hot path).
_produtos = Base.metadata.tables["produtos"]
_clientes = Base.metadata.tables["clientes"]
_solicitacoes = Base.metadata.tables["solicitacoes"]
_LOCK_PRODUTOS = (
    select(_produtos.c.id, _produtos.c.preco, _produtos.c.estoque)
    .where(_produtos.c.id.in_(bindparam("produto_ids", expanding=True)))
    .order_by(_produtos.c.id)
    .with_for_update()
)
_LOCK_CLIENTE = (
    select(_clientes.c.saldo).where(_clientes.c.id == bindparam("cliente")).with_for_update()
)
_LOCK_CLIENTES = (
    select(_clientes.c.id, _clientes.c.saldo)
    .where(_clientes.c.id.in_(bindparam("cliente_ids", expanding=True)))
    .order_by(_clientes.c.id)
    .with_for_update()
)
_DEBIT_ESTOQUE = (
    update(_produtos)
    .where(_produtos.c.id == bindparam("produto"))
    .values(estoque=_produtos.c.estoque - bindparam("unidades", type_=Integer()))
)
_DEBIT_SALDO = (
    update(_clientes)
    .where(_clientes.c.id == bindparam("cliente"))
    .values(saldo=_clientes.c.saldo - bindparam("valor", type_=Money()))
)
_NEW_SOLICITACAO = insert(_solicitacoes).returning(_solicitacoes.c.id)
# Many at once, ids back in the order of the rows sent (SQLAlchemy's insertmanyvalues).
_NEW_SOLICITACOES = insert(_solicitacoes).returning(
    _solicitacoes.c.id, sort_by_parameter_order=True
)
_CONCLUDE_SOLICITACAO = (
    update(_solicitacoes)
    .where(_solicitacoes.c.id == bindparam("solicitacao"))
    .values(estado=Estado.CONCLUIDO.value, prazo=None, atualizado_em=bindparam("agora"))
)
_NEW_PEDIDO = insert(Base.metadata.tables["pedidos"])
_NEW_ITENS = insert(Base.metadata.tables["itens_pedido"])


def lock_and_check(session: Session, request: PedidoRequest) -> PedidoPlan:
    """Lock the order's rows and check estoque and saldo under the locks.

    Lock order, the same in every transaction so that no two can wait on each other in a
    cycle: produtos by ascending id, then the cliente.
    """
    itens = request.merged_itens()
    produto_ids = [item.produto_id for item in itens]
    locked = session.execute(_LOCK_PRODUTOS, {"produto_ids": produto_ids}).all()
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

    saldo = session.execute(_LOCK_CLIENTE, {"cliente": request.cliente_id}).scalar_one_or_none()
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
        _DEBIT_ESTOQUE,
        [{"produto": item.produto_id, "unidades": item.quantidade} for item in plan.itens],
    )
    session.execute(_DEBIT_SALDO, {"cliente": plan.cliente_id, "valor": plan.total})


def record(session: Session, plan: PedidoPlan) -> PedidoResult:
    """Conclude the request and insert the pedido (same id) and its items.

    The request row commits with the order, so a request is CONCLUIDO exactly when its order
    exists, and a caller that lost the connection during COMMIT can look the id up.
    """
    now = utc_now()
    if plan.solicitacao_id is None:
        pedido_id: int = session.execute(
            _NEW_SOLICITACAO,
            {
                "payload": plan.payload,
                "estado": Estado.CONCLUIDO.value,
                "tentativas": 1,
                "criado_em": now,
                "atualizado_em": now,
            },
        ).scalar_one()
    else:
        pedido_id = plan.solicitacao_id
        session.execute(_CONCLUDE_SOLICITACAO, {"solicitacao": pedido_id, "agora": now})
    session.execute(
        _NEW_PEDIDO,
        {"id": pedido_id, "cliente_id": plan.cliente_id, "total": plan.total, "criado_em": now},
    )
    session.execute(
        _NEW_ITENS,
        [
            {
                "pedido_id": pedido_id,
                "produto_id": item.produto_id,
                "quantidade": item.quantidade,
                "preco_unitario": item.preco_unitario,
            }
            for item in plan.itens
        ],
    )
    unidades = sum(item.quantidade for item in plan.itens)
    count_outcome(session, Estado.CONCLUIDO, unidades=unidades, receita=plan.total)
    return PedidoResult(pedido_id, plan.cliente_id, plan.total, now, plan.itens)


def place_batch(
    session: Session, requests: list[PedidoRequest]
) -> list[PedidoResult | PedidoRejeitado]:
    """Many direct orders in the caller's one transaction, each still all or nothing.

    One ordered lock pass takes every produto, then every cliente, the batch touches (the
    same global order as a single order). Each order is then decided in memory, in arrival
    order, against what the orders before it left, so the rejections are exactly those of
    running them one by one. The survivors are written with one statement per table.
    """
    merged = [request.merged_itens() for request in requests]
    produto_ids = sorted({item.produto_id for itens in merged for item in itens})
    cliente_ids = sorted({request.cliente_id for request in requests})
    produtos = {
        row.id: row for row in session.execute(_LOCK_PRODUTOS, {"produto_ids": produto_ids})
    }
    saldos: dict[int, Decimal] = {
        row.id: row.saldo for row in session.execute(_LOCK_CLIENTES, {"cliente_ids": cliente_ids})
    }
    estoques = {produto_id: row.estoque for produto_id, row in produtos.items()}

    decided: list[PedidoPlan | PedidoRejeitado] = []
    for request, itens in zip(requests, merged, strict=True):
        try:
            decided.append(_decide(request, itens, produtos, estoques, saldos))
        except PedidoRejeitado as rejection:
            decided.append(rejection)
    plans = [plan for plan in decided if isinstance(plan, PedidoPlan)]
    if not plans:
        return [d for d in decided if isinstance(d, PedidoRejeitado)]

    estoque_debits: Counter[int] = Counter()
    saldo_debits: dict[int, Decimal] = {}
    for plan in plans:
        for item in plan.itens:
            estoque_debits[item.produto_id] += item.quantidade
        saldo_debits[plan.cliente_id] = saldo_debits.get(plan.cliente_id, Decimal(0)) + plan.total
    session.execute(
        _DEBIT_ESTOQUE,
        [{"produto": p, "unidades": q} for p, q in sorted(estoque_debits.items())],
    )
    session.execute(
        _DEBIT_SALDO, [{"cliente": c, "valor": v} for c, v in sorted(saldo_debits.items())]
    )
    now = utc_now()
    ids = (
        session.execute(
            _NEW_SOLICITACOES,
            [
                {
                    "payload": plan.payload,
                    "estado": Estado.CONCLUIDO.value,
                    "tentativas": 1,
                    "criado_em": now,
                    "atualizado_em": now,
                }
                for plan in plans
            ],
        )
        .scalars()
        .all()
    )
    session.execute(
        _NEW_PEDIDO,
        [
            {"id": i, "cliente_id": plan.cliente_id, "total": plan.total, "criado_em": now}
            for i, plan in zip(ids, plans, strict=True)
        ],
    )
    session.execute(
        _NEW_ITENS,
        [
            {
                "pedido_id": i,
                "produto_id": item.produto_id,
                "quantidade": item.quantidade,
                "preco_unitario": item.preco_unitario,
            }
            for i, plan in zip(ids, plans, strict=True)
            for item in plan.itens
        ],
    )
    count_outcome(
        session,
        Estado.CONCLUIDO,
        pedidos=len(plans),
        unidades=sum(estoque_debits.values()),
        receita=sum(saldo_debits.values(), Decimal("0.00")),
    )
    committed = iter(
        PedidoResult(i, plan.cliente_id, plan.total, now, plan.itens)
        for i, plan in zip(ids, plans, strict=True)
    )
    return [d if isinstance(d, PedidoRejeitado) else next(committed) for d in decided]


def _decide(
    request: PedidoRequest,
    itens: list[ItemRequest],
    produtos: dict[int, Any],
    estoques: dict[int, int],
    saldos: dict[int, Decimal],
) -> PedidoPlan:
    """Check one order against what is left, in the single-order path's order of checks;
    take its stock and money from what is left when it passes."""
    missing = [item.produto_id for item in itens if item.produto_id not in produtos]
    if missing:
        raise ProdutoNaoEncontrado(missing)
    for item in itens:
        if estoques[item.produto_id] < item.quantidade:
            raise EstoqueInsuficiente(item.produto_id, estoques[item.produto_id], item.quantidade)
    lines = tuple(
        ItemResult(item.produto_id, item.quantidade, produtos[item.produto_id].preco)
        for item in itens
    )
    total = sum((line.subtotal for line in lines), Decimal("0.00"))
    saldo = saldos.get(request.cliente_id)
    if saldo is None:
        raise ClienteNaoEncontrado(request.cliente_id)
    if saldo < total:
        raise SaldoInsuficiente(request.cliente_id, saldo, total)
    for item in itens:
        estoques[item.produto_id] -= item.quantidade
    saldos[request.cliente_id] = saldo - total
    return PedidoPlan(request.cliente_id, lines, total, None, request.to_payload())


def random_pedido_request(session: Session, rng: random.Random) -> PedidoRequest:
    """An arriving order: a random cliente buys one unit of a random produto."""
    cliente_id = _random_id(session, _RANDOM_CLIENTE, rng)
    produto_id = _random_id(session, _RANDOM_PRODUTO, rng)
    if cliente_id is None or produto_id is None:
        raise NadaParaSimular()
    return PedidoRequest(cliente_id, (ItemRequest(produto_id, 1),))


RandomPick = tuple[Select[Any], Select[Any]]


def _random_pick(table: Table) -> RandomPick:
    # Index-only: MIN/MAX, then one range seek; fast at any size (ORDER BY RAND() sorts all).
    bounds = select(func.min(table.c.id), func.max(table.c.id))
    seek = select(table.c.id).where(table.c.id >= bindparam("pick")).order_by(table.c.id).limit(1)
    return bounds, seek


_RANDOM_CLIENTE = _random_pick(_clientes)
_RANDOM_PRODUTO = _random_pick(_produtos)


def _random_id(session: Session, pick: RandomPick, rng: random.Random) -> int | None:
    bounds, seek = pick
    bound: tuple[int | None, int | None] = tuple(session.execute(bounds).one())
    low, high = bound
    if low is None or high is None:
        return None
    found = session.execute(seek, {"pick": rng.randint(low, high)}).scalar_one_or_none()
    return int(found if found is not None else low)
