"""The order path's SQL, built once at import: each order only binds its values."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, Select, Table, bindparam, func, insert, select, update

from pedidos.models import Base, Estado, Money

_produtos = Base.metadata.tables["produtos"]
_clientes = Base.metadata.tables["clientes"]
_solicitacoes = Base.metadata.tables["solicitacoes"]
LOCK_PRODUTOS = (
    select(_produtos.c.id, _produtos.c.preco, _produtos.c.estoque)
    .where(_produtos.c.id.in_(bindparam("produto_ids", expanding=True)))
    .order_by(_produtos.c.id)
    .with_for_update()
)
LOCK_CLIENTE = (
    select(_clientes.c.saldo).where(_clientes.c.id == bindparam("cliente")).with_for_update()
)
LOCK_CLIENTES = (
    select(_clientes.c.id, _clientes.c.saldo)
    .where(_clientes.c.id.in_(bindparam("cliente_ids", expanding=True)))
    .order_by(_clientes.c.id)
    .with_for_update()
)
DEBIT_ESTOQUE = (
    update(_produtos)
    .where(_produtos.c.id == bindparam("produto"))
    .values(estoque=_produtos.c.estoque - bindparam("unidades", type_=Integer()))
)
DEBIT_SALDO = (
    update(_clientes)
    .where(_clientes.c.id == bindparam("cliente"))
    .values(saldo=_clientes.c.saldo - bindparam("valor", type_=Money()))
)
NEW_SOLICITACAO = insert(_solicitacoes).returning(_solicitacoes.c.id)
# Many at once, ids back in the order of the rows sent (SQLAlchemy's insertmanyvalues).
NEW_SOLICITACOES = insert(_solicitacoes).returning(_solicitacoes.c.id, sort_by_parameter_order=True)
CONCLUDE_SOLICITACAO = (
    update(_solicitacoes)
    .where(_solicitacoes.c.id == bindparam("solicitacao"))
    .values(estado=Estado.CONCLUIDO.value, prazo=None, atualizado_em=bindparam("agora"))
)
NEW_PEDIDO = insert(Base.metadata.tables["pedidos"])
NEW_ITENS = insert(Base.metadata.tables["itens_pedido"])


RandomPick = tuple[Select[Any], Select[Any]]


def _random_pick(table: Table) -> RandomPick:
    # Index-only: MIN/MAX, then one range seek; fast at any size (ORDER BY RAND() sorts all).
    bounds = select(func.min(table.c.id), func.max(table.c.id))
    seek = select(table.c.id).where(table.c.id >= bindparam("pick")).order_by(table.c.id).limit(1)
    return bounds, seek


RANDOM_CLIENTE = _random_pick(_clientes)
RANDOM_PRODUTO = _random_pick(_produtos)
