"""Settings come from the environment, and bad values are refused with a clear message."""

from __future__ import annotations

import pytest

from pedidos.config import DEFAULT_DATABASE_URL, Settings, SettingsError


def test_defaults_use_the_embedded_sqlite_database() -> None:
    settings = Settings.from_env({})
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert DEFAULT_DATABASE_URL.startswith("sqlite:///")
    assert (settings.executor, settings.pool_size) == ("thread", settings.workers + 8)


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
