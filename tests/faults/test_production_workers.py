"""The workers of `pedidos serve --production` killed mid-load, one after the other: the
server replaces each and serves on, the acknowledged requests settle without a restart, and
the dead workers' gauges stop counting."""

from __future__ import annotations

import os
import signal
import time
from functools import partial
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from tests.faults.harness import (
    ProductionService,
    assert_nothing_lost,
    load_in_background,
    mixed_orders,
    pending_count,
    report,
    run_load,
)
from tests.helpers import ledger, seed_catalog, wait_until, worker_pids

pytestmark = [pytest.mark.faults, pytest.mark.mariadb, pytest.mark.timeout(300)]


def replaced(server: int, before: set[int]) -> bool:
    """Two workers again, and not the same two."""
    now = worker_pids(server)
    return len(now) == 2 and now != before


def started(service: ProductionService, workers: int) -> bool:
    """Whether `workers` workers have started serving so far, from the server's log."""
    return service.log_path.read_text(errors="replace").count("Started worker-") >= workers


def in_flight(service: ProductionService) -> float:
    text = httpx.get(f"{service.url}/metrics", headers=service.auth, timeout=5).text
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("pedidos_in_flight")
    )


def test_killed_workers_are_replaced_and_nothing_is_lost(
    fault_engine: Engine, fault_url: str, tmp_path: Path
) -> None:
    clientes, produtos = seed_catalog(fault_engine, 300, "500.00", [5000] * 20)
    before = ledger(fault_engine)
    service = ProductionService(
        fault_url,
        tmp_path / "production.log",
        PEDIDOS_LEASE_SECONDS="1",
        PEDIDOS_RECOVERY_INTERVAL="0.5",
    ).start()
    mixed = mixed_orders(clientes, produtos, **service.auth)

    replaced_in: list[float] = []
    try:
        wait_until(lambda: len(worker_pids(service.pid)) == 2, 30, "two workers")
        thread, done = load_in_background(lambda: run_load(service.url, 3000, 24, mixed))
        # Each original worker in turn, so that the orders in flight in one of them die too;
        # the next only once the last one's replacement serves.
        for kills, victim in enumerate(sorted(worker_pids(service.pid)), start=1):
            time.sleep(1.0)
            before_kill = worker_pids(service.pid)
            os.kill(victim, signal.SIGKILL)
            killed = time.monotonic()
            wait_until(
                partial(replaced, service.pid, before_kill),
                30,
                "a new worker in place of the killed one",
            )
            wait_until(partial(started, service, 2 + kills), 30, "the new worker serving")
            replaced_in.append(time.monotonic() - killed)
        thread.join(120)
        load = done[0]
        assert service.process is not None and service.process.poll() is None
        after_body, headers = mixed(10_001)  # not a multiple of 4: it waits for its outcome
        late = httpx.post(f"{service.url}/pedido", json=after_body, headers=headers, timeout=30)
        assert late.status_code == 201, late.text
        load.created.append(late.json()["id"])
        # The killed workers' accepted requests: recovery in the live workers settles them.
        wait_until(lambda: pending_count(fault_engine) == 0, 60, "pending requests settle")
        # Their in-flight gauges died with them, instead of counting forever.
        wait_until(lambda: in_flight(service) == 0, 10, "no order counted in flight")
    finally:
        service.stop()

    assert load.server_errors == 0, load.statuses
    assert load.created and load.accepted, load.statuses
    assert_nothing_lost(fault_engine, before, load)
    report(
        "A worker process that dies is replaced; the server serves on and loses nothing",
        f"SIGKILL to each of the 2 workers of `pedidos serve --production` in turn during "
        f"3,000 mixed orders: each replaced and serving within {max(replaced_in):.1f} s, the "
        f"other serving meanwhile, the server never "
        f"stopped; clients saw "
        f"{dict(load.statuses)}; every 201 present, every 202 settled by the live workers "
        f"(no restart), the in-flight gauge back to 0",
    )
