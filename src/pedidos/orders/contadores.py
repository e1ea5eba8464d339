"""Sharded running totals: outcomes, units and receita, readable without scanning orders."""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import BigInteger, Connection, bindparam, func, select, update
from sqlalchemy.orm import Session

from pedidos.storage.models import SHARDS, Base, Contador, Estado, Money, Solicitacao, money_sum

_contadores = Base.metadata.tables["contadores"]
# Its own generator: picking a shard never touches the global random state.
_shards = random.Random()
_OF_SHARD = _contadores.c.shard == bindparam("alvo")
_COUNT_ORDERS = (
    update(_contadores)
    .where(_OF_SHARD)
    .values(
        concluidos=_contadores.c.concluidos + bindparam("concluidos", type_=BigInteger()),
        rejeitados=_contadores.c.rejeitados + bindparam("rejeitados", type_=BigInteger()),
        unidades=_contadores.c.unidades + bindparam("unidades", type_=BigInteger()),
        receita=_contadores.c.receita + bindparam("receita", type_=Money(18)),
    )
)


def count_outcomes(
    db: Connection, *, concluidos: int, rejeitados: int, unidades: int, receita: Decimal
) -> None:
    """Add the outcomes of a transaction's orders to a random shard, in one statement.

    Take this lock last in a transaction: it is the only counter row the transaction
    touches, so it cannot take part in a lock cycle.
    """
    db.execute(
        _COUNT_ORDERS,
        {
            "alvo": _shards.randrange(SHARDS),
            "concluidos": concluidos,
            "rejeitados": rejeitados,
            "unidades": unidades,
            "receita": receita,
        },
    )


_COUNT_ERRORS = (
    update(_contadores)
    .where(_OF_SHARD)
    .values(erros=_contadores.c.erros + bindparam("erros", type_=BigInteger()))
)


def count_errors(session: Session, erros: int) -> None:
    """Add requests settled as ERRO to a random shard (last lock of the transaction)."""
    session.execute(_COUNT_ERRORS, {"alvo": _shards.randrange(SHARDS), "erros": erros})


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
