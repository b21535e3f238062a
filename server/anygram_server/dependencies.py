"""Shared ``Depends``: the :class:`Service` (settings, limits, indexes, engine runner) with or
without the API key check.

Every API endpoint takes one dependency, ``api_service``: FastAPI's dependency solving
costs tens of microseconds per dependency and request, which matters when the query
itself takes two. Tests can swap it with ``app.dependency_overrides[api_service]``.
Dependencies are ``async def`` although they never wait: FastAPI runs a plain ``def``
dependency in a worker thread.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import List

from fastapi import Request
from fastapi.security import APIKeyHeader, HTTPBearer

from .config import Limits, Settings
from .errors import UnauthorizedError
from .registry import IndexRegistry, ServedIndex
from .runner import EngineRunner

# The two ways a client may send its key; auto_error off, so that a missing key is our
# JSON 401 rather than FastAPI's 403.
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False)
BEARER = HTTPBearer(auto_error=False)


@dataclass
class Service:
    """What requests share, built by the app's lifespan (:mod:`main`)."""

    settings: Settings
    registry: IndexRegistry
    runner: EngineRunner
    api_keys: List[str] = field(default_factory=list)

    @property
    def limits(self) -> Limits:
        return self.settings.limits

    def index(self, name: str) -> ServedIndex:
        """The served index ``name``; 404 ``unknown_index`` when there is none."""
        return self.registry.get(name)

    async def check_api_key(self, request: Request) -> None:
        """With ``--api-key-file``, every API call needs one of its keys, as
        ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``; without it, none is asked for.
        The headers are parsed by ``fastapi.security``, called directly rather than as
        sub-dependencies (each costs tens of µs per request)."""
        if not self.api_keys:
            return
        given = await API_KEY_HEADER(request)
        if not given:
            bearer = await BEARER(request)
            given = bearer.credentials if bearer is not None else None
        if not given:
            raise UnauthorizedError(
                "this service needs an API key: send `Authorization: Bearer KEY` or `X-API-Key: KEY`"
            )
        # Compare with every key in constant time: timing says nothing about which almost matched.
        if not any(hmac.compare_digest(given.encode(), key.encode()) for key in self.api_keys):
            raise UnauthorizedError("the API key is not valid")


async def get_service(request: Request) -> Service:
    """The service, with no API key asked for (health checks, the page)."""
    return request.app.state.service


async def api_service(request: Request) -> Service:
    """The service, once the request's API key (if the service has keys) is checked."""
    service: Service = request.app.state.service
    await service.check_api_key(request)
    return service
