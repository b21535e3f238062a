"""``/v1/indexes``: which indexes this service serves, with their manifests."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from ..dependencies import Service, api_service
from ..schemas import ERROR_RESPONSES, IndexInfo, IndexList

router = APIRouter(prefix="/v1/indexes", tags=["indexes"], responses=ERROR_RESPONSES)


@router.get("", response_model=IndexList, summary="List the indexes")
async def list_indexes(service: Service = Depends(api_service)):
    """Every served index: sizes, token width, tokenizer and its manifest (`anygram.json`)."""
    return {"indexes": [index.describe() for index in service.registry]}


@router.get("/{name}", response_model=IndexInfo, summary="One index")
async def get_index_info(name: str, service: Service = Depends(api_service)):
    return service.index(name).describe()
