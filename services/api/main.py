"""Builds the API: ``create_app(settings)`` wires the store, the broker probe, the routers and
the guards. Nothing is created at import time, so tests build as many apps as they like."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Security
from fastapi.security import HTTPBearer

import regsearch
from regsearch.config import Settings, get_settings
from regsearch.services.api.docs import install_docs
from regsearch.services.api.errors import install_error_handlers
from regsearch.services.api.routes import families, health, jobs, report, weights
from regsearch.services.api.security import (
    BearerAuthMiddleware,
    BodySizeLimitMiddleware,
    configured_token,
)
from regsearch.store.artifacts import open_artifact_store
from regsearch.store.db import Database
from regsearch.store.families import catalog as published_catalog


def broker_probe(settings: Settings) -> Callable[[], None]:
    """A ping of the configured broker; the Celery app is built on first use, not at start-up."""
    queue = None

    def ping() -> None:
        nonlocal queue
        if queue is None:
            from regsearch.messaging.queue import TrialQueue, make_celery

            queue = TrialQueue(make_celery(settings))
        queue.ping()

    return ping


def coordinator_notifier(settings: Settings) -> Callable[[str, str], None]:
    """``notify(event, job_id)``: wake the coordinator over the broker, best-effort."""
    app = None

    def notify(event: str, job_id: str) -> None:
        nonlocal app
        from regsearch.messaging.events import publish_event

        if app is None:
            from regsearch.messaging.queue import make_celery

            app = make_celery(settings)
        publish_event(app, event, job_id)

    return notify


def create_app(
    settings: Settings | None = None,
    *,
    db: Database | None = None,
    broker_ping: Callable[[], None] | None = None,
    notify: Callable[[str, str], None] | None = None,
) -> FastAPI:
    """The API for ``settings``; ``db``, ``broker_ping`` and ``notify`` replace the defaults (tests)."""
    settings = settings or get_settings()
    owns_db = db is None
    database = db if db is not None else Database(settings.sqlalchemy_url)
    token = configured_token(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if owns_db:  # a database handed in belongs to the caller
            database.dispose()

    app = FastAPI(
        title="regsearch",
        version=getattr(regsearch, "__version__", "0"),
        description="Where dropout and batch normalization belong in a network, and how strong.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load Swagger UI from a CDN; install_docs serves it locally
        redoc_url=None,
    )
    install_docs(app)
    app.state.settings = settings
    app.state.db = database
    app.state.broker_ping = broker_ping or broker_probe(settings)
    app.state.notify = notify or coordinator_notifier(settings)
    app.state.artifacts = open_artifact_store(settings)  # trained weights; no connection made yet

    # model.family is checked against the built-ins and what live workers published in this
    # database: POST /jobs passes this catalog to the spec's validation (routes/jobs.py)
    app.state.catalog = published_catalog(database)

    install_error_handlers(app)
    app.include_router(health.router)
    # The middleware enforces the token; this dependency only documents it in /openapi.json.
    documented_auth = [Security(HTTPBearer(auto_error=False))] if token else []
    app.include_router(jobs.router, dependencies=documented_auth)
    app.include_router(report.router, dependencies=documented_auth)
    app.include_router(weights.router, dependencies=documented_auth)
    app.include_router(families.router, dependencies=documented_auth)

    # Each add_middleware wraps the previous ones, so the token (outermost) is checked before
    # a single body byte is counted or parsed.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    if token:
        app.add_middleware(BearerAuthMiddleware, token=token)
    document_spec_body(app)
    return app


def document_spec_body(app: FastAPI) -> None:
    """``/openapi.json`` with ``JobSpec`` among its components: POST /jobs validates its body
    itself (with the published families as context), so FastAPI does not list the model."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(jobs.spec_schemas())
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
