"""The benchmark: orders/s and latency per scenario, mode, database and concurrency.

Every cell starts from freshly seeded rows and ends with the invariant check. The naive
read-modify-write baseline runs in the same process on the same data, for the ratio.

    pedidos bench matrix --databases mariadb,sqlite --orders 1000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess  # nosec B404: starts gunicorn for the http mode, fixed arguments
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, create_engine, insert, select, text

from pedidos.bench.baseline import make_naive
from pedidos.config import Settings
from pedidos.orders.invariants import take_ledger, violations
from pedidos.orders.processor import PedidoProcessor
from pedidos.orders.transaction import (
    ItemRequest,
    PedidoRejeitado,
    PedidoRequest,
    Work,
    place_pedidos,
)
from pedidos.sim.seed import reset
from pedidos.storage.engine import make_engine, make_sessions, resolve_driver, upgrade_schema
from pedidos.storage.models import Cliente, Produto

RESULTS = Path("benchmarks/results")  # relative to the checkout the benchmark runs from
BATCH_SIZE = 64  # the "batched" mode, and PEDIDOS_BATCH_SIZE of the gunicorn behind "http"
DATABASES = {
    # The driver the service picks for mysql:// (mysqlclient where it is built); compare
    # drivers with BENCH_MARIADB_URL, e.g. mysql+pymysql://...
    "mariadb": os.environ.get(
        "BENCH_MARIADB_URL", "mysql://root@127.0.0.1:3306/pedidos_bench?charset=utf8mb4"
    ),
    "sqlite": "sqlite:///instance/bench.sqlite3",
}


@dataclass(frozen=True)
class Scenario:
    name: str
    clientes: int
    produtos: int
    saldo: str
    estoque: int
    max_itens: int


SCENARIOS = [
    # Orders spread over many rows: little contention.
    Scenario(
        "spread", clientes=10_000, produtos=10_000, saldo="5000.00", estoque=100_000, max_itens=1
    ),
    # A flash sale: every order takes the same produto row.
    Scenario("hot", clientes=10_000, produtos=1, saldo="5000.00", estoque=10_000_000, max_itens=1),
    # Multi-item orders over a small catalog with little stock and money: many rejections.
    Scenario("mixed", clientes=500, produtos=200, saldo="80.00", estoque=10, max_itens=4),
]


@dataclass
class Cell:
    database: str
    scenario: str
    mode: str
    concurrency: int
    orders: int
    seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    violations: list[str] = field(default_factory=list)

    @property
    def committed_per_second(self) -> float:
        return self.outcomes["committed"] / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1] if ordered else 0.0

    def summary(self) -> dict[str, object]:
        data = asdict(self)
        data.pop("latencies_ms")
        data["outcomes"] = dict(self.outcomes)
        data |= {
            "committed_per_second": round(self.committed_per_second, 1),
            "orders_per_second": round(self.orders / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": round(self.percentile(50), 2),
            "p95_ms": round(self.percentile(95), 2),
            "p99_ms": round(self.percentile(99), 2),
        }
        return data


def seed_scenario(engine: Engine, scenario: Scenario) -> tuple[list[int], list[int]]:
    reset(engine)
    with engine.begin() as connection:
        connection.execute(
            insert(Cliente),
            [
                {"nome": f"Cliente {i}", "saldo": Decimal(scenario.saldo)}
                for i in range(scenario.clientes)
            ],
        )
        connection.execute(
            insert(Produto),
            [
                {"nome": f"Produto {i}", "preco": Decimal("9.90"), "estoque": scenario.estoque}
                for i in range(scenario.produtos)
            ],
        )
        clientes = list(connection.execute(select(Cliente.id)).scalars())
        produtos = list(connection.execute(select(Produto.id)).scalars())
    return clientes, produtos


def make_orders(
    scenario: Scenario, clientes: list[int], produtos: list[int], count: int
) -> list[PedidoRequest]:
    rng = random.Random(42)
    orders = []
    for _ in range(count):
        chosen = rng.sample(produtos, rng.randint(1, min(scenario.max_itens, len(produtos))))
        itens = tuple(ItemRequest(p, rng.randint(1, 2)) for p in chosen)
        orders.append(PedidoRequest(rng.choice(clientes), itens))
    return orders


def closed_loop(
    cell: Cell, requests: list[PedidoRequest], send: Callable[[PedidoRequest], str]
) -> None:
    """`concurrency` clients, each sending its next order when the last one is answered."""
    pending = iter(requests)
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                request = next(pending, None)
            if request is None:
                return
            started = time.perf_counter()
            outcome = send(request)
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                cell.outcomes[outcome] += 1
                cell.latencies_ms.append(elapsed)

    started = time.perf_counter()
    with ThreadPoolExecutor(cell.concurrency) as clients:
        for running in [clients.submit(client) for _ in range(cell.concurrency)]:
            running.result()
    cell.seconds = time.perf_counter() - started


def processor_sender(
    engine: Engine, work: Work, concurrency: int, batch_size: int = 1
) -> tuple[Callable[[PedidoRequest], str], PedidoProcessor]:
    # One by one, parallelism is many workers; batched, the served default (a few workers,
    # each taking every waiting order) is what is measured.
    workers = Settings().workers if batch_size > 1 else min(concurrency, 16)
    processor = PedidoProcessor(
        make_sessions(engine),
        workers=workers,
        queue_size=max(concurrency, 16),
        max_retries=20,
        work=work,
        batch_size=batch_size,
    )

    def send(request: PedidoRequest) -> str:
        try:
            processor.submit(request).result(timeout=120)
            return "committed"
        except PedidoRejeitado:
            return "rejected"
        except Exception as error:  # counted, and shown in the table
            return f"error:{type(error).__name__}"

    return send, processor


def http_sender(url: str, concurrency: int) -> tuple[Callable[[PedidoRequest], str], httpx.Client]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    client = httpx.Client(base_url=url, timeout=120, limits=limits)

    def send(request: PedidoRequest) -> str:
        body = {
            "cliente_id": request.cliente_id,
            "itens": [
                {"produto_id": i.produto_id, "quantidade": i.quantidade} for i in request.itens
            ],
        }
        try:
            status = client.post("/pedido", json=body).status_code
        except httpx.HTTPError as error:
            return f"error:{type(error).__name__}"
        return {201: "committed", 409: "rejected"}.get(status, f"http:{status}")

    return send, client


@contextmanager
def gunicorn(database_url: str, port: int) -> Iterator[str]:
    """The production server: gunicorn with threaded workers, one per core."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PEDIDOS_RECOVERY_INTERVAL": "0",
        "PEDIDOS_BATCH_SIZE": str(BATCH_SIZE),
    }
    command = [
        str(Path(sys.executable).with_name("gunicorn")),
        "--config",
        "gunicorn.conf.py",
        "--bind",
        f"127.0.0.1:{port}",
        "pedidos.wsgi:app",
    ]
    server = subprocess.Popen(  # nosec B603: our own gunicorn, no shell, fixed arguments
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def prepare_database(name: str) -> str:
    url = DATABASES[name]
    if name == "mariadb":
        parsed = resolve_driver(url)
        server = create_engine(parsed.set(database=""), isolation_level="AUTOCOMMIT")
        with server.connect() as connection:
            connection.execute(text(f"CREATE DATABASE IF NOT EXISTS {parsed.database}"))
        server.dispose()
    else:
        Path("instance").mkdir(exist_ok=True)
    upgrade_schema(url)
    return url


def run_cell(
    engine: Engine, cell: Cell, scenario: Scenario, send: Callable[[PedidoRequest], str]
) -> Cell:
    clientes, produtos = seed_scenario(engine, scenario)
    requests = make_orders(scenario, clientes, produtos, cell.orders)
    with make_sessions(engine, read_only=True).begin() as session:
        before = take_ledger(session)
    closed_loop(cell, requests, send)
    with make_sessions(engine, read_only=True).begin() as session:
        cell.violations = violations(before, take_ledger(session))
    return cell


def run(
    databases: list[str], modes: list[str], concurrencies: list[int], orders: int
) -> list[Cell]:
    cells: list[Cell] = []
    for database in databases:
        url = prepare_database(database)
        engine = make_engine(url, pool_size=24)
        for scenario in SCENARIOS:
            for concurrency in concurrencies:
                for mode in modes:
                    cell = Cell(database, scenario.name, mode, concurrency, orders)
                    if mode == "http":
                        with gunicorn(url, 5097) as server_url:
                            send, client = http_sender(server_url, concurrency)
                            run_cell(engine, cell, scenario, send)
                            client.close()
                    else:
                        work = make_naive(think_seconds=0) if mode == "naive" else place_pedidos
                        batch = BATCH_SIZE if mode == "batched" else 1
                        send, processor = processor_sender(engine, work, concurrency, batch)
                        run_cell(engine, cell, scenario, send)
                        processor.shutdown()
                    cells.append(cell)
                    print(format_row(cell, cells), flush=True)
        engine.dispose()
    return cells


def naive_rate(cell: Cell, cells: list[Cell]) -> float | None:
    for other in cells:
        if (other.mode, other.database, other.scenario, other.concurrency) == (
            "naive",
            cell.database,
            cell.scenario,
            cell.concurrency,
        ):
            return other.committed_per_second
    return None


HEADER = (
    f"{'db':8} {'scenario':8} {'mode':10} {'conc':>4} {'orders/s':>9} {'p50':>7} {'p95':>7} "
    f"{'p99':>7}  {'committed/rejected/other':24} {'vs naive':>8}  invariants"
)


def format_row(cell: Cell, cells: list[Cell]) -> str:
    other = sum(n for k, n in cell.outcomes.items() if k not in ("committed", "rejected"))
    naive = naive_rate(cell, cells)
    ratio = (
        f"{cell.committed_per_second / naive:7.2f}x"
        if naive and cell.mode != "naive"
        else "       -"
    )
    check = "OK" if not cell.violations else f"VIOLATED ({len(cell.violations)})"
    return (
        f"{cell.database:8} {cell.scenario:8} {cell.mode:10} {cell.concurrency:>4} "
        f"{cell.committed_per_second:9.1f} {cell.percentile(50):7.1f} {cell.percentile(95):7.1f} "
        f"{cell.percentile(99):7.1f}  "
        f"{cell.outcomes['committed']:>6}/{cell.outcomes['rejected']:>6}/{other:<10} "
        f"{ratio}  {check}"
    )


def write_results(cells: list[Cell]) -> list[Path]:
    """The cells as JSON, and the chart where it can be drawn; the files written."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    summaries = [c.summary() for c in cells]
    (RESULTS / "latest.json").write_text(json.dumps(summaries, indent=1) + "\n")
    written = [RESULTS / "latest.json"]
    if plot(summaries):
        written.append(RESULTS / "latest.png")
    return written


def plot(summaries: list[dict[str, Any]]) -> bool:
    """Committed orders/s against concurrency: a row per database, a column per scenario.
    False when there is no matplotlib to draw it (`make bench` installs it)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart (make bench installs it)", file=sys.stderr)
        return False
    databases = sorted({c["database"] for c in summaries})
    scenarios = [s.name for s in SCENARIOS if any(c["scenario"] == s.name for c in summaries)]
    figure, axes = plt.subplots(
        len(databases),
        len(scenarios),
        figsize=(4.2 * len(scenarios), 3.3 * len(databases)),
        squeeze=False,
    )
    for row, database in enumerate(databases):
        for column, scenario in enumerate(scenarios):
            axis = axes[row][column]
            for mode in ("processor", "batched", "http", "naive"):
                line = [
                    c
                    for c in summaries
                    if (c["database"], c["scenario"], c["mode"]) == (database, scenario, mode)
                ]
                if line:
                    xs = [c["concurrency"] for c in line]
                    axis.plot(xs, [c["committed_per_second"] for c in line], marker="o", label=mode)
            axis.set_title(f"{database} / {scenario}")
            axis.set_xscale("log", base=2)
            axis.set_xlabel("concurrent clients")
            axis.set_ylabel("committed orders/s")
            axis.set_ylim(bottom=0)
            axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(RESULTS / "latest.png", dpi=100)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pedidos bench matrix", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--databases",
        default="mariadb,sqlite",
        help="comma-separated: mariadb, sqlite (default: %(default)s)",
    )
    parser.add_argument(
        "--modes",
        default="naive,processor,batched,http",
        help="comma-separated ways to place orders (default: %(default)s)",
    )
    parser.add_argument(
        "--concurrency",
        default="1,16,64",
        help="comma-separated numbers of concurrent clients (default: %(default)s)",
    )
    parser.add_argument(
        "--orders", type=int, default=1000, help="orders per cell (default: %(default)s)"
    )
    parser.add_argument("--replot", action="store_true", help="redraw the chart from latest.json")
    args = parser.parse_args(argv)
    if args.replot:
        return 0 if plot(json.loads((RESULTS / "latest.json").read_text())) else 1
    print(HEADER, flush=True)
    cells = run(
        args.databases.split(","),
        args.modes.split(","),
        [int(c) for c in args.concurrency.split(",")],
        args.orders,
    )
    written = write_results(cells)
    print(f"\nresults: {' and '.join(str(path) for path in written)}")
    # The naive baseline is expected to break the invariants; the service never may.
    return 1 if any(cell.violations for cell in cells if cell.mode != "naive") else 0
