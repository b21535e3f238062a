"""The FastAPI application: wires the routers, middleware and error handlers together.

``create_app(settings)`` builds an app; the indexes are opened in its lifespan (or passed
in already open by ``anygram serve``). ``app_from_env`` is the factory each worker process
calls (``--workers N``), reading the settings from the environment.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Optional

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from . import __version__
from .config import Settings
from .dependencies import Service
from .errors import BodyTooLargeError, CatchAll, error_response, register_exception_handlers
from .metrics import MetricsMiddleware
from .registry import IndexRegistry
from .routers import documents, health, indexes, infinigram, queries
from .routers.infinigram import STATIC
from .runner import EngineRunner


DESCRIPTION = """\
Exact n-gram and ∞-gram statistics over anygram (and infini-gram) indexes.

* `POST /` speaks **infini-gram's API**: `{"index", "query_type", "query" | "query_ids", ...}`
  with `query_type` one of count, prob, ntd, infgram_prob, infgram_ntd, search_docs, find,
  count_cnf, find_cnf, search_docs_cnf, get_doc_by_ix, get_doc_by_rank, get_doc_by_ptr.
* `/v1/indexes/{name}/...` are resource endpoints with **batch** bodies, each answered by
  one native call on all cores.
* Errors are JSON with an `error` sentence and a stable `code` (plus `field`, `limit`).
* A query is text (tokenized with the index's tokenizer, without BOS/EOS) or token ids.
"""


class BodySizeLimit:
    """413 for a request body over ``max_bytes``, from Content-Length or while it streams in,
    before any of it is parsed."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    await self._refuse(scope, receive, send, declared)
                    return
        received = 0

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(
                        f"body: more than {limit:,} bytes; the limit is {limit:,}", field="body", limit=limit
                    )
            return message

        await self.app(scope, counted_receive, send)

    async def _refuse(self, scope, receive, send, got: int) -> None:
        response = error_response(
            413,
            BodyTooLargeError(
                f"body: {got:,} bytes; the limit is {self.max_bytes:,}",
                field="body",
                limit=self.max_bytes,
                got=got,
            ).body(),
        )
        await response(scope, receive, send)


def create_app(settings: Settings, registry: Optional[IndexRegistry] = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        runner = EngineRunner(settings.engine_threads, settings.limits.time_budget_s)
        indexes = registry if registry is not None else IndexRegistry(settings.indexes)
        app.state.service = Service(settings, indexes, runner, settings.api_keys())
        yield
        runner.shutdown()

    # /docs (Swagger UI) and /redoc from the assets fastapi-offline ships, not from a CDN:
    # the API's documentation works where the service has no internet access.
    app = FastAPIOffline(title="anygram", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    register_exception_handlers(app)

    app.include_router(infinigram.router)
    app.include_router(indexes.router)
    app.include_router(queries.router)
    app.include_router(documents.router)
    app.include_router(health.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # Outermost last: metrics see every answer, including 413s and CORS preflights.
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
        )
    app.add_middleware(BodySizeLimit, max_bytes=settings.limits.max_body_bytes)
    app.add_middleware(CatchAll)
    app.add_middleware(MetricsMiddleware)
    return app


def app_from_env() -> FastAPI:
    """The factory of each worker process: settings from ``ANYGRAM_SERVER_SETTINGS``."""
    from .protocol import configure

    settings = Settings.from_env()
    configure(settings.limits)  # before the worker accepts its first connection
    return create_app(settings)
