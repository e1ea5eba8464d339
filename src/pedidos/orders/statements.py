"""The order path's SQL, built once at import: each order only binds its values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Integer,
    Select,
    Table,
    TextClause,
    bindparam,
    func,
    insert,
    select,
    text,
    update,
)

from pedidos.storage.models import Base, Estado, Money

_produtos = Base.metadata.tables["produtos"]
_clientes = Base.metadata.tables["clientes"]
_solicitacoes = Base.metadata.tables["solicitacoes"]
# Per table, for SQLite: in-process, where a statement costs no round trip.
_LOCK_PRODUTOS = (
    select(_produtos.c.id, _produtos.c.preco, _produtos.c.estoque)
    .where(_produtos.c.id.in_(bindparam("produto_ids", expanding=True)))
    .order_by(_produtos.c.id)
    .with_for_update()
)
_LOCK_CLIENTES = (
    select(_clientes.c.id, _clientes.c.saldo)
    .where(_clientes.c.id.in_(bindparam("cliente_ids", expanding=True)))
    .order_by(_clientes.c.id)
    .with_for_update()
)
# Both in one round trip (MariaDB/MySQL): produtos first, then clientes. A primary-key IN
# list is read as ascending ranges, so each table's rows are locked in ascending id order.
# FORCE INDEX: on a small table the optimizer would rather scan it whole, and a locking scan
# locks every row it reads, so every batch would wait for every other.
_LOCK_BOTH = text(
    "(SELECT 'p' AS tabela, id, preco AS valor, estoque FROM produtos FORCE INDEX (PRIMARY)"
    " WHERE id IN :produto_ids FOR UPDATE)"
    " UNION ALL "
    "(SELECT 'c', id, saldo, NULL FROM clientes FORCE INDEX (PRIMARY)"
    " WHERE id IN :cliente_ids FOR UPDATE)"
).bindparams(bindparam("produto_ids", expanding=True), bindparam("cliente_ids", expanding=True))


@dataclass
class Stock:
    """What the locked rows hold: each produto's preco and estoque, each cliente's saldo.
    The order transaction takes from them as it decides each order."""

    precos: dict[int, Decimal]
    estoques: dict[int, int]
    saldos: dict[int, Decimal]


def lock_rows(db: Connection, produto_ids: Sequence[int], cliente_ids: Sequence[int]) -> Stock:
    """Lock the produtos, then the clientes, by ascending id; return what they hold."""
    ids = {"produto_ids": list(produto_ids), "cliente_ids": list(cliente_ids)}
    if not _one_round_trip(db):
        produtos = db.execute(_LOCK_PRODUTOS, ids).all()
        clientes = db.execute(_LOCK_CLIENTES, ids).all()
        return Stock(
            precos={row.id: row.preco for row in produtos},
            estoques={row.id: row.estoque for row in produtos},
            saldos={row.id: row.saldo for row in clientes},
        )
    stock = Stock({}, {}, {})
    for tabela, row_id, valor, estoque in db.execute(_LOCK_BOTH, ids):
        if tabela == "p":
            stock.precos[row_id] = valor
            stock.estoques[row_id] = estoque
        else:
            stock.saldos[row_id] = valor
    return stock


# Per-row debits, for SQLite. Each binds the row (`alvo`), a count (`n`: units or orders)
# and money (`v`).
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


def debit(db: Connection, produtos: Sequence[Debit], clientes: Sequence[Debit]) -> None:
    """Take units from produtos and money from clientes, and add both to their sales."""
    if _one_round_trip(db):
        db.execute(_paired_update(max(len(produtos), len(clientes))), _paired(produtos, clientes))
        return
    for per_row, debits in ((_DEBIT_PRODUTO, produtos), (_DEBIT_CLIENTE, clientes)):
        db.execute(per_row, [{"alvo": i, "n": n, "v": v} for i, (n, v) in debits])


def _one_round_trip(db: Connection) -> bool:
    # A round trip to a server costs far more than one more statement's text; SQLite has none.
    return db.dialect.name in ("mysql", "mariadb")


@cache
def _paired_update(rows: int) -> TextClause:
    """One UPDATE of both tables (MariaDB/MySQL syntax), joined to a derived table whose k-th
    row carries the k-th produto's debit and the k-th cliente's (NULL past either's end).
    Every produto and cliente is named once, so each row is updated once."""
    derived = " UNION ALL ".join(
        f"SELECT :p{k} AS pid, :pn{k} AS pn, :pv{k} AS pv, :c{k} AS cid, :cn{k} AS cn, :cv{k} AS cv"
        if k == 0
        else f"SELECT :p{k}, :pn{k}, :pv{k}, :c{k}, :cn{k}, :cv{k}"
        for k in range(rows)
    )
    # Values are bound parameters; only the row count shapes the text.
    return text(
        f"UPDATE ({derived}) AS d"  # nosec B608
        " LEFT JOIN produtos AS t ON t.id = d.pid LEFT JOIN clientes AS u ON u.id = d.cid"
        " SET t.estoque = t.estoque - d.pn, t.vendidos = t.vendidos + d.pn,"
        " t.receita = t.receita + d.pv,"
        " u.saldo = u.saldo - d.cv, u.compras = u.compras + d.cn, u.gasto = u.gasto + d.cv"
    )


def _paired(produtos: Sequence[Debit], clientes: Sequence[Debit]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for k in range(max(len(produtos), len(clientes))):
        pid, (pn, pv) = produtos[k] if k < len(produtos) else (None, (None, None))
        cid, (cn, cv) = clientes[k] if k < len(clientes) else (None, (None, None))
        params |= {
            f"p{k}": pid, f"pn{k}": pn, f"pv{k}": pv, f"c{k}": cid, f"cn{k}": cn, f"cv{k}": cv
        }  # fmt: skip
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
