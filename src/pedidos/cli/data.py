"""`pedidos init-db` and `pedidos seed`: the schema, and demo data."""

from __future__ import annotations

import os
import sys
import time

import click

from pedidos.cli.base import JSON_OPTION, print_summary, require_current_schema, state
from pedidos.config import Settings
from pedidos.sim.seed import has_data, reset, seed, seed_pedidos
from pedidos.storage.engine import describe_url, migrate


@click.command("init-db")
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


@click.command("seed")
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
