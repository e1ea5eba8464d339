"""Regenerate the README's dashboard screenshot (`make screenshot`).

Seeds a throw-away SQLite database (past orders included), serves the app, runs a simulation
and one rejected order in headless Chromium, then saves the whole page.

    python -m tests.browser.screenshot docs/dashboard.png
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from pedidos.app import create_app
from pedidos.config import Settings
from pedidos.sim.seed import seed, seed_pedidos
from pedidos.storage.engine import make_engine, upgrade_schema
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, runtime_of, serving


def main(target: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/screenshot.sqlite3"
        upgrade_schema(url)
        engine = make_engine(url)
        seed(engine, 300, 40, random_seed=11)
        seed_pedidos(engine, 1000, random_seed=11)
        engine.dispose()
        app = create_app(Settings(database_url=url, recovery_interval=0))
        with serving(app) as base, sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, "--lang=pt-BR"]
            )
            page = browser.new_page(
                base_url=base, locale="pt-BR", viewport={"width": 1280, "height": 900}
            )
            page.goto("/")
            page.get_by_label("Pedidos", exact=True).fill("2000")
            page.get_by_label("Concorrência").fill("16")
            page.get_by_label("Produto quente (%)").fill("30")
            page.get_by_role("button", name="Iniciar simulação").click()
            expect(page.locator("#simulacao-estado")).to_contain_text("concluída", timeout=120_000)
            form = page.locator("#pedido")
            form.get_by_label("Quantidade").fill("500")
            form.get_by_role("button", name="Enviar pedido").click()
            expect(page.locator("#pedido-resultado")).to_contain_text("recusado")
            page.get_by_role("button", name="Calcular resumo").click()
            expect(page.locator("#resumo")).to_contain_text("pedidos")
            page.wait_for_timeout(1500)  # two more polls: the chart shows the run's tail
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=target, full_page=True)
            browser.close()
        runtime_of(app).close()
    print(f"saved {target}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/dashboard.png")
