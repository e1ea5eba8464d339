"""The naive order transaction that every e-commerce tracker reports as a bug.

It reads without locks, thinks, and writes absolute values, so it loses updates and oversells
under concurrency. It exists only as a yardstick: the benchmark measures our speed against it,
and the tests use it to prove that the invariant checks can see a race.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from pedidos.orders import statements
from pedidos.orders.statements import Stock
from pedidos.orders.transaction import (
    PedidoPlan,
    PedidoRequest,
    Settled,
    Work,
    decide,
    results,
    settle,
)
from pedidos.storage.models import Cliente, Produto, utc_now


def make_naive(think_seconds: float) -> Work:
    """The naive transaction, pausing `think_seconds` between its reads and its writes (the
    window in which another transaction reads the same values). The benchmark measures it
    with no pause; the tests widen the window so that the race shows every time."""

    def naive(session: Session, requests: Sequence[PedidoRequest]) -> list[Settled]:
        return _naive(session, requests, think_seconds)

    return naive


def _naive(
    session: Session, requests: Sequence[PedidoRequest], think_seconds: float
) -> list[Settled]:
    produto_ids = sorted({item.produto_id for r in requests for item in r.itens})
    cliente_ids = sorted({r.cliente_id for r in requests})
    produtos = session.execute(
        select(Produto.id, Produto.preco, Produto.estoque).where(Produto.id.in_(produto_ids))
    ).all()
    clientes = session.execute(
        select(Cliente.id, Cliente.saldo).where(Cliente.id.in_(cliente_ids))
    ).all()
    stock = Stock(
        precos={row.id: row.preco for row in produtos},
        estoques={row.id: row.estoque for row in produtos},
        saldos={row.id: row.saldo for row in clientes},
    )
    decided = [decide(request, stock) for request in requests]
    if think_seconds:
        time.sleep(think_seconds)
    plans = [plan for plan in decided if isinstance(plan, PedidoPlan)]
    # The bug: absolute values computed from reads that other transactions also made.
    for produto_id in {item.produto_id for plan in plans for item in plan.itens}:
        session.execute(
            update(Produto)
            .where(Produto.id == produto_id)
            .values(estoque=stock.estoques[produto_id])
        )
    for cliente_id in {plan.cliente_id for plan in plans}:
        session.execute(
            update(Cliente).where(Cliente.id == cliente_id).values(saldo=stock.saldos[cliente_id])
        )
    now = utc_now()
    # Its absolute values stand in for the debits.
    writes = replace(settle(requests, decided, now), produtos=(), clientes=())
    return results(decided, statements.write(session.connection(), writes), now)


naive_read_modify_write = make_naive(think_seconds=0.01)
