"""Shared ``Depends``: the settings, the engine runner, the index named in the path, and
the API key check. Each reads ``app.state``, filled by the lifespan in :mod:`main`, so a
test can swap any of them with ``app.dependency_overrides``."""

from __future__ import annotations

import hmac

from fastapi import Depends, Request

from .config import Limits, Settings
from .errors import UnauthorizedError
from .registry import IndexRegistry, ServedIndex
from .runner import EngineRunner


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_limits(settings: Settings = Depends(get_settings)) -> Limits:
    return settings.limits


def get_registry(request: Request) -> IndexRegistry:
    return request.app.state.registry


def get_runner(request: Request) -> EngineRunner:
    return request.app.state.runner


def get_index(name: str, registry: IndexRegistry = Depends(get_registry)) -> ServedIndex:
    """The index of the path's ``{name}``; 404 ``unknown_index`` when it is not served."""
    return registry.get(name)


def require_api_key(request: Request) -> None:
    """With ``--api-key-file``, every API call needs one of its keys, as
    ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``; without it, none is asked for."""
    keys = request.app.state.api_keys
    if not keys:
        return
    given = request.headers.get("x-api-key")
    if given is None:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            given = credentials.strip()
    if not given:
        raise UnauthorizedError("this service needs an API key: send `Authorization: Bearer KEY` "
                                "or `X-API-Key: KEY`")
    # Compare with every key in constant time, so timing says nothing about which almost matched.
    if not any(hmac.compare_digest(given.encode(), key.encode()) for key in keys):
        raise UnauthorizedError("the API key is not valid")
