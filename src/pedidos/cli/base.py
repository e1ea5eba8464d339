"""What every `pedidos` command shares: the group, its state, error reporting, summaries."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import click
from flask import Flask

from pedidos.app import create_app
from pedidos.cli.diagnosis import SchemaNotCurrent, explain
from pedidos.config import DEFAULT_DATABASE_URL
from pedidos.runtime import Runtime
from pedidos.storage.engine import newest_revision, schema_revision


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
    if found is None:  # the pedidos group creates it: only a command run outside it lacks one
        raise RuntimeError("a pedidos command ran outside the pedidos group")
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
