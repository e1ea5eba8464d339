"""Instructions per POST /pedido in the web layer, counted by valgrind: repeatable.

Over HTTP a change of a few per cent drowns in a shared machine's noise (two runs a minute
apart can differ by 15 %). This counts the instructions one request costs in process, from
the WSGI call to the answer: the Flask app as served in production (bearer token, hooks,
security headers, pydantic), its processor and order worker, with the order transaction
answered from memory (no database work: the processor benchmark measures that). A bare Flask
handler that reads and answers JSON is counted beside it. Each is run twice under
`valgrind --tool=callgrind` with different request counts; the difference divided by the
difference in requests leaves out start-up; a third pair of runs that only builds the requests
takes out what building them costs.

    .venv/bin/python benchmarks/web_instructions.py              # valgrind: Debian `valgrind`
    .venv/bin/python benchmarks/web_instructions.py --requests 2000
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

WARMUP = 200
TOTAL = re.compile(r"Collected : (\d+)")
APPS = ("pedidos", "flask")
HARNESS = "harness"  # builds the requests and answers none: its cost is taken out of the others

StartResponse = Callable[..., Any]
Wsgi = Callable[[dict[str, Any], StartResponse], Any]


def environ(body: bytes, token: str | None) -> dict[str, Any]:
    """A POST /pedido as a WSGI server hands it over."""
    env: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/pedido",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }
    if token is not None:
        env["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return env


def bodies(count: int) -> list[bytes]:
    """Orders of one line over 10,000 clientes and produtos, the same every run."""
    return [
        json.dumps(
            {
                "cliente_id": 1 + n * 7919 % 10_000,
                "itens": [{"produto_id": 1 + n % 10_000, "quantidade": 1}],
            }
        ).encode()
        for n in range(count)
    ]


def pedidos_app(folder: Path) -> tuple[Wsgi, str]:
    """The production app on a SQLite file, its orders answered from memory; and a token."""
    from sqlalchemy.orm import Session

    from pedidos.app import create_app
    from pedidos.config import Settings
    from pedidos.logs import configure_logging
    from pedidos.orders.transaction import ItemResult, PedidoRequest, PedidoResult, Settled
    from pedidos.storage.engine import migrate
    from pedidos.web.tokens import create_token

    ids = itertools.count(1)
    moment = datetime(2026, 1, 1, 12, 0, 0)

    def answered(_session: Session, requests: Sequence[PedidoRequest]) -> list[Settled]:
        return [
            PedidoResult(
                next(ids),
                request.cliente_id,
                Decimal("2.50") * sum(item.quantidade for item in request.itens),
                moment,
                tuple(
                    ItemResult(i.produto_id, i.quantidade, Decimal("2.50")) for i in request.itens
                ),
            )
            for request in requests
        ]

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder / "metrics")
    (folder / "metrics").mkdir()
    url = f"sqlite:///{folder / 'pedidos.sqlite3'}"
    migrate(url)
    settings = Settings(database_url=url, environment="production", recovery_interval=0)
    app = create_app(settings, work=answered)
    with app.extensions["pedidos"].sessions.begin() as session:
        token = create_token(session, "instructions", ("orders",), None)[1]
    configure_logging("json")
    return app, token


def flask_app() -> Wsgi:
    """The reference: a bare Flask handler that reads the JSON body and answers JSON."""
    from flask import Flask, Response, request

    app = Flask(__name__)

    @app.post("/pedido")
    def pedido() -> Response:
        order = json.loads(request.get_data())
        body = json.dumps({"id": 1, "cliente_id": order["cliente_id"], "total": "2.50"})
        response = Response(body, status=201, mimetype="application/json")
        response.headers["Location"] = "/pedido/1"
        return response

    return app


def serve(app_name: str, requests: int) -> None:
    """Child: build the app, warm it up, then answer `requests` orders."""
    if app_name == HARNESS:  # the requests as the loop below gets them, answered by nobody
        _built = [environ(body, "token") for body in bodies(WARMUP + requests)]
        return
    with tempfile.TemporaryDirectory(prefix="web-instructions-") as folder:
        if app_name == "pedidos":
            app, token = pedidos_app(Path(folder))
        else:
            app, token = flask_app(), None
        statuses: list[str] = []

        def start(status: str, _headers: list[tuple[str, str]], _exc: Any = None) -> Any:
            statuses.append(status)
            return None

        environs = [environ(body, token) for body in bodies(WARMUP + requests)]
        for env in environs:
            answer = app(env, start)
            b"".join(answer)
            getattr(answer, "close", lambda: None)()
        wrong = [s for s in statuses if not s.startswith("201")]
        if wrong:
            raise SystemExit(f"{app_name}: {len(wrong)} answers were not 201: {wrong[:3]}")
        if app_name == "pedidos":
            app.extensions["pedidos"].close()  # type: ignore[attr-defined]


def counted(app_name: str, requests: int) -> int:
    """Instructions of a whole child run under callgrind."""
    with tempfile.TemporaryDirectory(prefix="callgrind-") as folder:
        result = subprocess.run(
            [
                "valgrind", "--tool=callgrind", f"--callgrind-out-file={folder}/out",
                sys.executable, __file__, "--serve", app_name, "--requests", str(requests),
            ],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    found = TOTAL.search(result.stderr)
    if result.returncode != 0 or found is None:
        raise SystemExit(f"{app_name} under valgrind failed:\n{result.stderr[-3000:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="beyond the baseline run")
    parser.add_argument("--serve", choices=(*APPS, HARNESS), help=argparse.SUPPRESS)  # a child
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.requests)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2

    requests: int = args.requests

    def per_request(role: str) -> float:
        return (counted(role, requests) - counted(role, 0)) / requests

    building = per_request(HARNESS)
    answering: dict[str, float] = {}
    for app_name in APPS:
        answering[app_name] = per_request(app_name) - building
        print(f"{app_name:8} {answering[app_name]:>12,.0f} instructions per POST /pedido")
    print(f"pedidos / flask: {answering['pedidos'] / answering['flask']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
