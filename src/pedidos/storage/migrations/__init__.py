"""Alembic migrations for the Pedidos schema."""
