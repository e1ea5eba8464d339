"""Sales summed from the order rows: what each produto sold and what each cliente spent.

The kept totals (produtos.vendidos/receita, clientes.compras/gasto) must always equal these;
the seed adds them for the orders it writes, and the invariant check compares against them.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Subquery, func, select

from pedidos.storage.models import ItemPedido, Pedido


def por_produto(where: ColumnElement[bool] | None = None) -> Subquery:
    """Per produto (`id`): units sold (`vendidos`) and their `receita`."""
    query = select(
        ItemPedido.produto_id.label("id"),
        func.sum(ItemPedido.quantidade).label("vendidos"),
        func.sum(ItemPedido.quantidade * ItemPedido.preco_unitario).label("receita"),
    )
    if where is not None:
        query = query.where(where)
    return query.group_by(ItemPedido.produto_id).subquery()


def por_cliente(where: ColumnElement[bool] | None = None) -> Subquery:
    """Per cliente (`id`): orders placed (`compras`) and money spent (`gasto`)."""
    query = select(
        Pedido.cliente_id.label("id"),
        func.count().label("compras"),
        func.sum(Pedido.total).label("gasto"),
    )
    if where is not None:
        query = query.where(where)
    return query.group_by(Pedido.cliente_id).subquery()
