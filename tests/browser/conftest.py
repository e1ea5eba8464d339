"""A real headless Chromium (Debian's package) driven by Playwright, and the served app."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from flask import Flask
from playwright.sync_api import Browser, Page, sync_playwright

from tests.helpers import CHROMIUM, CHROMIUM_ARGS, serving


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not shutil.which(CHROMIUM):
        message = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI=true: browser tests must run")
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, app: Flask) -> Iterator[Page]:
    """A fresh page on the dashboard of the test's app, served over real HTTP."""
    with serving(app) as url:
        context = browser.new_context(
            base_url=url, locale="pt-BR", viewport={"width": 1280, "height": 900}
        )
        opened = context.new_page()
        opened.set_default_timeout(20_000)
        yield opened
        context.close()
