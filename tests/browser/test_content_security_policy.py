"""The dashboard and the API docs work in Chromium under the Content-Security-Policy, and
the browser reports no violation."""

from __future__ import annotations

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

from tests.helpers import Store

pytestmark = pytest.mark.browser


def watch_violations(page: Page) -> list[str]:
    found: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            found.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: found.append(str(error)))
    return found


def test_the_dashboard_runs_under_the_policy(page: Page, store: Store) -> None:
    store.cliente("100.00")
    store.produto("2.50", 50, nome="Produto CSP")
    violations = watch_violations(page)
    response = page.goto("/")
    assert response is not None
    assert "script-src 'self'" in response.headers["content-security-policy"]

    expect(page.locator("#produtos")).to_contain_text("Produto CSP")
    page.get_by_role("button", name="Enviar pedido").click()
    expect(page.locator("#pedido-resultado")).to_contain_text("criado: total R$\u00a02,50")
    page.get_by_label("Pedidos", exact=True).fill("20")
    page.get_by_label("Concorrência").fill("2")
    page.get_by_role("button", name="Iniciar simulação").click()
    expect(page.locator("#simulacao-estado")).to_contain_text("concluída", timeout=60_000)
    page.get_by_role("button", name="Calcular resumo").click()
    expect(page.locator("#resumo")).not_to_be_empty()
    assert violations == []


def test_the_api_docs_render_under_the_policy(page: Page) -> None:
    violations = watch_violations(page)
    page.goto("/docs")
    # Swagger UI's script ran (it fills the container) and fetched the document.
    expect(page.locator("#swagger-ui .swagger-ui")).to_be_attached()
    page.wait_for_load_state("networkidle")
    assert violations == []
