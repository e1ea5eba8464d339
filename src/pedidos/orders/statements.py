"""The order path's SQL: statements built once at import, and on MariaDB/MySQL text that a
batch's row counts shape. Values are bound parameters, or on MariaDB/MySQL literals written
as the driver would bind them (`_literals`): numbers as digits, text escaped by the driver."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Integer,
    Select,
    Table,
    bindparam,
    func,
    insert,
    select,
    update,
)

from pedidos.orders.contadores import pick_shard
from pedidos.storage.models import Base, Estado, Money

_produtos = Base.metadata.tables["produtos"]
_clientes = Base.metadata.tables["clientes"]
_solicitacoes = Base.metadata.tables["solicitacoes"]
_contadores = Base.metadata.tables["contadores"]
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
_LOCK_BOTH = (
    "(SELECT 'p' AS tabela, id, preco AS valor, estoque FROM produtos FORCE INDEX (PRIMARY)"
    " WHERE id IN ({produtos}) FOR UPDATE)"
    " UNION ALL "
    "(SELECT 'c', id, saldo, NULL FROM clientes FORCE INDEX (PRIMARY)"
    " WHERE id IN ({clientes}) FOR UPDATE)"
)
# For text that holds its values already: the driver must not look for placeholders in it.
_NO_PARAMETERS = {"no_parameters": True}


@dataclass
class Stock:
    """What the locked rows hold: each produto's preco and estoque, each cliente's saldo.
    The order transaction takes from them as it decides each order."""

    precos: dict[int, Decimal]
    estoques: dict[int, int]
    saldos: dict[int, Decimal]


def lock_rows(db: Connection, produto_ids: Sequence[int], cliente_ids: Sequence[int]) -> Stock:
    """Lock the produtos, then the clientes, by ascending id; return what they hold."""
    if not _one_round_trip(db):
        ids = {"produto_ids": list(produto_ids), "cliente_ids": list(cliente_ids)}
        produtos = db.execute(_LOCK_PRODUTOS, ids).all()
        clientes = db.execute(_LOCK_CLIENTES, ids).all()
        return Stock(
            precos={row.id: row.preco for row in produtos},
            estoques={row.id: row.estoque for row in produtos},
            saldos={row.id: row.saldo for row in clientes},
        )
    # An empty list reads as IN (NULL): nothing, as SQLAlchemy renders an empty IN.
    sql = _LOCK_BOTH.format(
        produtos=", ".join(["%s"] * len(produto_ids)) or "NULL",
        clientes=", ".join(["%s"] * len(cliente_ids)) or "NULL",
    )
    read = _inline(db, sql, [*produto_ids, *cliente_ids])
    stock = Stock({}, {}, {})
    rows = db.exec_driver_sql(read, execution_options=_NO_PARAMETERS).all()
    for tabela, row_id, valor, estoque in rows:
        if tabela == "p":
            stock.precos[row_id] = valor
            stock.estoques[row_id] = estoque
        else:
            stock.saldos[row_id] = valor
    return stock


# After a dropped COMMIT: a locking read waits for that transaction to end before it looks,
# so a COMMIT the server is still finishing is never taken for one that failed.
FIND_ESTADO_LOCKING = (
    select(_solicitacoes.c.estado)
    .where(_solicitacoes.c.id == bindparam("solicitacao"))
    .with_for_update(read=True)
)

# The writes one statement each, where a statement costs no round trip (SQLite). Debits bind
# the row (`alvo`), a count (`n`: units or orders) and money (`v`).
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
# Many at once, ids back in the order of the rows sent (SQLAlchemy's insertmanyvalues).
_NEW_SOLICITACOES = insert(_solicitacoes).returning(
    _solicitacoes.c.id, sort_by_parameter_order=True
)
_CONCLUDE_SOLICITACOES = (
    update(_solicitacoes)
    .where(_solicitacoes.c.id.in_(bindparam("ids", expanding=True)))
    .values(estado=Estado.CONCLUIDO.value, prazo=None, atualizado_em=bindparam("agora"))
)
_REJECT_SOLICITACAO = (
    update(_solicitacoes)
    .where(_solicitacoes.c.id == bindparam("solicitacao"))
    .values(
        estado=Estado.REJEITADO.value,
        motivo=bindparam("motivo"),
        prazo=None,
        atualizado_em=bindparam("agora"),
    )
)
_NEW_PEDIDO = insert(Base.metadata.tables["pedidos"])
_NEW_ITENS = insert(Base.metadata.tables["itens_pedido"])
_COUNT_OUTCOMES = (
    update(_contadores)
    .where(_contadores.c.shard == bindparam("alvo"))
    .values(
        concluidos=_contadores.c.concluidos + bindparam("concluidos", type_=BigInteger()),
        rejeitados=_contadores.c.rejeitados + bindparam("rejeitados", type_=BigInteger()),
        unidades=_contadores.c.unidades + bindparam("unidades", type_=BigInteger()),
        receita=_contadores.c.receita + bindparam("receita", type_=Money(18)),
    )
)
# (produto id, (units, receita)) and (cliente id, (orders, money)).
Debit = tuple[int, tuple[int, Decimal]]


@dataclass(frozen=True)
class PedidoRow:
    """A committed order to insert. A recorded request's order takes that request's id; a
    direct order's request row is created with it, CONCLUIDO, holding `payload`."""

    solicitacao: int | None
    payload: str | None
    cliente_id: int
    total: Decimal
    itens: Sequence[tuple[int, int, Decimal]]  # (produto_id, quantidade, preco_unitario)


@dataclass(frozen=True)
class Outcomes:
    """What one transaction's orders add to a shard of the running totals."""

    concluidos: int
    rejeitados: int
    unidades: int
    receita: Decimal


@dataclass(frozen=True)
class Writes:
    """Everything a batch writes once its orders are decided."""

    agora: datetime
    produtos: Sequence[Debit]  # ascending id
    clientes: Sequence[Debit]  # ascending id
    pedidos: Sequence[PedidoRow]
    rejected: Sequence[tuple[int, str]]  # recorded requests rejected: (id, motivo as JSON)
    outcomes: Outcomes

    @property
    def concluded(self) -> list[int]:
        """The recorded requests whose order commits."""
        return [row.solicitacao for row in self.pedidos if row.solicitacao is not None]


def write(db: Connection, writes: Writes) -> list[int]:
    """Create the direct orders' request rows; then debit the parent rows, settle the
    recorded requests, insert the pedidos and their items, and add to a counter shard last.
    Return the pedidos' ids, in order.

    The parents are debited before the children are inserted, so that the inserts'
    foreign-key checks never need to upgrade a shared lock; the counter shard comes last, as
    the only row of its kind a transaction locks, so it cannot take part in a cycle. On
    MariaDB everything after the request rows is one compound statement, so one round trip:
    under load a round trip costs a batch far more than the server's work on a statement.
    """
    compound = _compound(db)
    ids = _create_requests(db, writes, compound)
    shard = pick_shard()
    if compound:
        db.exec_driver_sql(
            _inline(db, *_script(writes, ids, shard)), execution_options=_NO_PARAMETERS
        )
    else:
        _write_each(db, writes, ids, shard)
    return ids


def _create_requests(db: Connection, writes: Writes, compound: bool) -> list[int]:
    """Insert the direct orders' request rows in one multi-row INSERT ... RETURNING; return
    every pedido's id. (A compound statement could insert them too, but only a row at a time
    to read each id back, which costs the server more than the round trip it saves.)"""
    new = [row for row in writes.pedidos if row.solicitacao is None]
    created: Sequence[int] = ()
    if new and compound:
        # Raw text: SQLAlchemy's insertmanyvalues costs more CPU here than the server's work.
        # An auto-increment key numbers a multi-row INSERT's rows upwards in the order given
        # (SQLAlchemy's MySQL dialect relies on the same), so sorted ids match the rows.
        literal = _literals(db)
        # What every row shares is quoted once.
        estado, agora = literal(Estado.CONCLUIDO.value), literal(_datetime_text(writes.agora))
        rows = ", ".join(
            [f"({literal(row.payload)}, {estado}, 1, {agora}, {agora})" for row in new]
        )
        created = sorted(
            db.exec_driver_sql(
                "INSERT INTO solicitacoes (payload, estado, tentativas, criado_em, atualizado_em)"
                f" VALUES {rows} RETURNING id",  # nosec B608: literals, quoted by the driver
                execution_options=_NO_PARAMETERS,
            ).scalars()
        )
    elif new:
        created = (
            db.execute(
                _NEW_SOLICITACOES,
                [
                    {
                        "payload": row.payload,
                        "estado": Estado.CONCLUIDO.value,
                        "tentativas": 1,
                        "criado_em": writes.agora,
                        "atualizado_em": writes.agora,
                    }
                    for row in new
                ],
            )
            .scalars()
            .all()
        )
    fresh = iter(created)
    return [
        row.solicitacao if row.solicitacao is not None else next(fresh) for row in writes.pedidos
    ]


def _datetime_text(moment: datetime) -> str:
    """A naive UTC timestamp as MariaDB reads it. The drivers render a datetime parameter
    in Python, several times dearer than escaping this text: it counts where a batch binds
    its one timestamp twice per order."""
    return moment.isoformat(" ")


# A value the order path writes into its statements' text.
Value = int | Decimal | str | None


def _literals(db: Connection) -> Callable[[Value], str]:
    """What writes a value into a statement's text as an SQL literal, on `db`.

    Both drivers bind on the client: they write each value into the text before sending it,
    through a per-value dispatch in Python that costs about a microsecond a value, and a
    batch of 16 one-line orders binds about 300. Here integers and finite decimals, nearly
    all of them, are written as their digits, which can carry nothing but a number; text is
    escaped and quoted by the driver's own connection, as when it binds it.
    """
    quote: Callable[[str], str] | None = None

    def literal(value: Value) -> str:
        nonlocal quote
        if type(value) is int:  # not bool, whose str() is no SQL
            return str(value)
        if type(value) is Decimal and value.is_finite():  # a subclass could format otherwise
            return format(value, "f")
        if isinstance(value, str):
            quote = quote or _quoter(db)
            return quote(value)
        if value is None:
            return "NULL"
        raise TypeError(f"no SQL literal for {value!r}")

    return literal


def _inline(db: Connection, sql: str, params: Sequence[Value]) -> str:
    """`sql` with each %s replaced by its parameter as an SQL literal."""
    return sql % tuple(map(_literals(db), params))


def _mysqldb_quoter(driver: Any) -> Callable[[str], str]:
    encoding: str = driver.encoding
    literal: Callable[[bytes], bytes] = driver.string_literal
    return lambda text: literal(text.encode(encoding)).decode(encoding)


def _pymysql_quoter(driver: Any) -> Callable[[str], str]:
    escape: Callable[[str], str] = driver.escape  # quoted, as the connection reads text
    return escape


# Per driver, what quotes text on one of its connections: the drivers whose statements may
# carry their values as literals (_compound).
_QUOTERS: dict[str, Callable[[Any], Callable[[str], str]]] = {
    "mysqldb": _mysqldb_quoter,
    "pymysql": _pymysql_quoter,
}


def _quoter(db: Connection) -> Callable[[str], str]:
    """What writes text as a quoted SQL string, escaped by the connection's driver."""
    make = _QUOTERS.get(db.dialect.driver)
    if make is None:
        raise TypeError(f"no quoting for text on the {db.dialect.driver} driver")
    return make(db.connection.dbapi_connection)


def _compound(db: Connection) -> bool:
    # BEGIN NOT ATOMIC ... END is MariaDB's; its text holds its values, text quoted by the
    # driver (_QUOTERS).
    dialect = db.dialect
    mariadb = bool(getattr(dialect, "is_mariadb", False))
    return mariadb and dialect.driver in _QUOTERS


def _one_round_trip(db: Connection) -> bool:
    # A round trip to a server costs far more than one more statement's text; SQLite has none.
    return db.dialect.name in ("mysql", "mariadb")


def _write_each(db: Connection, writes: Writes, ids: Sequence[int], shard: int) -> None:
    """The writes one statement each."""
    agora = writes.agora
    for per_row, debits in ((_DEBIT_PRODUTO, writes.produtos), (_DEBIT_CLIENTE, writes.clientes)):
        if debits:
            db.execute(per_row, [{"alvo": i, "n": n, "v": v} for i, (n, v) in debits])
    concluded = writes.concluded
    if concluded:
        db.execute(_CONCLUDE_SOLICITACOES, {"ids": concluded, "agora": agora})
    if writes.rejected:
        db.execute(
            _REJECT_SOLICITACAO,
            [{"solicitacao": i, "motivo": m, "agora": agora} for i, m in writes.rejected],
        )
    if writes.pedidos:
        rows = list(zip(ids, writes.pedidos, strict=True))
        db.execute(
            _NEW_PEDIDO,
            [
                {"id": i, "cliente_id": row.cliente_id, "total": row.total, "criado_em": agora}
                for i, row in rows
            ],
        )
        db.execute(
            _NEW_ITENS,
            [
                {"pedido_id": i, "produto_id": p, "quantidade": q, "preco_unitario": v}
                for i, row in rows
                for p, q, v in row.itens
            ],
        )
    db.execute(_COUNT_OUTCOMES, {"alvo": shard, **vars(writes.outcomes)})


def _paired_debit(produtos: Sequence[Debit], clientes: Sequence[Debit]) -> tuple[str, list[Value]]:
    """One UPDATE of both tables (MariaDB syntax), joined to a derived table whose k-th
    row carries the k-th produto's debit and the k-th cliente's (NULL past either's end).
    Every produto and cliente is named once, so each row is updated once."""
    rows = max(len(produtos), len(clientes))
    params: list[Value] = []
    for k in range(rows):
        pid, (pn, pv) = produtos[k] if k < len(produtos) else (None, (None, None))
        cid, (cn, cv) = clientes[k] if k < len(clientes) else (None, (None, None))
        params += (pid, pn, pv, cid, cn, cv)
    first = "SELECT %s AS pid, %s AS pn, %s AS pv, %s AS cid, %s AS cn, %s AS cv"
    derived = " UNION ALL ".join([first, *["SELECT %s, %s, %s, %s, %s, %s"] * (rows - 1)])
    # Placeholders for the values (_inline writes them in); only the row count shapes it.
    sql = (
        f"UPDATE ({derived}) AS d"  # nosec B608
        " LEFT JOIN produtos AS t ON t.id = d.pid LEFT JOIN clientes AS u ON u.id = d.cid"
        " SET t.estoque = t.estoque - d.pn, t.vendidos = t.vendidos + d.pn,"
        " t.receita = t.receita + d.pv,"
        " u.saldo = u.saldo - d.cv, u.compras = u.compras + d.cn, u.gasto = u.gasto + d.cv"
    )
    return sql, params


def _script(writes: Writes, ids: Sequence[int], shard: int) -> tuple[str, list[Value]]:
    """The writes as one MariaDB compound statement. Its statements run in order and stop at
    the first error, which the caller gets; the transaction then rolls back."""
    # The batch's one timestamp, written once.
    parts = ["DECLARE agora DATETIME(6) DEFAULT %s"]
    params: list[Value] = [_datetime_text(writes.agora)]
    if writes.produtos or writes.clientes:
        sql, debit_params = _paired_debit(writes.produtos, writes.clientes)
        parts.append(sql)
        params += debit_params
    concluded = writes.concluded
    if concluded:
        parts.append(
            "UPDATE solicitacoes SET estado = %s, prazo = NULL, atualizado_em = agora"  # nosec B608
            f" WHERE id IN ({', '.join(['%s'] * len(concluded))})"
        )
        params += (Estado.CONCLUIDO.value, *concluded)
    for solicitacao, motivo in writes.rejected:
        parts.append(
            "UPDATE solicitacoes SET estado = %s, motivo = %s, prazo = NULL,"
            " atualizado_em = agora WHERE id = %s"
        )
        params += (Estado.REJEITADO.value, motivo, solicitacao)
    if writes.pedidos:
        itens = [
            (i, *item) for i, row in zip(ids, writes.pedidos, strict=True) for item in row.itens
        ]
        parts.append(
            "INSERT INTO pedidos (id, cliente_id, total, criado_em)"  # nosec B608
            f" VALUES {', '.join(['(%s, %s, %s, agora)'] * len(ids))}"
        )
        for i, row in zip(ids, writes.pedidos, strict=True):
            params += (i, row.cliente_id, row.total)
        parts.append(
            "INSERT INTO itens_pedido (pedido_id, produto_id, quantidade, preco_unitario)"  # nosec B608
            f" VALUES {', '.join(['(%s, %s, %s, %s)'] * len(itens))}"
        )
        for item in itens:
            params += item
    outcomes = writes.outcomes
    parts.append(
        "UPDATE contadores SET concluidos = concluidos + %s, rejeitados = rejeitados + %s,"
        " unidades = unidades + %s, receita = receita + %s WHERE shard = %s"
    )
    params += (outcomes.concluidos, outcomes.rejeitados, outcomes.unidades, outcomes.receita)
    params.append(shard)
    # Placeholders for the values (_inline writes them in); only the row counts shape it.
    return "BEGIN NOT ATOMIC " + "; ".join(parts) + "; END", params  # nosec B608


RandomPick = tuple[Select[Any], Select[Any]]


def _random_pick(table: Table) -> RandomPick:
    # Index-only: MIN/MAX, then one range seek; fast at any size (ORDER BY RAND() sorts all).
    bounds = select(func.min(table.c.id), func.max(table.c.id))
    seek = select(table.c.id).where(table.c.id >= bindparam("pick")).order_by(table.c.id).limit(1)
    return bounds, seek


RANDOM_CLIENTE = _random_pick(_clientes)
RANDOM_PRODUTO = _random_pick(_produtos)
