"""Many direct orders in one transaction, each still all or nothing."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from pedidos import statements
from pedidos.models import Estado, utc_now
from pedidos.service import (
    ClienteNaoEncontrado,
    EstoqueInsuficiente,
    ItemRequest,
    ItemResult,
    PedidoPlan,
    PedidoRejeitado,
    PedidoRequest,
    PedidoResult,
    ProdutoNaoEncontrado,
    SaldoInsuficiente,
    concluded_request_row,
    insert_pedidos,
)
from pedidos.tallies import count_outcome


def place_batch(
    session: Session, requests: list[PedidoRequest]
) -> list[PedidoResult | PedidoRejeitado]:
    """Many direct orders in the caller's one transaction, each still all or nothing.

    One ordered lock pass takes every produto, then every cliente, the batch touches (the
    same global order as a single order). Each order is then decided in memory, in arrival
    order, against what the orders before it left, so the rejections are exactly those of
    running them one by one. The survivors are written with one statement per table.
    """
    merged = [request.merged_itens() for request in requests]
    produto_ids = sorted({item.produto_id for itens in merged for item in itens})
    cliente_ids = sorted({request.cliente_id for request in requests})
    produtos = {
        row.id: row
        for row in session.execute(statements.LOCK_PRODUTOS, {"produto_ids": produto_ids})
    }
    saldos: dict[int, Decimal] = {
        row.id: row.saldo
        for row in session.execute(statements.LOCK_CLIENTES, {"cliente_ids": cliente_ids})
    }
    estoques = {produto_id: row.estoque for produto_id, row in produtos.items()}

    decided: list[PedidoPlan | PedidoRejeitado] = []
    for request, itens in zip(requests, merged, strict=True):
        try:
            decided.append(_decide(request, itens, produtos, estoques, saldos))
        except PedidoRejeitado as rejection:
            decided.append(rejection)
    plans = [plan for plan in decided if isinstance(plan, PedidoPlan)]
    if not plans:
        return [d for d in decided if isinstance(d, PedidoRejeitado)]

    estoque_debits: Counter[int] = Counter()
    saldo_debits: dict[int, Decimal] = {}
    for plan in plans:
        for item in plan.itens:
            estoque_debits[item.produto_id] += item.quantidade
        saldo_debits[plan.cliente_id] = saldo_debits.get(plan.cliente_id, Decimal(0)) + plan.total
    session.execute(
        statements.DEBIT_ESTOQUE,
        [{"produto": p, "unidades": q} for p, q in sorted(estoque_debits.items())],
    )
    session.execute(
        statements.DEBIT_SALDO,
        [{"cliente": c, "valor": v} for c, v in sorted(saldo_debits.items())],
    )
    now = utc_now()
    rows = [concluded_request_row(plan, now) for plan in plans]
    ids = session.execute(statements.NEW_SOLICITACOES, rows).scalars().all()
    insert_pedidos(session, ids, plans, now)
    count_outcome(
        session,
        Estado.CONCLUIDO,
        pedidos=len(plans),
        unidades=sum(estoque_debits.values()),
        receita=sum(saldo_debits.values(), Decimal("0.00")),
    )
    committed = iter(
        PedidoResult(i, plan.cliente_id, plan.total, now, plan.itens)
        for i, plan in zip(ids, plans, strict=True)
    )
    return [d if isinstance(d, PedidoRejeitado) else next(committed) for d in decided]


def _decide(
    request: PedidoRequest,
    itens: list[ItemRequest],
    produtos: dict[int, Any],
    estoques: dict[int, int],
    saldos: dict[int, Decimal],
) -> PedidoPlan:
    """Check one order against what is left, in the single-order path's order of checks;
    take its stock and money from what is left when it passes."""
    missing = [item.produto_id for item in itens if item.produto_id not in produtos]
    if missing:
        raise ProdutoNaoEncontrado(missing)
    for item in itens:
        if estoques[item.produto_id] < item.quantidade:
            raise EstoqueInsuficiente(item.produto_id, estoques[item.produto_id], item.quantidade)
    lines = tuple(
        ItemResult(item.produto_id, item.quantidade, produtos[item.produto_id].preco)
        for item in itens
    )
    total = sum((line.subtotal for line in lines), Decimal("0.00"))
    saldo = saldos.get(request.cliente_id)
    if saldo is None:
        raise ClienteNaoEncontrado(request.cliente_id)
    if saldo < total:
        raise SaldoInsuficiente(request.cliente_id, saldo, total)
    for item in itens:
        estoques[item.produto_id] -= item.quantidade
    saldos[request.cliente_id] = saldo - total
    return PedidoPlan(request.cliente_id, lines, total, None, request.to_payload())
