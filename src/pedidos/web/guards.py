"""Checks every request passes before a view runs, and the headers every response carries.

Order matters: the Host header first (nothing is served for a name we do not own), then the
message framing (a body we cannot delimit is never read as empty), then cross-site writes.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from flask import Flask, request

from pedidos.web.problems import Problem

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Probes come from load balancers that address the instance by its IP and hold no token:
# they carry no data that depends on the Host header or the caller, so they answer any name
# and anyone (production too).
PROBES = frozenset({"/healthz", "/readyz"})
CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")
HOSTNAME = re.compile(r"[a-z0-9.\-]{1,253}")

# Scripts and styles from this origin only; nothing may frame the pages.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# Swagger UI sets style attributes in the markup it renders; its scripts stay 'self' only.
DOCS_CONTENT_SECURITY_POLICY = CONTENT_SECURITY_POLICY.replace(
    "style-src 'self'", "style-src 'self' 'unsafe-inline'"
)
_ALWAYS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)
# What every response carries; the docs pages, with their own policy.
SECURITY_HEADERS = (("Content-Security-Policy", CONTENT_SECURITY_POLICY), *_ALWAYS)
DOCS_SECURITY_HEADERS = (("Content-Security-Policy", DOCS_CONTENT_SECURITY_POLICY), *_ALWAYS)


def host_name(host: str) -> str | None:
    """The name in a Host header value without its port, lower-cased; None when malformed."""
    host = host.strip().lower()
    if host.startswith("["):
        name, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not re.fullmatch(r":[0-9]{1,5}", rest)):
            return None
        return name if re.fullmatch(r"[0-9a-f:.]{2,45}", name) else None
    name, colon, port = host.partition(":")
    if colon and not re.fullmatch(r"[0-9]{1,5}", port):
        return None
    return name if HOSTNAME.fullmatch(name) else None


def host_allowed(name: str, allowed: tuple[str, ...]) -> bool:
    """Exact names; `.example.com` also matches its subdomains; `*` matches every name."""
    for entry in allowed:
        if entry == "*" or entry == name:
            return True
        if entry.startswith(".") and (name.endswith(entry) or name == entry[1:]):
            return True
    return False


def check_host(environ: WSGIEnvironment, allowed: tuple[str, ...]) -> None:
    if environ.get("PATH_INFO") in PROBES:
        return
    name = host_name(environ.get("HTTP_HOST", ""))
    if name is None or not host_allowed(name, allowed):
        raise Problem(
            400,
            "host-nao-permitido",
            "Host not allowed",
            "The Host header names a host this service does not serve (see PEDIDOS_ALLOWED_HOSTS).",
        )


def check_framing(environ: WSGIEnvironment) -> None:
    """Refuse a body whose length cannot be known for sure (RFC 9112, section 6)."""
    length = environ.get("CONTENT_LENGTH", "")
    coding = environ.get("HTTP_TRANSFER_ENCODING")
    problem = None
    # Only spaces and tabs surround a header value (RFC 9110, section 5.5); Python's strip()
    # would also take vertical tabs and the like, which Werkzeug then reads as no length.
    if length and not CONTENT_LENGTH.fullmatch(length.strip(" \t")):
        problem = "Content-Length must be a non-negative decimal number."
    elif coding is not None and coding.strip().lower() != "chunked":
        problem = "The only Transfer-Encoding accepted is chunked."
    elif coding is not None and length:
        problem = "Send either Content-Length or Transfer-Encoding, not both."
    if problem is not None:
        raise Problem(400, "enquadramento-invalido", "Malformed message framing", problem)


def check_same_origin(environ: WSGIEnvironment) -> None:
    """A browser's write must come from a page of this service (Fetch Metadata, then Origin).

    Clients that are not browsers send neither header and are not concerned: they cannot be
    made to act by a page from another site.
    """
    if environ["REQUEST_METHOD"] in SAFE_METHODS:
        return
    site = environ.get("HTTP_SEC_FETCH_SITE")
    origin = environ.get("HTTP_ORIGIN")
    if site is not None:
        allowed = site.strip().lower() in {"same-origin", "none"}
    elif origin is not None:
        allowed = origin_host(origin) == environ.get("HTTP_HOST", "").strip().lower()
    else:
        return
    if not allowed:
        raise Problem(
            403,
            "origem-cruzada",
            "Cross-origin request refused",
            "Writes are accepted from this service's own pages or from clients that are not "
            "browsers, never from another site.",
        )


def origin_host(origin: str) -> str | None:
    """The host[:port] of an Origin header; None for `null` or anything malformed."""
    try:
        parts = urlsplit(origin.strip())
    except ValueError:
        return None
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        return None
    return parts.netloc.lower()


def security_headers(path: str) -> tuple[tuple[str, str], ...]:
    """The security headers a response to `path` carries (pedidos.web.envelope adds them)."""
    docs = path == "/docs" or path.startswith("/docs/")
    return DOCS_SECURITY_HEADERS if docs else SECURITY_HEADERS


def register_guards(app: Flask, allowed_hosts: tuple[str, ...]) -> None:
    """Run the checks before every view."""

    @app.before_request
    def _guard() -> None:
        environ = request.environ
        check_host(environ, allowed_hosts)
        check_framing(environ)
        check_same_origin(environ)
