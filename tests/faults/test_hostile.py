"""Hostile traffic on loopback: a storm of summaries and exports while orders flow,
cross-site posts from another origin in Chromium, token scopes in production, and raw
header and framing fuzz. Each ends with the conservation check."""

from __future__ import annotations

import http.server
import json
import multiprocessing
import multiprocessing.queues
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Response, request
from sqlalchemy import Engine, func, select

from pedidos.app import create_app
from pedidos.config import Settings
from pedidos.storage.models import Pedido, Simulacao
from tests.faults.harness import LoadResult, StartService, assert_nothing_lost, report
from tests.helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PROBLEM,
    ledger,
    raw_request,
    runtime_of,
    seed_catalog,
    serving,
)

pytestmark = [pytest.mark.faults, pytest.mark.mariadb, pytest.mark.timeout(300)]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else 0.0


def count_rows(engine: Engine, model: type[Pedido] | type[Simulacao]) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(model)).scalar_one()


def storm(
    url: str, clients: int, seconds: float, outcome: multiprocessing.queues.Queue[Any]
) -> None:
    """Summaries, report pages and CSV exports from `clients` threads for `seconds`."""
    paths = ["/relatorio?resumo=true", "/painel/resumo", "/relatorio.csv", "/relatorio"]
    statuses: Counter[str] = Counter()
    missing_retry_after = 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def read(index: int) -> None:
        nonlocal missing_retry_after
        with httpx.Client(base_url=url, timeout=30) as client:
            while time.monotonic() < deadline:
                try:
                    response = client.get(paths[index % len(paths)])
                    status = str(response.status_code)
                    missing = status in ("429", "503") and "Retry-After" not in response.headers
                except httpx.HTTPError:
                    status, missing = "connection_error", False
                with lock:
                    statuses[status] += 1
                    missing_retry_after += missing
                if status in ("429", "503"):
                    # A storm of expensive reads, not a flood of cheap requests (that one is
                    # the proxy's to rate-limit): a refused client comes back at once, but
                    # not in a busy loop.
                    time.sleep(0.02)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outcome.put((dict(statuses), missing_retry_after))


def test_21_summary_storm_does_not_starve_orders(
    fault_engine: Engine, fault_url: str, services: StartService
) -> None:
    clientes, produtos = seed_catalog(fault_engine, 1000, "100000.00", [1_000_000] * 50)
    before = ledger(fault_engine)
    service = services(fault_url, PEDIDOS_WORKERS="8", PEDIDOS_READ_POOL_SIZE="2")
    seconds, order_clients, read_clients = 8.0, 8, 16
    orders = LoadResult()
    order_ms: list[float] = []
    ready: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def place(index: int) -> None:
        rng = random.Random(index)
        with httpx.Client(base_url=service.url, timeout=10) as client:
            while not stop.is_set():
                body = {
                    "cliente_id": rng.choice(clientes),
                    "itens": [{"produto_id": rng.choice(produtos), "quantidade": 1}],
                }
                started = time.perf_counter()
                try:
                    response: httpx.Response | None = client.post("/pedido", json=body)
                except httpx.HTTPError:
                    response = None
                with lock:
                    order_ms.append((time.perf_counter() - started) * 1000)
                orders.record(response)

    def probe() -> None:
        with httpx.Client(base_url=service.url, timeout=2) as client:
            while not stop.is_set():
                try:
                    status = str(client.get("/readyz").status_code)
                except httpx.HTTPError:
                    status = "timeout"
                with lock:
                    ready[status] += 1
                time.sleep(0.1)

    # The storm runs in a process of its own, so that its client threads do not slow the
    # order clients' measurements through this process's GIL.
    spawn = multiprocessing.get_context("spawn")
    outcome: multiprocessing.queues.Queue[tuple[dict[str, int], int]] = spawn.Queue()
    stormer = spawn.Process(target=storm, args=(service.url, read_clients, seconds, outcome))
    stormer.start()
    threads = [threading.Thread(target=place, args=(i,)) for i in range(order_clients)]
    threads.append(threading.Thread(target=probe))
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    statuses, missing_retry_after = outcome.get(timeout=60)
    stormer.join(timeout=30)
    reads = Counter(statuses)

    assert set(orders.statuses) == {"201"}, orders.statuses
    assert set(ready) == {"200"}, ready
    assert set(reads) <= {"200", "429", "503"}, reads
    assert missing_retry_after == 0
    p99 = percentile(order_ms, 99)
    assert p99 <= 1000, f"orders p99 {p99:.0f} ms under the summary storm"
    assert_nothing_lost(fault_engine, before, orders)
    report(
        "Expensive reads never starve orders; the instance stays ready",
        f"summary/CSV storm ({read_clients} clients, 2 report connections) beside "
        f"{order_clients} order clients for {seconds:.0f} s: {orders.sent} orders all 201, "
        f"p50 {percentile(order_ms, 50):.0f} ms, p99 {p99:.0f} ms; reads {dict(reads)}; "
        f"/readyz {dict(ready)}; 0 violations",
    )


EVIL_PAGE = "<!doctype html><title>another site</title><iframe name=sink></iframe>"
# What another site can make a visitor's browser send without asking the service first.
ATTACKS = """async (target) => {
  const sent = [];
  const post = async (path, init) => {
    try { await fetch(target + path, { method: "POST", mode: "no-cors", ...init }); }
    catch (e) { /* refused or opaque: the service's state is what counts */ }
    sent.push(path);
  };
  await post("/pedido", {});
  await post("/pedido", { body: "", headers: { "Content-Type": "text/plain" } });
  await post("/pedido", { body: '{"cliente_id": 1, "itens": [{"produto_id": 1, "quantidade": 1}]}',
                          headers: { "Content-Type": "text/plain" } });
  await post("/pedido", { body: new URLSearchParams({ cliente_id: "1" }) });
  await post("/simulacoes", {});
  for (const [path, enctype] of [["/pedido", "text/plain"],
                                 ["/pedido", "application/x-www-form-urlencoded"],
                                 ["/simulacoes", "multipart/form-data"]]) {
    const form = document.createElement("form");
    form.method = "POST"; form.action = target + path; form.enctype = enctype;
    form.target = "sink";
    document.body.appendChild(form);
    form.submit();
    sent.push(path);
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
  return sent.length;
}"""


class EvilPage(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = EVIL_PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def another_site() -> Iterator[str]:
    """A page on loopback under another name (localhost, not 127.0.0.1): another site to the
    browser, yet on the loopback address space, so the browser does send its requests."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EvilPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_22_cross_site_posts_from_chromium_change_nothing(
    fault_engine: Engine, fault_url: str
) -> None:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}: the cross-site test must run")
    from playwright.sync_api import sync_playwright

    seed_catalog(fault_engine, 50, "1000.00", [10_000] * 5)
    before = ledger(fault_engine)
    # Development defaults: random orders on, no admin token; the most exposed setting.
    app = create_app(Settings(database_url=fault_url, workers=4))
    seen: Counter[str] = Counter()

    @app.after_request
    def _count(response: Response) -> Response:
        if request.method == "POST":
            seen[f"{request.path} {response.status_code}"] += 1
        return response

    try:
        with serving(app) as url, another_site() as evil_origin, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                evil = browser.new_page()
                evil.goto(f"{evil_origin}/")
                attempts = evil.evaluate(ATTACKS, url)
                evil.wait_for_timeout(500)
                refused = sum(n for key, n in seen.items() if key.endswith((" 403", " 415")))
                assert count_rows(fault_engine, Pedido) == 0
                assert count_rows(fault_engine, Simulacao) == 0

                # The control: the same bodiless order from the service's own page is accepted
                # (recorded and answered 202 at once).
                own = browser.new_page()
                own.goto(f"{url}/")
                status = own.evaluate(
                    "async () => (await fetch('/pedido', { method: 'POST' })).status"
                )
                assert status == 202
            finally:
                browser.close()
    finally:
        runtime_of(app).close()
    after = ledger(fault_engine)
    assert after.pedidos == before.pedidos + 1
    assert refused == attempts, seen
    report(
        "No cross-site request places an order or starts a simulation",
        f"cross-site POSTs from another origin in Chromium (no-cors fetch, forms: "
        f"text/plain, urlencoded, multipart; orders and simulations): {attempts} sent, "
        f"{refused} refused (403/415), 0 orders, 0 simulations; same-origin control: 202",
    )


def pedidos_command(database_url: str, *args: str) -> str:
    command = [str(Path(sys.executable).with_name("pedidos")), *args]
    env = {**os.environ, "DATABASE_URL": database_url}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


def test_23_token_scopes_in_production(
    fault_engine: Engine, fault_url: str, services: StartService
) -> None:
    clientes, produtos = seed_catalog(fault_engine, 20, "52.34", [1000] * 3)
    before = ledger(fault_engine)
    admin = "fault-suite-admin-" + "x" * 24
    leitor = pedidos_command(fault_url, "token", "create", "--nome", "painel", "--escopo", "read")
    loja = pedidos_command(fault_url, "token", "create", "--nome", "loja", "--escopo", "orders")
    cliente_app = pedidos_command(
        fault_url,
        "token",
        "create",
        "--nome",
        "app",
        "--escopo",
        "orders",
        "--cliente",
        str(clientes[0]),
    )
    service = services(
        fault_url, PEDIDOS_ENV="production", PEDIDOS_ADMIN_TOKEN=admin, PEDIDOS_WORKERS="4"
    )
    load = LoadResult()
    checks = 0

    def expect(response: httpx.Response, status: int) -> httpx.Response:
        nonlocal checks
        assert response.status_code == status, (response.request.url, response.text[:200])
        if status >= 400:
            assert response.headers["Content-Type"] == PROBLEM
        checks += 1
        return response

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def order(cliente: int, quantidade: int = 1) -> dict[str, object]:
        return {
            "cliente_id": cliente,
            "itens": [{"produto_id": produtos[0], "quantidade": quantidade}],
        }

    gets = ["/", "/relatorio", "/status", "/clientes", "/produtos", "/relatorio.csv"]
    admin_gets = ["/metrics", "/docs", "/openapi.json"]
    with httpx.Client(base_url=service.url, timeout=10) as client:
        for path in [*gets, *admin_gets, "/pedido/1", "/simulacoes/1", "/nada"]:
            response = expect(client.get(path), 401)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            expect(client.get(path, headers=bearer("pdk_1_" + "a" * 43)), 401)
        expect(client.post("/pedido", json=order(clientes[1])), 401)
        expect(client.post("/simulacoes", json={"pedidos": 1}), 401)
        expect(client.get("/healthz"), 200)
        expect(client.get("/readyz"), 200)
        for path in gets:
            expect(client.get(path, headers=bearer(leitor)), 200)
            expect(client.get(path, headers=bearer(loja)), 403)
        for path in admin_gets:
            expect(client.get(path, headers=bearer(leitor)), 403)
            expect(client.get(path, headers=bearer(admin)), 200)
        expect(client.post("/pedido", json=order(clientes[1]), headers=bearer(leitor)), 403)
        expect(client.post("/simulacoes", json={"pedidos": 1}, headers=bearer(loja)), 403)
        expect(client.post("/pedido", headers=bearer(admin)), 422)  # no random orders here
        placed = expect(client.post("/pedido", json=order(clientes[1]), headers=bearer(loja)), 201)
        load.record(placed)
        expect(client.post("/pedido", json=order(clientes[1]), headers=bearer(cliente_app)), 403)
        own = expect(
            client.post("/pedido", json=order(clientes[0]), headers=bearer(cliente_app)), 201
        )
        load.record(own)
        expect(client.get(placed.headers["Location"], headers=bearer(cliente_app)), 404)
        expect(client.get(own.headers["Location"], headers=bearer(cliente_app)), 200)
        too_much = expect(
            client.post("/pedido", json=order(clientes[2], 100), headers=bearer(loja)), 409
        )
        assert "saldo" not in too_much.json() and "52.34" not in too_much.json()["detail"]

        token_id = loja.split("_")[1]
        pedidos_command(fault_url, "token", "revoke", token_id)
        deadline = time.monotonic() + 15
        revoked_after = None
        while time.monotonic() < deadline:
            if client.get("/pedido/1", headers=bearer(loja)).status_code == 401:
                revoked_after = 15 - (deadline - time.monotonic())
                break
            time.sleep(0.25)
        assert revoked_after is not None, "a revoked token was still accepted after 15 s"
        checks += 1

    listed = pedidos_command(fault_url, "token", "list", "--json")
    assert all(secret not in listed for secret in (leitor, loja, cliente_app))
    assert [json.loads(line)["revogado_em"] is not None for line in listed.splitlines()] == [
        False,
        True,
        False,
    ]
    assert_nothing_lost(fault_engine, before, load)
    report(
        "Production answers only to tokens, within their scopes",
        f"production tokens over HTTP: {checks} checks (401 anonymous and unknown, 403 "
        f"wrong scope or cliente, 409 without the saldo, probes open); a revoked token "
        f"refused after {revoked_after:.1f} s; 0 violations",
    )


def fuzz_requests(rng: random.Random, count: int) -> list[bytes]:
    """Requests a careless or hostile client sends: broken framing, odd headers and bytes."""
    valid = b'{"cliente_id": 1, "itens": [{"produto_id": 1, "quantidade": 1}]}'
    junk_values = [
        b"\x00",
        b"\xff\xfe",
        b"\xc2\xb2",
        b"a" * 9000,
        b"${jndi:x}",
        b"respond-async, wait=\xc2\xb2",
        b"<script>",
        b"\t",
        b"-1",
        b"1e9",
        b"",
    ]
    names = [b"Content-Length", b"Transfer-Encoding", b"Prefer", b"Idempotency-Key", b"Host",
             b"Content-Type", b"Origin", b"Sec-Fetch-Site", b"Authorization", b"X-Request-Id",
             b"Expect", b"Connection"]  # fmt: skip
    paths = [
        b"/pedido", b"/relatorio?resumo=true", b"/pedido/1", b"/simulacoes", b"/%00",
        b"/relatorio?limit=%FF", b"/pedido/99999999999999999999", b"/painel/resumo",
    ]  # fmt: skip
    built = []
    for _ in range(count):
        method = rng.choice([b"GET", b"POST", b"POST", b"PUT", b"DELETE", b"PATCH"])
        path = rng.choice(paths)
        headers = [b"Host: 127.0.0.1", b"Connection: close"]
        body = rng.choice([b"", valid, valid[:20], b"\x00" * 10, b"[" * 5000])
        framing = rng.choice(["length", "chunked", "bad-chunked", "none", "both", "junk"])
        if framing == "length":
            headers.append(b"Content-Length: %d" % len(body))
        elif framing == "chunked":
            headers.append(b"Transfer-Encoding: chunked")
            body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
        elif framing == "bad-chunked":
            headers.append(b"Transfer-Encoding: chunked")
            body = b"zz\r\n" + body + b"\r\n0\r\n\r\n"
        elif framing == "both":
            headers += [b"Content-Length: %d" % len(body), b"Transfer-Encoding: chunked"]
        elif framing == "junk":
            headers.append(rng.choice([b"Content-Length: -1", b"Transfer-Encoding: xchunked",
                                       b"Content-Length: 1_0", b"Content-Length: +5"]))  # fmt: skip
        for _ in range(rng.randint(0, 4)):
            headers.append(rng.choice(names) + b": " + rng.choice(junk_values))
        if rng.random() < 0.5:
            headers.append(b"Content-Type: application/json")
        built.append(
            method + b" " + path + b" HTTP/1.1\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + body
        )
    return built


def test_24_header_and_framing_fuzz(
    fault_engine: Engine, fault_url: str, services: StartService
) -> None:
    seed_catalog(fault_engine, 10, "1000.00", [100_000] * 3)
    before = ledger(fault_engine)
    service = services(fault_url, PEDIDOS_WORKERS="4")
    rng = random.Random(2024)
    statuses: Counter[int] = Counter()
    not_problem = 0
    created = LoadResult()
    started = time.monotonic()
    for data in fuzz_requests(rng, 300):
        try:
            status, headers, body = raw_request(service.url, data, timeout=5)
        except (TimeoutError, ConnectionError):
            statuses[0] += 1
            continue
        statuses[status] += 1
        if status >= 400 and headers.get("content-type") != PROBLEM:
            not_problem += 1
        if status == 201:
            created.created.append(json.loads(body)["id"])
    elapsed = time.monotonic() - started
    assert not [s for s in statuses if s >= 500], statuses
    assert not_problem == 0
    assert httpx.get(f"{service.url}/healthz", timeout=5).status_code == 200
    assert_nothing_lost(fault_engine, before, created)
    report(
        "Hostile headers and framing get a 4xx problem, never a 5xx",
        f"raw header and framing fuzz, 300 requests on the dev server in {elapsed:.1f} s: "
        f"statuses {dict(sorted(statuses.items()))}, 0 5xx, every error problem+json, "
        f"{len(created.created)} valid orders committed exactly once",
    )
