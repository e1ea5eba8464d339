"""The queries behind the report endpoints: orders, their summary and the catalog lists,
read straight into the response objects."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    and_,
    cast,
    exists,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.orm import Session

from pedidos.orders.contadores import read_totals
from pedidos.orders.lookup import PEDIDO_COLUMNS, with_itens
from pedidos.orders.transaction import PedidoResult
from pedidos.storage.models import Cliente, ItemPedido, Pedido, Produto, money_sum
from pedidos.web.schemas import (
    MAX_ID,
    ClienteOut,
    ClientePage,
    ClienteResumo,
    ItemNomeado,
    PedidoNomeado,
    ProdutoOut,
    ProdutoPage,
    ProdutoResumo,
    RelatorioQuery,
    ResumoOut,
)

ZERO = Decimal("0.00")


class InvalidCursor(ValueError):
    """The pagination cursor was not one this service issued."""


@dataclass(frozen=True)
class Cursor:
    """Position after the last order of a page, in (criado_em, id) descending order, and
    the page size it was asked with: a `cursor=`-only request keeps the same limit."""

    criado_em: datetime
    id: int
    limit: int | None = None

    def encode(self) -> str:
        raw = json.dumps([self.criado_em.isoformat(), self.id, self.limit]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            moment, pedido_id, *rest = json.loads(raw)
            criado_em = datetime.fromisoformat(moment)
        except (binascii.Error, ValueError, TypeError) as error:
            raise InvalidCursor("cursor is not valid") from error
        limit = rest[0] if len(rest) == 1 else None  # optional: the query's limit applies
        # Only what encode() produces: a naive UTC time, an id a BIGINT can hold, a page size.
        valid_id = _whole(pedido_id) and 0 <= pedido_id <= MAX_ID
        valid_limit = limit is None or (_whole(limit) and 1 <= limit <= MAX_PAGE)
        if len(rest) > 1 or not valid_id or not valid_limit or criado_em.tzinfo is not None:
            raise InvalidCursor("cursor is not valid")
        return cls(criado_em, pedido_id, limit)


MAX_PAGE = 200


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _pedido_filters(query: RelatorioQuery) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if query.cliente_id is not None:
        conditions.append(Pedido.cliente_id == query.cliente_id)
    if query.desde is not None:
        conditions.append(Pedido.criado_em >= query.desde)
    if query.ate is not None:
        conditions.append(Pedido.criado_em < query.ate)
    return conditions


def pedidos_page(session: Session, query: RelatorioQuery) -> tuple[list[PedidoNomeado], str | None]:
    """One page of successful orders, newest first, with their items and names."""
    statement = select(*PEDIDO_COLUMNS).where(*_pedido_filters(query))
    if query.produto_id is not None:
        statement = statement.where(
            exists().where(
                ItemPedido.pedido_id == Pedido.id, ItemPedido.produto_id == query.produto_id
            )
        )
    limit = query.limit
    if query.cursor is not None:
        after = Cursor.decode(query.cursor)
        if after.limit is not None and "limit" not in query.model_fields_set:
            limit = after.limit
        statement = statement.where(
            or_(
                Pedido.criado_em < after.criado_em,
                and_(Pedido.criado_em == after.criado_em, Pedido.id < after.id),
            )
        )
    rows = session.execute(
        statement.order_by(Pedido.criado_em.desc(), Pedido.id.desc()).limit(limit + 1)
    ).all()
    has_more = len(rows) > limit
    rows = rows[:limit]
    page = _named(session, with_itens(session, rows))
    next_cursor = Cursor(rows[-1].criado_em, rows[-1].id, limit).encode() if has_more else None
    return page, next_cursor


def _named(session: Session, pedidos: list[PedidoResult]) -> list[PedidoNomeado]:
    """The orders with their cliente's and produtos' names, read in one query each."""
    cliente_ids = {p.cliente_id for p in pedidos}
    produto_ids = {i.produto_id for p in pedidos for i in p.itens}
    clientes: dict[int, str] = {}
    produtos: dict[int, str] = {}
    if cliente_ids:
        query = select(Cliente.id, Cliente.nome).where(Cliente.id.in_(cliente_ids))
        clientes.update((row.id, row.nome) for row in session.execute(query))
    if produto_ids:
        query = select(Produto.id, Produto.nome).where(Produto.id.in_(produto_ids))
        produtos.update((row.id, row.nome) for row in session.execute(query))
    return [
        PedidoNomeado(
            id=p.id,
            cliente_id=p.cliente_id,
            cliente_nome=clientes.get(p.cliente_id, ""),
            total=p.total,
            criado_em=p.criado_em,
            itens=[
                ItemNomeado(
                    produto_id=i.produto_id,
                    produto_nome=produtos.get(i.produto_id, ""),
                    quantidade=i.quantidade,
                    preco_unitario=i.preco_unitario,
                    subtotal=i.subtotal,
                )
                for i in p.itens
            ],
        )
        for p in pedidos
    ]


def resumo(session: Session, query: RelatorioQuery) -> ResumoOut:
    """Totals over the filtered orders: orders, units, receita, and the top lists."""
    filters = (query.cliente_id, query.produto_id, query.desde, query.ate)
    if all(value is None for value in filters):
        return _resumo_kept(session, query.top)
    return _resumo_scanned(session, query)


def _resumo_kept(session: Session, top: int) -> ResumoOut:
    """Every order ever: the totals the order transaction keeps, read in a few index seeks
    (ties in receita go to the higher id, as in the filtered summary)."""
    totals = read_totals(session)
    por_produto = session.execute(
        select(Produto.id, Produto.nome, Produto.vendidos, Produto.receita)
        .where(Produto.receita > 0)
        .order_by(Produto.receita.desc(), Produto.id.desc())
        .limit(top)
    ).all()
    por_cliente = session.execute(
        select(Cliente.id, Cliente.nome, Cliente.compras, Cliente.gasto)
        .where(Cliente.gasto > 0)
        .order_by(Cliente.gasto.desc(), Cliente.id.desc())
        .limit(top)
    ).all()
    return _resumo_out((totals.pedidos, totals.unidades, totals.receita), por_produto, por_cliente)


def _resumo_scanned(session: Session, query: RelatorioQuery) -> ResumoOut:
    """A filtered summary: SQL aggregates over the matching orders' items."""
    receita = money_sum(ItemPedido.quantidade * ItemPedido.preco_unitario)
    unidades = func.coalesce(func.sum(ItemPedido.quantidade), 0)
    conditions = _pedido_filters(query)
    if query.produto_id is not None:
        conditions.append(ItemPedido.produto_id == query.produto_id)

    def over_itens(*columns: Any) -> Select[Any]:
        return select(*columns).select_from(ItemPedido).join(Pedido).where(*conditions)

    totals = session.execute(
        over_itens(func.count(func.distinct(ItemPedido.pedido_id)), unidades, receita)
    ).one()
    por_produto = session.execute(
        over_itens(ItemPedido.produto_id, Produto.nome, unidades, receita.label("receita"))
        .join(Produto, Produto.id == ItemPedido.produto_id)
        .group_by(ItemPedido.produto_id, Produto.nome)
        .order_by(receita.desc(), ItemPedido.produto_id.desc())
        .limit(query.top)
    ).all()
    por_cliente = session.execute(
        over_itens(
            Pedido.cliente_id,
            Cliente.nome,
            func.count(func.distinct(Pedido.id)),
            receita.label("receita"),
        )
        .join(Cliente, Cliente.id == Pedido.cliente_id)
        .group_by(Pedido.cliente_id, Cliente.nome)
        .order_by(receita.desc(), Pedido.cliente_id.desc())
        .limit(query.top)
    ).all()
    return _resumo_out(totals, por_produto, por_cliente)


def _resumo_out(
    totals: Sequence[Any],
    por_produto: Sequence[Sequence[Any]],
    por_cliente: Sequence[Sequence[Any]],
) -> ResumoOut:
    """The summary from (pedidos, unidades, receita) and the top (id, nome, count, receita)
    rows per produto and per cliente, however they were read."""
    pedidos, unidades, receita = totals
    return ResumoOut(
        pedidos=int(pedidos),
        unidades=int(unidades),
        receita=receita,
        por_produto=[
            ProdutoResumo(produto_id=r[0], nome=r[1], unidades=int(r[2]), receita=r[3])
            for r in por_produto
        ],
        por_cliente=[
            ClienteResumo(cliente_id=r[0], nome=r[1], pedidos=int(r[2]), receita=r[3])
            for r in por_cliente
        ],
    )


def clientes_page(session: Session, after: int, limit: int) -> ClientePage:
    """Clientes with their current saldo, by id."""
    rows = session.execute(
        select(Cliente.id, Cliente.nome, Cliente.saldo)
        .where(Cliente.id > after)
        .order_by(Cliente.id)
        .limit(limit + 1)
    ).all()
    items = [ClienteOut(id=r.id, nome=r.nome, saldo=r.saldo) for r in rows[:limit]]
    return ClientePage(clientes=items, next_after=items[-1].id if len(rows) > limit else None)


def produtos_page(session: Session, after: int, limit: int) -> ProdutoPage:
    """Produtos with their current preco and estoque, by id."""
    rows = session.execute(
        select(Produto.id, Produto.nome, Produto.preco, Produto.estoque)
        .where(Produto.id > after)
        .order_by(Produto.id)
        .limit(limit + 1)
    ).all()
    items = [
        ProdutoOut(id=r.id, nome=r.nome, preco=r.preco, estoque=r.estoque) for r in rows[:limit]
    ]
    return ProdutoPage(produtos=items, next_after=items[-1].id if len(rows) > limit else None)


def pedidos_por_segundo(session: Session, inicio: datetime, segundos: int) -> list[int]:
    """Committed orders in each whole second from `inicio` (naive UTC), all instances.

    Counted in SQL per second on the criado_em index, so the answer is `segundos` numbers
    however many orders there were.
    """
    inicio = inicio.replace(microsecond=0)
    fim = inicio + timedelta(seconds=segundos)
    if session.get_bind().dialect.name == "sqlite":
        epoch = int(inicio.replace(tzinfo=UTC).timestamp())
        offset: ColumnElement[Any] = cast(func.strftime("%s", Pedido.criado_em), Integer) - epoch
    else:
        offset = func.timestampdiff(text("SECOND"), inicio, Pedido.criado_em)
    bucket = offset.label("segundo")
    counts = [0] * segundos
    for segundo, quantos in session.execute(
        select(bucket, func.count())
        .where(Pedido.criado_em >= inicio, Pedido.criado_em < fim)
        .group_by(bucket)
    ):
        if segundo is not None and 0 <= int(segundo) < segundos:
            counts[int(segundo)] = int(quantos)
    return counts
