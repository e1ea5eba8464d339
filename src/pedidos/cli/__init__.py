"""The `pedidos` command: init-db, seed, simulate, serve, token and bench."""

from __future__ import annotations

from pedidos.cli.base import CliState, cli
from pedidos.cli.bench import bench
from pedidos.cli.data import init_db, seed_command
from pedidos.cli.serve import serve
from pedidos.cli.simulate import simulate_command
from pedidos.cli.tokens import token

for command in (init_db, seed_command, simulate_command, serve, token, bench):
    cli.add_command(command)

__all__ = ["CliState", "cli", "main"]


def main() -> None:
    """Entry point of the `pedidos` console script."""
    cli()
