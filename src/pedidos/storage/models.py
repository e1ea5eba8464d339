"""Typed ORM models: clientes, produtos, pedidos, itens_pedido, tokens and simulacoes."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ColumnElement,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    SQLColumnExpression,
    String,
    Text,
    func,
    type_coerce,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator, TypeEngine

CENT = Decimal("0.01")


class Money(TypeDecorator[Decimal]):
    """DECIMAL(p,2) on real databases; integer cents on SQLite, which has no exact decimal."""

    impl = Numeric(12, 2)
    cache_ok = True

    def __init__(self, precision: int = 12) -> None:
        super().__init__()
        self.precision = precision

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(self.precision, 2, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        cents = Decimal(value).quantize(CENT)
        return int(cents * 100) if dialect.name == "sqlite" else cents

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return (Decimal(int(value)) / 100).quantize(CENT)
        return Decimal(value).quantize(CENT)


def money_sum(amounts: SQLColumnExpression[Any]) -> ColumnElement[Decimal]:
    """SUM of a money expression, 0 when there are no rows, read back as Decimal.

    The explicit type matters on SQLite, where the sum is in cents.
    """
    return type_coerce(func.coalesce(func.sum(amounts), 0), Money())


def utc_now() -> datetime:
    """Naive UTC with microseconds: how every timestamp column stores time."""
    return datetime.now(UTC).replace(tzinfo=None)


# BIGINT ids where rows grow without bound; SQLite only autoincrements INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")
# Microsecond UTC timestamps: MariaDB's DATETIME defaults to whole seconds.
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


class Base(DeclarativeBase):
    """Declarative base holding the schema's metadata."""


class Cliente(Base):
    __tablename__ = "clientes"
    __table_args__ = (
        CheckConstraint("saldo >= 0", name="ck_clientes_saldo"),
        Index("ix_clientes_gasto", "gasto", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    nome: Mapped[str] = mapped_column(String(120))
    saldo: Mapped[Decimal] = mapped_column(Money, server_default="0")
    # Kept by the order transaction: how many orders and how much money, for the summary.
    compras: Mapped[int] = mapped_column(BigInteger, server_default="0")
    gasto: Mapped[Decimal] = mapped_column(Money(18), server_default="0")


class Produto(Base):
    __tablename__ = "produtos"
    __table_args__ = (
        CheckConstraint("preco > 0", name="ck_produtos_preco"),
        CheckConstraint("estoque >= 0", name="ck_produtos_estoque"),
        Index("ix_produtos_receita", "receita", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    nome: Mapped[str] = mapped_column(String(120))
    preco: Mapped[Decimal] = mapped_column(Money)
    estoque: Mapped[int] = mapped_column(Integer, server_default="0")
    # Kept by the order transaction: units sold and their receita, for the summary.
    vendidos: Mapped[int] = mapped_column(BigInteger, server_default="0")
    receita: Mapped[Decimal] = mapped_column(Money(18), server_default="0")


class Estado(StrEnum):
    """Life of an order request: RECEBIDO -> PROCESSANDO -> CONCLUIDO | REJEITADO | ERRO."""

    RECEBIDO = "RECEBIDO"
    PROCESSANDO = "PROCESSANDO"
    CONCLUIDO = "CONCLUIDO"
    REJEITADO = "REJEITADO"
    ERRO = "ERRO"


PENDENTES = (Estado.RECEBIDO, Estado.PROCESSANDO)


class Solicitacao(Base):
    """Every order request that was recorded: the durable (async or keyed) ones and every
    committed order. A committed pedido has the same id as its solicitacao."""

    __tablename__ = "solicitacoes"
    __table_args__ = (
        # Recovery claims pending requests whose deadline passed; status counts them.
        Index("ix_solicitacoes_estado_prazo", "estado", "prazo"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    chave: Mapped[str | None] = mapped_column(String(255), unique=True)
    impressao: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[str | None] = mapped_column(Text)
    estado: Mapped[str] = mapped_column(String(12), server_default=Estado.RECEBIDO.value)
    motivo: Mapped[str | None] = mapped_column(Text)
    tentativas: Mapped[int] = mapped_column(Integer, server_default="0")
    prazo: Mapped[datetime | None] = mapped_column(Timestamp)
    criado_em: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    atualizado_em: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())


SHARDS = 16


class Contador(Base):
    """Running totals, split over SHARDS rows so that concurrent orders rarely share a lock."""

    __tablename__ = "contadores"

    shard: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    concluidos: Mapped[int] = mapped_column(BigInteger, server_default="0")
    rejeitados: Mapped[int] = mapped_column(BigInteger, server_default="0")
    erros: Mapped[int] = mapped_column(BigInteger, server_default="0")
    unidades: Mapped[int] = mapped_column(BigInteger, server_default="0")
    receita: Mapped[Decimal] = mapped_column(Money(18), server_default="0")


class Pedido(Base):
    __tablename__ = "pedidos"
    __table_args__ = (
        # Newest-first keyset pages, overall and per cliente.
        Index("ix_pedidos_criado_em_id", "criado_em", "id"),
        Index("ix_pedidos_cliente_criado_em_id", "cliente_id", "criado_em", "id"),
    )

    id: Mapped[int] = mapped_column(ForeignKey("solicitacoes.id"), primary_key=True)
    cliente_id: Mapped[int] = mapped_column(ForeignKey("clientes.id"))
    total: Mapped[Decimal] = mapped_column(Money)
    criado_em: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())

    itens: Mapped[list[ItemPedido]] = relationship(order_by="ItemPedido.id")


class ItemPedido(Base):
    __tablename__ = "itens_pedido"
    __table_args__ = (
        CheckConstraint("quantidade > 0", name="ck_itens_pedido_quantidade"),
        # Report filter "orders containing produto X" and per-produto sums.
        Index("ix_itens_pedido_produto_pedido", "produto_id", "pedido_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    pedido_id: Mapped[int] = mapped_column(ForeignKey("pedidos.id"), index=True)
    produto_id: Mapped[int] = mapped_column(ForeignKey("produtos.id"))
    quantidade: Mapped[int] = mapped_column(Integer)
    preco_unitario: Mapped[Decimal] = mapped_column(Money)


class Token(Base):
    """An API credential: only the SHA-256 of its secret is stored, never the secret."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    nome: Mapped[str] = mapped_column(String(120))
    hash: Mapped[str] = mapped_column(String(64))
    escopos: Mapped[str] = mapped_column(String(120))  # space-separated, as in OAuth 2
    # Comma-separated cliente ids the token may order for; NULL: not bound to clientes.
    clientes: Mapped[str | None] = mapped_column(Text)
    criado_em: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    revogado_em: Mapped[datetime | None] = mapped_column(Timestamp)


class Simulacao(Base):
    """A simulation's plan and latest published state, readable by every instance.

    `ativa` is 1 while it runs and NULL afterwards: its unique index lets the database, not
    a process, guarantee that one simulation runs at a time across all instances.
    """

    __tablename__ = "simulacoes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ativa: Mapped[int | None] = mapped_column(Integer, unique=True)
    estado: Mapped[str] = mapped_column(Text)  # the SimulacaoOut document, as JSON
    criado_em: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    # Refreshed while it runs: a stale one belongs to a process that died.
    atualizado_em: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
