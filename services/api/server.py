"""Runs the API under uvicorn, refusing to listen beyond loopback without a token."""

from __future__ import annotations

from regsearch.config import Settings, is_loopback
from regsearch.services.api.security import configured_token


class UnsafeBindError(ValueError):
    """The API would be reachable from other machines with no token guarding it."""


def check_bind(settings: Settings, host: str) -> None:
    """Raise UnsafeBindError when ``host`` is not loopback and no API token is configured."""
    if is_loopback(host) or configured_token(settings):
        return
    raise UnsafeBindError(
        f"refusing to serve the API on {host!r} without a token: anyone who can reach it could "
        "submit and cancel jobs. Set REGSEARCH_API_TOKEN to a long random secret (clients then "
        "send 'Authorization: Bearer <token>'), or bind to 127.0.0.1."
    )


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the API until interrupted (checks the bind first, whoever calls)."""
    check_bind(settings, host)
    import uvicorn

    from regsearch.services.api.main import create_app

    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
