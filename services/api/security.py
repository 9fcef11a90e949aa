"""Untrusted input, handled before a route sees it: the bearer token, the body size, strict JSON.

The two middlewares are pure ASGI (no ``BaseHTTPMiddleware``): they answer 401/413 without
reading the body, and they work the same under any ASGI server or test client.
"""

from __future__ import annotations

import hmac
import json
import math
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from regsearch.config import Settings

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
MAX_JSON_DEPTH = 32  # a job spec is 4 levels deep; anything far deeper is junk or an attack


def configured_token(settings: Settings) -> str | None:
    """The API token, or None when unset or blank (a blank token must not count as protection)."""
    token = (settings.api_token or "").strip()
    return token or None


async def send_json(
    send: Send, status: int, detail: str, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """Answer ``{"detail": ...}`` directly from a middleware."""
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def bearer_matches(headers: Iterable[tuple[bytes, bytes]], token: bytes) -> bool:
    """True when the first ``Authorization`` header is ``Bearer <token>`` (constant time)."""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, credentials = value.strip().partition(b" ")
            return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), token)
    return False


class BearerAuthMiddleware:
    """Every request but the health checks needs ``Authorization: Bearer <token>``.

    As middleware rather than a route dependency, it also covers /docs, /openapi.json and
    unknown paths, and it refuses before any body is read.
    """

    def __init__(self, app: ASGIApp, token: str, open_paths: frozenset[str] = OPEN_PATHS) -> None:
        self.app = app
        self.token = token.encode()
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] not in ("http", "websocket")
            or scope["path"] in self.open_paths
            or bearer_matches(scope.get("headers", ()), self.token)
        ):
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            await send_json(
                send, 401, "missing or invalid bearer token", [(b"www-authenticate", b"Bearer")]
            )


class _BodyTooLarge(Exception):
    pass


def declared_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """The Content-Length header as an int; None when absent; ValueError when malformed."""
    values = [v for n, v in headers if n.lower() == b"content-length"]
    if not values:
        return None
    if len(set(values)) > 1 or not values[0].strip().isdigit():
        raise ValueError("invalid Content-Length")
    return int(values[0])


class BodySizeLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413.

    Content-Length is checked up front; a chunked body (no length) is counted as it streams,
    and once it passes the limit the app's answer to the cut-off body is replaced by the 413.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            length = declared_length(scope.get("headers", ()))
        except ValueError as exc:
            await send_json(send, 400, str(exc))
            return
        if length is not None and length > self.max_bytes:
            await send_json(send, 413, self._message())
            return

        received = 0
        exceeded = started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # the app answering a truncated body (FastAPI turns our error into 400)
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await send_json(send, 413, self._message())

    def _message(self) -> str:
        return f"request body larger than {self.max_bytes} bytes"


def _invalid(loc: tuple[str | int, ...], message: str) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", *loc), "msg": message, "input": None}]
    )


def _check_string(value: str, loc: tuple[str | int, ...]) -> None:
    # PostgreSQL text cannot hold NUL, and a lone surrogate cannot be encoded at all: either
    # would surface as a database error (500) long after validation.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid(loc, "contains an unpaired surrogate character") from None
    if "\x00" in value:
        raise _invalid(loc, "contains a NUL character")


def check_json_value(data: Any) -> None:
    """Raise RequestValidationError naming the first non-finite number, bad string or deep spot."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    while stack:
        value, loc = stack.pop()
        if len(loc) > MAX_JSON_DEPTH:
            raise _invalid(loc[:MAX_JSON_DEPTH], f"nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(value, float) and not math.isfinite(value):
            raise _invalid(loc, "must be a finite number (NaN and Infinity are not JSON)")
        if isinstance(value, str):
            _check_string(value, loc)
        elif isinstance(value, dict):
            for key, item in value.items():
                _check_string(key, (*loc, key))
                stack.append((item, (*loc, key)))
        elif isinstance(value, list):
            stack.extend((item, (*loc, i)) for i, item in enumerate(value))


def parse_json_strict(body: bytes) -> Any:
    """Parse a request body as RFC 8259 JSON: UTF-8, finite numbers, sane depth and strings."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid((), "the body is not valid UTF-8") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise _invalid((), f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, or an integer with thousands of digits
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "a number is too large"
        raise _invalid((), f"not valid JSON: {reason}") from None
    check_json_value(data)  # json.loads accepts NaN/Infinity and turns 1e400 into inf
    return data


def is_json_content_type(value: str | None) -> bool:
    media_type = (value or "").split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


class StrictJSONRoute(APIRoute):
    """A route whose JSON body is checked by :func:`parse_json_strict` before FastAPI parses it.

    FastAPI's own ``json.loads`` is lenient (NaN, Infinity, 1e400 -> inf) and reports a huge
    integer or bad UTF-8 as a bare 400; here every such body is a 422 naming the spot.
    A body that is not declared JSON is a 415: parsing it anyway would let any web page post
    to a token-less API on loopback, since a text/plain form needs no CORS preflight.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def strict_handler(request: Request) -> Response:
            body = await request.body()  # cached on the request: FastAPI reads the same bytes
            if body:
                if not is_json_content_type(request.headers.get("content-type")):
                    raise HTTPException(
                        415, "send the body as JSON (Content-Type: application/json)"
                    )
                parse_json_strict(body)
            return await handler(request)

        return strict_handler
