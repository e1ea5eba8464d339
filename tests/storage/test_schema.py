"""Migrations build exactly the schema the models describe, with its guards."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from pedidos.storage.models import Base


def test_migrations_match_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO clientes (nome, saldo) VALUES ('x', -1)",
        "INSERT INTO produtos (nome, preco, estoque) VALUES ('x', 0, 1)",
        "INSERT INTO produtos (nome, preco, estoque) VALUES ('x', 1, -1)",
    ],
)
def test_check_constraints_are_the_last_guard(engine: Engine, statement: str) -> None:
    with pytest.raises(DBAPIError), engine.begin() as connection:
        connection.execute(text(statement))


def test_plain_sql_inserts_use_server_defaults(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO clientes (nome) VALUES ('Sem Saldo')"))
        connection.execute(text("INSERT INTO produtos (nome, preco) VALUES ('Sem Estoque', 1)"))
        saldo = connection.execute(text("SELECT saldo FROM clientes")).scalar_one()
        estoque = connection.execute(text("SELECT estoque FROM produtos")).scalar_one()
    assert (saldo, estoque) == (0, 0)
