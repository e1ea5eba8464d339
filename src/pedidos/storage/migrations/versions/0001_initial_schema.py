"""Initial schema: clientes, produtos, pedidos, itens_pedido.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from pedidos.storage.models import BigId, Money, Timestamp

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "clientes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("nome", sa.String(120), nullable=False),
        sa.Column("saldo", Money(), server_default="0", nullable=False),
        sa.CheckConstraint("saldo >= 0", name="ck_clientes_saldo"),
    )
    op.create_table(
        "produtos",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("nome", sa.String(120), nullable=False),
        sa.Column("preco", Money(), nullable=False),
        sa.Column("estoque", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint("preco > 0", name="ck_produtos_preco"),
        sa.CheckConstraint("estoque >= 0", name="ck_produtos_estoque"),
    )
    op.create_table(
        "pedidos",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("cliente_id", sa.Integer(), sa.ForeignKey("clientes.id"), nullable=False),
        sa.Column("total", Money(), nullable=False),
        sa.Column("criado_em", Timestamp, server_default=sa.func.now(), nullable=False),
    )
    op.create_index("ix_pedidos_criado_em_id", "pedidos", ["criado_em", "id"])
    op.create_index("ix_pedidos_cliente_criado_em_id", "pedidos", ["cliente_id", "criado_em", "id"])
    op.create_table(
        "itens_pedido",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("pedido_id", BigId, sa.ForeignKey("pedidos.id"), nullable=False),
        sa.Column("produto_id", sa.Integer(), sa.ForeignKey("produtos.id"), nullable=False),
        sa.Column("quantidade", sa.Integer(), nullable=False),
        sa.Column("preco_unitario", Money(), nullable=False),
        sa.CheckConstraint("quantidade > 0", name="ck_itens_pedido_quantidade"),
    )
    op.create_index("ix_itens_pedido_pedido_id", "itens_pedido", ["pedido_id"])
    op.create_index("ix_itens_pedido_produto_pedido", "itens_pedido", ["produto_id", "pedido_id"])


def downgrade() -> None:
    op.drop_table("itens_pedido")
    op.drop_table("pedidos")
    op.drop_table("produtos")
    op.drop_table("clientes")
