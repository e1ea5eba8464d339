"""Reading what a request sends: the order body, query strings and request headers."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import NoReturn, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from pedidos.problems import Problem
from pedidos.schemas import PedidoIn
from pedidos.service import PedidoRequest

Model = TypeVar("Model", bound=BaseModel)

# Visible ASCII only: keys travel in headers and logs, and are compared byte for byte.
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")


def invalid(error: ValidationError, where: str) -> NoReturn:
    errors = [
        {"field": ".".join(str(part) for part in e["loc"]) or where, "message": e["msg"]}
        for e in error.errors(include_url=False, include_context=False, include_input=False)
    ]
    raise Problem(
        422, "entrada-invalida", "Invalid input", f"The {where} failed validation.", errors=errors
    )


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def read_pedido_body() -> PedidoRequest | None:
    """The order in the body, or None for an empty body (simulate an arriving order)."""
    order = read_json_body(PedidoIn, what="the order")
    return order.to_request() if order is not None else None


def read_json_body(model: type[Model], what: str) -> Model | None:
    """The JSON body validated as `model`, or None when the body is empty."""
    data = request.get_data(cache=False)  # over MAX_CONTENT_LENGTH: 413
    if not data.strip():
        return None
    if not request.is_json:
        raise Problem(
            415,
            "tipo-nao-suportado",
            "Unsupported media type",
            f"Send {what} as application/json.",
        )
    try:
        payload = json.loads(data, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:
        # RecursionError: pathologically deep nesting; ValueError covers bad UTF-8 and NaN.
        raise Problem(
            400, "json-malformado", "Malformed JSON", f"The body is not valid JSON: {error}"[:300]
        ) from None
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        invalid(error, "body")


def read_query(model: type[Model]) -> Model:
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as error:
        invalid(error, "query string")


def read_idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not IDEMPOTENCY_KEY.fullmatch(key):
        raise Problem(
            400,
            "chave-invalida",
            "Invalid Idempotency-Key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters.",
        )
    return key


@dataclass(frozen=True)
class Preferences:
    """The RFC 7240 `Prefer` preferences this API honours."""

    respond_async: bool = False
    wait: float | None = None
    # return=representation: the caller wants the outcome in this response (no bare 202).
    representation: bool = False


def read_prefer() -> Preferences:
    """Parse every Prefer header; unknown or malformed preferences are ignored (RFC 7240)."""
    respond_async, wait, representation = False, None, False
    for header in request.headers.getlist("Prefer"):
        for preference in header.split(","):
            name, _, value = preference.split(";")[0].strip().partition("=")
            name, value = name.strip().lower(), value.strip().strip('"')
            if name == "respond-async":
                respond_async = True
            elif name == "wait" and value.isdigit() and len(value) <= 6:
                wait = float(value)
            elif name == "return" and value.lower() == "representation":
                representation = True
    return Preferences(respond_async, wait, representation)
