"""HTTP API blueprint: parse the request, call the processor or a query, serialize."""

from __future__ import annotations

import json
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, NoReturn, TypeVar

from flask import Blueprint, Response, current_app, request, url_for
from pydantic import BaseModel, ValidationError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from pedidos.openapi import Operation, operation
from pedidos.problems import Problem
from pedidos.relatorio import (
    CursorInvalido,
    clientes_page,
    database_totals,
    pedido_by_id,
    pedidos_page,
    produtos_page,
    resumo,
)
from pedidos.runtime import Runtime
from pedidos.schemas import (
    ClientePage,
    HealthOut,
    PageQuery,
    PedidoIn,
    PedidoOut,
    ProcessorOut,
    ProdutoPage,
    RelatorioOut,
    RelatorioQuery,
    StatusOut,
)
from pedidos.service import PedidoRequest

api = Blueprint("api", __name__)

Model = TypeVar("Model", bound=BaseModel)


def runtime() -> Runtime:
    """The engine, sessions and processor that create_app built for this app."""
    found: Runtime = current_app.extensions["pedidos"]
    return found


def json_response(model: BaseModel, status: int = 200) -> Response:
    return Response(model.model_dump_json(), status=status, mimetype="application/json")


def invalid(error: ValidationError, where: str) -> NoReturn:
    errors = [
        {"field": ".".join(str(part) for part in e["loc"]) or where, "message": e["msg"]}
        for e in error.errors(include_url=False, include_context=False, include_input=False)
    ]
    raise Problem(
        422,
        "entrada-invalida",
        "Invalid input",
        f"The {where} failed validation.",
        errors=errors,
    )


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def read_pedido_body() -> PedidoRequest | None:
    """The order in the body, or None for an empty body (simulate an arriving order)."""
    data = request.get_data(cache=False)  # over MAX_CONTENT_LENGTH: 413
    if not data.strip():
        return None
    if not request.is_json:
        raise Problem(
            415,
            "tipo-nao-suportado",
            "Unsupported media type",
            "Send the order as application/json.",
        )
    try:
        payload = json.loads(data, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:
        # RecursionError: pathologically deep nesting; ValueError covers bad UTF-8 and NaN.
        raise Problem(
            400, "json-malformado", "Malformed JSON", f"The body is not valid JSON: {error}"[:300]
        ) from None
    try:
        return PedidoIn.model_validate(payload).to_request()
    except ValidationError as error:
        invalid(error, "body")


def read_query(model: type[Model]) -> Model:
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as error:
        invalid(error, "query string")


@api.post("/pedido")
@operation(
    Operation(
        summary="Place an order",
        tag="pedidos",
        description=(
            "Runs the order as one transaction on the worker pool and waits for its outcome. "
            "An empty body simulates an arriving order: a random cliente buys one unit of a "
            "random produto."
        ),
        body=PedidoIn,
        body_required=False,
        responses={
            201: PedidoOut,
            400: None,
            404: None,
            409: None,
            413: None,
            415: None,
            422: None,
            503: None,
        },
        headers={201: ["Location"], 503: ["Retry-After"]},
    )
)
def create_pedido() -> Response:
    order = read_pedido_body()
    rt = runtime()
    future = rt.processor.submit(order)
    try:
        result = future.result(timeout=rt.settings.request_timeout)
    except FutureTimeout:
        raise Problem(
            503,
            "tempo-esgotado",
            "Order still processing",
            "The order did not finish in time; check GET /relatorio before sending it again.",
            headers={"Retry-After": "1"},
        ) from None
    response = json_response(PedidoOut.of(result), 201)
    response.headers["Location"] = url_for("api.get_pedido", pedido_id=result.id)
    return response


@api.get("/pedido/<int:pedido_id>")
@operation(
    Operation(
        summary="One order with its items", tag="pedidos", responses={200: PedidoOut, 404: None}
    )
)
def get_pedido(pedido_id: int) -> Response:
    with runtime().sessions.begin() as session:
        found = pedido_by_id(session, pedido_id)
    if found is None:
        raise Problem(
            404, "pedido-nao-encontrado", "Not found", f"pedido {pedido_id} does not exist"
        )
    return json_response(found)


@api.get("/relatorio")
@operation(
    Operation(
        summary="Successful orders, newest first, with a summary",
        tag="relatorio",
        description="Keyset pagination: pass next_cursor back as cursor. The summary (SQL "
        "aggregates over every order matching the filters) comes with the first page.",
        query=RelatorioQuery,
        responses={200: RelatorioOut, 422: None},
    )
)
def get_relatorio() -> Response:
    query = read_query(RelatorioQuery)
    with runtime().sessions.begin() as session:
        try:
            page, next_cursor = pedidos_page(session, query)
        except CursorInvalido:
            raise Problem(
                422, "cursor-invalido", "Invalid cursor", "Use the next_cursor of a previous page."
            ) from None
        summary = resumo(session, query) if query.resumo and query.cursor is None else None
    return json_response(RelatorioOut(pedidos=page, next_cursor=next_cursor, resumo=summary))


@api.get("/status")
@operation(
    Operation(
        summary="Processor counters and database totals", tag="status", responses={200: StatusOut}
    )
)
def get_status() -> Response:
    rt = runtime()
    stats = rt.processor.stats()
    with rt.sessions.begin() as session:
        totals = database_totals(session)
    processor: dict[str, Any] = {**vars(stats), "in_progress": stats.queued + stats.running}
    return json_response(StatusOut(processor=ProcessorOut(**processor), database=totals))


@api.get("/clientes")
@operation(
    Operation(
        summary="Clientes with current saldo",
        tag="catalogo",
        query=PageQuery,
        responses={200: ClientePage, 422: None},
    )
)
def list_clientes() -> Response:
    query = read_query(PageQuery)
    with runtime().sessions.begin() as session:
        return json_response(clientes_page(session, query.after, query.limit))


@api.get("/produtos")
@operation(
    Operation(
        summary="Produtos with current preco and estoque",
        tag="catalogo",
        query=PageQuery,
        responses={200: ProdutoPage, 422: None},
    )
)
def list_produtos() -> Response:
    query = read_query(PageQuery)
    with runtime().sessions.begin() as session:
        return json_response(produtos_page(session, query.after, query.limit))


@api.get("/healthz")
@operation(Operation(summary="The process is alive", tag="status", responses={200: HealthOut}))
def healthz() -> Response:
    return json_response(HealthOut(status="ok"))


@api.get("/readyz")
@operation(
    Operation(summary="The database answers", tag="status", responses={200: HealthOut, 503: None})
)
def readyz() -> Response:
    try:
        with runtime().engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError:
        raise Problem(
            503,
            "banco-indisponivel",
            "Database unavailable",
            "The database did not answer.",
            headers={"Retry-After": "5"},
        ) from None
    return json_response(HealthOut(status="ready"))
