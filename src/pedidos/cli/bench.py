"""`pedidos bench`: the benchmarks, run from a checkout."""

from __future__ import annotations

import importlib
import sys

import click

BENCHMARKS = ("matrix", "reads", "soak")


@click.command(
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
