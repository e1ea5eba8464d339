"""Fixtures: a migrated SQLite file and a migrated MariaDB database, emptied before each test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from pedidos.app import create_app
from pedidos.config import Settings
from pedidos.sim.seed import reset
from pedidos.storage.engine import make_engine, make_sessions, upgrade_schema
from tests.helpers import (
    MARIADB_URL,
    Store,
    recreate_mariadb_database,
    runtime_of,
    serving,
)


@pytest.fixture(scope="session")
def mariadb_url() -> str:
    """A fresh, migrated MariaDB database; under CI=true an unreachable server fails the run."""
    try:
        recreate_mariadb_database(MARIADB_URL)
    except OperationalError as error:
        message = f"MariaDB is unreachable at {make_url(MARIADB_URL)!r}: {error.orig}"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI=true: MariaDB tests must run)")
        pytest.skip(message)
    upgrade_schema(MARIADB_URL)
    return MARIADB_URL


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'pedidos.sqlite3'}"
    upgrade_schema(url)
    return url


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test that takes this runs once on SQLite and once on MariaDB."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url, pool_size=48)
    reset(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_sessions(engine)


@pytest.fixture
def store(sessions: sessionmaker[Session]) -> Store:
    return Store(sessions)


@pytest.fixture
def app(engine: Engine, database_url: str) -> Iterator[Flask]:
    """The real app on the test's (already emptied) database."""
    settings = Settings(database_url=database_url, workers=8, queue_size=64, recovery_interval=0)
    app = create_app(settings)
    yield app
    runtime_of(app).close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    with serving(app) as url:
        yield url
