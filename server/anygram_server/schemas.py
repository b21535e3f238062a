"""Request and response bodies, with the examples shown at ``/docs``.

A query is text (tokenized with the index's tokenizer, no BOS/EOS) or a list of token
ids. Integers are strict: ``"5"`` or ``5.0`` is not a token id.

Every integer a client sends is a :func:`bounded_int` and every text a :data:`Text`, so a
value that no query could use (negative, 2**64, a lone surrogate) is a 422 naming its
field before it reaches the engine, whose arguments are fixed-width integers and UTF-8.
"""

from __future__ import annotations

from typing import Annotated, Any, Dict, List, Literal, Optional, Union

from annotated_types import Interval
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, StrictStr


# The engine takes integers as u64 or i64: the largest every argument can hold.
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1
# Token ids are at most 4 bytes wide (infini-gram's widths are 1, 2 and 4).
TOKEN_ID_MAX = 2**32 - 1


def bounded_int(ge: int = 0, le: int = INT64_MAX, strict: bool = True):
    """The one integer type of requests: in ``[ge, le]``, else a 422 naming the field.
    ``strict`` (bodies): ``"5"`` and ``5.0`` are not integers; path and query
    parameters are strings by nature and pass ``strict=False``."""
    if strict:
        return Annotated[int, Strict(), Interval(ge=ge, le=le)]
    return Annotated[int, Interval(ge=ge, le=le)]


def _whole_unicode(text: str) -> str:
    # JSON can escape a lone surrogate ("\ud800"), which is no character: it cannot be
    # encoded as UTF-8, so no tokenizer (nor the answer's JSON) could take it.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"not valid Unicode text ({e.reason} at character {e.start})") from None
    return text


Text = Annotated[StrictStr, AfterValidator(_whole_unicode)]
TokenId = bounded_int(0, TOKEN_ID_MAX)
Count = bounded_int(1)  # max_support, maxnum, ...: at least 1, its limit checked by the service
Seed = bounded_int(0, UINT64_MAX)
Position = bounded_int(0)  # doc_ix, rank, ptr, shard
# The same, for path and query parameters (text in the URL).
UrlPosition = bounded_int(0, strict=False)
UrlCount = bounded_int(1, strict=False)

Query = Union[Text, List[TokenId]]
Token = Union[TokenId, Text]


def optional_count(default: int, what: str = ""):
    """An optional :data:`Count` whose absence means ``default`` (lowered to the service's
    limit): written only here, described at ``/docs`` and read back by :func:`default_of`."""
    description = f"{what}; default {default}" if what else f"default {default}"
    return Field(None, description=description, json_schema_extra={"x-default": default})


def default_of(model: type, field: str) -> int:
    """The default of ``model``'s :func:`optional_count` ``field``."""
    return model.model_fields[field].json_schema_extra["x-default"]  # type: ignore[attr-defined,index]

QUERY_TYPES = (
    "count",
    "prob",
    "ntd",
    "infgram_prob",
    "infgram_ntd",
    "search_docs",
    "find",
    "count_cnf",
    "find_cnf",
    "search_docs_cnf",
    "get_doc_by_ix",
    "get_doc_by_rank",
    "get_doc_by_ptr",
    "creativity",
    "attribute",
)


class CountRequest(BaseModel):
    queries: List[Query] = Field(description="n-grams to count; the empty n-gram counts every token")
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"queries": ["def __init__(self", "import os"]}, {"queries": [[100, 101, 102]]}]
        }
    )


class CountResponse(BaseModel):
    counts: List[int]
    latency: float = Field(description="milliseconds spent in the engine")


class ProbRequest(BaseModel):
    contexts: List[Query]
    tokens: List[Token] = Field(description="the next token of each context: an id or one-token text")
    n: Optional[Count] = Field(
        None, description="n-gram order; null: the ∞-gram (longest occurring suffix)"
    )
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"contexts": ["import o"], "tokens": ["s"]},
                {"contexts": ["import o", "return Non"], "tokens": [115, "e"], "n": 3},
            ]
        }
    )


class ProbResult(BaseModel):
    prompt_cnt: int
    cont_cnt: int
    prob: float = Field(description="cont_cnt / prompt_cnt, or -1.0 when the context never occurs")
    suffix_len: int


class ProbResponse(BaseModel):
    results: List[ProbResult]
    latency: float


class NtdRequest(BaseModel):
    contexts: List[Query]
    n: Optional[Count] = Field(None, description="n-gram order; null: the ∞-gram")
    max_support: Optional[Count] = optional_count(1000, "occurrences counted exactly, sampled beyond (approx)")
    model_config = ConfigDict(json_schema_extra={"examples": [{"contexts": ["raise ValueError("]}]})


class NtdResult(BaseModel):
    prompt_cnt: int
    result_by_token_id: Dict[str, Dict[str, Any]] = Field(description="token id -> {cont_cnt, prob, token}")
    approx: bool
    suffix_len: int


class NtdResponse(BaseModel):
    results: List[NtdResult]
    latency: float


class ScoreRequest(BaseModel):
    texts: List[Query]
    model_config = ConfigDict(json_schema_extra={"examples": [{"texts": ["for i in range(10):"]}]})


class ScoreResult(BaseModel):
    token_ids: List[int]
    tokens: Optional[List[str]] = Field(description="vocabulary entries; null without a tokenizer")
    pieces: List[str] = Field(description="the text each token adds (joined: the decoded text)")
    prob: List[float] = Field(description="∞-gram P(token i | tokens[:i]); -1.0 where undefined")
    suffix_len: List[int] = Field(description="length of the longest suffix of tokens[:i] that occurs")
    prompt_cnt: List[int] = Field(description="occurrences of that suffix")
    cont_cnt: List[int] = Field(description="occurrences of that suffix followed by token i")


class ScoreResponse(BaseModel):
    results: List[ScoreResult]
    latency: float


class SearchRequest(BaseModel):
    query: Query
    maxnum: Optional[Count] = optional_count(5, "documents to return (distinct occurrences, at random beyond)")
    max_disp_len: Optional[Count] = optional_count(200, "tokens shown around each match")
    seed: Optional[Seed] = Field(None, description="makes the random draw repeatable")
    model_config = ConfigDict(json_schema_extra={"examples": [{"query": "raise ValueError(", "maxnum": 3}]})


class Document(BaseModel):
    doc_ix: int
    doc_len: int
    disp_len: int
    needle_offset: Optional[int] = None
    offset: Optional[int] = None
    metadata: str
    token_ids: List[int]
    text: Optional[str] = None
    spans: Optional[List[List[Optional[str]]]] = Field(
        None, description="[text, label] pairs: label is the matched clause number or null"
    )


class SearchResponse(BaseModel):
    cnt: int
    approx: bool
    idxs: List[int]
    documents: List[Document]
    token_ids: List[int]
    tokens: Optional[List[str]]
    latency: float


class LongestMatchResponse(SearchResponse):
    """`search`'s answer for the longest span of the query that occurs in the corpus."""

    start: int = Field(description="the span is query_token_ids[start:end]")
    end: int
    text: str = Field(description="the span decoded (its ids joined by spaces without a tokenizer)")
    query_token_ids: List[int] = Field(description="the whole query's token ids")


class ParseRequest(BaseModel):
    query: Text = Field(description="text; ` AND ` / ` OR ` make it a CNF query (as on `POST /`)")
    ids: bool = Field(
        False, description="the text is token ids (decimal numbers separated by spaces or commas), not words"
    )
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"query": "import os AND import sys OR import re"},
                {"query": "464 3290", "ids": True},
            ]
        }
    )


class ParseResponse(BaseModel):
    token_ids: Optional[List[int]] = Field(description="the n-gram's ids; null for a CNF query")
    cnf: Optional[List[List[List[int]]]] = Field(
        description="a CNF query's clauses (AND) of terms (OR) of ids; null for an n-gram"
    )
    tokens: Optional[Union[List[str], List[List[List[str]]]]] = Field(
        description="vocabulary entries, shaped as the ids; null without a tokenizer"
    )
    text: Union[str, List[List[str]]] = Field(
        description="the n-gram, or each term of the CNF, decoded (ids joined by spaces without a tokenizer)"
    )


class DocsRequest(BaseModel):
    doc_ixs: List[Position]
    max_disp_len: Optional[Count] = optional_count(1000)
    model_config = ConfigDict(json_schema_extra={"examples": [{"doc_ixs": [0, 1, 2], "max_disp_len": 100}]})


class DocsResponse(BaseModel):
    documents: List[Document]
    latency: float


class IndexInfo(BaseModel):
    name: str
    num_tokens: int
    num_documents: int
    num_shards: int
    token_width: int
    vocab_size: int
    eos_token_id: int
    tokenizer: Optional[str]
    accepts_text: bool
    manifest: Optional[Dict[str, Any]]


class IndexList(BaseModel):
    indexes: List[IndexInfo]


class ErrorBody(BaseModel):
    error: str = Field(description="what was wrong, in a sentence")
    code: str = Field(description="stable machine-readable kind (see anygram_server.errors)")
    field: Optional[str] = None
    limit: Optional[float] = None
    got: Optional[Any] = None

# The error answers every API route documents at /docs.
ERROR_RESPONSES: Dict[Union[int, str], Dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 404, 413, 422, 503, 504)
}


class InfiniGramRequest(BaseModel):
    """infini-gram's API request. Fields a query type does not use are ignored, as are
    unknown ones (infini-gram's clients send ``source``, ``timestamp``...)."""

    index: Optional[str] = Field(None, description="the index name (infini-gram's older name: corpus)")
    corpus: Optional[str] = Field(None, description="the older name of `index`")
    query_type: Literal[QUERY_TYPES]  # type: ignore[valid-type]
    query: Optional[Text] = Field(None, description="text; ` AND ` / ` OR ` make it a CNF query")
    query_ids: Optional[Union[List[TokenId], List[List[List[TokenId]]]]] = Field(
        None, description="token ids, or a CNF as clauses of n-grams of ids (triply nested)"
    )
    # Defaults (infini-gram's) are lowered to the service's limits where those are lower.
    max_support: Optional[Count] = optional_count(1000)
    max_clause_freq: Optional[Count] = optional_count(50000)
    max_diff_tokens: Optional[Count] = optional_count(100)
    maxnum: Optional[Count] = optional_count(1)
    max_disp_len: Optional[Count] = optional_count(1000)
    seed: Optional[Seed] = Field(None, description="anygram's addition: a repeatable search_docs draw")
    s: Optional[Position] = Field(None, description="shard (get_doc_by_rank, get_doc_by_ptr)")
    rank: Optional[Position] = None
    ptr: Optional[Position] = None
    doc_ix: Optional[Position] = None
    verbatim: Optional[bool] = Field(
        None, description="tokenize `query` as it is (default: as infini-gram's service, a leading space for GPT-2-style tokenizers)"
    )
    # attribute (infini-gram's arguments; bow_ids in place of its server-side word-start file)
    delim_ids: Optional[List[TokenId]] = Field(None, description="attribute: tokens that end a span")
    min_len: Optional[Position] = Field(None, description="attribute: shortest span kept, default 1")
    max_cnt: Optional[Count] = Field(None, description="attribute: most occurrences of a kept span, default 10")
    bow_ids: Optional[List[TokenId]] = Field(None, description="attribute: word-start tokens; spans start and end at one")

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {"index": "demo", "query_type": "count", "query": "def __init__(self"},
                {"index": "demo", "query_type": "infgram_prob", "query": "import os"},
                {
                    "index": "demo",
                    "query_type": "search_docs",
                    "query": "import os AND import sys",
                    "maxnum": 2,
                },
                {"index": "demo", "query_type": "ntd", "query_ids": [105, 109, 112, 111, 114, 116, 32]},
            ]
        },
    )
