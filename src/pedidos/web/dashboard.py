"""The web dashboard at `/`: server-rendered page and fragments, plus the CSV export.

The page's script swaps in the fragments below and polls the JSON API (`/status`,
`/simulacoes`); every table is rendered here, by the same templates, in Portuguese.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from datetime import UTC, timedelta

import flask
from flask import Blueprint, jsonify, render_template, stream_with_context

from pedidos.orders.contadores import read_totals
from pedidos.storage.models import utc_now
from pedidos.web.api import report_page
from pedidos.web.current import current_runtime
from pedidos.web.formatting import (
    MOTIVOS,
    RESULTADOS,
    brl,
    data_hora,
    inteiro,
    motivo,
    utc_text,
)
from pedidos.web.inputs import read_query
from pedidos.web.problems import Problem
from pedidos.web.relatorio import (
    clientes_page,
    pedidos_page,
    pedidos_por_segundo,
    produtos_page,
    resumo,
)
from pedidos.web.responses import Response
from pedidos.web.schemas import PageQuery, RelatorioQuery, VazaoQuery

CATALOG_PAGE = 10
REPORT_PAGE = 20
CSV_PAGE = 200
CHART_SECONDS = 120

dashboard = Blueprint(
    "dashboard",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)


dashboard.add_app_template_filter(brl, "brl")
dashboard.add_app_template_filter(inteiro, "inteiro")
dashboard.add_app_template_filter(data_hora, "data_hora")
dashboard.add_app_template_filter(motivo, "motivo")


@dashboard.get("/")
def index() -> str:
    runtime = current_runtime()
    first_page = RelatorioQuery(limit=REPORT_PAGE)
    with runtime.reads.session() as session:
        totals = read_totals(session)
        pedidos, next_cursor = pedidos_page(session, first_page)
        clientes = clientes_page(session, 0, CATALOG_PAGE)
        produtos = produtos_page(session, 0, CATALOG_PAGE)
    return render_template(
        "dashboard.html",
        stats=runtime.processor.stats(),
        instancia=f"{runtime.settings.instance_name}, pid {os.getpid()}",
        totals=totals,
        pedidos=pedidos,
        next_cursor=next_cursor,
        clientes=clientes,
        produtos=produtos,
        admin_token_required=runtime.settings.admin_token is not None,
        rotulos={"motivos": MOTIVOS, "resultados": RESULTADOS},
        chart_seconds=CHART_SECONDS,
    )


@dashboard.get("/painel/vazao")
def vazao() -> flask.Response:
    """Committed orders per second over the last whole seconds, from the database.

    `fim` is the end of the window in Unix seconds (the current second is still filling,
    so it is left out); the page asks for the whole window once, then the last few seconds.
    """
    query = read_query(VazaoQuery)
    fim = utc_now().replace(microsecond=0)
    inicio = fim - timedelta(seconds=query.segundos)
    with current_runtime().read_sessions.begin() as session:
        valores = pedidos_por_segundo(session, inicio, query.segundos)
    return jsonify({"fim": int(fim.replace(tzinfo=UTC).timestamp()), "valores": valores})


def _report_query(limit: int) -> RelatorioQuery:
    query = read_query(RelatorioQuery)
    return query.model_copy(update={"limit": limit, "resumo": False})


@dashboard.get("/painel/relatorio")
def relatorio_fragment() -> str:
    query = _report_query(REPORT_PAGE)
    with current_runtime().reads.session() as session:
        pedidos, next_cursor = report_page(session, query)
    return render_template("_relatorio.html", pedidos=pedidos, next_cursor=next_cursor)


@dashboard.get("/painel/resumo")
def resumo_fragment() -> str:
    query = _report_query(REPORT_PAGE)
    with current_runtime().reads.session() as session:
        summary = resumo(session, query)
    return render_template("_resumo.html", resumo=summary)


@dashboard.get("/painel/clientes")
def clientes_fragment() -> str:
    query = read_query(PageQuery)
    with current_runtime().reads.session() as session:
        page = clientes_page(session, query.after, CATALOG_PAGE)
    return render_template("_clientes.html", clientes=page)


@dashboard.get("/painel/produtos")
def produtos_fragment() -> str:
    query = read_query(PageQuery)
    with current_runtime().reads.session() as session:
        page = produtos_page(session, query.after, CATALOG_PAGE)
    return render_template("_produtos.html", produtos=page)


@dashboard.get("/relatorio.csv")
def relatorio_csv() -> Response:
    """Every matching order item as CSV, streamed page by page (memory stays flat)."""
    query = _report_query(CSV_PAGE).model_copy(update={"cursor": None})
    reads = current_runtime().reads
    if not reads.export_slot():
        raise Problem(
            429,
            "exportacoes-demais",
            "Too many CSV exports",
            "The most CSV exports allowed at once are running; try again shortly.",
            headers={"Retry-After": "5"},
        )
    connection = None
    try:
        # The first page is read here, so that a busy pool or a slow query is still a
        # problem response; the export then keeps its connection to the end.
        connection = reads.export_connection()
        with reads.session(connection) as session:
            first = pedidos_page(session, query)
    except BaseException:
        if connection is not None:
            connection.close()
        reads.release_export()
        raise

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(
            [
                "pedido_id",
                "criado_em",
                "cliente_id",
                "cliente_nome",
                "total",
                "produto_id",
                "produto_nome",
                "quantidade",
                "preco_unitario",
                "subtotal",
            ]
        )
        page_query = query
        page, cursor = first
        while True:
            for pedido in page:
                for item in pedido.itens:
                    writer.writerow(
                        [
                            pedido.id,
                            utc_text(pedido.criado_em),
                            pedido.cliente_id,
                            pedido.cliente_nome,
                            f"{pedido.total:.2f}",
                            item.produto_id,
                            item.produto_nome,
                            item.quantidade,
                            f"{item.preco_unitario:.2f}",
                            f"{item.subtotal:.2f}",
                        ]
                    )
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            if cursor is None:
                return
            page_query = page_query.model_copy(update={"cursor": cursor})
            with reads.session(connection) as session:
                page, cursor = pedidos_page(session, page_query)

    response = Response(stream_with_context(lines()), mimetype="text/csv")
    # The server closes every response it started, even one whose client went away.
    response.call_on_close(connection.close)
    response.call_on_close(reads.release_export)
    response.headers["Content-Disposition"] = 'attachment; filename="relatorio.csv"'
    return response
