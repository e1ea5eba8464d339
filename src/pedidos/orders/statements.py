"""The order path's SQL, built once at import: each order only binds its values."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    Select,
    Table,
    TextClause,
    Update,
    bindparam,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from pedidos.storage.models import Base, Estado, Money

_produtos = Base.metadata.tables["produtos"]
_clientes = Base.metadata.tables["clientes"]
_solicitacoes = Base.metadata.tables["solicitacoes"]
LOCK_PRODUTOS = (
    select(_produtos.c.id, _produtos.c.preco, _produtos.c.estoque)
    .where(_produtos.c.id.in_(bindparam("produto_ids", expanding=True)))
    .order_by(_produtos.c.id)
    .with_for_update()
)
LOCK_CLIENTES = (
    select(_clientes.c.id, _clientes.c.saldo)
    .where(_clientes.c.id.in_(bindparam("cliente_ids", expanding=True)))
    .order_by(_clientes.c.id)
    .with_for_update()
)
# Per-row debits, for SQLite: in-process, where a statement per row costs no round trip.
# Each binds the row (`alvo`), a count (`n`: units or orders) and money (`v`).
_DEBIT_PRODUTO = (
    update(_produtos)
    .where(_produtos.c.id == bindparam("alvo"))
    .values(
        estoque=_produtos.c.estoque - bindparam("n", type_=Integer()),
        vendidos=_produtos.c.vendidos + bindparam("n", type_=BigInteger()),
        receita=_produtos.c.receita + bindparam("v", type_=Money(18)),
    )
)
_DEBIT_CLIENTE = (
    update(_clientes)
    .where(_clientes.c.id == bindparam("alvo"))
    .values(
        saldo=_clientes.c.saldo - bindparam("v", type_=Money()),
        compras=_clientes.c.compras + bindparam("n", type_=BigInteger()),
        gasto=_clientes.c.gasto + bindparam("v", type_=Money(18)),
    )
)
# (produto id, (units, receita)) and (cliente id, (orders, money)).
Debit = tuple[int, tuple[int, Decimal]]


def debit_produtos(session: Session, debits: Sequence[Debit]) -> None:
    """Take units from produtos and add them to their sales, one statement for them all."""
    _debit(session, "produtos", _DEBIT_PRODUTO, debits)


def debit_clientes(session: Session, debits: Sequence[Debit]) -> None:
    """Take money from clientes and add it to what they spent, one statement for them all."""
    _debit(session, "clientes", _DEBIT_CLIENTE, debits)


def _debit(session: Session, table: str, per_row: Update, debits: Sequence[Debit]) -> None:
    if _one_statement_per_table(session):
        session.execute(_joined_update(table, len(debits)), _joined_params(debits))
    else:
        session.execute(per_row, [{"alvo": i, "n": n, "v": v} for i, (n, v) in debits])


def _one_statement_per_table(session: Session) -> bool:
    # The MySQL drivers send an executemany UPDATE as one round trip per row.
    return session.get_bind().dialect.name in ("mysql", "mariadb")


_JOINED_SET = {
    "produtos": "t.estoque = t.estoque - d.n, t.vendidos = t.vendidos + d.n, "
    "t.receita = t.receita + d.v",
    "clientes": "t.saldo = t.saldo - d.v, t.compras = t.compras + d.n, t.gasto = t.gasto + d.v",
}


@cache
def _joined_update(table: str, rows: int) -> TextClause:
    """UPDATE joined to the batch's rows as a derived table (MariaDB/MySQL syntax)."""
    derived = " UNION ALL ".join(
        f"SELECT :i{k} AS id, :n{k} AS n, :v{k} AS v" if k == 0 else f"SELECT :i{k}, :n{k}, :v{k}"
        for k in range(rows)
    )
    # Values are bound parameters; only the table name and the row count shape the text.
    joined = f"UPDATE {table} AS t JOIN ({derived}) AS d ON t.id = d.id"  # nosec B608
    return text(f"{joined} SET {_JOINED_SET[table]}")


def _joined_params(debits: Sequence[Debit]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for k, (i, (n, v)) in enumerate(debits):
        params |= {f"i{k}": i, f"n{k}": n, f"v{k}": v}
    return params


# Many at once, ids back in the order of the rows sent (SQLAlchemy's insertmanyvalues).
NEW_SOLICITACOES = insert(_solicitacoes).returning(_solicitacoes.c.id, sort_by_parameter_order=True)
CONCLUDE_SOLICITACOES = (
    update(_solicitacoes)
    .where(_solicitacoes.c.id.in_(bindparam("ids", expanding=True)))
    .values(estado=Estado.CONCLUIDO.value, prazo=None, atualizado_em=bindparam("agora"))
)
REJECT_SOLICITACAO = (
    update(_solicitacoes)
    .where(_solicitacoes.c.id == bindparam("solicitacao"))
    .values(
        estado=Estado.REJEITADO.value,
        motivo=bindparam("motivo"),
        prazo=None,
        atualizado_em=bindparam("agora"),
    )
)
# After a dropped COMMIT: a locking read waits for that transaction to end before it looks,
# so a COMMIT the server is still finishing is never taken for one that failed.
FIND_ESTADO_LOCKING = (
    select(_solicitacoes.c.estado)
    .where(_solicitacoes.c.id == bindparam("solicitacao"))
    .with_for_update(read=True)
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
