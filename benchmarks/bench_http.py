"""Orders over HTTP: Pedidos against the minimal raw-SQL peer, under gunicorn and granian.

One run, same data for every cell (the databases are dropped and seeded again before each):
10,000 clientes and 10,000 produtos with saldo and estoque large enough that every order
commits. wrk (Debian package `wrk`) drives each server for --seconds at --connections after a
short warm-up. Committed orders are counted in the database, not from 2xx answers.

    .venv/bin/python benchmarks/bench_http.py --database pedidos_bench
    .venv/bin/python benchmarks/bench_http.py --rounds 3     # medians on a noisy machine
    make bench-http BENCH_ARGS="--seconds 5 --scenarios spread"
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path

import pymysql

from pedidos.storage.engine import resolve_driver

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CLIENTES = 10_000
PRODUTOS = 10_000
SALDO = "100000000.00"  # no order is refused: every cell measures the same work
ESTOQUE = 100_000_000
HOT_PRODUTO = 1
WARMUP_SECONDS = 2
SERVERS = ("gunicorn", "granian")
APPS = ("peer", "pedidos")
SCENARIOS = ("spread", "hot")
DRIVERS = ("pymysql", "mysqldb")
LATENCY = re.compile(r"latency p50 ([\d.]+) ms, p99 ([\d.]+) ms")
COUNTS = re.compile(r"requests (\d+), errors: connect (\d+) read (\d+) write (\d+) status (\d+)")


@dataclass(frozen=True)
class Cell:
    server: str
    app: str
    scenario: str
    committed_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int


def sql(database: str | None, *statements: str) -> list[tuple[object, ...]]:
    """Run statements on the local MariaDB (root, loopback); return the last one's rows."""
    connection = pymysql.connect(host="127.0.0.1", user="root", database=database, autocommit=True)
    try:
        rows: list[tuple[object, ...]] = []
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
                rows = list(cursor.fetchall())
        return rows
    finally:
        connection.close()


def recreate(database: str) -> None:
    sql(None, f"DROP DATABASE IF EXISTS `{database}`", f"CREATE DATABASE `{database}`")


def seed_rows(database: str) -> None:
    """The same catalogue in either schema: ids 1..N, prices 1.00 to 100.00."""
    sql(
        database,
        f"INSERT INTO clientes (id, nome, saldo) SELECT seq, CONCAT('Cliente ', seq), {SALDO}"
        f" FROM seq_1_to_{CLIENTES}",
        "INSERT INTO produtos (id, nome, preco, estoque)"
        f" SELECT seq, CONCAT('Produto ', seq), 1 + (seq * 37 % 9900) / 100, {ESTOQUE}"
        f" FROM seq_1_to_{PRODUTOS}",
    )


def seed_pedidos(database: str) -> str:
    """A fresh Pedidos database; return a token that may place orders (production needs one)."""
    recreate(database)
    env = {**os.environ, "DATABASE_URL": pedidos_url(database, "pymysql")}
    subprocess.run([str(BIN / "pedidos"), "init-db"], env=env, check=True, capture_output=True)
    seed_rows(database)
    created = subprocess.run(
        [str(BIN / "pedidos"), "token", "create", "--nome", "bench", "--escopo", "orders"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return created.stdout.strip()


def seed_peer(database: str) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks" / "peer"))
    from app import SCHEMA  # the peer's own schema: no durable-request table, no tallies

    recreate(database)
    sql(database, *SCHEMA)
    seed_rows(database)


def pedidos_url(database: str, driver: str) -> str:
    return f"mysql+{driver}://root@127.0.0.1:3306/{database}?charset=utf8mb4"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def answers(port: int) -> bool:
    """Any HTTP answer at all (the peer has no health endpoint)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return conn.recv(16).startswith(b"HTTP/1.1 ")
    except OSError:
        return False


@contextmanager
def running(command: list[str], env: dict[str, str], port: int, cwd: Path) -> Iterator[int]:
    """A server in its own process group until the block ends (its pid); SIGTERM, then
    SIGKILL."""
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=log, stderr=log, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 30
            while not answers(port):
                if server.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    tail = log.read().decode()[-2000:]
                    raise RuntimeError(f"{command[0]} did not start:\n{tail}")
                time.sleep(0.2)
            yield server.pid
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


def pin_workers(server: int, count: int = 2) -> None:
    """Each of the `count` worker processes of `server` and their threads on a core of its
    own, as `pedidos serve --production` places its workers (beyond the cores, none): the peer
    on the same terms. Waits for the workers to start their threads."""
    cores = sorted(os.sched_getaffinity(0))
    deadline = time.monotonic() + 10
    while True:
        children = Path(f"/proc/{server}/task/{server}/children").read_text().split()
        workers = [pid for pid in children if len(os.listdir(f"/proc/{pid}/task")) > 1]
        if len(workers) >= count:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(workers)} of {count} workers started: cannot pin them")
        time.sleep(0.2)
    for pid, core in zip(sorted(workers, key=int), cores, strict=False):
        for task in os.listdir(f"/proc/{pid}/task"):
            os.sched_setaffinity(int(task), {core})


def command_for(server: str, app: str, port: int) -> list[str]:
    if app == "pedidos" and server == "granian":
        return [str(BIN / "pedidos"), "serve", "--production", "--port", str(port)]
    if app == "pedidos":
        conf = str(ROOT / "gunicorn.conf.py")
        return [str(BIN / "gunicorn"), "-c", conf, "-b", f"127.0.0.1:{port}", "pedidos.wsgi:app"]
    if server == "granian":
        return [
            str(BIN / "granian"), "--interface", "wsgi", "--workers", "2",
            "--blocking-threads", "16", "--port", str(port), "--no-access-log",
            "--factory", "app:create_app",
        ]  # fmt: skip
    return [
        str(BIN / "gunicorn"), "-k", "gthread", "-w", "2", "--threads", "16",
        "-b", f"127.0.0.1:{port}", "app:create_app()",
    ]  # fmt: skip


def wrk(port: int, seconds: int, connections: int, script: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script),
         f"http://127.0.0.1:{port}"],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return result.stdout


def committed(database: str) -> int:
    count = sql(database, "SELECT COUNT(*) FROM pedidos")[0][0]
    assert isinstance(count, int)
    return count


def check_conservation(database: str) -> None:
    """Money and units add up after the run: every order debited exactly what it recorded."""
    row = sql(
        database,
        "SELECT (SELECT SUM(saldo) FROM clientes) + (SELECT COALESCE(SUM(total), 0) FROM pedidos),"
        " (SELECT SUM(estoque) FROM produtos)"
        " + (SELECT COALESCE(SUM(quantidade), 0) FROM itens_pedido),"
        " (SELECT COUNT(*) FROM pedidos) - (SELECT COUNT(DISTINCT pedido_id) FROM itens_pedido)",
    )[0]
    expected = (Decimal(SALDO) * CLIENTES, ESTOQUE * PRODUTOS, 0)
    if tuple(row) != expected:
        raise AssertionError(f"{database}: conservation broken: {row} != {expected}")


def measure(
    server: str, app: str, scenario: str, driver: str, database: str, args: argparse.Namespace
) -> Cell:
    """Seed, start, warm up, run wrk, count the orders the database holds."""
    port = free_port()
    env = {**os.environ, "CLIENTE_MIN": "1", "CLIENTE_COUNT": str(CLIENTES)}
    hot = scenario == "hot"
    if app == "pedidos":
        env |= {
            "PEDIDOS_TOKEN": seed_pedidos(database),
            "DATABASE_URL": pedidos_url(database, driver),
            "PEDIDOS_ENV": "production",
            "PEDIDOS_RECOVERY_INTERVAL": "0",
            "PEDIDOS_LOG_FORMAT": "json",
            "PEDIDOS_GUNICORN_WORKERS": "2",
            # gunicorn.conf.py's default folder would be shared with any other gunicorn here.
            "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="bench-http-metrics-"),
            "PRODUTO_MIN": str(HOT_PRODUTO if hot else 1),
            "PRODUTO_COUNT": "1" if hot else str(PRODUTOS),
        }
        script, cwd = ROOT / "benchmarks" / "wrk" / "pedido.lua", ROOT
    else:
        seed_peer(database)
        env |= {
            "PEER_DATABASE": database,
            "PEER_PATH": f"/pedido?produto_id={HOT_PRODUTO}" if hot else "/pedido",
        }
        script, cwd = ROOT / "benchmarks" / "wrk" / "peer.lua", ROOT / "benchmarks" / "peer"
    with running(command_for(server, app, port), env, port, cwd) as pid:
        if app == "peer" and server == "granian" and args.pin_peer:
            pin_workers(pid)
        wrk(port, WARMUP_SECONDS, args.connections, script, env)
        time.sleep(0.5)
        before = committed(database)
        output = wrk(port, args.seconds, args.connections, script, env)
        time.sleep(0.5)  # orders still in flight when wrk stopped are counted too
        after = committed(database)
    check_conservation(database)
    latency, counts = LATENCY.search(output), COUNTS.search(output)
    if latency is None or counts is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    requests, *errors, status = (int(n) for n in counts.groups())
    return Cell(
        server=server,
        app=app if app == "peer" else f"pedidos/{driver}",
        scenario=scenario,
        committed_per_s=round((after - before) / args.seconds, 1),
        p50_ms=float(latency.group(1)),
        p99_ms=float(latency.group(2)),
        requests=requests,
        non_2xx=status,
        socket_errors=sum(errors),
    )


def ratio(cell: Cell, cells: list[Cell], server: str) -> float | None:
    """`cell` over the peer of its scenario on `server`, both from one round."""
    peers = [c for c in cells if c.app == "peer" and c.server == server]
    peers = [c for c in peers if c.scenario == cell.scenario and c.committed_per_s > 0]
    if cell.app == "peer" or not peers:
        return None
    return cell.committed_per_s / peers[0].committed_per_s


def ratios(key: Cell, rounds: list[list[Cell]], server: str) -> str:
    """The ratio in each round, as median (lowest to highest) when there are several."""
    found = [ratio(same(key, cells), cells, server) for cells in rounds]
    values = sorted(r for r in found if r is not None)
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.2f}x"
    return f"{statistics.median(values):.2f}x ({values[0]:.2f} to {values[-1]:.2f})"


def same(key: Cell, cells: list[Cell]) -> Cell:
    return next(
        c for c in cells if (c.server, c.app, c.scenario) == (key.server, key.app, key.scenario)
    )


def table(rounds: list[list[Cell]], peer_pinned: bool = False) -> str:
    """One Markdown table: each Pedidos row against the peer on its own server and gunicorn.
    With several rounds, each figure is the median over the rounds."""
    lines = [
        "| server | app | scenario | committed/s | p50 ms | p99 ms | non-2xx | socket errors"
        " | / peer, same server | / peer, gunicorn |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for c in rounds[0]:
        label = "granian (`pedidos serve --production`)" if c.server == "granian" else c.server
        if c.server == "granian" and c.app == "peer":
            label = "granian 2 workers x 16" + (", each on a core" if peer_pinned else "")
        elif c.server == "gunicorn" and c.app == "peer":
            label = "gunicorn gthread 2 x 16"
        elif c.server == "gunicorn":
            label = "gunicorn gthread 2 x 64 (`gunicorn.conf.py`)"
        each = [same(c, cells) for cells in rounds]
        committed = statistics.median(e.committed_per_s for e in each)
        p50 = statistics.median(e.p50_ms for e in each)
        p99 = statistics.median(e.p99_ms for e in each)
        non_2xx = sum(e.non_2xx for e in each)
        errors = sum(e.socket_errors for e in each)
        lines.append(
            f"| {label} | {c.app} | {c.scenario} | {committed:,.0f} | {p50:.1f} | {p99:.1f}"
            f" | {non_2xx} | {errors} | {ratios(c, rounds, c.server)}"
            f" | {ratios(c, rounds, 'gunicorn')} |"
        )
    return "\n".join(lines)


def choices(value: str, allowed: tuple[str, ...]) -> list[str]:
    picked = [v for v in value.split(",") if v]
    unknown = set(picked) - set(allowed)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {sorted(unknown)}; choose from {allowed}")
    return picked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database", default="pedidos_bench", help="dropped and recreated")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--servers", type=lambda v: choices(v, SERVERS), default=list(SERVERS))
    parser.add_argument("--apps", type=lambda v: choices(v, APPS), default=list(APPS))
    parser.add_argument(
        "--scenarios", type=lambda v: choices(v, SCENARIOS), default=list(SCENARIOS)
    )
    parser.add_argument(
        "--drivers",
        type=lambda v: choices(v, DRIVERS),
        default=[resolve_driver("mysql://").drivername.split("+")[1]],
        help="Pedidos' MariaDB drivers to measure [default: what mysql:// picks here];"
        " the peer always runs PyMySQL",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every cell this many times, the apps in turn first and last; the table"
        " shows medians, and each ratio's median and range over the rounds",
    )
    parser.add_argument(
        "--pin-peer",
        action="store_true",
        help="run each worker of the peer under granian on a core of its own, as"
        " `pedidos serve --production` does with its workers",
    )
    parser.add_argument("--json", type=Path, help="also write the cells here")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 1
    rounds: list[list[Cell]] = []
    for number in range(max(1, args.rounds)):
        # A drifting machine favours whichever app runs second: swap them every round.
        apps = args.apps if number % 2 == 0 else args.apps[::-1]
        cells: list[Cell] = []
        for scenario in args.scenarios:
            for server in args.servers:
                for app in apps:
                    for driver in args.drivers if app == "pedidos" else ["pymysql"]:
                        cell = measure(server, app, scenario, driver, args.database, args)
                        print(json.dumps({"round": number, **asdict(cell)}), file=sys.stderr)
                        cells.append(cell)
        rounds.append(cells)
    print(
        f"{args.connections} connections, {args.seconds} s each, {len(rounds)} round(s), "
        f"{CLIENTES:,} clientes and {PRODUTOS:,} produtos, MariaDB on this machine "
        f"({os.cpu_count()} cores)\n"
    )
    print(table(rounds, args.pin_peer))
    if args.json:
        every = [{"round": n, **asdict(c)} for n, cells in enumerate(rounds) for c in cells]
        args.json.write_text(json.dumps(every, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
