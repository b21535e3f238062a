"""Operations: ``/healthz`` for load balancers, ``/metrics`` for Prometheus."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from ..dependencies import get_registry
from ..metrics import render
from ..registry import IndexRegistry

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness and the indexes served")
async def healthz(registry: IndexRegistry = Depends(get_registry)):
    return {"status": "ok", "indexes": registry.names()}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    """Requests by route and status, latency histograms (request and engine), errors by code."""
    body, content_type = render()
    return Response(content=body, media_type=content_type)
