"""Durable order requests (solicitacoes), idempotency keys and sharded counters.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from pedidos.storage.models import SHARDS, BigId, Money, Timestamp

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "solicitacoes",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("chave", sa.String(255), nullable=True, unique=True),
        sa.Column("impressao", sa.String(64), nullable=True),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("estado", sa.String(12), server_default="RECEBIDO", nullable=False),
        sa.Column("motivo", sa.Text(), nullable=True),
        sa.Column("tentativas", sa.Integer(), server_default="0", nullable=False),
        sa.Column("prazo", Timestamp, nullable=True),
        sa.Column("criado_em", Timestamp, server_default=sa.func.now(), nullable=False),
        sa.Column("atualizado_em", Timestamp, server_default=sa.func.now(), nullable=False),
    )
    op.create_index("ix_solicitacoes_estado_prazo", "solicitacoes", ["estado", "prazo"])
    # Orders committed before this revision become concluded requests with the same id.
    op.execute(
        "INSERT INTO solicitacoes (id, estado, tentativas, criado_em, atualizado_em) "
        "SELECT id, 'CONCLUIDO', 1, criado_em, criado_em FROM pedidos"
    )
    with op.batch_alter_table("pedidos") as batch:
        batch.create_foreign_key("fk_pedidos_solicitacao", "solicitacoes", ["id"], ["id"])

    contadores = op.create_table(
        "contadores",
        sa.Column("shard", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("concluidos", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("rejeitados", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("erros", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("unidades", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("receita", Money(18), server_default="0", nullable=False),
    )
    op.bulk_insert(contadores, [{"shard": shard} for shard in range(SHARDS)])
    op.execute(
        "UPDATE contadores SET "
        "concluidos = (SELECT COUNT(*) FROM pedidos), "
        "unidades = (SELECT COALESCE(SUM(quantidade), 0) FROM itens_pedido), "
        "receita = (SELECT COALESCE(SUM(total), 0) FROM pedidos) "
        "WHERE shard = 0"
    )


def downgrade() -> None:
    op.drop_table("contadores")
    with op.batch_alter_table("pedidos") as batch:
        batch.drop_constraint("fk_pedidos_solicitacao", type_="foreignkey")
    op.drop_table("solicitacoes")
