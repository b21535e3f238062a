"""``/v1/indexes/{name}/count|prob|ntd|score|search|longest-match|parse``: n-gram queries on one index.

Batch bodies: each endpoint takes many queries and answers them with one native call
(``count_batch``, ``prob_batch``, ``ntd_batch``) that runs on all cores. Each result is
what the Python API answers for the same query (``engine.count``, ``engine.prob``, ...).
"""

from __future__ import annotations

import time
from typing import Tuple

from anygram.cnf import is_cnf_text
from fastapi import APIRouter, Depends
from fastapi.responses import Response

from ..config import Limits
from ..dependencies import Service, api_service
from ..encoding import encode_answer, json_response
from ..errors import BadRequestError
from ..highlighting import add_spans, add_token_texts, display_pieces
from ..limit_checks import bounded, check_batch, check_work
from ..runner import Deadline
from ..schemas import (
    ERROR_RESPONSES,
    CountRequest,
    CountResponse,
    LongestMatchResponse,
    NtdRequest,
    NtdResponse,
    ParseRequest,
    ParseResponse,
    ProbRequest,
    ProbResponse,
    ScoreRequest,
    ScoreResponse,
    SearchRequest,
    SearchResponse,
    default_of,
)
from ..scores import longest_occurring_span, score_many
from ..tokenization import batch_token_ids, cnf_ids, one_token, parse_ids_text, token_ids, tokenize

router = APIRouter(prefix="/v1/indexes/{name}", tags=["queries"], responses=ERROR_RESPONSES)


@router.post("/count", response_model=CountResponse, summary="Count n-grams")
async def count(body: CountRequest, name: str, service: Service = Depends(api_service)) -> Response:
    """Occurrences of each n-gram (as `engine.count`)."""
    index, limits, runner = service.index(name), service.limits, service.runner
    check_batch("queries", len(body.queries), limits)

    def work(deadline: Deadline) -> bytes:
        ids = batch_token_ids(index, body.queries, limits, "queries", deadline)
        start = time.perf_counter()
        counts = index.engine.count_batch(ids)
        latency = (time.perf_counter() - start) * 1e3
        return encode_answer({"counts": counts.tolist(), "latency": latency}, deadline, limits)

    return json_response(await runner.run("count", work))


@router.post("/prob", response_model=ProbResponse, summary="Next-token probabilities")
async def prob(body: ProbRequest, name: str, service: Service = Depends(api_service)) -> Response:
    """P(token | context) for each pair (as `engine.prob(context, token, n)`): the n-gram
    estimate with `n`, the ∞-gram without."""
    index, limits, runner = service.index(name), service.limits, service.runner
    check_batch("contexts", len(body.contexts), limits)
    if len(body.tokens) != len(body.contexts):
        raise BadRequestError(
            f"tokens: {len(body.tokens)} tokens for {len(body.contexts)} contexts; "
            "give one next token per context",
            field="tokens",
        )

    def work(deadline: Deadline) -> bytes:
        contexts = batch_token_ids(index, body.contexts, limits, "contexts", deadline)
        tokens = [one_token(index, t, limits, f"tokens[{i}]") for i, t in enumerate(body.tokens)]
        start = time.perf_counter()
        arrays = index.engine.prob_batch(contexts, tokens, n=body.n)
        latency = (time.perf_counter() - start) * 1e3
        columns = {key: arrays[key].tolist() for key in ("prompt_cnt", "cont_cnt", "prob", "suffix_len")}
        results = ({key: columns[key][i] for key in columns} for i in range(len(contexts)))
        return encode_answer({"results": results, "latency": latency}, deadline, limits)

    return json_response(await runner.run("prob", work))


@router.post("/ntd", response_model=NtdResponse, summary="Next-token distributions")
async def ntd(body: NtdRequest, name: str, service: Service = Depends(api_service)) -> Response:
    """The distribution of the token after each context (as `engine.ntd(context, n,
    max_support)`), each entry with its `token` text added."""
    index, limits, runner = service.index(name), service.limits, service.runner
    check_batch("contexts", len(body.contexts), limits)
    max_support = bounded("max_support", body.max_support, default_of(NtdRequest, "max_support"), limits.max_support)
    # Each context's distribution has up to max_support entries, each a Python dict.
    check_work(
        ("contexts", "max_support"),
        (len(body.contexts), max_support),
        limits.max_total_support,
        "ntd entries",
    )

    def work(deadline: Deadline) -> bytes:
        contexts = batch_token_ids(index, body.contexts, limits, "contexts", deadline)
        start = time.perf_counter()
        results = index.engine.ntd_batch(contexts, n=body.n, max_support=max_support)
        latency = (time.perf_counter() - start) * 1e3

        def shaped():  # one result at a time, between deadline checks
            for result in results:
                add_token_texts(index, result)
                yield result

        return encode_answer({"results": shaped(), "latency": latency}, deadline, limits)

    return json_response(await runner.run("ntd", work))


@router.post("/score", response_model=ScoreResponse, summary="∞-gram score of every token of a text")
async def score(body: ScoreRequest, name: str, service: Service = Depends(api_service)) -> Response:
    """For every position i of each text: the ∞-gram probability of token i given the
    tokens before it, the length of the longest suffix of those that occurs in the corpus
    (`suffix_len`) and its counts. The web page colors tokens by `suffix_len`."""
    index, limits, runner = service.index(name), service.limits, service.runner
    check_batch("texts", len(body.texts), limits)

    def work(deadline: Deadline) -> bytes:
        # A text to score is taken as it is (its pieces join into it), not as a query.
        texts = batch_token_ids(index, body.texts, limits, "texts", deadline, verbatim=True)
        start = time.perf_counter()
        scores = score_many(index, texts)
        latency = (time.perf_counter() - start) * 1e3
        results = (
            {"token_ids": ids, "tokens": index.tokens(ids), "pieces": display_pieces(index, ids), **score}
            for ids, score in zip(texts, scores)
        )
        return encode_answer({"results": results, "latency": latency}, deadline, limits)

    return json_response(await runner.run("score", work))


def _documents_shown(body: SearchRequest, limits: Limits) -> Tuple[int, int]:
    """``(maxnum, max_disp_len)`` of a search: as given or their defaults, within the limits,
    their product (the document tokens of the answer) too."""
    maxnum = bounded("maxnum", body.maxnum, default_of(SearchRequest, "maxnum"), limits.max_maxnum)
    max_disp_len = bounded("max_disp_len", body.max_disp_len, default_of(SearchRequest, "max_disp_len"), limits.max_disp_len)
    check_work(
        ("maxnum", "max_disp_len"), (maxnum, max_disp_len), limits.max_total_doc_tokens, "document tokens"
    )
    return maxnum, max_disp_len


@router.post("/search", response_model=SearchResponse, summary="Documents holding an n-gram")
async def search(body: SearchRequest, name: str, service: Service = Depends(api_service)) -> Response:
    """Documents where the n-gram occurs (as `engine.search_docs(query, maxnum,
    max_disp_len, seed)`): every occurrence up to `maxnum`, distinct ones drawn at random
    beyond. Each document adds `spans`, its text with every match marked."""
    index, limits, runner = service.index(name), service.limits, service.runner
    maxnum, max_disp_len = _documents_shown(body, limits)

    def work(deadline: Deadline) -> bytes:
        ids = token_ids(index, body.query, limits, "query")
        start = time.perf_counter()
        result = index.engine.search_docs(ids, maxnum=maxnum, max_disp_len=max_disp_len, seed=body.seed)
        latency = (time.perf_counter() - start) * 1e3
        add_spans(index, result["documents"], [(ids, "0")], deadline)
        result.update({"token_ids": ids, "tokens": index.tokens(ids), "latency": latency})
        return encode_answer(result, deadline, limits)

    return json_response(await runner.run("search", work))


@router.post(
    "/longest-match",
    response_model=LongestMatchResponse,
    summary="Documents holding the longest span of a text that occurs",
)
async def longest_match(body: SearchRequest, name: str, service: Service = Depends(api_service)) -> Response:
    """The longest span `query_token_ids[start:end]` of the query that occurs in the corpus
    (the leftmost of the longest; the whole query when it occurs, empty when no token
    does) and, as `search` answers for it, the documents where it occurs."""
    index, limits, runner = service.index(name), service.limits, service.runner
    maxnum, max_disp_len = _documents_shown(body, limits)

    def work(deadline: Deadline) -> bytes:
        query_ids = token_ids(index, body.query, limits, "query")
        started = time.perf_counter()
        start, end = longest_occurring_span(index, query_ids)
        deadline.check()
        span = query_ids[start:end]
        if span:
            result = index.engine.search_docs(span, maxnum=maxnum, max_disp_len=max_disp_len, seed=body.seed)
        else:  # searching the empty n-gram would draw documents that match nothing
            result = {"cnt": 0, "approx": False, "idxs": [], "documents": []}
        latency = (time.perf_counter() - started) * 1e3
        add_spans(index, result["documents"], [(span, "0")], deadline)
        result.update(
            {
                "token_ids": span,
                "tokens": index.tokens(span),
                "text": index.decode(span),
                "start": start,
                "end": end,
                "query_token_ids": query_ids,
                "latency": latency,
            }
        )
        return encode_answer(result, deadline, limits)

    return json_response(await runner.run("longest_match", work))


@router.post("/parse", response_model=ParseResponse, summary="A query's token ids, as the service reads it")
async def parse(body: ParseRequest, name: str, service: Service = Depends(api_service)) -> Response:
    """The token ids of a query as `POST /` reads it: an n-gram, or a CNF query when the
    text has ` AND ` / ` OR `. With `ids`, the text is token ids typed as decimal numbers
    (how the web page queries an index without a tokenizer)."""
    index, limits, runner = service.index(name), service.limits, service.runner

    def work(deadline: Deadline) -> bytes:
        if is_cnf_text(body.query):
            cnf = cnf_ids(index, body.query, limits, "query", ids_text=body.ids)
            tokens = None if not index.has_tokenizer else [[index.tokens(t) for t in c] for c in cnf]
            texts = [[index.decode(term) for term in clause] for clause in cnf]
            answer = {"token_ids": None, "cnf": cnf, "tokens": tokens, "text": texts}
        else:
            read = parse_ids_text if body.ids else tokenize
            ids = read(index, body.query, limits, "query")
            answer = {"token_ids": ids, "cnf": None, "tokens": index.tokens(ids), "text": index.decode(ids)}
        return encode_answer(answer, deadline, limits)

    return json_response(await runner.run("parse", work))
