"""Start-up refuses settings and server modes that would break the guarantees."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, make_url, text

from pedidos.config import Settings
from pedidos.storage.engine import upgrade_schema
from pedidos.storage.safety import database_problems, settings_problems
from tests.helpers import recreate_mariadb_database, sibling_database


def test_debug_is_refused_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    production = Settings(environment="production")
    assert settings_problems(production, debug=False) == []
    assert "debug mode is on in production" in settings_problems(production, debug=True)[0]
    monkeypatch.setenv("FLASK_DEBUG", "1")
    assert settings_problems(production, debug=False)
    assert settings_problems(Settings(), debug=True) == []  # development may debug


@pytest.fixture
def unsafe_mariadb(mariadb_url: str) -> Iterator[Engine]:
    """Our schema in its own database, with one table moved to MyISAM and strict mode off."""
    url = make_url(sibling_database("unsafe"))
    server = create_engine(url.set(database=""), isolation_level="AUTOCOMMIT")
    recreate_mariadb_database(url.render_as_string(hide_password=False))
    upgrade_schema(url.render_as_string(hide_password=False))
    engine = create_engine(url, connect_args={"init_command": "SET SESSION sql_mode=''"})
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE contadores ENGINE=MyISAM"))
    yield engine
    engine.dispose()
    with server.connect() as connection:
        connection.execute(text(f"DROP DATABASE `{url.database}`"))
    server.dispose()


def test_lax_sql_mode_and_non_innodb_tables_are_refused(unsafe_mariadb: Engine) -> None:
    problems = database_problems(unsafe_mariadb)
    assert len(problems) == 2, problems
    assert "STRICT_TRANS_TABLES" in problems[0]
    assert "table contadores uses the MyISAM engine" in problems[1]


def test_the_real_schema_passes(mariadb_url: str) -> None:
    engine = create_engine(mariadb_url)
    try:
        assert database_problems(engine) == []
    finally:
        engine.dispose()
