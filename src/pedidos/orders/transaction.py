"""The order transaction: lock, decide, debit, record — each order all or nothing."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from pedidos.orders import statements
from pedidos.orders.statements import Stock
from pedidos.storage.models import (
    CENT,
    utc_now,
)

ZERO = Decimal("0.00")


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
        """Canonical JSON of what was asked: stored, and hashed for idempotency checks.

        Plain integers are written directly, what `json.dumps` with compact separators gives
        for a third of its cost (the order worker writes one for every direct order of a
        batch); anything else goes through `json.dumps` itself."""
        numbers = [self.cliente_id, *(n for i in self.itens for n in (i.produto_id, i.quantidade))]
        if any(type(n) is not int for n in numbers):
            itens = [[i.produto_id, i.quantidade] for i in self.itens]
            return json.dumps(
                {"cliente_id": self.cliente_id, "itens": itens}, separators=(",", ":")
            )
        lines = ",".join([f"[{i.produto_id},{i.quantidade}]" for i in self.itens])
        return f'{{"cliente_id":{self.cliente_id},"itens":[{lines}]}}'

    @classmethod
    def from_payload(cls, payload: str, solicitacao_id: int) -> PedidoRequest:
        data = json.loads(payload)
        itens = tuple(ItemRequest(p, q) for p, q in data["itens"])
        return cls(data["cliente_id"], itens, solicitacao_id)

    def merged_itens(self) -> list[ItemRequest]:
        """One line per produto, in ascending produto id: the lock order."""
        if len(self.itens) == 1:
            return list(self.itens)  # most orders: nothing to merge or sort
        totals: Counter[int] = Counter()
        for item in self.itens:
            totals[item.produto_id] += item.quantidade
        return [ItemRequest(produto_id, q) for produto_id, q in sorted(totals.items())]


@dataclass(frozen=True)
class RandomPedido:
    """A demonstration order: its cliente and produto are drawn when it is recorded or run."""


RANDOM_PEDIDO = RandomPedido()


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


Settled = PedidoResult | PedidoRejeitado
# The order transaction: many orders in the caller's open transaction, one outcome each.
Work = Callable[[Session, Sequence[PedidoRequest]], list[Settled]]


@dataclass(frozen=True)
class PedidoPlan:
    """An order that passed its checks: what to debit and what to record."""

    cliente_id: int
    itens: tuple[ItemResult, ...]
    total: Decimal


def place_pedidos(session: Session, requests: Sequence[PedidoRequest]) -> list[Settled]:
    """Run orders in the caller's open transaction, each all or nothing; a lone order is a
    list of one. Each order is decided in arrival order against what the ones before it
    left, so the outcomes are exactly those of running them one by one."""
    # Core statements on the session's connection: the ORM's execute path would double the
    # cost of each statement, and these touch no ORM object.
    db = session.connection()
    stock = lock_stock(db, requests)
    decided = [decide(request, stock) for request in requests]
    now = utc_now()
    return results(decided, statements.write(db, settle(requests, decided, now)), now)


def place_pedido(session: Session, request: PedidoRequest) -> PedidoResult:
    """One order in the caller's open transaction; raise its rejection."""
    settled = place_pedidos(session, [request])[0]
    if isinstance(settled, PedidoRejeitado):
        raise settled
    return settled


def lock_stock(db: Connection, requests: Sequence[PedidoRequest]) -> Stock:
    """Lock every row the orders touch, in the one order every transaction uses, so that no
    two can wait on each other in a cycle: produtos by ascending id, then clientes."""
    return statements.lock_rows(
        db,
        sorted({item.produto_id for r in requests for item in r.itens}),
        sorted({request.cliente_id for request in requests}),
    )


def decide(request: PedidoRequest, stock: Stock) -> PedidoPlan | PedidoRejeitado:
    """Check one order against what is left; when it passes, take its stock and money."""
    itens = request.merged_itens()
    missing = [item.produto_id for item in itens if item.produto_id not in stock.precos]
    if missing:
        return ProdutoNaoEncontrado(missing)
    for item in itens:
        if stock.estoques[item.produto_id] < item.quantidade:
            disponivel = stock.estoques[item.produto_id]
            return EstoqueInsuficiente(item.produto_id, disponivel, item.quantidade)
    lines = tuple(
        ItemResult(item.produto_id, item.quantidade, stock.precos[item.produto_id])
        for item in itens
    )
    total = sum((line.subtotal for line in lines), Decimal("0.00"))
    saldo = stock.saldos.get(request.cliente_id)
    if saldo is None:
        return ClienteNaoEncontrado(request.cliente_id)
    if saldo < total:
        return SaldoInsuficiente(request.cliente_id, saldo, total)
    for item in itens:
        stock.estoques[item.produto_id] -= item.quantidade
    stock.saldos[request.cliente_id] = saldo - total
    return PedidoPlan(request.cliente_id, lines, total)


def debits(plans: Sequence[PedidoPlan]) -> tuple[list[statements.Debit], list[statements.Debit]]:
    """What the committed orders take: per produto its units and receita, per cliente its
    orders and money, each named once, in ascending id."""
    produtos: dict[int, tuple[int, Decimal]] = {}
    clientes: dict[int, tuple[int, Decimal]] = {}
    for plan in plans:
        for item in plan.itens:
            unidades, receita = produtos.get(item.produto_id, (0, ZERO))
            produtos[item.produto_id] = (unidades + item.quantidade, receita + item.subtotal)
        compras, gasto = clientes.get(plan.cliente_id, (0, ZERO))
        clientes[plan.cliente_id] = (compras + 1, gasto + plan.total)
    return sorted(produtos.items()), sorted(clientes.items())


def settle(
    requests: Sequence[PedidoRequest],
    decided: Sequence[PedidoPlan | PedidoRejeitado],
    now: datetime,
) -> statements.Writes:
    """What the batch writes: the debits, every committed order with its items (and the
    request row it completes or creates), the recorded requests rejected, the counters.

    A request row commits with its order, so a request is CONCLUIDO exactly when its order
    exists, and a caller that lost the connection during COMMIT can look the id up. A direct
    order gets its row now; a recorded one has had it since it arrived.
    """
    pedidos: list[statements.PedidoRow] = []
    rejected: list[tuple[int, str]] = []
    for request, plan in zip(requests, decided, strict=True):
        if isinstance(plan, PedidoRejeitado):
            if request.solicitacao_id is not None:
                rejected.append((request.solicitacao_id, json.dumps(plan.motivo())))
            continue
        itens = [(i.produto_id, i.quantidade, i.preco_unitario) for i in plan.itens]
        payload = request.to_payload() if request.solicitacao_id is None else None
        row = statements.PedidoRow(
            request.solicitacao_id, payload, plan.cliente_id, plan.total, itens
        )
        pedidos.append(row)
    plans = [plan for plan in decided if isinstance(plan, PedidoPlan)]
    produtos, clientes = debits(plans)
    return statements.Writes(
        agora=now,
        produtos=produtos,
        clientes=clientes,
        pedidos=pedidos,
        rejected=rejected,
        outcomes=statements.Outcomes(
            concluidos=len(plans),
            rejeitados=len(decided) - len(plans),
            unidades=sum(item.quantidade for plan in plans for item in plan.itens),
            receita=sum((plan.total for plan in plans), ZERO),
        ),
    )


def results(
    decided: Sequence[PedidoPlan | PedidoRejeitado], ids: Sequence[int], now: datetime
) -> list[Settled]:
    """Each order's outcome: its rejection, or its committed pedido with the id it got."""
    fresh = iter(ids)
    return [
        plan
        if isinstance(plan, PedidoRejeitado)
        else PedidoResult(next(fresh), plan.cliente_id, plan.total, now, plan.itens)
        for plan in decided
    ]


# Random picks; one generator per process, as seeding one per order costs a syscall.
_PICKS = random.Random()


def random_pedido_request(session: Session, rng: random.Random = _PICKS) -> PedidoRequest:
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
