"""Hostile requests: foreign hosts, broken framing, cross-site writes, non-JSON bodies, odd
headers; and the security headers every response carries."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient

from pedidos.app import create_app
from pedidos.config import Settings
from pedidos.web.envelope import Envelope
from pedidos.web.guards import host_allowed, host_name
from tests.helpers import PROBLEM, Counted, Store, order_body, raw_request, runtime_of, serving

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


@pytest.fixture
def lite_app(sqlite_url: str) -> Iterator[Flask]:
    """The app on SQLite, for checks that do not depend on the database."""
    app = create_app(Settings(database_url=sqlite_url, workers=2))
    yield app
    runtime_of(app).close()


@pytest.fixture
def client(lite_app: Flask) -> FlaskClient:
    return lite_app.test_client()


def test_every_response_carries_the_security_headers(client: FlaskClient) -> None:
    for path in ("/", "/healthz", "/nao-existe", "/docs"):
        response = client.get(path)
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-eval" not in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "no-referrer"
    # Only the API docs page allows inline styles (Swagger UI needs them); never scripts.
    assert "'unsafe-inline'" not in client.get("/").headers["Content-Security-Policy"]
    docs_csp = client.get("/docs").headers["Content-Security-Policy"]
    assert "style-src 'self' 'unsafe-inline'" in docs_csp and "script-src 'self';" in docs_csp


def test_a_security_header_the_app_sets_itself_is_kept_and_not_repeated() -> None:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("x-frame-options", "SAMEORIGIN")]
        )
        return [b"ok"]

    sent: list[tuple[str, str]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> Any:
        sent.extend(headers)

    counted = Counted()
    environ = {"PATH_INFO": "/", "REQUEST_METHOD": "GET"}
    assert list(Envelope(app, counted)(environ, start_response)) == [b"ok"]
    assert counted.requests == 0
    names = [name.lower() for name, _value in sent]
    assert ("x-frame-options", "SAMEORIGIN") in sent and names.count("x-frame-options") == 1
    assert names.count("content-security-policy") == 1 and "x-content-type-options" in names


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", "localhost"),
        ("127.0.0.1:5000", "127.0.0.1"),
        ("[::1]:8080", "::1"),
        ("EVIL.example", "evil.example"),
        ("evil.example:80:80", None),
        ("a b", None),
        ("[::1", None),
        ("", None),
    ],
)
def test_host_names_are_parsed_strictly(host: str, expected: str | None) -> None:
    assert host_name(host) == expected


def test_host_patterns() -> None:
    allowed = ("pedidos.example", ".loja.example")
    assert host_allowed("pedidos.example", allowed)
    assert host_allowed("a.loja.example", allowed) and host_allowed("loja.example", allowed)
    assert not host_allowed("evil.example", allowed)
    assert not host_allowed("evilloja.example", allowed)
    assert host_allowed("anything", ("*",))


def test_other_hosts_get_400_but_probes_answer(client: FlaskClient) -> None:
    response = client.post("/pedido", json={}, headers={"Host": "evil.example"})
    assert response.status_code == 400
    assert response.mimetype == PROBLEM
    assert response.get_json()["type"] == "urn:pedidos:problem:host-nao-permitido"
    assert "Location" not in response.headers
    assert client.get("/healthz", headers={"Host": "10.0.0.7:8000"}).status_code == 200
    assert client.get("/", headers={"Host": "127.0.0.1:5000"}).status_code == 200


def test_allowed_hosts_are_configurable(sqlite_url: str) -> None:
    settings = Settings(database_url=sqlite_url, allowed_hosts=("pedidos.example",))
    app = create_app(settings)
    try:
        client = app.test_client()
        assert client.get("/", headers={"Host": "pedidos.example"}).status_code == 200
        assert client.get("/", headers={"Host": "localhost"}).status_code == 400
    finally:
        runtime_of(app).close()


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://localhost.evil.example"},
    ],
)
def test_cross_site_writes_are_refused(client: FlaskClient, headers: dict[str, str]) -> None:
    for path in ("/pedido", "/simulacoes"):
        response = client.post(path, headers=headers)
        assert response.status_code == 403, path
        assert response.get_json()["type"] == "urn:pedidos:problem:origem-cruzada"


def test_same_origin_and_non_browser_writes_pass_the_origin_check(
    client: FlaskClient,
) -> None:
    # Recorded at once (202), or refused because the catalogue is empty (409): either way it
    # got past the check.
    for headers in (
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"},
        {"Sec-Fetch-Site": "none"},
        {"Origin": "http://localhost"},
        {},
    ):
        assert client.post("/pedido", headers=headers).status_code in (202, 409)


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("application/x-www-form-urlencoded", b""),
        ("application/x-www-form-urlencoded", b"cliente_id=1"),
        ("text/plain", b""),
        ("text/plain", b'{"cliente_id": 1, "itens": [{"produto_id": 1, "quantidade": 1}]}'),
        ("multipart/form-data; boundary=x", b"--x--"),
    ],
)
def test_form_and_text_bodies_get_415(client: FlaskClient, content_type: str, data: bytes) -> None:
    response = client.post("/pedido", data=data, headers={"Content-Type": content_type})
    assert response.status_code == 415
    assert response.mimetype == PROBLEM


def test_random_orders_can_be_switched_off(sqlite_url: str) -> None:
    app = create_app(Settings(database_url=sqlite_url, random_orders=False))
    try:
        response = app.test_client().post("/pedido")
        assert response.status_code == 422
        assert response.get_json()["type"] == "urn:pedidos:problem:corpo-obrigatorio"
    finally:
        runtime_of(app).close()
    assert Settings(environment="production").random_orders_enabled is False
    assert Settings().random_orders_enabled is True
    assert replace(Settings(environment="production"), random_orders=True).random_orders_enabled


@pytest.mark.parametrize("wait", ["²", "¹²", "٣", "1e3", "-1", "9999999", "1.5"])
def test_odd_prefer_wait_values_are_ignored(app: Flask, store: Store, wait: str) -> None:
    cliente = store.cliente("100.00")
    produto = store.produto("1.00", 10)
    response = app.test_client().post(
        "/pedido",
        json=order_body(cliente, produto),
        headers={"Prefer": f"respond-async, wait={wait}".encode().decode("latin-1")},
    )
    assert response.status_code in (201, 202)


HEAD = b"Host: 127.0.0.1\r\nConnection: close\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "status", "slug"),
    [
        (b"POST /pedido HTTP/1.1\r\n" + HEAD + b"Content-Length: -1\r\n\r\n", 400, None),
        (b"POST /pedido HTTP/1.1\r\n" + HEAD + b"Content-Length: 1x\r\n\r\n{", 400, None),
        (
            b"POST /pedido HTTP/1.1\r\n"
            + HEAD
            + b"Content-Type: application/json\r\nContent-Length: 2\x0b\r\n\r\n{}",
            400,
            "enquadramento-invalido",
        ),
        (b"POST /pedido HTTP/1.1\r\n" + HEAD + b"Transfer-Encoding: xchunked\r\n\r\n", 400, None),
        (
            b"POST /pedido HTTP/1.1\r\n"
            + HEAD
            + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
            400,
            "enquadramento-invalido",
        ),
        (
            b"POST /pedido HTTP/1.1\r\n"
            + HEAD
            + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"zz\r\n{}\r\n0\r\n\r\n",
            400,
            "corpo-malformado",
        ),
        (
            b"POST /pedido HTTP/1.1\r\n"
            + HEAD
            + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"".join(b"4000\r\n" + b" " * 0x4000 + b"\r\n" for _ in range(5))
            + b"0\r\n\r\n",
            413,
            None,
        ),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n" + HEAD + b"\r\n", 414, None),
        (b"GET / HTTP/1.1\r\n" + HEAD + b"X-Big: " + b"y" * 70_000 + b"\r\n\r\n", 431, None),
        (
            b"GET / HTTP/1.1\r\n"
            + HEAD
            + b"".join(b"X-%d: y\r\n" % i for i in range(150))
            + b"\r\n",
            431,
            None,
        ),
    ],
    ids=[
        "cl-negative",
        "cl-junk",
        "cl-odd-space",
        "xchunked",
        "te-and-cl",
        "bad-chunk",
        "big-chunk",
        "414",
        "431a",
        "431b",
    ],
)
def test_broken_framing_on_the_dev_server_is_a_4xx_problem(
    lite_app: Flask, request_bytes: bytes, status: int, slug: str | None
) -> None:
    with serving(lite_app) as url:
        got, headers, body = raw_request(url, request_bytes)
        assert got == status, body[:200]
        assert headers["content-type"] == PROBLEM
        assert headers["x-content-type-options"] == "nosniff"
        if slug is not None:
            assert f"urn:pedidos:problem:{slug}".encode() in body
        # The server is still there for the next client.
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200


def test_a_body_shorter_than_its_content_length_is_a_400(lite_app: Flask) -> None:
    """Not an order read from what did arrive: the client went away mid-body."""
    body = b'{"cliente_id": 1, "itens": [{"produto_id": 1, "quantidade": 1}]}'
    head = b"POST /pedido HTTP/1.1\r\n" + HEAD + b"Content-Type: application/json\r\n"
    with serving(lite_app) as url:
        got, headers, answer = raw_request(
            url, head + b"Content-Length: %d\r\n\r\n" % (len(body) + 10) + body, end_sending=True
        )
        assert got == 400, answer[:200]
        assert headers["content-type"] == PROBLEM
        assert b"urn:pedidos:problem:bad-request" in answer
