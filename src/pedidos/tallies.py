"""Sharded running totals: outcomes, units and receita, readable without scanning orders."""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, bindparam, func, select, update
from sqlalchemy.orm import Session

from pedidos.models import SHARDS, Base, Contador, Estado, Money, Solicitacao, money_sum

_contadores = Base.metadata.tables["contadores"]
_OF_SHARD = _contadores.c.shard == bindparam("alvo")
# One prepared UPDATE per final state; the hot path only binds numbers.
_COUNT = {
    Estado.CONCLUIDO: update(_contadores)
    .where(_OF_SHARD)
    .values(
        concluidos=_contadores.c.concluidos + bindparam("mais_pedidos", type_=BigInteger()),
        unidades=_contadores.c.unidades + bindparam("mais_unidades", type_=BigInteger()),
        receita=_contadores.c.receita + bindparam("mais_receita", type_=Money(18)),
    ),
    Estado.REJEITADO: update(_contadores)
    .where(_OF_SHARD)
    .values(rejeitados=_contadores.c.rejeitados + bindparam("mais_pedidos", type_=BigInteger())),
    Estado.ERRO: update(_contadores)
    .where(_OF_SHARD)
    .values(erros=_contadores.c.erros + bindparam("mais_pedidos", type_=BigInteger())),
}


def count_outcome(
    session: Session,
    estado: Estado,
    pedidos: int = 1,
    unidades: int = 0,
    receita: Decimal = Decimal("0.00"),
) -> None:
    """Add final outcomes to a random shard, in the caller's transaction.

    Take this lock last in a transaction: it is the only counter row the transaction
    touches, so it cannot take part in a lock cycle.
    """
    values: dict[str, Any] = {"alvo": random.randrange(SHARDS), "mais_pedidos": pedidos}
    if estado is Estado.CONCLUIDO:
        values |= {"mais_unidades": unidades, "mais_receita": receita}
    session.execute(_COUNT[estado], values)


@dataclass(frozen=True)
class Totals:
    """Requests by state and committed totals, over every instance sharing the database."""

    por_estado: dict[str, int]
    pedidos: int
    unidades: int
    receita: Decimal


def read_totals(session: Session) -> Totals:
    """Final states from the counters; pending ones counted on the (estado, prazo) index."""
    concluidos, rejeitados, erros, unidades, receita = session.execute(
        select(
            func.coalesce(func.sum(Contador.concluidos), 0),
            func.coalesce(func.sum(Contador.rejeitados), 0),
            func.coalesce(func.sum(Contador.erros), 0),
            func.coalesce(func.sum(Contador.unidades), 0),
            money_sum(Contador.receita),
        )
    ).one()
    pendentes: dict[str, int] = {
        estado: count
        for estado, count in session.execute(
            select(Solicitacao.estado, func.count())
            .where(Solicitacao.estado.in_([Estado.RECEBIDO, Estado.PROCESSANDO]))
            .group_by(Solicitacao.estado)
        )
    }
    por_estado = {
        Estado.RECEBIDO.value: int(pendentes.get(Estado.RECEBIDO, 0)),
        Estado.PROCESSANDO.value: int(pendentes.get(Estado.PROCESSANDO, 0)),
        Estado.CONCLUIDO.value: int(concluidos),
        Estado.REJEITADO.value: int(rejeitados),
        Estado.ERRO.value: int(erros),
    }
    return Totals(por_estado, int(concluidos), int(unidades), receita)
