"""The README and docs/ name only files, modules, functions and settings that exist.

Conventions the docs follow, and that these tests hold them to:

- A file or folder is written from the checkout (`tests/test_api.py`, `deploy/`) or from the
  package (`orders/batches.py`, `web/`).
- A name in the code is written as its import path from the package, without `pedidos.`:
  `orders.batches.run_batch`, `orders.gateway.Gateway.place`. It must be defined in that
  module (or class), not merely imported there. A short form (`batches.run_batch`) is refused.
- `pedidos.`-prefixed names are modules only (logger names, `pedidos.wsgi:app`).
"""

from __future__ import annotations

import ast
import importlib
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "pedidos"
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_LIMIT = 14_000

# `orders/batches.py`, `tests/test_api.py`, `gunicorn.conf.py`
FILE = re.compile(r"`((?:[\w.-]+/)*[\w.-]+\.py)`")
# `web/`, `storage/migrations/`, `deploy/`
FOLDER = re.compile(r"`((?:[\w.-]+/)+)`")
# `orders.batches.run_batch`, `pedidos.http`
DOTTED = re.compile(r"`([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)`")
# `pedidos.wsgi:app`
TARGET = re.compile(r"`(pedidos(?:\.\w+)*:\w+)`")
# File names that look dotted: `relatorio.csv`, `dashboard.png`
EXTENSIONS = {"py", "md", "json", "csv", "png", "lua", "sh", "in", "cfg", "html", "js", "css"}
# [text](target): links between the pages
LINK = re.compile(r"\]\(([^)\s]+)\)")
SETTING = re.compile(r"\b(PEDIDOS_[A-Z][A-Z0-9_]*[A-Z0-9])\b")
# Where the settings the docs name may be read or set.
SETTING_SOURCES = [
    *ROOT.glob("src/**/*.py"),
    *ROOT.glob("tests/**/*.py"),
    *ROOT.glob("benchmarks/**/*"),
    *ROOT.glob("deploy/*"),
    ROOT / "Makefile",
    ROOT / "gunicorn.conf.py",
    ROOT / ".ci" / "run",
]


def mentions(pattern: re.Pattern[str], docs: list[Path] = DOCS) -> list[tuple[str, str]]:
    return [
        (doc.name, match.group(1))
        for doc in docs
        for match in pattern.finditer(doc.read_text(encoding="utf-8"))
    ]


def module_file(dotted: str) -> Path | None:
    """The source file of `pedidos.<dotted>`, when it is a module or package."""
    base = PACKAGE.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def defined_in(body: list[ast.stmt]) -> dict[str, ast.stmt]:
    """Names a module or class body defines itself (imports do not count)."""
    names: dict[str, ast.stmt] = {}
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        names[name.id] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
    return names


@cache
def definitions(source: Path) -> dict[str, ast.stmt]:
    return defined_in(ast.parse(source.read_text(encoding="utf-8")).body)


def defines(source: Path, name: str) -> bool:
    """Whether `name` (`run_batch`, `Gateway.place`) is defined in the module at `source`."""
    top, _, member = name.partition(".")
    node = definitions(source).get(top)
    if node is None:
        return False
    if not member:
        return True
    return isinstance(node, ast.ClassDef) and member in defined_in(node.body)


@cache
def module_names() -> frozenset[str]:
    """The last part of every module's name in the package: `batches`, `api`, `engine`..."""
    return frozenset(
        (path.parent.name if path.name == "__init__.py" else path.stem)
        for path in PACKAGE.rglob("*.py")
    )


def resolve(name: str) -> str | None:
    """What is wrong with a dotted name the docs use, or None when it is right."""
    parts = name.split(".")
    if parts[-1] in EXTENSIONS:
        return None  # a file name
    if parts[0] == "pedidos":
        if module_file(".".join(parts[1:])) is None:
            return f"`{name}` is no module; name attributes from the package, without pedidos."
        return None
    if module_file(parts[0]) is None:
        if parts[0] in module_names():
            return f"`{name}` is a short form: write the module's path from the package"
        return None  # not the package's: a library's option, a file, a Galera setting
    for split in range(len(parts), 0, -1):
        source = module_file(".".join(parts[:split]))
        if source is not None:
            break
    assert source is not None
    attribute = ".".join(parts[split:])
    if not attribute:
        return None
    module = "pedidos." + ".".join(parts[:split])
    if attribute.count(".") > 1 or not defines(source, attribute):
        return f"`{name}`: {module} does not define {attribute}"
    found: object = importlib.import_module(module)
    for part in attribute.split("."):
        found = getattr(found, part, None)
    if found is None and "." not in attribute:
        return f"`{name}`: {module} has no {attribute} at run time"
    return None


@pytest.mark.parametrize(("doc", "path"), mentions(FILE))
def test_every_file_named_exists(doc: str, path: str) -> None:
    assert (ROOT / path).is_file() or (PACKAGE / path).is_file(), f"{doc} names {path}"


def made_at_run_time(path: str) -> bool:
    """Folders the service or its scripts create, kept out of git (`instance/`, `.cluster/`)."""
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    return f"/{path.split('/')[0]}/" in ignored


@pytest.mark.parametrize(("doc", "path"), mentions(FOLDER))
def test_every_folder_named_exists(doc: str, path: str) -> None:
    if made_at_run_time(path):
        return
    assert (ROOT / path).is_dir() or (PACKAGE / path).is_dir(), f"{doc} names {path}"


@pytest.mark.parametrize(("doc", "name"), mentions(DOTTED))
def test_every_name_in_the_code_is_defined_where_the_docs_say(doc: str, name: str) -> None:
    problem = resolve(name)
    assert problem is None, f"{doc}: {problem}"


@pytest.mark.parametrize(("doc", "target"), mentions(TARGET))
def test_every_server_target_exists(doc: str, target: str) -> None:
    module, _, attribute = target.partition(":")
    source = module_file(module.removeprefix("pedidos").lstrip("."))
    assert source is not None and defines(source, attribute), f"{doc} names {target}"


def test_the_docs_name_the_order_path() -> None:
    """The checks above read the names that matter (they would pass on empty docs)."""
    named = {name for _doc, name in mentions(DOTTED)}
    assert {
        "web.api.create_pedido",
        "orders.gateway.Gateway.place",
        "orders.gateway.Gateway.place_solicitacao",
        "orders.processor.PedidoProcessor.submit",
        "orders.batches.run_batch",
        "orders.transaction.place_pedidos",
    } <= named


def order_path_diagram() -> list[tuple[str, str]]:
    """(module file, name) for each name in the README's `POST /pedido` diagram.

    A line that names a `.py` file names what follows it in that module; an indented line
    without one goes on with the module above. `#` starts a comment.
    """
    blocks = re.findall(r"^```\w*\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)
    diagram = next((b for b in blocks if b.startswith("POST /pedido")), None)
    assert diagram is not None, "the README draws no POST /pedido diagram"
    named: list[tuple[str, str]] = []
    module: str | None = None
    for line in diagram.splitlines()[1:]:
        code = line.split("#", 1)[0]
        path = re.search(r"((?:\w+/)*\w+\.py)", code)
        if path is not None:
            module, code = path.group(1), code[path.end() :]
        elif not code[:1].isspace() or module is None:
            continue  # not a step: the answer going back
        leftover = re.sub(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)?|[\s,→|:()└├│─]", "", code)
        assert leftover == "", f"the diagram's line {line!r} has more than names: {leftover!r}"
        named += [(module, name) for name in re.findall(r"[A-Za-z_]\w*(?:\.\w+)?", code)]
    return named


def test_the_readme_draws_the_order_path_with_real_names() -> None:
    named = order_path_diagram()
    wrong = [f"{path} {name}" for path, name in named if not defines(PACKAGE / path, name)]
    assert not wrong, f"the diagram names what those modules do not define: {wrong}"
    assert {
        ("web/api.py", "create_pedido"),
        ("web/inputs.py", "read_pedido_body"),
        ("orders/gateway.py", "Gateway.place"),
        ("orders/gateway.py", "Gateway.place_solicitacao"),
        ("orders/processor.py", "PedidoProcessor.submit"),
        ("orders/batches.py", "run_batch"),
        ("orders/transaction.py", "place_pedidos"),
        ("orders/transaction.py", "lock_stock"),
        ("orders/transaction.py", "decide"),
        ("orders/transaction.py", "settle"),
        ("orders/statements.py", "lock_rows"),
        ("orders/statements.py", "write"),
    } <= set(named)


def test_the_readme_is_short() -> None:
    size = len(README.read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes; move detail to docs/"


def test_the_readme_links_every_page_of_docs() -> None:
    linked = {target.split("#")[0] for _doc, target in mentions(LINK, [README])}
    pages = {f"docs/{page.name}" for page in DOCS[1:]}
    assert pages <= linked, f"not linked from the README: {sorted(pages - linked)}"


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    return {
        re.sub(r"[^\w\- ]", "", heading.replace("`", "").strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", text, flags=re.M)
    }


@pytest.mark.parametrize(("doc", "target"), mentions(LINK))
def test_every_link_between_the_pages_arrives(doc: str, target: str) -> None:
    if re.match(r"\w+:", target):
        return  # http:, https:, mailto:
    page = next(d for d in DOCS if d.name == doc)
    path, _, anchor = target.partition("#")
    arrival = (page.parent / path).resolve() if path else page
    assert arrival.exists(), f"{doc} links to {path}, which does not exist"
    if anchor and arrival.suffix == ".md":
        assert anchor in anchors(arrival), f"{doc} links to #{anchor}, not a heading of {path}"


@cache
def setting_sources() -> str:
    return "\n".join(
        path.read_text(encoding="utf-8", errors="replace")
        for path in SETTING_SOURCES
        if path.is_file()
    )


@pytest.mark.parametrize(("doc", "setting"), mentions(SETTING))
def test_every_setting_named_is_read_somewhere(doc: str, setting: str) -> None:
    assert re.search(rf"\b{setting}\b", setting_sources()), f"{doc} names {setting}"


def test_the_configuration_page_lists_every_setting() -> None:
    read = set(re.findall(r'"(PEDIDOS_\w+|DATABASE_URL)"', (PACKAGE / "config.py").read_text()))
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = sorted(name for name in read if f"`{name}`" not in page)
    assert not missing, f"docs/configuration.md does not list {missing}"
