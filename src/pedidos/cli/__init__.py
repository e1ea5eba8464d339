"""The `pedidos` command: init-db, seed, simulate, serve and bench."""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import click
import httpx
from flask import Flask
from werkzeug.serving import make_server

from pedidos.app import create_app
from pedidos.cli.diagnosis import SchemaNotCurrent, explain
from pedidos.cli.tokens import token
from pedidos.config import DEFAULT_DATABASE_URL, Settings
from pedidos.logs import configure_logging, uses_json
from pedidos.orders.invariants import check_after_load, take_ledger
from pedidos.runtime import Runtime
from pedidos.sim.http_users import run_simulation
from pedidos.sim.seed import has_data, reset, seed, seed_pedidos
from pedidos.storage.engine import (
    database_identity,
    describe_driver,
    describe_url,
    migrate,
    newest_revision,
    schema_revision,
)
from pedidos.storage.safety import database_problems
from pedidos.web.devserver import JsonProblemRequestHandler, ProblemRequestHandler
from pedidos.web.production import default_workers, serve_production

serve_log = logging.getLogger("pedidos.serve")


@dataclass
class CliState:
    """What the commands share: --debug, and the app (built on first use, or given by tests)."""

    debug: bool = False
    app: Flask | None = None

    def the_app(self) -> Flask:
        if self.app is None:
            self.app = create_app()
        return self.app

    def runtime(self) -> Runtime:
        found: Runtime = self.the_app().extensions["pedidos"]
        return found

    def database_url(self) -> str:
        if self.app is not None:
            return self.runtime().settings.database_url
        return os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL


def state() -> CliState:
    found = click.get_current_context().find_object(CliState)
    assert found is not None, "the pedidos group creates it"
    return found


class PedidosGroup(click.Group):
    """Commands whose mistakes read as one or two lines, not as a traceback (unless --debug)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except Exception as error:
            current = ctx.find_object(CliState) or CliState()
            if current.debug or ctx.params.get("debug"):
                raise
            lines = explain(error, current.database_url())
            if lines is None:
                lines = [
                    f"error: {type(error).__name__}: {error}"[:500],
                    "run again with `pedidos --debug ...` for the traceback",
                ]
            for line in lines:
                click.echo(line if line.startswith("error") else f"error: {line}", err=True)
            sys.exit(1)


@click.group(cls=PedidosGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version("pedidos"), "--version", "-V", prog_name="pedidos")
@click.option("--debug", is_flag=True, help="Show the full traceback when a command fails.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Pedidos: concurrent, transactional purchase-order processing.

    \b
    Examples:
      pedidos init-db && pedidos seed --clientes 1000 --produtos 200 --pedidos 5000
      pedidos serve --port 5000        # the dashboard is at http://127.0.0.1:5000/
      pedidos simulate --pedidos 1000 --concorrencia 50
      pedidos bench matrix --databases mariadb
    Configure with DATABASE_URL and PEDIDOS_* variables (see docs/cli.md).
    """
    if not isinstance(ctx.obj, CliState):
        ctx.obj = CliState()
    ctx.obj.debug = ctx.obj.debug or debug


def require_current_schema(runtime: Runtime) -> None:
    """Raise SchemaNotCurrent unless the database is at the newest migration."""
    current, newest = schema_revision(runtime.engine), newest_revision()
    if current != newest:
        raise SchemaNotCurrent(runtime.settings.database_url, current, newest)


cli.add_command(token)


@cli.command("init-db")
def init_db() -> None:
    """Create or upgrade the schema (Alembic migrations) and say what changed.

    Safe to run again: an up-to-date database is left as it is.

    \b
    Examples:
      pedidos init-db
      DATABASE_URL='mysql+pymysql://root@127.0.0.1:3306/pedidos' pedidos init-db
    """
    database_url = state().database_url()
    Settings.from_env({**os.environ, "DATABASE_URL": database_url})  # settings mistakes first
    change = migrate(database_url)
    click.echo(f"{describe_url(database_url)}: {change.describe()}")


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
@click.option(
    "--clientes",
    default=1000,
    show_default=True,
    type=click.IntRange(0, 10_000_000),
    help="How many clientes to add, each with a random saldo.",
)
@click.option(
    "--produtos",
    default=200,
    show_default=True,
    type=click.IntRange(0, 10_000_000),
    help="How many produtos to add, each with a preco and estoque.",
)
@click.option(
    "--pedidos",
    default=0,
    show_default=True,
    type=click.IntRange(0, 100_000_000),
    help="Past orders to create over the last days, debiting saldo and estoque as real "
    "orders do (counters and summaries included); they spend at most half of each "
    "cliente's saldo, so fewer may fit.",
)
@click.option(
    "--dias",
    default=7,
    show_default=True,
    type=click.IntRange(1, 3650),
    help="How many days back the past orders are spread over.",
)
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
    pedidos: int,
    dias: int,
    random_seed: int | None,
    wipe: bool,
    if_empty: bool,
    as_json: bool,
) -> None:
    """Populate clientes, produtos and (optionally) past pedidos with Brazilian demo data.

    \b
    Examples:
      pedidos seed --clientes 1000 --produtos 200 --pedidos 5000
      pedidos seed --clientes 100000 --produtos 100000 --pedidos 100000 --seed 7 --reset
      pedidos seed --if-empty --json
    """
    runtime = state().runtime()
    require_current_schema(runtime)
    engine = runtime.engine
    if wipe:
        reset(engine)
    elif if_empty and has_data(engine):
        print_summary("not seeding: database already has clientes", {"seeded": False}, as_json)
        return
    started = time.perf_counter()
    with click.progressbar(length=clientes + produtos, label="catálogo", file=sys.stderr) as bar:
        report = seed(engine, clientes, produtos, random_seed, progress=bar.update)
    placed = 0
    if pedidos:
        with click.progressbar(length=pedidos, label="pedidos", file=sys.stderr) as bar:
            placed = seed_pedidos(engine, pedidos, dias, random_seed, progress=bar.update)
    seconds = time.perf_counter() - started
    rows = report.clientes + report.produtos + placed
    print_summary(
        f"seeded {report.clientes} clientes, {report.produtos} produtos and {placed} pedidos",
        {
            "seeded": True,
            "database": describe_url(runtime.settings.database_url),
            "clientes": report.clientes,
            "produtos": report.produtos,
            "pedidos": placed,
            # Past orders that found no budget or estoque left after a few picks.
            "pedidos_skipped": pedidos - placed,
            "seconds": round(seconds, 2),
            "rows_per_second": round(rows / seconds) if seconds else 0,
        },
        as_json,
    )


def server_database(url: str, timeout: float) -> str:
    """The database identity the server at `url` reports; exits when no server answers."""
    try:
        response = httpx.get(f"{url.rstrip('/')}/status", timeout=min(timeout, 10.0))
        response.raise_for_status()
        identity = response.json().get("database_id")
    except (httpx.HTTPError, ValueError, AttributeError) as error:
        click.echo(f"error: no Pedidos server answers at {url} ({type(error).__name__})", err=True)
        click.echo("error: start one with `pedidos serve` (or pass --url)", err=True)
        sys.exit(1)
    return str(identity)


@cli.command("simulate")
@click.option(
    "--pedidos",
    default=1000,
    show_default=True,
    type=click.IntRange(1, 10_000_000),
    help="How many orders to send in total.",
)
@click.option(
    "--concorrencia",
    default=50,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Simulated users sending orders at the same time.",
)
@click.option(
    "--url",
    default="http://127.0.0.1:5000",
    show_default=True,
    help="Base URL of the Pedidos server to send the orders to.",
)
@click.option(
    "--timeout",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0.1, 600),
    help="Seconds each request may take before it counts as failed.",
)
@click.option(
    "--verify/--no-verify",
    default=True,
    show_default=True,
    help="Check the invariants afterwards, in the server's database. DATABASE_URL must point "
    "at the same database as the server's; the command refuses otherwise.",
)
@JSON_OPTION
def simulate_command(
    pedidos: int, concorrencia: int, url: str, timeout: float, verify: bool, as_json: bool
) -> None:
    """Many simulated users buying at the same time over HTTP; then verify the invariants.

    Exits 1 when requests do not reach the server or an invariant is violated.

    \b
    Examples:
      pedidos simulate --pedidos 1000 --concorrencia 50 --url http://127.0.0.1:5000
      pedidos simulate --pedidos 200 --no-verify --json
    """
    remote = server_database(url, timeout)
    checked = "not checked"
    if verify:
        runtime = state().runtime()
        where = describe_url(runtime.settings.database_url)
        if database_identity(runtime.engine) != remote:
            click.echo(
                f"error: the server at {url} uses another database than {where} (DATABASE_URL)",
                err=True,
            )
            click.echo(
                "error: set DATABASE_URL to the server's database to verify it, or pass "
                "--no-verify",
                err=True,
            )
            sys.exit(2)
        click.echo(f"database: {where} (the server's)", err=True)
        with runtime.read_sessions.begin() as session:
            before = take_ledger(session)
    with click.progressbar(length=pedidos, label="ordering", file=sys.stderr) as bar:
        result = run_simulation(url, pedidos, concorrencia, timeout, progress=bar.update)

    broken: list[str] = []
    if verify:
        with runtime.read_sessions.begin() as session:
            broken = check_after_load(session, before, result.acknowledged)
        checked = "VIOLATED" if broken else "OK"
    unreached = result.statuses.get("connection_error", 0)
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
        "invariants": checked,
    }
    if verify:
        rows["checked_in"] = f"{where} (the server's database)"
    if broken:
        rows["violations"] = broken
    print_summary(
        f"{pedidos} orders from {concorrencia} concurrent users in {result.seconds:.2f} s",
        rows,
        as_json,
    )
    if unreached:
        click.echo(f"error: {unreached} of {pedidos} requests did not reach {url}", err=True)
    if broken or unreached:
        sys.exit(1)


def refuse(reason: str, hint: str) -> None:
    click.echo(f"refusing to start: {reason}", err=True)
    click.echo(hint, err=True)
    sys.exit(2)


@cli.command("serve")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (0.0.0.0 for every interface).",
)
@click.option(
    "--port",
    default=5000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0 picks a free one).",
)
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

    Checks first that the database answers and is migrated, and refuses to start otherwise.
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
    current = state()
    runtime = current.runtime()
    configure_logging(runtime.settings.log_format)
    as_json = uses_json(runtime.settings.log_format)

    def say(message: str, **fields: object) -> None:
        # Off a terminal the log is JSON lines only, so these lines become log records too.
        if as_json:
            serve_log.info(message, extra=fields)
        else:
            click.echo(f" * {message}", err=True)

    where = describe_url(runtime.settings.database_url)
    say(f"database: {where}", database=where)
    try:
        require_current_schema(runtime)
        unsafe = database_problems(runtime.engine)
    except Exception as error:
        lines = explain(error, runtime.settings.database_url)
        if lines is None or current.debug:
            raise
        refuse(lines[0], "\n".join(lines[1:]))
    if unsafe:
        refuse("; ".join(unsafe), "fix the database settings named above")
    driver = describe_driver(runtime.engine)
    say(f"database driver: {driver}", driver=driver)
    if production:
        runtime.close()  # this process only supervises: each worker builds its own app
        serve_production(host, port, workers or default_workers())
        return
    app = current.the_app()
    handler = JsonProblemRequestHandler if as_json else ProblemRequestHandler
    server = make_server(host, port, app, threaded=True, request_handler=handler)
    stopping = threading.Event()

    def drain_then_stop() -> None:
        runtime.drain(timeout=runtime.settings.request_timeout)
        server.shutdown()

    def on_signal(signum: int, _frame: object) -> None:
        if not stopping.is_set():
            stopping.set()
            say(f"{signal.Signals(signum).name}: draining, then exiting")
            threading.Thread(target=drain_then_stop, name="pedidos-drain").start()

    if runtime.recovery is not None:
        runtime.recovery.start()  # requests a crash left behind are picked up from now on
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    url = f"http://{host}:{server.server_port}"
    say(f"Pedidos on {url} (Ctrl-C drains and stops)", url=url)
    server.serve_forever()
    runtime.close()
    say("stopped: every accepted order finished")


BENCHMARKS = ("matrix", "reads", "soak")


@cli.command(
    "bench",
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
