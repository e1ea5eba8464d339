"""The order worker's CPU per order: batches run one after another in one thread, on MariaDB.

Over HTTP the worker's part of an order drowns in the web layer's and in a shared machine's
noise. This runs what a worker runs for a batch (`run_batch` with the order transaction:
the locking read, the request rows, the compound write, COMMIT) on a database seeded as the
HTTP benchmark seeds it, and reads the thread's own CPU time, user and system, around many
batches of one-line spread orders. No other thread competes for the interpreter.

    .venv/bin/python benchmarks/batch_cpu.py                      # batches of 16
    .venv/bin/python benchmarks/batch_cpu.py --batch 32 --rounds 5
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import time
from pathlib import Path

from pedidos.orders.batches import run_batch
from pedidos.orders.transaction import ItemRequest, PedidoRequest, place_pedidos
from pedidos.storage.engine import make_engine, make_sessions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_http import CLIENTES, PRODUTOS, pedidos_url, seed_pedidos

WARMUP_BATCHES = 30


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="pedidos_batch_cpu", help="dropped and recreated")
    parser.add_argument("--driver", default="mysqldb", choices=("mysqldb", "pymysql"))
    parser.add_argument("--batch", type=int, default=16, help="orders per batch")
    parser.add_argument("--batches", type=int, default=300, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    seed_pedidos(args.database)
    engine = make_engine(pedidos_url(args.database, args.driver), pool_size=1)
    sessions = make_sessions(engine)
    picks = random.Random(1)

    def batch() -> list[PedidoRequest]:
        return [
            PedidoRequest(picks.randint(1, CLIENTES), (ItemRequest(picks.randint(1, PRODUTOS), 1),))
            for _ in range(args.batch)
        ]

    for _ in range(WARMUP_BATCHES):
        run_batch(sessions, place_pedidos, batch(), 3)
    print(f"{args.driver}, batches of {args.batch}, {args.batches} batches a round")
    print("round  user µs/order  system µs/order  wall µs/order")
    users = []
    for n in range(args.rounds):
        jobs = [batch() for _ in range(args.batches)]
        before, started = resource.getrusage(resource.RUSAGE_THREAD), time.perf_counter()
        outcomes = [run_batch(sessions, place_pedidos, orders, 3).outcomes for orders in jobs]
        after, wall = resource.getrusage(resource.RUSAGE_THREAD), time.perf_counter() - started
        failed = [o for batch in outcomes for o in batch if isinstance(o, Exception)]
        if failed:  # a failing path would time its error handling
            raise SystemExit(f"{len(failed)} orders did not commit, first: {failed[0]!r}")
        orders_run = args.batches * args.batch
        user = (after.ru_utime - before.ru_utime) / orders_run * 1e6
        system = (after.ru_stime - before.ru_stime) / orders_run * 1e6
        users.append(user)
        print(f"{n + 1:5}  {user:13.1f}  {system:15.1f}  {wall / orders_run * 1e6:13.1f}")
    print(f"median user µs/order: {statistics.median(users):.1f}")
    engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
