"""HTTP API blueprint: parse the request, call the processor or a query, serialize."""

from __future__ import annotations

import os

from flask import Blueprint
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from pedidos.orders.contadores import read_totals
from pedidos.orders.lookup import pedido_result
from pedidos.orders.processor import ShuttingDown
from pedidos.orders.solicitacoes import find
from pedidos.orders.transaction import RANDOM_PEDIDO, PedidoResult
from pedidos.storage.models import Estado
from pedidos.web.current import current_runtime
from pedidos.web.inputs import read_idempotency_key, read_pedido_body, read_prefer, read_query
from pedidos.web.openapi import Operation, operation
from pedidos.web.problems import (
    Problem,
    database_unavailable,
    pedido_not_found,
    shutting_down,
)
from pedidos.web.relatorio import (
    InvalidCursor,
    clientes_page,
    pedidos_page,
    produtos_page,
    resumo,
)
from pedidos.web.responses import Response
from pedidos.web.schemas import (
    MAX_ID,
    ClientePage,
    DatabaseTotals,
    HealthOut,
    InstanceOut,
    PageQuery,
    PedidoIn,
    PedidoNomeado,
    PedidoOut,
    ProdutoPage,
    RelatorioOut,
    RelatorioQuery,
    SolicitacaoOut,
    StatusOut,
)
from pedidos.web.visibility import may_follow, redact_rejection

api = Blueprint("api", __name__)


def json_response(model: BaseModel, status: int = 200) -> Response:
    return Response(model.model_dump_json(), status=status, mimetype="application/json")


def _created(result: PedidoResult) -> Response:
    response = json_response(PedidoOut.of(result), 201)
    response.headers["Location"] = f"/pedido/{result.id}"
    return response


def _accepted(solicitacao_id: int, respond_async: bool) -> Response:
    response = json_response(_solicitacao_out(solicitacao_id), 202)
    response.headers["Location"] = f"/pedido/{solicitacao_id}"
    if respond_async:
        response.headers["Preference-Applied"] = "respond-async"
    return response


def _solicitacao_out(solicitacao_id: int) -> SolicitacaoOut:
    with current_runtime().read_sessions.begin() as session:
        # Ids beyond BIGINT cannot exist, and would overflow the query's parameter.
        stored = find(session, solicitacao_id) if 1 <= solicitacao_id <= MAX_ID else None
        if stored is None:
            raise pedido_not_found(solicitacao_id)
        result = pedido_result(session, stored.id) if stored.estado is Estado.CONCLUIDO else None
    motivo = redact_rejection(stored.motivo) if stored.motivo is not None else None
    cliente_id = result.cliente_id if result is not None else (motivo or {}).get("cliente_id")
    if cliente_id is not None and not may_follow(cliente_id):
        # 404, as for a missing one: another cliente's order ids are not confirmed to exist.
        raise pedido_not_found(solicitacao_id)
    return SolicitacaoOut(
        id=stored.id,
        estado=stored.estado.value,
        tentativas=stored.tentativas,
        criado_em=stored.criado_em,
        atualizado_em=stored.atualizado_em,
        pedido=PedidoOut.of(result) if result is not None else None,
        rejeicao=motivo,
    )


@api.post("/pedido")
@operation(
    Operation(
        summary="Place an order",
        tag="pedidos",
        description=(
            "Runs the order as one transaction on the worker pool and waits for its outcome. "
            "An empty body simulates an arriving order: a random cliente buys one unit of a "
            "random produto; it is recorded durably and answered 202 at once (the outcome is "
            "at its Location), unless `Prefer: return=representation` asks to wait for it "
            "(201 or a rejection) or PEDIDOS_EMPTY_BODY_ASYNC=off. "
            "With `Prefer: respond-async` the request is recorded durably and "
            "answered 202 (add `wait=N` to wait up to N seconds for the outcome). With an "
            "`Idempotency-Key` it is recorded durably too, and a retry with the same key and "
            "body replays the first outcome instead of ordering twice."
        ),
        body=PedidoIn,
        body_required=False,
        responses={
            201: PedidoOut,
            202: SolicitacaoOut,
            400: None,
            404: None,
            409: None,
            413: None,
            415: None,
            422: None,
            503: None,
        },
        headers={201: ["Location"], 202: ["Location"], 503: ["Retry-After"]},
    )
)
def create_pedido() -> Response:
    rt = current_runtime()
    if not rt.accepting:
        raise ShuttingDown()
    order = read_pedido_body()
    prefer = read_prefer()
    chave = read_idempotency_key()
    bare = (
        order is RANDOM_PEDIDO
        and chave is None
        and not (prefer.representation or prefer.respond_async)
    )
    if bare and rt.settings.empty_body_async:
        # A random order with nothing to wait for: recorded durably, answered at once,
        # processed right after (GET its Location for the outcome).
        outcome = rt.gateway.place_solicitacao(RANDOM_PEDIDO, None, 0.0)
        return _accepted(outcome if isinstance(outcome, int) else outcome.id, False)
    if chave is None and not prefer.respond_async:
        return _created(rt.gateway.place(order))
    limit = rt.settings.request_timeout
    wait = min(prefer.wait or 0.0, limit) if prefer.respond_async else limit
    outcome = rt.gateway.place_solicitacao(order, chave, wait)
    if isinstance(outcome, int):
        return _accepted(outcome, prefer.respond_async)
    return _created(outcome)


@api.get("/pedido/<int:pedido_id>")
@operation(
    Operation(
        summary="An order request: its state, and its order or rejection once settled",
        tag="pedidos",
        responses={200: SolicitacaoOut, 404: None},
    )
)
def get_pedido(pedido_id: int) -> Response:
    return json_response(_solicitacao_out(pedido_id))


def report_page(session: Session, query: RelatorioQuery) -> tuple[list[PedidoNomeado], str | None]:
    """A page of the report, or 422 when the cursor was not one of ours."""
    try:
        return pedidos_page(session, query)
    except InvalidCursor:
        raise Problem(
            422, "cursor-invalido", "Invalid cursor", "Use the next_cursor of a previous page."
        ) from None


@api.get("/relatorio")
@operation(
    Operation(
        summary="Successful orders, newest first, with a summary",
        tag="relatorio",
        description="Keyset pagination: pass next_cursor back as cursor. With resumo=true "
        "the first page also carries the summary: SQL aggregates over every matching order. "
        "Reports use their own few connections and a time limit per query: 503 with "
        "Retry-After when they are all busy or a query runs too long.",
        query=RelatorioQuery,
        responses={200: RelatorioOut, 422: None, 503: None},
        headers={503: ["Retry-After"]},
    )
)
def get_relatorio() -> Response:
    query = read_query(RelatorioQuery)
    with current_runtime().reads.session() as session:
        page, next_cursor = report_page(session, query)
        summary = resumo(session, query) if query.resumo and query.cursor is None else None
    return json_response(RelatorioOut(pedidos=page, next_cursor=next_cursor, resumo=summary))


@api.get("/status")
@operation(
    Operation(
        summary="Processor counters and database totals", tag="status", responses={200: StatusOut}
    )
)
def get_status() -> Response:
    rt = current_runtime()
    with rt.read_sessions.begin() as session:
        totals = read_totals(session)
    return json_response(
        StatusOut(
            instance=InstanceOut(name=rt.settings.instance_name, pid=os.getpid()),
            accepting=rt.accepting,
            processor=rt.processor.stats(),
            database=DatabaseTotals.model_validate(totals),
            database_id=rt.database_id(),
        )
    )


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
    with current_runtime().reads.session() as session:
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
    with current_runtime().reads.session() as session:
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
    if not current_runtime().accepting:
        raise shutting_down("This instance is draining.")
    try:
        with current_runtime().engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError:
        raise database_unavailable("The database did not answer.") from None
    return json_response(HealthOut(status="ready"))
