"""Settings come from the environment, and bad values are refused with a clear message."""

from __future__ import annotations

import socket

import pytest

from pedidos.config import DEFAULT_DATABASE_URL, Settings, SettingsError


def test_defaults_use_the_embedded_sqlite_database() -> None:
    settings = Settings.from_env({})
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert DEFAULT_DATABASE_URL.startswith("sqlite:///")
    assert (settings.executor, settings.pool_size) == ("thread", settings.workers + 16)


def test_environment_overrides() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "mysql+pymysql://root@127.0.0.1/pedidos",
            "PEDIDOS_WORKERS": "32",
            "PEDIDOS_QUEUE_SIZE": "10",
            "PEDIDOS_EXECUTOR": "process",
            "PEDIDOS_MAX_RETRIES": "0",
            "PEDIDOS_REQUEST_TIMEOUT": "2.5",
        }
    )
    assert settings == Settings(
        database_url="mysql+pymysql://root@127.0.0.1/pedidos",
        workers=32,
        queue_size=10,
        executor="process",
        max_retries=0,
        request_timeout=2.5,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PEDIDOS_WORKERS", "0"),
        ("PEDIDOS_WORKERS", "many"),
        ("PEDIDOS_QUEUE_SIZE", "-1"),
        ("PEDIDOS_EXECUTOR", "fibers"),
        ("PEDIDOS_REQUEST_TIMEOUT", "nan"),
        ("PEDIDOS_REQUEST_TIMEOUT", "0"),
    ],
)
def test_bad_values_are_refused(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_instance_name_and_read_database() -> None:
    settings = Settings.from_env(
        {
            "PEDIDOS_INSTANCE_NAME": " pedidos-2 ",
            "PEDIDOS_READ_DATABASE_URL": "mysql+pymysql://leitor@127.0.0.1:3307/pedidos",
        }
    )
    assert settings.instance_name == "pedidos-2"
    assert settings.read_database_url == "mysql+pymysql://leitor@127.0.0.1:3307/pedidos"
    unset = Settings.from_env({})
    assert (unset.instance_name, unset.read_database_url) == (socket.gethostname(), None)


@pytest.mark.parametrize("name", ["x" * 101, "pedidos\n1"])
def test_bad_instance_names_are_refused(name: str) -> None:
    with pytest.raises(SettingsError, match="PEDIDOS_INSTANCE_NAME"):
        Settings.from_env({"PEDIDOS_INSTANCE_NAME": name})
