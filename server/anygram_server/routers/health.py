"""Operations: ``/healthz`` for load balancers, ``/metrics`` for Prometheus."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from ..dependencies import Service, get_service
from ..metrics import render

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness and the indexes served")
async def healthz(service: Service = Depends(get_service)):
    return {"status": "ok", "indexes": service.registry.names()}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    """Requests by route and status, latency histograms (request and engine), errors by code."""
    body, content_type = render()
    return Response(content=body, media_type=content_type)
