"""`pedidos serve`: the development server, or the production one with --production."""

from __future__ import annotations

import logging
import signal
import sys
import threading

import click
from werkzeug.serving import make_server

from pedidos.cli.base import require_current_schema, state
from pedidos.cli.diagnosis import explain
from pedidos.logs import configure_logging, uses_json
from pedidos.storage.engine import describe_driver, describe_url
from pedidos.storage.safety import database_problems
from pedidos.web.devserver import JsonProblemRequestHandler, ProblemRequestHandler
from pedidos.web.production import default_workers, serve_production

serve_log = logging.getLogger("pedidos.serve")


def refuse(reason: str, hint: str) -> None:
    click.echo(f"refusing to start: {reason}", err=True)
    click.echo(hint, err=True)
    sys.exit(2)


@click.command("serve")
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
@click.option(
    "--pin/--no-pin",
    default=True,
    show_default=True,
    help="With --production, run each worker process on a core of its own.",
)
def serve(host: str, port: int, production: bool, workers: int | None, pin: bool) -> None:
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
    if not pin and not production:
        raise click.UsageError("--no-pin needs --production (the dev server is one process)")
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
        serve_production(host, port, workers or default_workers(), pin)
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
