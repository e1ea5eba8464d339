"""RFC 9457 problem+json responses, and the error handlers that produce them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, json
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from pedidos.orders.batches import CommitOutcomeUnknown, RetriesExhausted
from pedidos.orders.gateway import AnswerTimedOut, IdempotencyKeyReused, StillProcessing
from pedidos.orders.processor import Overloaded, ShuttingDown
from pedidos.orders.solicitacoes import ProcessingFailed
from pedidos.orders.transaction import (
    ClienteNaoEncontrado,
    EstoqueInsuficiente,
    NadaParaSimular,
    PedidoRejeitado,
    ProdutoNaoEncontrado,
    SaldoInsuficiente,
)
from pedidos.storage.reads import ReadsBusy, ReadTooSlow
from pedidos.web.responses import Response
from pedidos.web.visibility import redact_rejection

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
# Stable identifiers (RFC 9457 allows non-dereferenceable URIs); the slug names the condition.
PROBLEM_TYPE_BASE = "urn:pedidos:problem:"

REJECTION_STATUS: dict[type[PedidoRejeitado], int] = {
    ClienteNaoEncontrado: 404,
    ProdutoNaoEncontrado: 404,
    EstoqueInsuficiente: 409,
    SaldoInsuficiente: 409,
    NadaParaSimular: 409,
}


# Titles are English like every other problem's; the domain nouns stay as the API names them.
REJECTION_TITLE: dict[str, str] = {
    ClienteNaoEncontrado.reason: "Cliente not found",
    ProdutoNaoEncontrado.reason: "Produto not found",
    EstoqueInsuficiente.reason: "Insufficient estoque",
    SaldoInsuficiente.reason: "Insufficient saldo",
    NadaParaSimular.reason: "Nothing to order from",
}


class Problem(Exception):
    """An error the API answers with a problem document instead of a result."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.headers = headers or {}
        self.extensions = extensions

    def to_response(self) -> Response:
        body = {
            "type": PROBLEM_TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extensions,
        }
        response = Response(json.dumps(body), status=self.status, mimetype=PROBLEM_MEDIA_TYPE)
        response.headers.update(self.headers)
        return response


def rejection_problem(rejection: PedidoRejeitado) -> Problem:
    """The problem for a business rejection; its facts become extension members."""
    status = REJECTION_STATUS.get(type(rejection), 409)
    slug = rejection.reason.replace("_", "-")
    title = REJECTION_TITLE.get(rejection.reason, "Order rejected")
    facts = redact_rejection(
        {"reason": rejection.reason, "detail": str(rejection), **rejection.details()}
    )
    detail = facts.pop("detail")
    return Problem(status, slug, title, detail, **facts)


def _http_problem(error: HTTPException) -> Problem:
    status = error.code or 500
    name = error.name or "Error"
    # Keep protocol headers such as 405's Allow; the body becomes a problem document.
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    slug = name.lower().replace(" ", "-")
    title = name[:1] + name[1:].lower()  # sentence case, like every other problem title
    return Problem(status, slug, title, error.description or name, headers=headers)


def shutting_down(detail: str = "This instance is shutting down; send the order again.") -> Problem:
    return Problem(503, "desligando", "Shutting down", detail, headers={"Retry-After": "2"})


def pedido_not_found(pedido_id: int) -> Problem:
    return Problem(404, "pedido-nao-encontrado", "Not found", f"pedido {pedido_id} does not exist")


def database_unavailable(detail: str) -> Problem:
    return Problem(
        503, "banco-indisponivel", "Database unavailable", detail, headers={"Retry-After": "5"}
    )


def _in_progress(error: StillProcessing) -> Problem:
    if error.solicitacao_id is None:
        return Problem(
            409,
            "em-andamento",
            "Request in progress",
            "This Idempotency-Key is being used right now.",
            headers={"Retry-After": "1"},
        )
    return Problem(
        409,
        "em-andamento",
        "Request in progress",
        f"The request with this Idempotency-Key (solicitacao {error.solicitacao_id}) is "
        "still being processed; retry later.",
        headers={"Retry-After": "1", "Location": f"/pedido/{error.solicitacao_id}"},
        solicitacao_id=error.solicitacao_id,
    )


def _commit_unknown(error: CommitOutcomeUnknown) -> Problem:
    return Problem(
        503,
        "resultado-incerto",
        "Outcome not known yet",
        "The database connection dropped while the order was committing. "
        f"GET /pedido/{error.solicitacao_id} tells whether it was committed.",
        headers={"Retry-After": "2", "Location": f"/pedido/{error.solicitacao_id}"},
        solicitacao_id=error.solicitacao_id,
    )


def _database_unavailable(error: Exception) -> Problem:
    log.warning("database unavailable: %s", error)
    return database_unavailable("The database is unreachable or saturated; try again shortly.")


def _unexpected(error: Exception) -> Problem:
    log.error("unhandled error", exc_info=error)
    return Problem(
        500,
        "erro-interno",
        "Internal error",
        "The server failed to handle the request. The failure was logged.",
    )


# Every exception the core or the storage layer raises that a client must hear about, and
# the problem it becomes. Flask picks the handler of the most specific class.
PROBLEM_OF: dict[type[Exception], Callable[[Any], Problem]] = {
    Problem: lambda error: error,
    PedidoRejeitado: rejection_problem,
    HTTPException: _http_problem,
    Overloaded: lambda error: Problem(
        503,
        "sobrecarga",
        "Service overloaded",
        "Too many orders are waiting; try again shortly.",
        headers={"Retry-After": str(error.retry_after)},
    ),
    RetriesExhausted: lambda error: Problem(
        503,
        "conflito-transitorio",
        "Transient database conflict",
        f"{error}; nothing was persisted, the order can be sent again.",
        headers={"Retry-After": "1"},
    ),
    ShuttingDown: lambda _error: shutting_down(),
    AnswerTimedOut: lambda _error: Problem(
        503,
        "tempo-esgotado",
        "Order still processing",
        "The order did not finish in time; look for it in GET /relatorio before sending "
        "it again, or send orders with an Idempotency-Key to retry safely.",
        headers={"Retry-After": "1"},
    ),
    IdempotencyKeyReused: lambda _error: Problem(
        422,
        "chave-reutilizada",
        "Idempotency-Key reused",
        "This Idempotency-Key was already used for a different request.",
    ),
    StillProcessing: _in_progress,
    CommitOutcomeUnknown: _commit_unknown,
    ProcessingFailed: lambda error: Problem(
        500, "processamento-falhou", "Order failed", f"{error}. Nothing was persisted."
    ),
    ReadsBusy: lambda _error: Problem(
        503,
        "leituras-ocupadas",
        "Too many reports at once",
        "Every connection for reports is busy; try again shortly.",
        headers={"Retry-After": "2"},
    ),
    ReadTooSlow: lambda error: Problem(
        503,
        "leitura-demorada",
        "Report took too long",
        f"{str(error).capitalize()}; narrow the filters (cliente, produto, dates) or try "
        "again later.",
        headers={"Retry-After": "10"},
    ),
    OperationalError: _database_unavailable,
    PoolTimeout: _database_unavailable,
    Exception: _unexpected,
}


def register_error_handlers(app: Flask) -> None:
    """Every error leaves as problem+json; no traceback ever reaches a client."""
    for kind, to_problem in PROBLEM_OF.items():
        app.register_error_handler(kind, _handler(to_problem))


def _handler(to_problem: Callable[[Any], Problem]) -> Callable[[Exception], Response]:
    def handle(error: Exception) -> Response:
        return to_problem(error).to_response()

    return handle
