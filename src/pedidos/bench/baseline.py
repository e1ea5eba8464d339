"""The naive order transaction that every e-commerce tracker reports as a bug.

It reads without locks, thinks, and writes absolute values, so it loses updates and oversells
under concurrency. It exists only as a yardstick: the benchmark measures our speed against it,
and the tests use it to prove that the invariant checks can see a race.
"""

from __future__ import annotations

import time
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from pedidos.models import Cliente, Produto
from pedidos.running import Work
from pedidos.service import (
    EstoqueInsuficiente,
    ItemResult,
    PedidoPlan,
    PedidoRequest,
    PedidoResult,
    SaldoInsuficiente,
    record,
)


def make_naive(think_seconds: float) -> Work:
    """The naive transaction, pausing `think_seconds` between its reads and its writes (the
    window in which another order reads the same values). The benchmark measures it with no
    pause; the tests widen the window so that the race shows every time."""

    def naive(session: Session, request: PedidoRequest) -> PedidoResult:
        return _naive(session, request, think_seconds)

    return naive


def _naive(session: Session, request: PedidoRequest, think_seconds: float) -> PedidoResult:
    lines = []
    for item in request.merged_itens():
        estoque, preco = session.execute(
            select(Produto.estoque, Produto.preco).where(Produto.id == item.produto_id)
        ).one()
        if estoque < item.quantidade:
            raise EstoqueInsuficiente(item.produto_id, estoque, item.quantidade)
        lines.append((ItemResult(item.produto_id, item.quantidade, preco), estoque))
    saldo = session.execute(
        select(Cliente.saldo).where(Cliente.id == request.cliente_id)
    ).scalar_one()
    total = sum((line.subtotal for line, _ in lines), Decimal("0.00"))
    if saldo < total:
        raise SaldoInsuficiente(request.cliente_id, saldo, total)
    if think_seconds:
        time.sleep(think_seconds)
    for line, estoque in lines:
        session.execute(
            update(Produto)
            .where(Produto.id == line.produto_id)
            .values(estoque=estoque - line.quantidade)
        )
    session.execute(
        update(Cliente).where(Cliente.id == request.cliente_id).values(saldo=saldo - total)
    )
    itens = tuple(line for line, _ in lines)
    return record(session, PedidoPlan(request.cliente_id, itens, total, None, request.to_payload()))


naive_read_modify_write = make_naive(think_seconds=0.01)
