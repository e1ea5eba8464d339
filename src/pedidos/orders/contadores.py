"""Sharded running totals: outcomes, units and receita, readable without scanning orders."""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import BigInteger, bindparam, func, select, update
from sqlalchemy.orm import Session

from pedidos.storage.models import SHARDS, Base, Contador, Estado, Solicitacao, money_sum

_contadores = Base.metadata.tables["contadores"]
# Its own generator: picking a shard never touches the global random state.
_shards = random.Random()


def pick_shard() -> int:
    """A random counter shard: concurrent transactions rarely pick the same row."""
    return _shards.randrange(SHARDS)


_COUNT_ERRORS = (
    update(_contadores)
    .where(_contadores.c.shard == bindparam("alvo"))
    .values(erros=_contadores.c.erros + bindparam("erros", type_=BigInteger()))
)


def count_errors(session: Session, erros: int) -> None:
    """Add requests settled as ERRO to a random shard (last lock of the transaction)."""
    session.execute(_COUNT_ERRORS, {"alvo": pick_shard(), "erros": erros})


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
