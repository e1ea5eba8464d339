"""SIGTERM to `pedidos serve --production` during load: /readyz turns 503 first, accepted
orders finish, the server exits 0, and nothing acknowledged is lost."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from tests.faults.harness import (
    ProductionService,
    ServiceProcess,
    assert_nothing_lost,
    load_in_background,
    mixed_orders,
    pending_count,
    report,
    run_load,
)
from tests.helpers import ledger, seed_catalog, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.mariadb, pytest.mark.timeout(300)]


def test_sigterm_drains_the_production_server(
    fault_engine: Engine, fault_url: str, tmp_path: Path
) -> None:
    clientes, produtos = seed_catalog(fault_engine, 300, "500.00", [5000] * 20)
    before = ledger(fault_engine)
    service = ProductionService(fault_url, tmp_path / "production.log").start()
    mixed = mixed_orders(clientes, produtos, **service.auth)

    readiness: list[str] = []
    stop_probing = threading.Event()

    def probe_readiness() -> None:
        while not stop_probing.is_set():
            try:
                readiness.append(str(httpx.get(f"{service.url}/readyz", timeout=1).status_code))
            except httpx.HTTPError:
                readiness.append("refused")
            time.sleep(0.1)

    try:
        thread, done = load_in_background(lambda: run_load(service.url, 2000, 24, mixed))
        prober = threading.Thread(target=probe_readiness)
        prober.start()
        time.sleep(1.0)
        started = time.monotonic()
        service.signal(signal.SIGTERM)
        exit_code = service.wait(60)
        drain_seconds = time.monotonic() - started
        stop_probing.set()
        prober.join(10)
        thread.join(120)
    finally:
        service.stop()
    load = done[0]
    restarted = ServiceProcess(
        fault_url,
        tmp_path / "restarted.log",
        PEDIDOS_LEASE_SECONDS="1",
        PEDIDOS_RECOVERY_INTERVAL="0.5",
    ).start()
    try:
        wait_until(lambda: pending_count(fault_engine) == 0, 60, "pending requests settle")
    finally:
        restarted.stop()

    assert exit_code == 0
    # Ready, then 503 while draining, then the listener closes.
    assert readiness[0] == "200" and "503" in readiness, readiness
    assert load.server_errors == 0, load.statuses
    assert load.created, load.statuses
    assert_nothing_lost(fault_engine, before, load)
    report(
        "The production server drains on SIGTERM: it leaves the pool, then loses nothing",
        f"SIGTERM to `pedidos serve --production` during 2,000 mixed orders: /readyz 503 "
        f"for {readiness.count('503') / 10:.1f} s, exit 0 after {drain_seconds:.1f} s; clients "
        f"saw {dict(load.statuses)}; every 201 present, every 202 settled after restart",
    )
