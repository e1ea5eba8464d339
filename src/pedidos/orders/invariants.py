"""Money and stock invariants, checked against the database before and after a load."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from pedidos.orders import vendas
from pedidos.storage.models import (
    Cliente,
    Contador,
    Estado,
    ItemPedido,
    Pedido,
    Produto,
    Solicitacao,
    money_sum,
)

CHUNK = 1000


@dataclass(frozen=True)
class Ledger:
    """Totals that committed orders move between, but never create or destroy."""

    saldo: Decimal
    estoque: int
    pedidos: int
    vendido: Decimal
    unidades: int
    saldo_negativo: int
    estoque_negativo: int
    pedidos_sem_itens: int
    totais_divergentes: int
    # Every pedido is a CONCLUIDO solicitacao with the same id, and vice versa.
    estados_divergentes: int
    # The sharded counters agree with the rows they summarise.
    contadores: tuple[int, int, Decimal]
    # Produtos and clientes whose kept sales totals differ from their orders' rows.
    vendas_divergentes: int = 0


def _count_where(condition: ColumnElement[bool]) -> ColumnElement[int]:
    # Portable COUNT(*) FILTER (WHERE ...): MariaDB has no FILTER clause.
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def take_ledger(session: Session) -> Ledger:
    """Read every total in one transaction, so that they agree with each other."""
    saldo, saldo_negativo = session.execute(
        select(money_sum(Cliente.saldo), _count_where(Cliente.saldo < 0))
    ).one()
    estoque, estoque_negativo = session.execute(
        select(func.coalesce(func.sum(Produto.estoque), 0), _count_where(Produto.estoque < 0))
    ).one()
    pedidos, vendido = session.execute(select(func.count(Pedido.id), money_sum(Pedido.total))).one()
    unidades = session.execute(select(func.coalesce(func.sum(ItemPedido.quantidade), 0))).scalar()
    sem_itens = session.execute(
        select(func.count(Pedido.id)).where(
            ~select(ItemPedido.id).where(ItemPedido.pedido_id == Pedido.id).exists()
        )
    ).scalar()
    soma_itens = (
        select(
            ItemPedido.pedido_id,
            func.sum(ItemPedido.quantidade * ItemPedido.preco_unitario).label("soma"),
        )
        .group_by(ItemPedido.pedido_id)
        .subquery()
    )
    divergentes = session.execute(
        select(func.count())
        .select_from(Pedido)
        .join(soma_itens, soma_itens.c.pedido_id == Pedido.id)
        .where(soma_itens.c.soma != Pedido.total)
    ).scalar()
    concluidas = select(Solicitacao.id).where(Solicitacao.estado == Estado.CONCLUIDO)
    sem_solicitacao = session.execute(
        select(func.count()).select_from(Pedido).where(Pedido.id.not_in(concluidas))
    ).scalar_one()
    sem_pedido = session.execute(
        select(func.count())
        .select_from(Solicitacao)
        .where(Solicitacao.estado == Estado.CONCLUIDO, Solicitacao.id.not_in(select(Pedido.id)))
    ).scalar_one()
    contados = session.execute(
        select(
            func.coalesce(func.sum(Contador.concluidos), 0),
            func.coalesce(func.sum(Contador.unidades), 0),
            money_sum(Contador.receita),
        )
    ).one()
    return Ledger(
        vendas_divergentes=_sales_that_disagree(session),
        saldo=saldo,
        estoque=int(estoque),
        pedidos=pedidos,
        vendido=vendido,
        unidades=int(unidades or 0),
        saldo_negativo=int(saldo_negativo),
        estoque_negativo=int(estoque_negativo),
        pedidos_sem_itens=int(sem_itens or 0),
        totais_divergentes=int(divergentes or 0),
        estados_divergentes=int(sem_solicitacao) + int(sem_pedido),
        contadores=(int(contados[0]), int(contados[1]), contados[2]),
    )


def _sales_that_disagree(session: Session) -> int:
    """Produtos and clientes whose kept totals differ from what their orders' rows say."""
    sold = vendas.por_produto()
    produtos = session.execute(
        select(func.count())
        .select_from(Produto)
        .outerjoin(sold, sold.c.id == Produto.id)
        .where(
            (Produto.vendidos != func.coalesce(sold.c.vendidos, 0))
            | (Produto.receita != func.coalesce(sold.c.receita, 0))
        )
    ).scalar_one()
    spent = vendas.por_cliente()
    clientes = session.execute(
        select(func.count())
        .select_from(Cliente)
        .outerjoin(spent, spent.c.id == Cliente.id)
        .where(
            (Cliente.compras != func.coalesce(spent.c.compras, 0))
            | (Cliente.gasto != func.coalesce(spent.c.gasto, 0))
        )
    ).scalar_one()
    return int(produtos) + int(clientes)


def violations(before: Ledger, after: Ledger) -> list[str]:
    """Every broken invariant between two ledgers; empty means money and stock are exact."""
    found: list[str] = []
    vendido = after.vendido - before.vendido
    unidades = after.unidades - before.unidades
    if after.saldo + vendido != before.saldo:
        found.append(
            f"money not conserved: saldo {before.saldo} -> {after.saldo}, "
            f"orders total {vendido} (off by {after.saldo + vendido - before.saldo})"
        )
    if after.estoque + unidades != before.estoque:
        found.append(
            f"stock not conserved: estoque {before.estoque} -> {after.estoque}, "
            f"units sold {unidades} (off by {after.estoque + unidades - before.estoque})"
        )
    if after.saldo_negativo:
        found.append(f"{after.saldo_negativo} clientes with negative saldo")
    if after.estoque_negativo:
        found.append(f"{after.estoque_negativo} produtos with negative estoque")
    if after.pedidos_sem_itens:
        found.append(f"{after.pedidos_sem_itens} pedidos without items")
    if after.totais_divergentes:
        found.append(f"{after.totais_divergentes} pedidos whose total differs from their items")
    if after.estados_divergentes:
        found.append(f"{after.estados_divergentes} pedidos and CONCLUIDO requests do not pair up")
    if after.vendas_divergentes:
        found.append(f"{after.vendas_divergentes} produtos or clientes whose sales totals drift")
    if after.contadores != (after.pedidos, after.unidades, after.vendido):
        found.append(
            f"counters say {after.contadores}, rows say "
            f"{(after.pedidos, after.unidades, after.vendido)}"
        )
    return found


def missing_pedidos(session: Session, acknowledged: Iterable[int]) -> list[int]:
    """Acknowledged order ids that are not in the database (an acknowledged order was lost)."""
    ids = sorted(set(acknowledged))
    present: set[int] = set()
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        present.update(session.execute(select(Pedido.id).where(Pedido.id.in_(chunk))).scalars())
    return [i for i in ids if i not in present]


def check_after_load(session: Session, before: Ledger, acknowledged: Iterable[int]) -> list[str]:
    """Every broken invariant since `before`, plus acknowledged orders that went missing."""
    found = violations(before, take_ledger(session))
    lost = missing_pedidos(session, acknowledged)
    if lost:
        found.append(f"{len(lost)} acknowledged orders missing, e.g. {lost[:5]}")
    return found
