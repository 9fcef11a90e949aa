"""Tell a dashboard page where its server is: :class:`ServerAddress`, an ASGI middleware.

Opened directly at a page's address (``/job?job=ID``, ``/trial?...``, ``/compare``), the Streamlit
page does not know where its server is and probes the page's path first (``/job/_stcore/health``,
``/job/_stcore/host-config``: two 404s in the browser's console on every such load;
streamlit/streamlit#7074), then the root. The middleware writes the server's base address into
each HTML page it serves (``window.__streamlit.BACKEND_BASE_URL``, the setting Streamlit's page
reads for that purpose), so the page asks the root at once. ``dashboard/server.py`` installs it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Streamlit's own routes and assets (under any base path): never an HTML page, passed untouched.
NOT_PAGES = ("/_stcore/", "/static/", "/media/", "/component/")


def address_script(base_url_path: str) -> bytes:
    """The inline script naming the server's base address (the origin the page was loaded from,
    plus ``server.baseUrlPath``)."""
    base = "/" + base_url_path.strip("/")
    return (f"<script>window.__streamlit=Object.assign(window.__streamlit||{{}},"
            f"{{BACKEND_BASE_URL:window.location.origin+{json.dumps(base)}}});</script>").encode()


def with_address(html: bytes, base_url_path: str) -> bytes:
    """``html`` with :func:`address_script` first in its ``<head>`` (before Streamlit's own script)."""
    return html.replace(b"<head>", b"<head>" + address_script(base_url_path), 1)


def is_page_request(scope: Scope) -> bool:
    """A GET of a page's address (``/``, ``/job``): not a route of Streamlit's, not a file."""
    if scope["type"] != "http" or scope["method"] != "GET":
        return False
    path = scope["path"]
    return not any(part in path for part in NOT_PAGES) and "." not in path.rsplit("/", 1)[-1]


class ServerAddress:
    """ASGI middleware: every HTML page served carries the server's base address (see the module)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_page_request(scope):
            await self.app(scope, receive, send)
            return
        # Ask for the page uncompressed: its body is edited below (a page is a few kB).
        scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k.lower() != b"accept-encoding"]}
        start: Message | None = None
        passing = False
        chunks: list[bytes] = []

        async def edit(message: Message) -> None:
            nonlocal start, passing
            if message["type"] == "http.response.start":
                content_type = dict(message.get("headers", [])).get(b"content-type", b"")
                passing = not content_type.startswith(b"text/html")
                if passing:
                    await send(message)
                else:
                    start = message
                return
            if passing or message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            from streamlit import config

            body = with_address(b"".join(chunks), str(config.get_option("server.baseUrlPath") or ""))
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, edit)

