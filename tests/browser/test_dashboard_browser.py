"""The dashboard in a real browser: counters, simulation, report, orders placed by hand."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from playwright.sync_api import Page, expect

from tests.helpers import Store, order_body

pytestmark = pytest.mark.browser


def number(text: str) -> int:
    """'1.234' (pt-BR) → 1234."""
    return int(text.replace(".", ""))


def decimal(text: str) -> float:
    """'1.234,5' (pt-BR) → 1234.5."""
    return float(text.replace(".", "").replace(",", "."))


def test_simulation_moves_counters_report_and_catalog(page: Page, store: Store) -> None:
    for i in range(30):
        store.cliente("80.00", nome=f"Cliente {i}")
    store.produto("12.50", 1_000, nome="Produto Quente")
    store.produto("3.00", 5, nome="Produto Raro")
    page.goto("/")
    expect(page.get_by_role("heading", name="Pedidos", exact=True)).to_be_visible()
    expect(page.locator("#relatorio")).to_contain_text("Nenhum pedido encontrado.")
    expect(page.locator("#produtos")).to_contain_text("R$\u00a012,50")

    page.get_by_label("Pedidos", exact=True).fill("250")
    page.get_by_label("Concorrência").fill("8")
    page.get_by_label("Produto quente (%)").fill("60")
    page.get_by_role("button", name="Iniciar simulação").click()
    # The chart's window average moves once orders commit (the last whole second alone may
    # miss a run that ends between two polls).
    moved = page.wait_for_function(
        "() => { const shown = document.querySelector('#vazao-media').textContent;"
        " return shown !== '0' && shown; }",
        timeout=60_000,
    )
    assert decimal(moved.json_value()) > 0

    expect(page.locator("#simulacao-estado")).to_contain_text("concluída", timeout=60_000)
    result = page.locator("#simulacao-resultado")
    expect(result).to_contain_text("Invariantes")
    expect(result).to_contain_text("OK: dinheiro e estoque conservados")
    expect(result).to_contain_text("Pedidos/s")
    committed = store.ledger().pedidos
    assert committed > 0
    # The counters poll /status: they reach the database's figures without a reload.
    expect(page.locator('[data-total="pedidos"]')).to_have_text(f"{committed:,}".replace(",", "."))
    expect(page.locator('[data-counter="completed"]')).to_have_text(
        f"{committed:,}".replace(",", ".")
    )
    # The report and the catalog were refreshed: orders listed, stock gone down.
    expect(page.locator("#relatorio tbody tr").first).to_contain_text("R$\u00a0")
    expect(page.locator("#relatorio")).not_to_contain_text("Nenhum pedido encontrado.")


def test_rejected_order_shows_why_and_accepted_one_its_total(page: Page, store: Store) -> None:
    pobre = store.cliente("5.00", nome="Cliente Pobre")
    rico = store.cliente("5000.00", nome="Cliente Rico")
    caro = store.produto("1234.56", 3, nome="Televisor")
    page.goto("/")

    form = page.locator("#pedido")
    form.get_by_label("Cliente (id)").fill(str(pobre))
    form.get_by_label("Produto (id)").fill(str(caro))
    form.get_by_role("button", name="Enviar pedido").click()
    outcome = page.locator("#pedido-resultado")
    expect(outcome).to_contain_text("Pedido recusado")
    expect(outcome).to_contain_text(
        f"Saldo insuficiente: o cliente {pobre} tem R$\u00a05,00 e o pedido custa R$\u00a01.234,56."
    )

    form.get_by_label("Cliente (id)").fill(str(rico))
    form.get_by_label("Quantidade").fill("2")
    form.get_by_role("button", name="Enviar pedido").click()
    expect(outcome).to_contain_text(re.compile(r"Pedido #\d+ criado: total R\$\s2\.469,12"))
    expect(page.locator("#relatorio")).to_contain_text("2 \u00d7 Televisor")
    expect(page.locator("#relatorio")).to_contain_text("Cliente Rico")
    expect(page.locator("#clientes")).to_contain_text("R$\u00a02.530,88")
    expect(page.locator("#produtos")).to_contain_text("Televisor")


def test_report_filters_summary_and_csv_link(page: Page, store: Store) -> None:
    ana = store.cliente("1000.00", nome="Ana")
    bia = store.cliente("1000.00", nome="Bia")
    produto = store.produto("10.00", 100, nome="Caneca")
    page.goto("/")
    form = page.locator("#pedido")
    for cliente in (ana, bia, bia):
        form.get_by_label("Cliente (id)").fill(str(cliente))
        form.get_by_label("Produto (id)").fill(str(produto))
        form.get_by_role("button", name="Enviar pedido").click()
        expect(page.locator("#pedido-resultado")).to_contain_text("criado")
        page.locator("#pedido-resultado").evaluate("node => node.textContent = ''")

    filtros = page.locator("#filtros")
    filtros.get_by_label("Cliente (id)").fill(str(bia))
    filtros.get_by_role("button", name="Filtrar").click()
    expect(page.locator("#relatorio tbody tr")).to_have_count(2)
    expect(page.locator("#csv")).to_have_attribute("href", f"/relatorio.csv?cliente_id={bia}")

    filtros.get_by_role("button", name="Calcular resumo").click()
    expect(page.locator("#resumo")).to_contain_text("2 pedidos")
    expect(page.locator("#resumo")).to_contain_text("R$\u00a020,00")

    filtros.get_by_label("Cliente (id)").fill("")
    filtros.get_by_label("Desde (UTC)").fill("2999-01-01T00:00:00")
    filtros.get_by_role("button", name="Filtrar").click()
    expect(page.locator("#relatorio")).to_contain_text("Nenhum pedido encontrado.")


def test_keyboard_reaches_the_skip_link_first(page: Page) -> None:
    page.goto("/")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent")
    assert focused == "Pular para o conteúdo"
    for field in page.locator("input").all():
        field_id = field.get_attribute("id")
        labelled = field.evaluate("node => node.labels.length")
        assert labelled == 1, f"input {field_id or field.get_attribute('name')} has no label"


def test_docs_render_every_operation(page: Page, app: Flask) -> None:
    document = app.test_client().get("/openapi.json").get_json()
    operations = [
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    ]
    page.goto("/docs")

    blocks = page.locator(".opblock-summary")
    expect(blocks).to_have_count(len(operations), timeout=30_000)
    expect(page.get_by_text("Unable to render")).to_have_count(0)
    shown = {
        (
            block.locator(".opblock-summary-method").inner_text().strip(),
            block.locator(".opblock-summary-path").inner_text().strip().replace("\u200b", ""),
        )
        for block in blocks.all()
    }
    assert shown == set(operations)
    expect(page.get_by_text("Place an order")).to_be_visible()


def test_chart_starts_filled_from_the_database(page: Page, app: Flask, store: Store) -> None:
    cliente = store.cliente("1000.00")
    produto = store.produto("1.00", 1_000)
    client = app.test_client()
    body = order_body(cliente, produto)
    for _ in range(30):
        assert client.post("/pedido", json=body).status_code == 201
    page.goto("/")

    caption = page.locator("figcaption")
    expect(caption).to_contain_text("contados no banco (todas as instâncias)")
    # 30 orders over a two-minute window: an average of 0,25/s, shown as soon as it loads.
    expect(page.locator("#vazao-media")).to_have_text("0,3")
    expect(page.locator("#vazao")).to_have_attribute("aria-label", re.compile(r"média 0,3"))


def test_latest_simulation_is_shown_in_portuguese_on_a_fresh_page(
    page: Page, app: Flask, store: Store
) -> None:
    for i in range(5):
        store.cliente("3.00", nome=f"Cliente {i}")
    store.produto("2.00", 2, nome="Raro")
    client = app.test_client()
    started = client.post("/simulacoes", json={"pedidos": 40, "concorrencia": 4})
    assert started.status_code == 202
    location = started.headers["Location"]
    while client.get(location).get_json()["running"]:
        page.wait_for_timeout(100)

    page.goto("/")

    expect(page.locator("#simulacao-estado")).to_contain_text("concluída")
    result = page.locator("#simulacao-resultado")
    expect(result).to_contain_text("concluídos: ")
    expect(result).to_contain_text("rejeitados: ")
    expect(result).to_contain_text(re.compile(r"(saldo|estoque) insuficiente: "))
    expect(result).not_to_contain_text("_")
    expect(page.locator("#motivos")).not_to_contain_text("_")
