"""``/v1/indexes/{name}/count|prob|ntd|score|search|longest-match|parse``: n-gram queries on one index.

Batch bodies: each endpoint takes many queries and answers them with one native call
(``count_batch``, ``prob_batch``, ``ntd_batch``) that runs on all cores. Each result is
what the Python API answers for the same query (``engine.count``, ``engine.prob``, ...).
"""

from __future__ import annotations

import time

from anygram.errors import InvalidQueryError
from fastapi import APIRouter, Depends
from fastapi.responses import Response

from .. import queries as q
from ..config import Limits
from ..errors import BadRequestError
from ..dependencies import Service, api_service
from ..registry import ServedIndex
from ..runner import Deadline
from ..schemas import (
    CountRequest,
    CountResponse,
    ErrorBody,
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
)

ERRORS = {status: {"model": ErrorBody} for status in (400, 401, 404, 413, 422, 503, 504)}

router = APIRouter(prefix="/v1/indexes/{name}", tags=["queries"], responses=ERRORS)


def json_response(body: bytes) -> Response:
    return Response(content=body, media_type="application/json")


def check_batch(field: str, size: int, limits: Limits) -> None:
    q.check_at_most(field, size, limits.max_batch_size, "queries in one batch")


@router.post("/count", response_model=CountResponse, summary="Count n-grams")
async def count(body: CountRequest, name: str, service: Service = Depends(api_service)) -> Response:
    """Occurrences of each n-gram (as `engine.count`)."""
    index, limits, runner = service.index(name), service.limits, service.runner
    check_batch("queries", len(body.queries), limits)

    def work(deadline: Deadline) -> bytes:
        ids = q.batch_token_ids(index, body.queries, limits, "queries", deadline)
        start = time.perf_counter()
        counts = index.engine.count_batch(ids)
        latency = (time.perf_counter() - start) * 1e3
        return q.encode_answer({"counts": counts.tolist(), "latency": latency}, deadline, limits)

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
        contexts = q.batch_token_ids(index, body.contexts, limits, "contexts", deadline)
        tokens = [_one_token(index, t, limits, f"tokens[{i}]") for i, t in enumerate(body.tokens)]
        start = time.perf_counter()
        arrays = index.engine.prob_batch(contexts, tokens, n=body.n)
        latency = (time.perf_counter() - start) * 1e3
        columns = {key: arrays[key].tolist() for key in ("prompt_cnt", "cont_cnt", "prob", "suffix_len")}
        results = ({key: columns[key][i] for key in columns} for i in range(len(contexts)))
        return q.encode_answer({"results": results, "latency": latency}, deadline, limits)

    return json_response(await runner.run("prob", work))


def _one_token(index: ServedIndex, token, limits: Limits, field: str) -> int:
    if isinstance(token, str):
        ids = q.tokenize(index, token, limits, field)
        if len(ids) != 1:
            raise InvalidQueryError(
                f"{field}: {token!r} is {len(ids)} tokens {ids}; the next token must be one"
            )
        return ids[0]
    q.check_vocabulary(index, [token], field)
    return token


@router.post("/ntd", response_model=NtdResponse, summary="Next-token distributions")
async def ntd(body: NtdRequest, name: str, service: Service = Depends(api_service)) -> Response:
    """The distribution of the token after each context (as `engine.ntd(context, n,
    max_support)`), each entry with its `token` text added."""
    index, limits, runner = service.index(name), service.limits, service.runner
    check_batch("contexts", len(body.contexts), limits)
    max_support = q.bounded("max_support", body.max_support, 1000, limits.max_support)
    # Each context's distribution has up to max_support entries, each a Python dict.
    q.check_work(
        ("contexts", "max_support"),
        (len(body.contexts), max_support),
        limits.max_total_support,
        "ntd entries",
    )

    def work(deadline: Deadline) -> bytes:
        contexts = q.batch_token_ids(index, body.contexts, limits, "contexts", deadline)
        start = time.perf_counter()
        results = index.engine.ntd_batch(contexts, n=body.n, max_support=max_support)
        latency = (time.perf_counter() - start) * 1e3

        def shaped():  # one result at a time, between deadline checks
            for result in results:
                add_token_texts(index, result)
                yield result

        return q.encode_answer({"results": shaped(), "latency": latency}, deadline, limits)

    return json_response(await runner.run("ntd", work))


def add_token_texts(index: ServedIndex, ntd_result) -> None:
    for token_id, entry in ntd_result["result_by_token_id"].items():
        entry["token"] = index.decode([token_id])


@router.post("/score", response_model=ScoreResponse, summary="∞-gram score of every token of a text")
async def score(body: ScoreRequest, name: str, service: Service = Depends(api_service)) -> Response:
    """For every position i of each text: the ∞-gram probability of token i given the
    tokens before it, the length of the longest suffix of those that occurs in the corpus
    (`suffix_len`) and its counts. The web page colors tokens by `suffix_len`."""
    index, limits, runner = service.index(name), service.limits, service.runner
    check_batch("texts", len(body.texts), limits)

    def work(deadline: Deadline) -> bytes:
        # A text to score is taken as it is (its pieces join into it), not as a query.
        texts = q.batch_token_ids(index, body.texts, limits, "texts", deadline, verbatim=True)
        start = time.perf_counter()
        scores = q.score_many(index, texts)
        latency = (time.perf_counter() - start) * 1e3
        results = (
            {"token_ids": ids, "tokens": index.tokens(ids), "pieces": q.display_pieces(index, ids), **score}
            for ids, score in zip(texts, scores)
        )
        return q.encode_answer({"results": results, "latency": latency}, deadline, limits)

    return json_response(await runner.run("score", work))


@router.post("/search", response_model=SearchResponse, summary="Documents holding an n-gram")
async def search(body: SearchRequest, name: str, service: Service = Depends(api_service)) -> Response:
    """Documents where the n-gram occurs (as `engine.search_docs(query, maxnum,
    max_disp_len, seed)`): every occurrence up to `maxnum`, distinct ones drawn at random
    beyond. Each document adds `spans`, its text with every match marked."""
    index, limits, runner = service.index(name), service.limits, service.runner
    maxnum = q.bounded("maxnum", body.maxnum, 5, limits.max_maxnum)
    max_disp_len = q.bounded("max_disp_len", body.max_disp_len, 200, limits.max_disp_len)
    q.check_work(
        ("maxnum", "max_disp_len"), (maxnum, max_disp_len), limits.max_total_doc_tokens, "document tokens"
    )

    def work(deadline: Deadline) -> bytes:
        ids = q.token_ids(index, body.query, limits, "query")
        start = time.perf_counter()
        result = index.engine.search_docs(ids, maxnum=maxnum, max_disp_len=max_disp_len, seed=body.seed)
        latency = (time.perf_counter() - start) * 1e3
        q.add_spans(index, result["documents"], [(ids, "0")], deadline)
        result.update({"token_ids": ids, "tokens": index.tokens(ids), "latency": latency})
        return q.encode_answer(result, deadline, limits)

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
    maxnum = q.bounded("maxnum", body.maxnum, 5, limits.max_maxnum)
    max_disp_len = q.bounded("max_disp_len", body.max_disp_len, 200, limits.max_disp_len)
    q.check_work(
        ("maxnum", "max_disp_len"), (maxnum, max_disp_len), limits.max_total_doc_tokens, "document tokens"
    )

    def work(deadline: Deadline) -> bytes:
        query_ids = q.token_ids(index, body.query, limits, "query")
        started = time.perf_counter()
        start, end = q.longest_occurring_span(index, query_ids)
        deadline.check()
        span = query_ids[start:end]
        if span:
            result = index.engine.search_docs(span, maxnum=maxnum, max_disp_len=max_disp_len, seed=body.seed)
        else:  # searching the empty n-gram would draw documents that match nothing
            result = {"cnt": 0, "approx": False, "idxs": [], "documents": []}
        latency = (time.perf_counter() - started) * 1e3
        q.add_spans(index, result["documents"], [(span, "0")], deadline)
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
        return q.encode_answer(result, deadline, limits)

    return json_response(await runner.run("longest_match", work))


@router.post("/parse", response_model=ParseResponse, summary="A query's token ids, as the service reads it")
async def parse(body: ParseRequest, name: str, service: Service = Depends(api_service)) -> Response:
    """The token ids of a query as `POST /` reads it: an n-gram, or a CNF query when the
    text has ` AND ` / ` OR `. With `ids`, the text is token ids typed as decimal numbers
    (how the web page queries an index without a tokenizer)."""
    index, limits, runner = service.index(name), service.limits, service.runner

    def work(deadline: Deadline) -> bytes:
        if q.is_cnf_text(body.query):
            cnf = q.cnf_ids(index, body.query, limits, "query", ids_text=body.ids)
            tokens = None if not index.has_tokenizer else [[index.tokens(t) for t in c] for c in cnf]
            texts = [[index.decode(term) for term in clause] for clause in cnf]
            answer = {"token_ids": None, "cnf": cnf, "tokens": tokens, "text": texts}
        else:
            read = q.parse_ids_text if body.ids else q.tokenize
            ids = read(index, body.query, limits, "query")
            answer = {"token_ids": ids, "cnf": None, "tokens": index.tokens(ids), "text": index.decode(ids)}
        return q.encode_answer(answer, deadline, limits)

    return json_response(await runner.run("parse", work))
