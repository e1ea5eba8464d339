"""API tokens (hashed, scoped, revocable) and simulations shared by every instance.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from pedidos.storage.models import Timestamp

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("nome", sa.String(120), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("escopos", sa.String(120), nullable=False),
        sa.Column("clientes", sa.Text(), nullable=True),
        sa.Column("criado_em", Timestamp, server_default=sa.func.now(), nullable=False),
        sa.Column("revogado_em", Timestamp, nullable=True),
    )
    op.create_table(
        "simulacoes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("ativa", sa.Integer(), nullable=True, unique=True),
        sa.Column("estado", sa.Text(), nullable=False),
        sa.Column("criado_em", Timestamp, server_default=sa.func.now(), nullable=False),
        sa.Column("atualizado_em", Timestamp, server_default=sa.func.now(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("simulacoes")
    op.drop_table("tokens")
