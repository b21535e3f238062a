"""Errors as HTTP answers: one exception handler per class, each a JSON body.

Every error body has infini-gram's ``"error"`` key (a sentence saying what was wrong),
plus a stable machine-readable ``"code"`` and, where it applies, the ``"field"`` at fault,
the ``"limit"`` and what the request asked for (``"got"``):

    {"error": "queries: 5000 queries in one batch; the limit is 1000",
     "code": "limit_exceeded", "field": "queries", "limit": 1000, "got": 5000}

============================  ======  =========================
cause                         status  code
============================  ======  =========================
malformed JSON, wrong types   422     ``invalid_request``
bad token ids, bad query      422     ``invalid_query``
bad argument                  422     ``invalid_argument``
a limit broken                400     ``limit_exceeded``
body too large                413     ``body_too_large``
unknown index                 404     ``unknown_index``
unknown document              404     ``unknown_document``
missing or wrong API key      401     ``unauthorized``
every engine thread busy      503     ``overloaded``
over the time budget          504     ``timeout``
answer over its byte limit    400     ``limit_exceeded``
headers too large             431     ``header_too_large``
request not sent in time      408     ``request_timeout``
too many connections          503     ``too_many_connections``
a cluster's shard group down  503     ``shard_group_unavailable``
index files broken            500     ``corrupt_index`` / ``index_io``
anything else (a bug, panic)  500     ``internal``
============================  ======  =========================

The last row is :class:`CatchAll`: whatever escapes the handlers (an unexpected Python
error, a Rust panic, which is a ``BaseException``) is logged with its traceback and
answered as JSON, and the connection stays usable.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Dict, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import anygram.errors as anygram_errors
from anygram.errors import (
    AnygramError,
    CorruptIndexError,
    IndexIOError,
    IndexNotFoundError,
    InvalidArgumentError,
    InvalidQueryError,
    ShardGroupError,
    TokenizerMismatchError,
)

from .metrics import ERRORS

log = logging.getLogger("anygram_server")


class ServiceError(Exception):
    """An error the service answers with ``status`` and a JSON body (see the module doc)."""

    status = 500
    code = "internal"

    def __init__(self, message: str, field: Optional[str] = None, **extra: Any):
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra = extra

    def body(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"error": self.message, "code": self.code}
        if self.field is not None:
            out["field"] = self.field
        out.update(self.extra)
        return out


class LimitExceededError(ServiceError):
    status = 400
    code = "limit_exceeded"

    def __init__(
        self, field: str, limit: int, got: Any, unit: str = "", what: Optional[str] = None, **extra: Any
    ):
        what = what or f"{got:,} {unit}".rstrip()
        super().__init__(
            f"{field}: {what}; the limit is {limit:,}", field=field, limit=limit, got=got, **extra
        )


class BodyTooLargeError(ServiceError):
    status = 413
    code = "body_too_large"


class UnknownIndexError(ServiceError):
    status = 404
    code = "unknown_index"


class UnknownDocumentError(ServiceError):
    status = 404
    code = "unknown_document"


class BadRequestError(ServiceError):
    """A request that parses but does not make sense (e.g. both ``query`` and ``query_ids``)."""

    status = 422
    code = "invalid_request"


class UnauthorizedError(ServiceError):
    status = 401
    code = "unauthorized"


class OverloadedError(ServiceError):
    status = 503
    code = "overloaded"


class TimeoutExceededError(ServiceError):
    status = 504
    code = "timeout"


def error_response(
    status: int, body: Dict[str, Any], headers: Optional[Dict[str, str]] = None
) -> JSONResponse:
    ERRORS.labels(body["code"]).inc()
    return JSONResponse(body, status_code=status, headers=headers)


# anygram's own exceptions, raised by the engine: class -> (status, code).
ENGINE_ERRORS = {
    InvalidQueryError: (422, "invalid_query"),
    InvalidArgumentError: (422, "invalid_argument"),
    TokenizerMismatchError: (422, "invalid_argument"),
    IndexNotFoundError: (500, "index_missing"),
    CorruptIndexError: (500, "corrupt_index"),
    IndexIOError: (500, "index_io"),
    # `serve --ray`: a group Ray could not bring back or that missed the deadline; a retry
    # may succeed once the cluster recovers, so it is unavailability, not a server bug.
    ShardGroupError: (503, "shard_group_unavailable"),
    AnygramError: (500, "engine_error"),
}
# A panic caught in the bindings (newer engines raise it rather than PanicException).
if hasattr(anygram_errors, "InternalError"):
    ENGINE_ERRORS[anygram_errors.InternalError] = (500, "internal")


# pydantic names the member of a union it tried in the error's location:
# ("body", "queries", 0, "list[constrained-int]", 1); those are not fields.
_UNION_MEMBER_TAGS = {"str", "int", "float", "bool", "list", "dict"}


_SOURCES = {"body", "path", "query", "header", "cookie"}


def _field_parts(loc) -> list:
    if loc and loc[0] in _SOURCES:  # where FastAPI read it from
        loc = loc[1:]
    return [p for p in loc if isinstance(p, int) or (p.isidentifier() and p not in _UNION_MEMBER_TAGS)]


def _field_of(loc) -> str:
    # ("body", "queries", 3) -> "queries[3]"
    parts = _field_parts(loc)
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


def register_exception_handlers(app: FastAPI) -> None:
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, UnauthorizedError) else None
        return error_response(exc.status, exc.body(), headers)

    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        # Of a union's failed members, the one that got deepest into the value says most
        # ([1, 2**40] as a list of ids: the id at [1], not "not a string").
        first = (
            max(errors, key=lambda e: len(_field_parts(e.get("loc", ()))))
            if errors
            else {"loc": ("body",), "msg": "invalid request"}
        )
        if first.get("type") == "json_invalid":
            # loc is ("body", character offset)
            at = first.get("loc", ("body", "?"))[-1]
            field = "body"
            reason = first.get("ctx", {}).get("error", first["msg"])
            message = f"the body is not valid JSON: {reason} at character {at}"
        else:
            field = _field_of(first.get("loc", ("body",)))
            message = f"{field}: {first['msg']}"
        details = [{"field": _field_of(e.get("loc", ())), "message": e.get("msg", "")} for e in errors[:20]]
        return error_response(
            422, {"error": message, "code": "invalid_request", "field": field, "details": details}
        )

    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, ServiceError):
            # FastAPI wraps errors raised while it reads the body (e.g. BodyTooLargeError).
            return await service_error(request, exc.__cause__)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(
            exc.status_code, {"error": str(exc.detail), "code": code}, getattr(exc, "headers", None)
        )

    # No handler for Exception here: Starlette would answer it and then re-raise it to the
    # server, which drops the connection. CatchAll (a middleware) answers those.
    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)

    # One handler per anygram.errors class; the most specific class wins.
    for cls, (status, code) in ENGINE_ERRORS.items():

        def make(status: int = status, code: str = code):
            async def engine_error(request: Request, exc: Exception) -> JSONResponse:
                return error_response(status, {"error": str(exc), "code": code})

            return engine_error

        app.add_exception_handler(cls, make())


# Exceptions that stop the process or a task: never answered, always re-raised.
_NOT_OURS = (KeyboardInterrupt, SystemExit, GeneratorExit, asyncio.CancelledError)


class CatchAll:
    """The last resort: anything no handler answered (a bug, or a Rust panic: PyO3's
    ``PanicException`` is a ``BaseException``) becomes a JSON 500 ``internal``, its
    traceback logged. Put inside the metrics middleware, so the 500 is counted."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def note_start(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, note_start)
        except _NOT_OURS:
            raise
        except BaseException as exc:  # noqa: B036 (panics are BaseExceptions)
            log.error("internal error on %s %s", scope.get("method"), scope.get("path"), exc_info=exc)
            if started:  # too late for a status: the server ends the response
                raise
            message = f"internal error ({type(exc).__name__}); see the service's log"
            response = error_response(500, {"error": message, "code": "internal"})
            await response(scope, receive, send)
