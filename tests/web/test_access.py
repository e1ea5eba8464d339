"""Production access: bearer tokens, scopes, binding to clientes, what a 409 reveals, and
the `pedidos token` commands."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, select

from pedidos.app import create_app
from pedidos.cli import CliState, cli
from pedidos.config import Settings
from pedidos.storage.models import Token
from pedidos.web.tokens import InvalidToken, create_token, revoke_token
from tests.helpers import Store, bearer, order_body, runtime_of

ADMIN = "admin-token-for-tests-0123456789"


@pytest.fixture
def production(engine: Engine, database_url: str) -> Iterator[Flask]:
    app = create_app(
        Settings(database_url=database_url, workers=4, environment="production", admin_token=ADMIN)
    )
    with runtime_of(app).sessions.begin() as session:
        for row in session.execute(select(Token)).scalars():
            session.delete(row)
    yield app
    runtime_of(app).close()


def new_token(app: Flask, *scopes: str, clientes: tuple[int, ...] | None = None) -> str:
    runtime = runtime_of(app)
    with runtime.sessions.begin() as session:
        return create_token(session, "test", scopes, clientes)[1]


@dataclass
class Catalog:
    rico: int
    pobre: int
    produto: int


@pytest.fixture
def catalog(store: Store) -> Catalog:
    return Catalog(store.cliente("1000.00"), store.cliente("10.00"), store.produto("5.00", 100))


ROUTES = [
    ("GET", "/relatorio"),
    ("GET", "/status"),
    ("GET", "/clientes"),
    ("GET", "/produtos"),
    ("GET", "/"),
    ("GET", "/relatorio.csv"),
    ("GET", "/metrics"),
    ("GET", "/docs"),
    ("GET", "/openapi.json"),
    ("GET", "/pedido/1"),
    ("POST", "/pedido"),
    ("POST", "/simulacoes"),
    ("GET", "/simulacoes/1"),
    ("GET", "/nao-existe"),
]


def test_anonymous_requests_get_401_except_the_probes(production: Flask) -> None:
    client = production.test_client()
    for method, path in ROUTES:
        response = client.open(path, method=method)
        assert response.status_code == 401, path
        assert response.mimetype == "application/problem+json"
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="pedidos"'
        # A wrong token is no better than none.
        wrong = client.open(path, method=method, headers=bearer("pdk_1_" + "A" * 43))
        assert wrong.status_code == 401, path
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_scopes_decide_what_a_token_may_do(production: Flask, catalog: Catalog) -> None:
    client = production.test_client()
    leitor = bearer(new_token(production, "read"))
    pedidos = bearer(new_token(production, "orders"))
    admin = bearer(new_token(production, "admin"))

    for path in ("/relatorio", "/status", "/clientes", "/produtos", "/", "/relatorio.csv"):
        assert client.get(path, headers=leitor).status_code == 200, path
        assert client.get(path, headers=pedidos).status_code == 403, path
        assert client.get(path, headers=admin).status_code == 200, path
    for path in ("/metrics", "/docs", "/openapi.json"):
        assert client.get(path, headers=leitor).status_code == 403, path
        assert client.get(path, headers=admin).status_code == 200, path
        assert client.get(path, headers=bearer(ADMIN)).status_code == 200, path

    refused = client.post("/pedido", json=order_body(catalog.rico, catalog.produto), headers=leitor)
    assert refused.status_code == 403
    assert refused.get_json()["type"] == "urn:pedidos:problem:proibido"
    placed = client.post("/pedido", json=order_body(catalog.rico, catalog.produto), headers=pedidos)
    assert placed.status_code == 201
    assert client.get(placed.headers["Location"], headers=pedidos).status_code == 200
    assert client.get(placed.headers["Location"], headers=leitor).status_code == 200
    assert client.post("/simulacoes", json={"pedidos": 1}, headers=pedidos).status_code == 403


def test_random_orders_are_off_in_production(production: Flask, catalog: Catalog) -> None:
    response = production.test_client().post("/pedido", headers=bearer(ADMIN))
    assert response.status_code == 422
    assert response.get_json()["type"] == "urn:pedidos:problem:corpo-obrigatorio"


def test_a_bound_token_orders_and_follows_only_its_clientes(
    production: Flask, catalog: Catalog
) -> None:
    client = production.test_client()
    own = bearer(new_token(production, "orders", clientes=(catalog.rico,)))
    other = client.post("/pedido", json=order_body(catalog.pobre, catalog.produto), headers=own)
    assert other.status_code == 403
    assert f"cliente {catalog.pobre}" in other.get_json()["detail"]

    mine = client.post("/pedido", json=order_body(catalog.rico, catalog.produto), headers=own)
    assert mine.status_code == 201
    assert client.get(mine.headers["Location"], headers=own).status_code == 200

    theirs = client.post(
        "/pedido",
        json=order_body(catalog.pobre, catalog.produto),
        headers=bearer(new_token(production, "orders")),
    )
    assert theirs.status_code == 201
    # Someone else's order is "not found" for a bound token, not "forbidden".
    assert client.get(theirs.headers["Location"], headers=own).status_code == 404


def test_a_409_reveals_the_saldo_only_to_who_may_read_it(
    production: Flask, catalog: Catalog, store: Store
) -> None:
    client = production.test_client()
    too_much = order_body(catalog.pobre, catalog.produto, quantidade=3)  # 15.00 > saldo 10.00

    unbound = client.post("/pedido", json=too_much, headers=bearer(new_token(production, "orders")))
    assert unbound.status_code == 409
    problem = unbound.get_json()
    assert problem["reason"] == "saldo_insuficiente"
    assert "saldo" not in problem and "10.00" not in problem["detail"]
    assert problem["total"] == "15.00"

    bound = bearer(new_token(production, "orders", clientes=(catalog.pobre,)))
    assert client.post("/pedido", json=too_much, headers=bound).get_json()["saldo"] == "10.00"
    reader = bearer(new_token(production, "orders", "read"))
    assert client.post("/pedido", json=too_much, headers=reader).get_json()["saldo"] == "10.00"

    # The same holds for a rejection recorded durably and read back later.
    recorded = client.post(
        "/pedido",
        json=too_much,
        headers={**bearer(new_token(production, "orders")), "Idempotency-Key": "k-409"},
    )
    assert recorded.status_code == 409 and "saldo" not in recorded.get_json()
    assert store.saldo(catalog.pobre) == 10


def test_revoked_and_malformed_tokens_are_refused(production: Flask) -> None:
    runtime = runtime_of(production)
    with runtime.sessions.begin() as session:
        token_id, secret = create_token(session, "revogar", ("read",), None)
        assert revoke_token(session, token_id)
        assert not revoke_token(session, token_id)
    client = production.test_client()
    assert client.get("/status", headers=bearer(secret)).status_code == 401
    tampered = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    for bad in (tampered, "Basic abc", secret + "x", ""):
        assert client.get("/status", headers={"Authorization": bad}).status_code == 401


def test_tokens_are_stored_hashed(production: Flask) -> None:
    secret = new_token(production, "read")
    runtime = runtime_of(production)
    with runtime.sessions.begin() as session:
        stored = session.execute(select(Token.hash)).scalar_one()
    assert secret.split("_", 2)[2] not in stored and len(stored) == 64  # pdk_<id>_<secret>
    with runtime.sessions.begin() as session, pytest.raises(InvalidToken):
        create_token(session, "x", ("superuser",), None)


def test_the_token_commands(production: Flask) -> None:
    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, ["token", *args], obj=CliState(app=production))

    created = invoke("create", "--nome", "loja", "--escopo", "orders", "--cliente", "7")
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("pdk_")
    listed = invoke("list")
    assert (
        "loja" in listed.output and "clientes: 7" in listed.output and secret not in listed.output
    )
    token_id = secret.split("_")[1]
    assert invoke("revoke", token_id).exit_code == 0
    assert "revoked" in invoke("list").output
    assert invoke("revoke", token_id).exit_code != 0
    assert invoke("create", "--nome", "x", "--escopo", "root").exit_code == 2


def test_development_stays_open(app: Flask) -> None:
    client: FlaskClient = app.test_client()
    for path in ("/status", "/relatorio", "/metrics", "/docs"):
        assert client.get(path).status_code == 200, path
