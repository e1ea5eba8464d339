"""The `pedidos` command: init-db, seed, simulate, serve, bench (and Flask's run, routes)."""

from __future__ import annotations

import importlib
import json
import signal
import sys
import threading
import time

import click
from flask import current_app
from flask.cli import FlaskGroup
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.serving import make_server

from pedidos.app import create_app
from pedidos.db import describe_driver, upgrade_schema
from pedidos.invariants import check_after_load, take_ledger
from pedidos.logs import configure_logging
from pedidos.production import default_workers, serve_production
from pedidos.runtime import current_runtime
from pedidos.safety import database_problems
from pedidos.seed import has_data, reset, seed
from pedidos.simulate import run_simulation


@click.group(cls=FlaskGroup, create_app=create_app, add_version_option=False)
def cli() -> None:
    """Pedidos: concurrent, transactional purchase-order processing.

    \b
    Examples:
      pedidos init-db && pedidos seed --clientes 1000 --produtos 200
      pedidos serve --port 5000        # the dashboard is at http://127.0.0.1:5000/
      pedidos simulate --pedidos 1000 --concorrencia 50
      pedidos bench matrix --databases mariadb
    Configure with DATABASE_URL and PEDIDOS_* variables (see README).
    """


@cli.command("init-db")
def init_db() -> None:
    """Create or upgrade the schema (Alembic migrations); safe to run again.

    \b
    Examples:
      pedidos init-db
      DATABASE_URL='mysql+pymysql://root@127.0.0.1:3306/pedidos' pedidos init-db
    """
    upgrade_schema(current_runtime().settings.database_url)
    click.echo("schema is up to date")


JSON_OPTION = click.option(
    "--json", "as_json", is_flag=True, help="Print the summary as JSON (for scripts)."
)


def print_summary(title: str, rows: dict[str, object], as_json: bool) -> None:
    """The closing summary: an aligned two-column table, or one JSON object."""
    if as_json:
        click.echo(json.dumps(rows, default=str))
        return
    width = max(len(key) for key in rows)
    click.echo(title)
    click.echo("-" * max(len(title), width + 20))
    for key, value in rows.items():
        shown = (
            ", ".join(f"{k}: {v}" for k, v in value.items()) if isinstance(value, dict) else value
        )
        click.echo(f"{key:<{width}}  {shown}")


@cli.command("seed")
@click.option("--clientes", default=1000, show_default=True, type=click.IntRange(0, 10_000_000))
@click.option("--produtos", default=200, show_default=True, type=click.IntRange(0, 10_000_000))
@click.option(
    "--seed", "random_seed", default=None, type=int, help="Random seed (repeatable data)."
)
@click.option(
    "--reset", "wipe", is_flag=True, help="Delete all orders, clientes and produtos first."
)
@click.option("--if-empty", is_flag=True, help="Do nothing when clientes already exist.")
@JSON_OPTION
def seed_command(
    clientes: int,
    produtos: int,
    random_seed: int | None,
    wipe: bool,
    if_empty: bool,
    as_json: bool,
) -> None:
    """Populate clientes and produtos with realistic Brazilian demo data.

    \b
    Examples:
      pedidos seed --clientes 100000 --produtos 100000 --seed 7 --reset
      pedidos seed --if-empty --json
    """
    engine = current_runtime().engine
    if wipe:
        reset(engine)
    elif if_empty and has_data(engine):
        print_summary("not seeding: database already has clientes", {"seeded": False}, as_json)
        return
    started = time.perf_counter()
    with click.progressbar(length=clientes + produtos, label="seeding", file=sys.stderr) as bar:
        report = seed(engine, clientes, produtos, random_seed, progress=bar.update)
    seconds = time.perf_counter() - started
    print_summary(
        f"seeded {report.clientes} clientes and {report.produtos} produtos",
        {
            "seeded": True,
            "clientes": report.clientes,
            "produtos": report.produtos,
            "seconds": round(seconds, 2),
            "rows_per_second": round((report.clientes + report.produtos) / seconds)
            if seconds
            else 0,
        },
        as_json,
    )


@cli.command("simulate")
@click.option("--pedidos", default=1000, show_default=True, type=click.IntRange(1, 10_000_000))
@click.option("--concorrencia", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--url", default="http://127.0.0.1:5000", show_default=True)
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(0.1, 600))
@click.option(
    "--verify/--no-verify",
    default=True,
    show_default=True,
    help="Check the invariants in DATABASE_URL (the server's database, with no other traffic).",
)
@JSON_OPTION
def simulate_command(
    pedidos: int, concorrencia: int, url: str, timeout: float, verify: bool, as_json: bool
) -> None:
    """Many simulated users buying at the same time over HTTP; then verify the invariants.

    Exits 1 when an invariant is violated.

    \b
    Examples:
      pedidos simulate --pedidos 1000 --concorrencia 50 --url http://127.0.0.1:5000
      pedidos simulate --pedidos 200 --no-verify --json
    """
    sessions = current_runtime().read_sessions
    if verify:
        with sessions.begin() as session:
            before = take_ledger(session)
    with click.progressbar(length=pedidos, label="ordering", file=sys.stderr) as bar:
        result = run_simulation(url, pedidos, concorrencia, timeout, progress=bar.update)

    broken: list[str] = []
    if verify:
        with sessions.begin() as session:
            broken = check_after_load(session, before, result.acknowledged)
    rows: dict[str, object] = {
        "pedidos": pedidos,
        "concorrencia": concorrencia,
        "seconds": round(result.seconds, 2),
        "requests_per_second": round(result.requests_per_second, 1),
        "committed": result.committed,
        "committed_per_second": round(result.committed_per_second, 1),
        "latency_ms": {
            **{f"p{p}": round(result.percentile(p), 1) for p in (50, 95, 99)},
            "max": round(result.percentile(100), 1),
        },
        "outcomes": dict(sorted(result.statuses.items())),
        "reasons": dict(sorted(result.reasons.items())),
        "invariants": "not checked" if not verify else "VIOLATED" if broken else "OK",
    }
    if broken:
        rows["violations"] = broken
    print_summary(
        f"{pedidos} orders from {concorrencia} concurrent users in {result.seconds:.2f} s",
        rows,
        as_json,
    )
    if broken:
        sys.exit(1)


@cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--production",
    is_flag=True,
    help="The production server (granian), settings as with PEDIDOS_ENV=production.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    help="Worker processes with --production  [default: the cores]",
)
def serve(host: str, port: int, production: bool, workers: int | None) -> None:
    """Serve the API and the dashboard; without --production, a threaded development server.

    SIGTERM or Ctrl-C drains: new orders get 503, accepted ones finish, then it exits.
    --production serves with granian, one process per worker (docs/deploy-notes.md).

    \b
    Examples:
      pedidos serve                       # http://127.0.0.1:5000/
      pedidos serve --host 0.0.0.0 --port 8080
      pedidos serve --production --port 8080 --workers 4
    """
    if workers is not None and not production:
        raise click.UsageError("--workers needs --production (the dev server is one process)")
    runtime = current_runtime()
    configure_logging(runtime.settings.log_format)
    try:
        unsafe = database_problems(runtime.engine)
    except SQLAlchemyError as error:
        click.echo(f"warning: database not reachable yet ({error.__class__.__name__})", err=True)
        unsafe = []
    if unsafe:
        for problem in unsafe:
            click.echo(f"refusing to start: {problem}", err=True)
        sys.exit(2)
    click.echo(f" * database driver: {describe_driver(runtime.engine)}")
    if production:
        runtime.close()  # this process only supervises: each worker builds its own app
        serve_production(host, port, workers or default_workers())
        return
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    server = make_server(host, port, app, threaded=True)
    stopping = threading.Event()

    def drain_then_stop() -> None:
        runtime.drain(timeout=runtime.settings.request_timeout)
        server.shutdown()

    def on_signal(signum: int, _frame: object) -> None:
        if not stopping.is_set():
            stopping.set()
            click.echo(f" * {signal.Signals(signum).name}: draining, then exiting", err=True)
            threading.Thread(target=drain_then_stop, name="pedidos-drain").start()

    if runtime.recovery is not None:
        runtime.recovery.start()  # requests a crash left behind are picked up from now on
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    click.echo(f" * Pedidos on http://{host}:{server.server_port} (Ctrl-C drains and stops)")
    server.serve_forever()
    runtime.close()
    click.echo(" * stopped: every accepted order finished", err=True)


BENCHMARKS = ("matrix", "reads", "soak")


@cli.command(
    "bench",
    with_appcontext=False,
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.argument("benchmark", type=click.Choice(BENCHMARKS), required=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(benchmark: str | None, args: tuple[str, ...]) -> None:
    """Run a benchmark from a checkout (results go to ./benchmarks/results).

    \b
    matrix  scenarios x modes x concurrency, table + JSON + chart (what `make bench` runs)
    reads   read latency with 1,000,000 orders on MariaDB
    soak    memory over a 1,000,000-order run
    \b
    Examples:
      pedidos bench matrix --databases mariadb --orders 1000
      pedidos bench soak --orders 1000000
      pedidos bench reads --help
    """
    if benchmark is None:
        click.echo(click.get_current_context().get_help())
        return
    module = importlib.import_module(f"pedidos.bench.{benchmark}")
    sys.exit(module.main(list(args)))


def main() -> None:
    """Entry point of the `pedidos` console script."""
    cli()
