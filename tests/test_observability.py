"""Metrics in Prometheus format, request ids in logs, and the JSON log format."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from pedidos.logs import JsonFormatter
from pedidos.storage.engine import upgrade_schema
from pedidos.tracing import request_id
from pedidos.web.tracing import new_request_id
from tests.helpers import Store, order_body


def samples(app: Flask) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert response.headers["Content-Type"].count("charset") == 1
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def test_metrics_count_orders_by_outcome_and_http_by_route(app: Flask, store: Store) -> None:
    cliente = store.cliente("10.00")
    produto = store.produto("4.00", 100)
    client = app.test_client()
    before = samples(app)
    body = order_body(cliente, produto)
    statuses = [client.post("/pedido", json=body).status_code for _ in range(4)]
    assert statuses == [201, 201, 409, 409]  # R$ 10 buys two at R$ 4

    after = samples(app)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("pedidos_orders_total", outcome="concluido", reason="") == 2
    assert grew("pedidos_orders_total", outcome="rejeitado", reason="saldo_insuficiente") == 2
    assert grew("pedidos_order_seconds_count") == 4
    assert grew("pedidos_http_requests_total", method="POST", endpoint="/pedido", status="201") == 2
    assert grew("pedidos_http_requests_total", method="POST", endpoint="/pedido", status="409") == 2
    assert grew("pedidos_http_request_seconds_count", endpoint="/pedido") == 4
    # Nothing is in flight or holding a connection once every answer is out.
    assert after[("pedidos_in_flight", ())] == 0
    assert after[("pedidos_queue_depth", ())] == 0
    assert after[("pedidos_db_pool_checked_out", ())] == 0


def test_made_up_request_methods_share_one_label(app: Flask) -> None:
    """A client cannot grow the metrics without bound by inventing methods."""
    client = app.test_client()
    before = samples(app)
    for method in ("FOO1", "FOO2", "BREW"):
        assert client.open("/pedido", method=method).status_code == 405
    after = samples(app)
    key = (
        "pedidos_http_requests_total",
        (("endpoint", "unmatched"), ("method", "other"), ("status", "405")),
    )
    assert after.get(key, 0.0) - before.get(key, 0.0) == 3
    assert not [labels for _name, labels in after if ("method", "FOO1") in labels]


def test_request_id_follows_the_order_into_the_worker_and_back(
    app: Flask, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    cliente = store.cliente("100.00")
    produto = store.produto("1.00", 10)
    body = order_body(cliente, produto)
    with caplog.at_level(logging.INFO, logger="pedidos"):
        response = app.test_client().post(
            "/pedido", json=body, headers={"X-Request-Id": "pedido-abc.123"}
        )

    assert response.headers["X-Request-Id"] == "pedido-abc.123"
    outcome_lines = [r for r in caplog.records if r.getMessage() == "order concluido"]
    assert len(outcome_lines) == 1
    line = outcome_lines[0]
    assert line.__dict__["request_id"] == "pedido-abc.123"
    assert line.__dict__["pedido_id"] == response.get_json()["id"]
    assert line.threadName != threading.current_thread().name  # logged by a worker


def test_unsafe_request_ids_are_replaced(app: Flask) -> None:
    for offered in ("has space", "x" * 65, 'quote"', ""):
        response = app.test_client().get("/healthz", headers={"X-Request-Id": offered})
        echoed = response.headers["X-Request-Id"]
        assert echoed != offered and len(echoed) == 32 and echoed.isalnum()


def test_made_request_ids_are_unique_also_across_a_fork() -> None:
    made = {new_request_id() for _ in range(10_000)}
    assert len(made) == 10_000
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # the child reports the id it makes next, then leaves at once
        os.write(writer, new_request_id().encode())
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    in_child = os.read(reader, 64).decode()
    os.close(reader)
    mine = new_request_id()
    assert len(in_child) == 32 and in_child[:20] != mine[:20]


def test_json_log_lines_carry_fields_and_the_context_request_id() -> None:
    record = logging.makeLogRecord(
        {"name": "pedidos.orders.processor", "levelname": "INFO", "msg": "order %s", "args": ("x",)}
    )
    record.outcome = "rejeitado"
    token = request_id.set("abc")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id.reset(token)
    assert line["message"] == "order x" and line["level"] == "info"
    assert line["request_id"] == "abc" and line["outcome"] == "rejeitado"
    assert line["time"].endswith("+00:00")


@pytest.mark.timeout(90)
def test_serve_off_a_terminal_writes_only_json_lines(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'logs.sqlite3'}"
    upgrade_schema(database)
    log_path = tmp_path / "serve.log"
    env = {**os.environ, "DATABASE_URL": database, "PEDIDOS_RECOVERY_INTERVAL": "0"}
    command = [str(Path(sys.executable).with_name("pedidos")), "serve", "--port", "0"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    try:
        url = wait_for_url(log_path)
        with httpx.Client(base_url=url) as client:
            assert client.get("/status", headers={"X-Request-Id": "olha-eu"}).status_code == 200
            assert client.get("/nada-aqui").status_code == 404
            assert client.post("/pedido", json={"cliente_id": 1}).status_code == 422
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)

    text = log_path.read_text()
    assert "\x1b[" not in text  # no terminal colours in a file
    lines = [json.loads(line) for line in text.splitlines()]  # every line is JSON
    access = [line for line in lines if line["logger"] == "pedidos.http"]
    assert {(a["method"], a["path"], a["status"]) for a in access} >= {
        ("GET", "/status", 200),
        ("GET", "/nada-aqui", 404),
        ("POST", "/pedido", 422),
    }
    assert any(a.get("request_id") == "olha-eu" for a in access)
    assert any("database" in line for line in lines)


def wait_for_url(log_path: Path) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in log_path.read_text().splitlines():
            if line.startswith("{") and "url" in (entry := json.loads(line)):
                return str(entry["url"])
        time.sleep(0.1)
    raise AssertionError(f"serve did not start: {log_path.read_text()[-2000:]}")


def test_other_libraries_errors_are_json_lines_too() -> None:
    script = (
        "import logging\n"
        "from pedidos.logs import configure_logging\n"
        "configure_logging('json')\n"
        "try:\n"
        "    raise ConnectionError('lost')\n"
        "except ConnectionError:\n"
        "    logging.getLogger('sqlalchemy.pool').error('reset failed', exc_info=True)\n"
        "logging.getLogger('sqlalchemy.engine').info('not shown: below WARNING')\n"
    )
    finished = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    (line,) = finished.stderr.splitlines()
    entry = json.loads(line)
    assert (entry["logger"], entry["message"]) == ("sqlalchemy.pool", "reset failed")
    assert "ConnectionError: lost" in entry["error"]
