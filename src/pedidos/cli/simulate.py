"""`pedidos simulate`: simulated users ordering over HTTP, then the invariants checked."""

from __future__ import annotations

import sys

import click
import httpx

from pedidos.cli.base import JSON_OPTION, print_summary, state
from pedidos.orders.invariants import check_after_load, take_ledger
from pedidos.sim.http_users import run_simulation
from pedidos.storage.engine import database_identity, describe_url


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


@click.command("simulate")
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
