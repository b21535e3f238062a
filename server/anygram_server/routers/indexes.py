"""``/v1/indexes``: which indexes this service serves, with their manifests."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from ..dependencies import get_index, get_registry, require_api_key
from ..registry import IndexRegistry, ServedIndex
from ..schemas import IndexInfo, IndexList
from .queries import ERRORS

router = APIRouter(prefix="/v1/indexes", tags=["indexes"], dependencies=[Depends(require_api_key)],
                   responses=ERRORS)


@router.get("", response_model=IndexList, summary="List the indexes")
def list_indexes(registry: IndexRegistry = Depends(get_registry)):
    """Every served index: sizes, token width, tokenizer and its manifest (`anygram.json`)."""
    return {"indexes": [index.describe() for index in registry]}


@router.get("/{name}", response_model=IndexInfo, summary="One index")
def get_index_info(index: ServedIndex = Depends(get_index)):
    return index.describe()
