"""``/``: infini-gram's API, so its existing clients work unchanged, and the web page.

``POST /`` takes infini-gram's request (``index``, ``query_type``, ``query`` or
``query_ids``, optional ``max_support``, ``maxnum``, ...) and answers in its format:
the engine's result plus ``latency`` (ms), ``token_ids`` and ``tokens``. Text with
`` AND `` / `` OR `` (and triply nested ``query_ids``) is a CNF query. Where infini-gram
answers an error with HTTP 200 and an ``"error"`` key, this service answers 4xx with the
same key, which infini-gram's clients read too.

``GET /`` serves the web page to browsers (``Accept: text/html``) and lists the indexes
as JSON to everyone else.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Dict, List, Optional

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from anygram.cnf import is_cnf_text

from ..config import Limits
from ..dependencies import Service, api_service, get_service
from ..encoding import encode_answer, json_response
from ..errors import BadRequestError, UnknownDocumentError
from ..highlighting import add_spans, add_token_texts, cnf_needles, highlight
from ..limit_checks import bounded, check_work
from ..registry import ServedIndex
from ..runner import Deadline
from ..schemas import ERROR_RESPONSES, QUERY_TYPES, InfiniGramRequest, default_of
from ..tokenization import Cnf, cnf_ids, token_ids, tokenize

STATIC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "static")

router = APIRouter(tags=["infini-gram API"])

# Query types that take a CNF query, and the name of their CNF form.
CNF_FORMS = {"count": "count_cnf", "search_docs": "search_docs_cnf", "find": "find_cnf"}
DOCUMENT_TYPES = {"get_doc_by_ix", "get_doc_by_rank", "get_doc_by_ptr"}


@router.get(
    "/",
    summary="The web page (browsers) or the list of indexes (JSON)",
    response_class=Response,
    responses={200: {"content": {"text/html": {}, "application/json": {}}}},
)
async def home(request: Request, service: Service = Depends(get_service)) -> Response:
    if "text/html" in request.headers.get("accept", ""):
        return FileResponse(os.path.join(STATIC, "index.html"), media_type="text/html")
    await service.check_api_key(request)
    return JSONResponse(
        {
            "indexes": [index.describe() for index in service.registry],
            "query_types": list(QUERY_TYPES),
            "docs": "/docs",
        }
    )


@router.post("/", summary="infini-gram's API: one query of any type", responses=ERROR_RESPONSES)
async def query(body: InfiniGramRequest, service: Service = Depends(api_service)) -> Response:
    """infini-gram's request and answer formats: `query_type` is one of count, prob, ntd,
    infgram_prob, infgram_ntd, search_docs, find, count_cnf, find_cnf, search_docs_cnf,
    get_doc_by_ix, get_doc_by_rank, get_doc_by_ptr. The answer is the Python API's result
    plus `latency` (ms), `token_ids` and `tokens`; errors carry an `error` key."""
    name = body.index if body.index is not None else body.corpus
    if name is None:
        raise BadRequestError("index: missing; name the index to query", field="index")
    index, limits = service.index(name), service.limits
    _check_parameters(body, limits)

    def work(deadline: Deadline) -> bytes:
        return encode_answer(answer(index, body, limits, deadline), deadline, limits)

    return json_response(await service.runner.run(body.query_type, work))


def _check_parameters(body: InfiniGramRequest, limits: Limits) -> None:
    """Checks the parameters given against the limits and fills in the others."""
    for field, limit in (
        ("max_support", limits.max_support),
        ("max_clause_freq", limits.max_clause_freq),
        ("max_diff_tokens", limits.max_diff_tokens),
        ("maxnum", limits.max_maxnum),
        ("max_disp_len", limits.max_disp_len),
    ):
        setattr(body, field, bounded(field, getattr(body, field), default_of(InfiniGramRequest, field), limit))
    # The work of the one query: what it returns at most.
    if body.query_type in ("search_docs", "search_docs_cnf"):
        check_work(
            ("maxnum", "max_disp_len"),
            (body.maxnum, body.max_disp_len),
            limits.max_total_doc_tokens,
            "document tokens",
        )
    if body.query_type in ("ntd", "infgram_ntd"):
        check_work(("max_support",), (body.max_support,), limits.max_total_support, "ntd entries")
    if body.query_type == "attribute" and body.max_cnt is not None:
        check_work(("max_cnt",), (body.max_cnt,), limits.max_total_support, "occurrences a span lists")


def answer(
    index: ServedIndex, body: InfiniGramRequest, limits: Limits, deadline: Deadline
) -> Dict[str, Any]:
    """The infini-gram answer to ``body`` (runs in an engine thread)."""
    query_type = body.query_type
    ids: Optional[List[int]] = None
    cnf: Optional[Cnf] = None
    if body.query is not None and body.query_ids is not None:
        raise BadRequestError("give exactly one of query and query_ids, not both", field="query")
    if body.query is not None:
        if is_cnf_text(body.query):
            cnf = cnf_ids(index, body.query, limits, "query", verbatim=bool(body.verbatim))
        else:
            ids = tokenize(index, body.query, limits, "query", verbatim=bool(body.verbatim))
    elif body.query_ids is not None:
        if body.query_ids and isinstance(body.query_ids[0], list):
            cnf = cnf_ids(index, body.query_ids, limits, "query_ids")  # type: ignore[arg-type]
        else:
            ids = token_ids(index, body.query_ids, limits, "query_ids")  # type: ignore[arg-type]
    elif query_type not in DOCUMENT_TYPES:
        raise BadRequestError("give the query as query (text) or query_ids (token ids)", field="query")
    else:
        ids = []

    if cnf is not None:
        if query_type in CNF_FORMS:
            query_type = CNF_FORMS[query_type]
        elif not query_type.endswith("_cnf") and query_type not in DOCUMENT_TYPES:
            raise BadRequestError(
                f"query_type {query_type} takes an n-gram, not a CNF query (AND/OR)", field="query_type"
            )
    elif query_type.endswith("_cnf"):
        cnf = [[ids]] if ids else cnf_ids(index, [], limits, "query")

    handler: Callable[..., Dict[str, Any]] = HANDLERS[query_type]
    start = time.perf_counter()
    result = handler(index, body, ids, cnf, deadline)
    result["latency"] = (time.perf_counter() - start) * 1e3
    if query_type in DOCUMENT_TYPES:
        return result  # its token_ids are the document's; the query only marks spans
    if cnf is not None:
        result["token_ids"] = cnf
        result["tokens"] = None if not index.has_tokenizer else [[index.tokens(t) for t in c] for c in cnf]
    else:
        result["token_ids"] = ids
        result["tokens"] = index.tokens(ids or [])
    return result


def _needs_tokens(ids: Optional[List[int]], query_type: str) -> List[int]:
    if not ids:
        raise BadRequestError(
            f"{query_type} needs a non-empty query: the context followed by the token", field="query"
        )
    return ids


def _count(index, body, ids, cnf, deadline):
    return {"count": index.engine.count(ids), "approx": False}


def _count_cnf(index, body, ids, cnf, deadline):
    return index.engine.count_cnf(cnf, body.max_clause_freq, body.max_diff_tokens)


def _prob(index, body, ids, cnf, deadline):
    ids = _needs_tokens(ids, "prob")
    # infini-gram's prob is the n-gram estimate with the whole query as the n-gram.
    return index.engine.prob(ids[:-1], ids[-1], n=len(ids))


def _ntd(index, body, ids, cnf, deadline):
    result = index.engine.ntd(ids, n=len(ids) + 1, max_support=body.max_support)
    add_token_texts(index, result)
    return result


def _longest_suffix(index: ServedIndex, context: List[int], suffix_len: int) -> str:
    return index.decode(context[len(context) - suffix_len :]) if suffix_len else ""


def _infgram_prob(index, body, ids, cnf, deadline):
    ids = _needs_tokens(ids, "infgram_prob")
    result = index.engine.prob(ids[:-1], ids[-1])
    result["longest_suffix"] = _longest_suffix(index, ids[:-1], result["suffix_len"])
    return result


def _infgram_ntd(index, body, ids, cnf, deadline):
    result = index.engine.ntd(ids, max_support=body.max_support)
    add_token_texts(index, result)
    result["longest_suffix"] = _longest_suffix(index, ids, result["suffix_len"])
    return result


def _message(result: Dict[str, Any]) -> str:
    if result["cnt"] == 0:
        return "0 occurrences found"
    about = "Approximately " if result["approx"] else ""
    return (
        f"{about}{result['cnt']} occurrences found. Displaying the documents of occurrences #{result['idxs']}"
    )


def _search_docs(index, body, ids, cnf, deadline):
    result = index.engine.search_docs(ids, maxnum=body.maxnum, max_disp_len=body.max_disp_len, seed=body.seed)
    add_spans(index, result["documents"], [(ids, "0")], deadline)
    result["message"] = _message(result)
    return result


def _search_docs_cnf(index, body, ids, cnf, deadline):
    result = index.engine.search_docs_cnf(
        cnf,
        maxnum=body.maxnum,
        max_disp_len=body.max_disp_len,
        max_clause_freq=body.max_clause_freq,
        max_diff_tokens=body.max_diff_tokens,
        seed=body.seed,
    )
    add_spans(index, result["documents"], cnf_needles(cnf), deadline)
    result["message"] = _message(result)
    return result


def _find(index, body, ids, cnf, deadline):
    return index.engine.find(ids)


def _find_cnf(index, body, ids, cnf, deadline):
    return index.engine.find_cnf(cnf, body.max_clause_freq, body.max_diff_tokens)


def _required(body: InfiniGramRequest, *fields: str) -> None:
    for field in fields:
        if getattr(body, field) is None:
            raise BadRequestError(
                f"{field}: missing; {body.query_type} needs {', '.join(fields)}", field=field
            )


def _document(index, body, doc, ids, cnf):
    needles = cnf_needles(cnf) if cnf is not None else ([(ids, "0")] if ids else [])
    doc["spans"] = highlight(index, doc["token_ids"], needles)
    return doc


def _get_doc_by_ix(index, body, ids, cnf, deadline):
    _required(body, "doc_ix")
    total = index.engine.num_documents
    if body.doc_ix >= total:
        raise UnknownDocumentError(
            f"doc_ix: no document {body.doc_ix}; the index has documents 0 to {total - 1}", field="doc_ix"
        )
    return _document(index, body, index.engine.get_doc_by_ix(body.doc_ix, body.max_disp_len), ids, cnf)


def _get_doc_by_rank(index, body, ids, cnf, deadline):
    _required(body, "s", "rank")
    return _document(
        index, body, index.engine.get_doc_by_rank(body.s, body.rank, body.max_disp_len), ids, cnf
    )


def _get_doc_by_ptr(index, body, ids, cnf, deadline):
    _required(body, "s", "ptr")
    return _document(index, body, index.engine.get_doc_by_ptr(body.s, body.ptr, body.max_disp_len), ids, cnf)


def _creativity(index, body, ids, cnf, deadline):
    return index.engine.creativity(ids or [])


def _attribute(index, body, ids, cnf, deadline):
    return index.engine.attribute(ids or [], body.delim_ids or [], 1 if body.min_len is None else body.min_len,
                                  10 if body.max_cnt is None else body.max_cnt, body.bow_ids)


HANDLERS: Dict[str, Callable[..., Dict[str, Any]]] = {
    "count": _count,
    "count_cnf": _count_cnf,
    "prob": _prob,
    "ntd": _ntd,
    "infgram_prob": _infgram_prob,
    "infgram_ntd": _infgram_ntd,
    "search_docs": _search_docs,
    "search_docs_cnf": _search_docs_cnf,
    "find": _find,
    "find_cnf": _find_cnf,
    "get_doc_by_ix": _get_doc_by_ix,
    "get_doc_by_rank": _get_doc_by_rank,
    "get_doc_by_ptr": _get_doc_by_ptr,
    "creativity": _creativity,
    "attribute": _attribute,
}
assert set(HANDLERS) == set(QUERY_TYPES)
