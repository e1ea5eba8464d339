"""OpenAPI 3.1 document built from the routes' own schemas, and the /docs page."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, TypeVar

import flask
from flask import Blueprint, Flask, current_app, jsonify, send_from_directory
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from pedidos.web.responses import Response
from pedidos.web.schemas import MAX_ID, ProblemOut

View = TypeVar("View", bound=Callable[..., Any])

OPENAPI_ATTRIBUTE = "__openapi__"
REF_TEMPLATE = "#/components/schemas/{model}"
OPEN_PATHS = frozenset({"/healthz", "/readyz"})


@dataclass(frozen=True)
class Operation:
    """What a view accepts and answers; `None` as a response model means problem+json."""

    summary: str
    tag: str
    responses: dict[int, type[BaseModel] | None]
    body: type[BaseModel] | None = None
    body_required: bool = True
    query: type[BaseModel] | None = None
    description: str = ""
    headers: dict[int, list[str]] = field(default_factory=dict)


def operation(spec: Operation) -> Callable[[View], View]:
    """Attach `spec` to a view so that the OpenAPI document describes it."""

    def attach(view: View) -> View:
        setattr(view, OPENAPI_ATTRIBUTE, spec)
        return view

    return attach


def build_document(app: Flask) -> dict[str, Any]:
    """Walk the URL map: every view with an Operation becomes a path item."""
    operations: list[tuple[str, str, str, Operation]] = []
    for rule in app.url_map.iter_rules():
        spec = getattr(app.view_functions[rule.endpoint], OPENAPI_ATTRIBUTE, None)
        if spec is None:
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            operations.append((path, method.lower(), rule.endpoint.split(".")[-1], spec))

    models: set[type[BaseModel]] = {ProblemOut}
    for _, _, _, spec in operations:
        models.update(m for m in spec.responses.values() if m is not None)
        if spec.body is not None:
            models.add(spec.body)
    keyed, schemas = models_json_schema(
        [(m, "serialization") for m in sorted(models, key=lambda m: m.__name__)]
        + ([(spec.body, "validation") for _, _, _, spec in operations if spec.body is not None]),
        ref_template=REF_TEMPLATE,
    )

    def ref(model: type[BaseModel], mode: str) -> dict[str, Any]:
        return dict(keyed[(model, mode)])  # type: ignore[index]

    paths: dict[str, dict[str, Any]] = {}
    for path, method, endpoint, spec in operations:
        item: dict[str, Any] = {
            "summary": spec.summary,
            "tags": [spec.tag],
            "operationId": endpoint,
            "responses": {},
        }
        if spec.description:
            item["description"] = spec.description
        parameters = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
            }
            for name in re.findall(r"{([a-z_]+)}", path)
        ]
        if spec.query is not None:
            query_schema = spec.query.model_json_schema(ref_template=REF_TEMPLATE)
            for name, schema in query_schema.get("properties", {}).items():
                parameters.append(
                    {
                        "name": name,
                        "in": "query",
                        "required": name in query_schema.get("required", []),
                        "schema": schema,
                    }
                )
        if parameters:
            item["parameters"] = parameters
        if spec.body is not None:
            item["requestBody"] = {
                "required": spec.body_required,
                "content": {"application/json": {"schema": ref(spec.body, "validation")}},
            }
        for status, model in sorted(spec.responses.items()):
            media = "application/json" if model is not None else "application/problem+json"
            schema = ref(model if model is not None else ProblemOut, "serialization")
            response: dict[str, Any] = {
                "description": _STATUS_TEXT.get(status, str(status)),
                "content": {media: {"schema": schema}},
            }
            if spec.headers.get(status):
                response["headers"] = {
                    name: {"schema": {"type": "string"}} for name in spec.headers[status]
                }
            item["responses"][str(status)] = response
        if path not in OPEN_PATHS:
            # Production asks every route but the probes for a bearer token. No `security`
            # requirement is declared: development, which serves this document, is open.
            problem = {"schema": ref(ProblemOut, "serialization")}
            for status in (401, 403):
                item["responses"].setdefault(
                    str(status),
                    {
                        "description": _STATUS_TEXT[status],
                        "content": {"application/problem+json": problem},
                    },
                )
        paths.setdefault(path, {})[method] = item

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Pedidos",
            "version": "0.1.0",
            "description": "Concurrent, transactional purchase-order processing.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Required in production (PEDIDOS_ENV=production); "
                    "development is open. Tokens come from `pedidos token create`.",
                }
            },
        },
    }


_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    400: "Malformed request",
    401: "No valid bearer token (production)",
    403: "The token lacks the scope or cliente, or a browser write came from another site",
    404: "Not found",
    409: "Rejected: insufficient saldo or estoque",
    413: "Body too large",
    415: "Unsupported media type",
    422: "Invalid input",
    503: "Overloaded or database unavailable; see Retry-After",
}

docs = Blueprint("docs", __name__)

# Swagger UI 5 (it reads OpenAPI 3.1), vendored from the swagger-ui-dist npm package with its
# license: the docs page works offline and loads nothing from a CDN.
SWAGGER_UI_DIR = str(resources.files("pedidos.web") / "static" / "swagger-ui")

_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Pedidos API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<link rel="stylesheet" href="docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="docs/static/swagger-ui-bundle.js"></script>
<script src="docs/static/docs-init.js"></script>
</body></html>
"""

_DOCS_INIT = (
    'window.ui = SwaggerUIBundle({url: "openapi.json", dom_id: "#swagger-ui", '
    "deepLinking: true, tryItOutEnabled: false});\n"
)


@docs.get("/openapi.json")
def openapi_json() -> flask.Response:
    """The OpenAPI document of this service."""
    return jsonify(build_document(current_app))


@docs.get("/docs")
def docs_page() -> Response:
    """Interactive API docs, with every asset served locally (works offline)."""
    return Response(_DOCS_PAGE, mimetype="text/html")


@docs.get("/docs/static/docs-init.js")
def docs_init() -> Response:
    return Response(_DOCS_INIT, mimetype="text/javascript")


@docs.get("/docs/static/<path:filename>")
def docs_static(filename: str) -> flask.Response:
    return send_from_directory(SWAGGER_UI_DIR, filename)
