"""Sales totals kept on each produto and cliente, so the summary never scans the orders.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from pedidos.storage.models import Money

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("produtos") as batch:
        batch.add_column(sa.Column("vendidos", sa.BigInteger(), server_default="0", nullable=False))
        batch.add_column(sa.Column("receita", Money(18), server_default="0", nullable=False))
    with op.batch_alter_table("clientes") as batch:
        batch.add_column(sa.Column("compras", sa.BigInteger(), server_default="0", nullable=False))
        batch.add_column(sa.Column("gasto", Money(18), server_default="0", nullable=False))
    # Orders committed before this revision are counted once, here.
    op.execute(
        "UPDATE produtos SET "
        "vendidos = (SELECT COALESCE(SUM(quantidade), 0) FROM itens_pedido "
        "WHERE itens_pedido.produto_id = produtos.id), "
        "receita = (SELECT COALESCE(SUM(quantidade * preco_unitario), 0) FROM itens_pedido "
        "WHERE itens_pedido.produto_id = produtos.id)"
    )
    op.execute(
        "UPDATE clientes SET "
        "compras = (SELECT COUNT(*) FROM pedidos WHERE pedidos.cliente_id = clientes.id), "
        "gasto = (SELECT COALESCE(SUM(total), 0) FROM pedidos "
        "WHERE pedidos.cliente_id = clientes.id)"
    )
    # The summary's top lists: the best sellers first, read straight off these indexes.
    op.create_index("ix_produtos_receita", "produtos", ["receita", "id"])
    op.create_index("ix_clientes_gasto", "clientes", ["gasto", "id"])


def downgrade() -> None:
    op.drop_index("ix_clientes_gasto", "clientes")
    op.drop_index("ix_produtos_receita", "produtos")
    with op.batch_alter_table("clientes") as batch:
        batch.drop_column("gasto")
        batch.drop_column("compras")
    with op.batch_alter_table("produtos") as batch:
        batch.drop_column("receita")
        batch.drop_column("vendidos")
