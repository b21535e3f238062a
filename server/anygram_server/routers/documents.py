"""``/v1/indexes/{name}/docs``: documents by their global index (as `engine.get_doc_by_ix`)."""

from __future__ import annotations

import time
from typing import Optional

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from ..dependencies import Service, api_service
from ..encoding import encode_answer, json_response
from ..errors import UnknownDocumentError
from ..limit_checks import bounded, check_at_most, check_work
from ..registry import ServedIndex
from ..runner import Deadline
from ..schemas import ERROR_RESPONSES, DocsRequest, DocsResponse, Document, UrlCount, UrlPosition, default_of

router = APIRouter(prefix="/v1/indexes/{name}/docs", tags=["documents"], responses=ERROR_RESPONSES)

# Tokens of a document shown when max_disp_len is absent (one document or many).
DOCUMENT_TOKENS = default_of(DocsRequest, "max_disp_len")


def _check_doc_ixs(index: ServedIndex, doc_ixs, field: str) -> None:
    total = index.engine.num_documents
    for i, doc_ix in enumerate(doc_ixs):
        if not 0 <= doc_ix < total:
            where = field if len(doc_ixs) == 1 and field == "doc_ix" else f"{field}[{i}]"
            raise UnknownDocumentError(
                f"{where}: no document {doc_ix}; the index has documents 0 to {total - 1}",
                field=where,
                num_documents=total,
            )


@router.get("/{doc_ix}", response_model=Document, summary="One document")
async def get_document(
    name: str,
    doc_ix: UrlPosition,
    max_disp_len: Optional[UrlCount] = Query(None, description=f"default {DOCUMENT_TOKENS}"),
    service: Service = Depends(api_service),
) -> Response:
    """Document `doc_ix` (global over shards): its first `max_disp_len` tokens, metadata and text."""
    index, limits, runner = service.index(name), service.limits, service.runner
    max_disp_len = bounded("max_disp_len", max_disp_len, DOCUMENT_TOKENS, limits.max_disp_len)
    _check_doc_ixs(index, [doc_ix], "doc_ix")

    def work(deadline: Deadline) -> bytes:
        return encode_answer(index.engine.get_doc_by_ix(doc_ix, max_disp_len), deadline, limits)

    return json_response(await runner.run("doc", work))


@router.post("", response_model=DocsResponse, summary="Many documents")
async def get_documents(body: DocsRequest, name: str, service: Service = Depends(api_service)) -> Response:
    """Documents by index, read on all cores (as `engine.get_docs_by_ixs`)."""
    index, limits, runner = service.index(name), service.limits, service.runner
    check_at_most("doc_ixs", len(body.doc_ixs), limits.max_batch_size, "documents in one batch")
    max_disp_len = bounded("max_disp_len", body.max_disp_len, DOCUMENT_TOKENS, limits.max_disp_len)
    check_work(
        ("doc_ixs", "max_disp_len"),
        (len(body.doc_ixs), max_disp_len),
        limits.max_total_doc_tokens,
        "document tokens",
    )
    _check_doc_ixs(index, body.doc_ixs, "doc_ixs")

    def work(deadline: Deadline) -> bytes:
        start = time.perf_counter()
        documents = index.engine.get_docs_by_ixs(body.doc_ixs, max_disp_len)
        latency = (time.perf_counter() - start) * 1e3
        return encode_answer({"documents": documents, "latency": latency}, deadline, limits)

    return json_response(await runner.run("docs", work))
