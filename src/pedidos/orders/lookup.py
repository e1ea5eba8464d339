"""Committed orders read back as results, with their items."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pedidos.orders.transaction import ItemResult, PedidoResult
from pedidos.storage.models import ItemPedido, Pedido

PEDIDO_COLUMNS = (Pedido.id, Pedido.cliente_id, Pedido.total, Pedido.criado_em)


def pedido_result(session: Session, pedido_id: int) -> PedidoResult | None:
    """One committed order with its items, or None."""
    row = session.execute(select(*PEDIDO_COLUMNS).where(Pedido.id == pedido_id)).one_or_none()
    return with_itens(session, [row])[0] if row is not None else None


def with_itens(session: Session, rows: Sequence[Any]) -> list[PedidoResult]:
    """Orders from their rows, with all their items read in one query."""
    itens = _itens_of(session, [row.id for row in rows])
    return [
        PedidoResult(row.id, row.cliente_id, row.total, row.criado_em, tuple(itens[row.id]))
        for row in rows
    ]


def _itens_of(session: Session, pedido_ids: list[int]) -> dict[int, list[ItemResult]]:
    itens: dict[int, list[ItemResult]] = defaultdict(list)
    if not pedido_ids:
        return itens
    for row in session.execute(
        select(
            ItemPedido.pedido_id,
            ItemPedido.produto_id,
            ItemPedido.quantidade,
            ItemPedido.preco_unitario,
        )
        .where(ItemPedido.pedido_id.in_(pedido_ids))
        .order_by(ItemPedido.pedido_id, ItemPedido.id)
    ):
        itens[row.pedido_id].append(ItemResult(row.produto_id, row.quantidade, row.preco_unitario))
    return itens
