"""The README and docs/ name only files, modules and functions that exist."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "pedidos"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# `api.py`, `tests/test_api.py`, `gunicorn.conf.py`
FILE = re.compile(r"`([\w./-]+\.py)`")
# `running.run_batch`, `pedidos.wsgi`: a name inside one of the package's modules
DOTTED = re.compile(r"`(\w+)\.(?!py`)(\w+)`")


def mentions(pattern: re.Pattern[str]) -> list[tuple[str, tuple[str, ...]]]:
    return [
        (doc.name, match.groups())
        for doc in DOCS
        for match in pattern.finditer(doc.read_text(encoding="utf-8"))
    ]


@pytest.mark.parametrize(("doc", "name"), mentions(FILE))
def test_every_file_named_exists(doc: str, name: tuple[str, ...]) -> None:
    (path,) = name
    candidates = [ROOT / path, PACKAGE / path]
    assert any(candidate.is_file() for candidate in candidates), f"{doc} names {path}"


@pytest.mark.parametrize(("doc", "name"), mentions(DOTTED))
def test_every_module_attribute_named_exists(doc: str, name: tuple[str, ...]) -> None:
    module, attribute = name
    if module == "pedidos":
        assert importlib.util.find_spec(f"pedidos.{attribute}"), f"{doc} names pedidos.{attribute}"
    elif (PACKAGE / f"{module}.py").is_file():
        found = getattr(importlib.import_module(f"pedidos.{module}"), attribute, None)
        assert found is not None, f"{doc} names {module}.{attribute}"
        # Defined there, not merely imported there from the module that now holds it.
        home = getattr(found, "__module__", f"pedidos.{module}")
        assert home == f"pedidos.{module}", f"{doc} names {module}.{attribute}, now in {home}"


def test_the_docs_name_the_order_path() -> None:
    """The check above reads the names that matter (it would pass on an empty README)."""
    named = {f"{module}.{attribute}" for _doc, (module, attribute) in mentions(DOTTED)}
    assert {"service.place_pedidos", "running.run_batch"} <= named
