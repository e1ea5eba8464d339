"""`pedidos token`: create, list and revoke the API tokens production requires."""

from __future__ import annotations

import json
from typing import Protocol

import click

from pedidos.runtime import Runtime
from pedidos.web.tokens import SCOPES, InvalidToken, create_token, list_tokens, revoke_token


class HasRuntime(Protocol):
    """What the `pedidos` group hands its commands: the app's runtime, built on first use."""

    def runtime(self) -> Runtime: ...


@click.group("token")
def token() -> None:
    """API tokens: create (shown once), list, revoke."""


@token.command("create")
@click.option("--nome", required=True, help="Who or what uses the token, e.g. 'loja-web'.")
@click.option(
    "--escopo",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(SCOPES),
    help="orders, read or admin; repeat for several.",
)
@click.option(
    "--cliente",
    "clientes",
    multiple=True,
    type=click.IntRange(1),
    help="Bind the token to this cliente (repeatable): it may order only on their accounts.",
)
@click.pass_obj
def create(cli: HasRuntime, nome: str, scopes: tuple[str, ...], clientes: tuple[int, ...]) -> None:
    """Create a token and print it once: only its hash is stored.

    \b
    Examples:
      pedidos token create --nome loja-web --escopo orders
      pedidos token create --nome app-cliente-7 --escopo orders --cliente 7
      pedidos token create --nome painel --escopo read
    """
    try:
        with cli.runtime().sessions.begin() as session:
            token_id, secret = create_token(session, nome, scopes, clientes or None)
    except InvalidToken as error:
        raise click.UsageError(str(error)) from None
    click.echo(f"token {token_id} created; copy it now, it is not shown again:", err=True)
    click.echo(secret)


@token.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per token.")
@click.pass_obj
def list_command(cli: HasRuntime, as_json: bool) -> None:
    """List tokens (never their secrets)."""
    with cli.runtime().read_sessions.begin() as session:
        tokens = list_tokens(session)
    for info in tokens:
        clientes = "any" if info.clientes is None else ",".join(map(str, info.clientes))
        revoked = info.revogado_em.isoformat() if info.revogado_em else None
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "id": info.id,
                        "nome": info.nome,
                        "escopos": list(info.scopes),
                        "clientes": None if info.clientes is None else list(info.clientes),
                        "criado_em": info.criado_em.isoformat(),
                        "revogado_em": revoked,
                    }
                )
            )
        else:
            state = f"revoked {revoked}" if revoked else "active"
            click.echo(
                f"{info.id}\t{info.nome}\t{' '.join(info.scopes)}\tclientes: {clientes}\t{state}"
            )


@token.command("revoke")
@click.argument("token_id", type=click.IntRange(1))
@click.pass_obj
def revoke(cli: HasRuntime, token_id: int) -> None:
    """Revoke a token for good (running instances stop accepting it within seconds)."""
    with cli.runtime().sessions.begin() as session:
        revoked = revoke_token(session, token_id)
    if not revoked:
        raise click.ClickException(f"no active token {token_id}")
    click.echo(f"token {token_id} revoked")
