"""Memory over a long run: a million orders through the batched processor, RSS sampled.

Orders are generated as they are sent and latencies go into a fixed-size histogram, so the
harness itself holds no per-order state: a growing RSS would be the service's.

    pedidos bench soak [--orders 1000000] [--concurrency 64] [--database mariadb]
"""

from __future__ import annotations

import argparse
import random
import resource
import threading
import time
from collections import Counter
from collections.abc import Iterator

from pedidos.bench.matrix import BATCH_SIZE, SCENARIOS, prepare_database, seed_scenario
from pedidos.config import Settings
from pedidos.orders.invariants import take_ledger, violations
from pedidos.orders.processor import PedidoProcessor
from pedidos.orders.transaction import ItemRequest, PedidoRejeitado, PedidoRequest
from pedidos.storage.engine import make_engine, make_sessions

SAMPLES = 20  # RSS lines printed over the run


def rss_mib() -> float:
    """Resident set size of this process now (Linux /proc), in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def random_orders(clientes: list[int], produtos: list[int], count: int) -> Iterator[PedidoRequest]:
    rng = random.Random(7)
    for _ in range(count):
        yield PedidoRequest(rng.choice(clientes), (ItemRequest(rng.choice(produtos), 1),))


def soak(database: str, orders: int, concurrency: int) -> int:
    url = prepare_database(database)
    engine = make_engine(url, pool_size=24)
    scenario = next(s for s in SCENARIOS if s.name == "spread")
    clientes, produtos = seed_scenario(engine, scenario)
    with make_sessions(engine, read_only=True).begin() as session:
        before = take_ledger(session)
    processor = PedidoProcessor(
        make_sessions(engine),
        workers=Settings().workers,
        queue_size=max(concurrency, 16),
        max_retries=20,
        batch_size=BATCH_SIZE,
    )
    pending = random_orders(clientes, produtos, orders)
    lock = threading.Lock()
    outcomes: Counter[str] = Counter()
    every = max(1, orders // SAMPLES)
    started = time.perf_counter()
    print(f"{'orders':>9} {'seconds':>8} {'orders/s':>9} {'RSS MiB':>8}", flush=True)

    def client() -> None:
        while True:
            with lock:
                request = next(pending, None)
            if request is None:
                return
            try:
                processor.submit(request).result(timeout=120)
                outcome = "committed"
            except PedidoRejeitado:
                outcome = "rejected"
            except Exception as error:  # counted and shown
                outcome = f"error:{type(error).__name__}"
            with lock:
                outcomes[outcome] += 1
                done = sum(outcomes.values())
            if done % every == 0:
                seconds = time.perf_counter() - started
                print(
                    f"{done:>9} {seconds:8.1f} {done / seconds:9.1f} {rss_mib():8.1f}", flush=True
                )

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    processor.shutdown()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with make_sessions(engine, read_only=True).begin() as session:
        broken = violations(before, take_ledger(session))
    engine.dispose()
    print(f"outcomes: {dict(outcomes)}; peak RSS {peak:.1f} MiB")
    print("invariants: " + ("OK" if not broken else "VIOLATED: " + "; ".join(broken)))
    return 1 if broken else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pedidos bench soak", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--orders", type=int, default=1_000_000, help="orders to place (default: %(default)s)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=64, help="concurrent clients (default: %(default)s)"
    )
    parser.add_argument(
        "--database",
        default="mariadb",
        choices=["mariadb", "sqlite"],
        help="database to run on (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    return soak(args.database, args.orders, args.concurrency)
