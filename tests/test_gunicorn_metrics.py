"""Under gunicorn and under `pedidos serve --production` (granian) with several workers,
/metrics adds up every worker's orders."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pedidos.sim.seed import seed
from pedidos.storage.engine import make_engine
from tests.helpers import ROOT, bearer, free_port, wait_until

WORKERS = 3


ADMIN_TOKEN = secrets.token_urlsafe(32)
AUTH = bearer(ADMIN_TOKEN)


def orders_counted(url: str) -> float:
    text = httpx.get(f"{url}/metrics", headers=AUTH, timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "pedidos_orders_total"
    )


def server_command(server: str, port: int) -> list[str]:
    if server == "granian":
        pedidos = str(Path(sys.executable).with_name("pedidos"))
        return [pedidos, "serve", "--production", "--workers", str(WORKERS), "--port", str(port)]
    return [
        str(Path(sys.executable).with_name("gunicorn")),
        "-c",
        str(ROOT / "gunicorn.conf.py"),
        "-b",
        f"127.0.0.1:{port}",
        "pedidos.wsgi:app",
    ]


@pytest.fixture(params=["gunicorn", "granian"])
def server_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    database_url = f"sqlite:///{tmp_path / 'pedidos.sqlite3'}"
    subprocess.run(
        [str(Path(sys.executable).with_name("pedidos")), "init-db"],
        env={**os.environ, "DATABASE_URL": database_url},
        check=True,
        capture_output=True,
    )
    engine = make_engine(database_url)
    seed(engine, 50, 10, random_seed=5)
    engine.dispose()
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PEDIDOS_GUNICORN_WORKERS": str(WORKERS),
        "PEDIDOS_RECOVERY_INTERVAL": "0",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "PEDIDOS_LOG_FORMAT": "json",
        # Production (granian) answers only to tokens and places random orders only when told.
        "PEDIDOS_ADMIN_TOKEN": ADMIN_TOKEN,
        "PEDIDOS_RANDOM_ORDERS": "on",
    }
    (tmp_path / "metrics").mkdir()  # the server empties it; prometheus_client needs it at import
    log = (tmp_path / "gunicorn.log").open("wb")
    server = subprocess.Popen(
        server_command(request.param, port),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/readyz").status_code == 200, 30, "server start")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    # Each order left one JSON line with its outcome and request id.
    lines = [
        json.loads(line)
        for line in (tmp_path / "gunicorn.log").read_text().splitlines()
        if line.startswith("{")
    ]
    outcomes = [line for line in lines if line.get("message", "").startswith("order ")]
    assert outcomes and all(len(line["request_id"]) == 32 for line in outcomes)


def test_metrics_sum_over_every_worker(server_url: str) -> None:
    with httpx.Client(base_url=server_url) as client:
        # New connections each time: the server spreads them over its workers.
        answers = [
            client.post(
                "/pedido",
                headers={"Connection": "close", "Prefer": "return=representation", **AUTH},
            ).status_code
            for _ in range(60)
        ]
    assert set(answers) <= {201, 409}

    # Whichever worker answers the scrape, it reports all 60 orders.
    assert [orders_counted(server_url) for _ in range(6)] == [60.0] * 6
