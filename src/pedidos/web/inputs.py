"""Reading what a request sends: the order body, query strings and request headers."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import IO, NoReturn, TypeVar

from flask import current_app, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge

from pedidos.orders.transaction import RANDOM_PEDIDO, PedidoRequest, RandomPedido
from pedidos.web.access import require_cliente, require_unbound
from pedidos.web.current import current_runtime
from pedidos.web.problems import Problem
from pedidos.web.schemas import PedidoIn

Model = TypeVar("Model", bound=BaseModel)

# Visible ASCII only: keys travel in headers and logs, and are compared byte for byte.
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
# ASCII digits only: str.isdigit() also accepts superscripts, which float() refuses.
WAIT_SECONDS = re.compile(r"[0-9]{1,6}")


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


# One decoder for every request (json.loads would build one per call, given an option).
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def read_pedido_body() -> PedidoRequest | RandomPedido:
    """The order in the body, or a random order for an empty body (a demonstration).

    A random order is a demonstration: only where switched on, and never for a token bound
    to given clientes (its order would land on any cliente's account).
    """
    order = read_json_body(PedidoIn, what="the order")
    if order is None:
        if not current_runtime().settings.random_orders_enabled:
            raise Problem(
                422,
                "corpo-obrigatorio",
                "Order body required",
                "Send the order as application/json; random orders are switched off here.",
            )
        require_unbound()
        return RANDOM_PEDIDO
    require_cliente(order.cliente_id)
    return order.to_request()


def read_body() -> bytes:
    """The whole body, at most MAX_CONTENT_LENGTH bytes, however it is framed.

    A declared Content-Length over the limit is refused before reading, and a body shorter
    than declared is the client's disconnect. A chunked body has no length: it is read up to
    one byte past the limit, so that an oversized one is refused, not cut short. A body the
    server cannot read or de-chunk is the client's error, never a server failure.
    """
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    environ = request.environ
    declared = request.content_length
    if declared is not None and declared > limit:
        raise RequestEntityTooLarge()
    if declared is None and not environ.get("wsgi.input_terminated"):
        return b""  # neither a length nor a server that ends the stream: no body to read
    wanted = declared if declared is not None else limit + 1
    try:
        data = _read_up_to(environ["wsgi.input"], wanted)
    except HTTPException:
        raise
    except Exception:  # the server's reading failed: InvalidChunkSize, OSError, ...
        raise Problem(
            400,
            "corpo-malformado",
            "Malformed body",
            "The body could not be read: cut short, or its chunks could not be decoded.",
        ) from None
    if declared is not None and len(data) < declared:
        raise ClientDisconnected()
    if len(data) > limit:
        raise RequestEntityTooLarge()
    return data


def _read_up_to(stream: IO[bytes], size: int) -> bytes:
    """Read until `size` bytes or the end of the stream (a read may return fewer)."""
    chunks: list[bytes] = []
    received = 0
    while received < size:
        chunk = stream.read(size - received)
        if not chunk:
            break
        chunks.append(chunk)
        received += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def read_json_body(model: type[Model], what: str) -> Model | None:
    """The JSON body validated as `model`, or None when the body is empty.

    Only JSON is accepted, even empty: a form or text/plain post is what another site can
    send without the browser asking this service first.
    """
    data = read_body()
    declared = request.environ.get("CONTENT_TYPE", "").strip()
    if (declared or data.strip()) and not request.is_json:
        raise Problem(
            415,
            "tipo-nao-suportado",
            "Unsupported media type",
            f"Send {what} as application/json.",
        )
    if not data.strip():
        return None
    try:
        payload = _DECODER.decode(data.decode(json.detect_encoding(data), "surrogatepass"))
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
    key: str | None = request.environ.get("HTTP_IDEMPOTENCY_KEY")
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
    # The WSGI environ holds one value per header name: servers join repeats with commas.
    for preference in request.environ.get("HTTP_PREFER", "").split(","):
        name, _, value = preference.split(";")[0].strip().partition("=")
        name, value = name.strip().lower(), value.strip().strip('"')
        if name == "respond-async":
            respond_async = True
        elif name == "wait" and WAIT_SECONDS.fullmatch(value):
            wait = float(value)
        elif name == "return" and value.lower() == "representation":
            representation = True
    return Preferences(respond_async, wait, representation)
