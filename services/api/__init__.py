"""The REST API: ``create_app(settings)`` builds it, ``server.serve`` runs it under uvicorn."""

from __future__ import annotations

from regsearch.services.api.main import create_app

__all__ = ["create_app"]
