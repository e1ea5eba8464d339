"""Read latency with a million orders: report pages, filters, the summary, status.

Fills MariaDB's `pedidos_bench` with 1,000,000 clientes, 1,000,000 produtos and 1,000,000
orders written by SQL (fixture data for reads: the order path is measured by run.py), then
times each read endpoint in process through Flask's test client (server time, no network).

    pedidos bench reads [--pedidos 1000000] [--requests 200]
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections.abc import Callable

from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from pedidos.app import create_app
from pedidos.bench.matrix import DATABASES, prepare_database
from pedidos.config import Settings
from pedidos.sim.seed import reset, seed
from pedidos.storage.engine import make_engine


def fill_orders(engine: Engine, pedidos: int) -> tuple[int, int]:
    """Orders spread over the catalog and the last 30 days, by set-based SQL."""
    with engine.begin() as connection:
        cliente_min = connection.execute(text("SELECT MIN(id) FROM clientes")).scalar_one()
        produto_min = connection.execute(text("SELECT MIN(id) FROM produtos")).scalar_one()
        clientes = connection.execute(text("SELECT COUNT(*) FROM clientes")).scalar_one()
        produtos = connection.execute(text("SELECT COUNT(*) FROM produtos")).scalar_one()
        when = "UTC_TIMESTAMP(6) - INTERVAL (seq * 2591000) MICROSECOND"
        # MariaDB's sequence tables are named by their size, so the count is part of the
        # table name and cannot be a bound parameter; it is an int from the command line.
        sequence = f"seq_1_to_{int(pedidos)}"
        connection.execute(
            text(
                "INSERT INTO solicitacoes (id, estado, tentativas, criado_em, atualizado_em) "  # nosec B608
                f"SELECT seq, 'CONCLUIDO', 1, {when}, {when} FROM {sequence}"
            )
        )
        connection.execute(
            text(
                "INSERT INTO pedidos (id, cliente_id, total, criado_em) "  # nosec B608
                f"SELECT seq, :cmin + (seq * 7919) % :c, 9.90 * (1 + seq % 3), {when} "
                f"FROM {sequence}"
            ),
            {"cmin": cliente_min, "c": clientes},
        )
        connection.execute(
            text(
                "INSERT INTO itens_pedido (pedido_id, produto_id, quantidade, preco_unitario) "  # nosec B608
                "SELECT seq, :pmin + (seq * 104729) % :p, 1 + seq % 3, 9.90 "
                f"FROM {sequence}"
            ),
            {"pmin": produto_min, "p": produtos},
        )
        connection.execute(
            text(
                "UPDATE contadores SET concluidos = (SELECT COUNT(*) FROM pedidos), "
                "unidades = (SELECT SUM(quantidade) FROM itens_pedido), "
                "receita = (SELECT SUM(total) FROM pedidos) WHERE shard = 0"
            )
        )
        # The sales totals the order transaction keeps, as if these orders had run through it.
        connection.execute(
            text(
                "UPDATE produtos p JOIN (SELECT produto_id, SUM(quantidade) AS n, "
                "SUM(quantidade * preco_unitario) AS v FROM itens_pedido GROUP BY produto_id) s "
                "ON s.produto_id = p.id SET p.vendidos = s.n, p.receita = s.v"
            )
        )
        connection.execute(
            text(
                "UPDATE clientes c JOIN (SELECT cliente_id, COUNT(*) AS n, SUM(total) AS v "
                "FROM pedidos GROUP BY cliente_id) s "
                "ON s.cliente_id = c.id SET c.compras = s.n, c.gasto = s.v"
            )
        )
    return cliente_min, produto_min


def timed(client: FlaskClient, urls: Callable[[int], str], count: int) -> tuple[float, float]:
    """p50 and p99 in ms of `count` GETs, after one warm-up request."""
    client.get(urls(0))
    latencies = []
    for index in range(count):
        started = time.perf_counter()
        response = client.get(urls(index))
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{urls(index)} answered {response.status_code}")
    latencies.sort()

    def at(p: float) -> float:
        return latencies[max(1, math.ceil(p / 100 * len(latencies))) - 1]

    return at(50), at(99)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pedidos bench reads", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--pedidos",
        type=int,
        default=1_000_000,
        help="orders in the database read from (default: %(default)s)",
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=200,
        help="requests per measured read (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    url = prepare_database("mariadb")
    engine = make_engine(url, pool_size=4)
    started = time.perf_counter()
    reset(engine)
    seed(engine, 1_000_000, 1_000_000, random_seed=1)
    cliente_min, produto_min = fill_orders(engine, args.pedidos)
    print(
        f"filled 1,000,000 clientes, 1,000,000 produtos, {args.pedidos:,} orders "
        f"in {time.perf_counter() - started:.0f} s"
    )
    app = create_app(Settings(database_url=DATABASES["mariadb"], recovery_interval=0))
    client = app.test_client()
    first = client.get("/relatorio?limit=50").get_json()
    cursor = first["next_cursor"]
    rng = random.Random(3)
    checks: list[tuple[str, Callable[[int], str]]] = [
        ("GET /status", lambda _i: "/status"),
        ("GET /pedido/<id>", lambda _i: f"/pedido/{rng.randint(1, args.pedidos)}"),
        ("GET /relatorio first page (50 orders)", lambda _i: "/relatorio"),
        ("GET /relatorio next page (cursor)", lambda _i: f"/relatorio?cursor={cursor}"),
        (
            "GET /relatorio?cliente_id (first page)",
            lambda _i: (
                f"/relatorio?resumo=false&cliente_id={cliente_min + rng.randint(0, 999_999)}"
            ),
        ),
        (
            "GET /relatorio?produto_id (first page)",
            lambda _i: (
                f"/relatorio?resumo=false&produto_id={produto_min + rng.randint(0, 999_999)}"
            ),
        ),
        ("GET /relatorio?resumo=true (all 1M orders)", lambda _i: "/relatorio?resumo=true"),
    ]
    print(f"{'request':48} {'p50 ms':>8} {'p99 ms':>8}")
    for label, urls in checks:
        count = 5 if "resumo" in label else args.requests
        p50, p99 = timed(client, urls, count)
        print(f"{label:48} {p50:8.1f} {p99:8.1f}   ({count} requests)", flush=True)
    app.extensions["pedidos"].close()
    engine.dispose()
    return 0
