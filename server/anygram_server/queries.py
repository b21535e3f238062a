"""Query preparation and answer shaping shared by both APIs. Everything here runs in an
engine thread (see :mod:`runner`), never on the event loop.

Queries are tokenized exactly as the Python API tokenizes them (``engine.tokenize``), so
the service answers what ``anygram.Engine`` answers for the same query.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

# CNF text is parsed by the package's one parser (routers use is_cnf_text from here).
from anygram.cnf import is_cnf_text  # noqa: F401
from anygram.cnf import parse as parse_cnf_text
from anygram.errors import InvalidArgumentError, InvalidQueryError

from .config import Limits
from .errors import LimitExceededError
from .registry import ServedIndex
from .runner import Deadline

Query = Union[str, Sequence[int]]
Cnf = List[List[List[int]]]


def encode_json(obj: Any) -> bytes:
    """Compact UTF-8 JSON (as Starlette's JSONResponse writes it); numpy values as lists."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_plain).encode(
        "utf-8"
    )


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_answer(answer: Any, deadline: Deadline, limits: Limits) -> bytes:
    """``answer`` as :func:`encode_json` writes it, but in pieces: the two outer levels of
    dicts and lists (or generators, which shape each item as it is needed) are walked
    here, each piece below is one short ``json.dumps``. Between pieces the deadline is
    checked (one ``json.dumps`` of a big answer would hold the GIL for seconds) and the
    bytes counted against ``max_response_bytes``."""
    out = _Pieces(deadline, limits.max_response_bytes)
    out.value(answer, depth=3)
    return b"".join(out.parts)


class _Pieces:
    def __init__(self, deadline: Deadline, max_bytes: int):
        self.deadline = deadline
        self.max_bytes = max_bytes
        self.size = 0
        self.parts: List[bytes] = []

    def add(self, piece: bytes) -> None:
        self.size += len(piece)
        if self.size > self.max_bytes:
            raise LimitExceededError(
                "response",
                self.max_bytes,
                self.size,
                what=f"the answer is over {self.max_bytes:,} bytes (ask for fewer or shorter results)",
            )
        self.parts.append(piece)

    def value(self, value: Any, depth: int) -> None:
        if depth and isinstance(value, dict) and any(map(_is_nested, value.values())):
            self.add(b"{")
            for i, (key, item) in enumerate(value.items()):
                self.add((b"," if i else b"") + encode_json(str(key)) + b":")
                self.value(item, depth - 1)
            self.add(b"}")
        elif depth and (
            isinstance(value, Iterator) or (isinstance(value, (list, tuple)) and _is_nested(value))
        ):
            self.add(b"[")
            for i, item in enumerate(value):
                if i:
                    self.add(b",")
                self.value(item, depth - 1)
            self.add(b"]")
        else:
            # Scalars, and containers of scalars (a list of counts): one piece, fast to encode
            # and slow one number at a time.
            self.deadline.check()
            self.add(encode_json(value))


def _is_nested(value: Any) -> bool:
    """Worth encoding in pieces: a dict, a generator, a list of containers."""
    if isinstance(value, (dict, Iterator)):
        return True
    return isinstance(value, (list, tuple)) and bool(value) and isinstance(value[0], (dict, list, tuple))


def check_work(fields: Sequence[str], factors: Sequence[int], limit: int, unit: str) -> None:
    """A :class:`LimitExceededError` (400) when the product of ``factors`` (e.g. contexts
    x max_support: the most ntd entries a request may return) is over ``limit``; checked
    before any engine work, it names every field that makes up the product."""
    total = 1
    for factor in factors:
        total *= factor
    if total > limit:
        product = " x ".join(fields)
        numbers = " x ".join(f"{f:,}" for f in factors)
        what = f"{numbers} = {total:,} {unit}" if len(factors) > 1 else f"{total:,} {unit}"
        raise LimitExceededError(product, limit, total, what=what, fields=list(fields))


def batch_token_ids(
    index: ServedIndex, queries: Sequence[Query], limits: Limits, field: str, deadline: Deadline,
    verbatim: bool = False,
) -> List[List[int]]:
    """The token ids of every query of a batch (:func:`token_ids`), their total held to
    ``max_total_tokens`` as they are tokenized."""
    out: List[List[int]] = []
    total = 0
    for i, query in enumerate(queries):
        deadline.check()
        ids = token_ids(index, query, limits, f"{field}[{i}]", verbatim)
        total += len(ids)
        if total > limits.max_total_tokens:
            raise LimitExceededError(
                field,
                limits.max_total_tokens,
                total,
                what=f"more than {limits.max_total_tokens:,} tokens in all (at {field}[{i}])",
            )
        out.append(ids)
    return out


def check_at_most(field: str, value: int, limit: int, unit: str = "") -> None:
    """A :class:`LimitExceededError` (400) when ``value`` is over ``limit``."""
    if value > limit:
        raise LimitExceededError(field, limit, value, unit)


def bounded(field: str, value: Optional[int], default: int, limit: int) -> int:
    """A parameter as given (checked against its limit), or its default lowered to the limit."""
    if value is None:
        return min(default, limit)
    check_at_most(field, value, limit)
    return value


def tokenize(index: ServedIndex, text: str, limits: Limits, field: str, verbatim: bool = False) -> List[int]:
    check_at_most(field, len(text), limits.max_query_chars, "characters")
    if index.tokenizer is None:
        raise InvalidArgumentError(f"{field}: index {index.name!r} has no tokenizer; pass token ids")
    try:
        # infini-gram's service's tokenization (a leading space for byte-level BPE) unless verbatim.
        ids = index.tokenizer.encode_query(text, verbatim)
    except (UnicodeError, TypeError):
        # JSON can carry lone surrogates (\ud800), which are not text; tokenizers fail on them.
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise InvalidQueryError(
                f"{field}: not valid Unicode text ({e.reason} at character {e.start})"
            ) from None
        raise
    check_at_most(field, len(ids), limits.max_query_tokens, "tokens")
    return ids


def token_ids(index: ServedIndex, query: Query, limits: Limits, field: str, verbatim: bool = False) -> List[int]:
    """The ids of a query given as text or as ids, checked against the vocabulary and limits."""
    if isinstance(query, str):
        return tokenize(index, query, limits, field, verbatim)
    ids = list(query)
    check_at_most(field, len(ids), limits.max_query_tokens, "tokens")
    check_vocabulary(index, ids, field)
    return ids


def check_vocabulary(index: ServedIndex, ids: Sequence[int], field: str) -> None:
    for position, token in enumerate(ids):
        if not 0 <= token < index.vocab_size:
            raise InvalidQueryError(
                f"{field}[{position}]: token id {token} is outside the vocabulary [0, {index.vocab_size})"
            )


# A token id typed as text: decimal digits, at most 10 of them (ids are below 2**32), so
# that no huge number is ever converted.
_TOKEN_ID_TEXT = re.compile(r"[0-9]{1,10}")
_ID_SEPARATORS = re.compile(r"[\s,]+")


def parse_ids_text(index: ServedIndex, text: str, limits: Limits, field: str) -> List[int]:
    """Token ids typed as text (the web page's query of an index without a tokenizer):
    decimal numbers separated by spaces or commas, optionally inside ``[...]``; each
    checked against the vocabulary."""
    check_at_most(field, len(text), limits.max_query_chars, "characters")
    inner = text.strip()
    if inner.startswith("[") and inner.endswith("]"):
        inner = inner[1:-1]
    pieces = [piece for piece in _ID_SEPARATORS.split(inner) if piece]
    check_at_most(field, len(pieces), limits.max_query_tokens, "tokens")
    for position, piece in enumerate(pieces):
        if not _TOKEN_ID_TEXT.fullmatch(piece):
            raise InvalidQueryError(
                f"{field}[{position}]: {piece[:20]!r} is not a token id; type token ids as "
                "decimal numbers separated by spaces or commas"
            )
    ids = [int(piece) for piece in pieces]
    check_vocabulary(index, ids, field)
    return ids


def cnf_ids(
    index: ServedIndex, query: Union[str, Cnf], limits: Limits, field: str, ids_text: bool = False,
    verbatim: bool = False,
) -> Cnf:
    """A CNF query as clauses of n-grams: ids, or text parsed by :func:`anygram.cnf.parse` whose
    terms are tokenized (or, with ``ids_text``, read by :func:`parse_ids_text`)."""
    if isinstance(query, str):
        check_at_most(field, len(query), limits.max_query_chars, "characters")
        clauses: List[List[Any]] = parse_cnf_text(query)
    else:
        clauses = [list(clause) for clause in query]
    check_at_most(field, len(clauses), limits.max_cnf_clauses, "clauses (AND)")
    out: Cnf = []
    total = 0
    for c, clause in enumerate(clauses):
        check_at_most(f"{field}[{c}]", len(clause), limits.max_cnf_terms, "terms (OR) in one clause")
        terms = []
        for t, term in enumerate(clause):
            where = f"{field}[{c}][{t}]"
            if isinstance(term, str):
                if ids_text:
                    ids = parse_ids_text(index, term, limits, where)
                else:
                    ids = tokenize(index, term, limits, where, verbatim)
            else:
                ids = list(term)
            if not ids:
                raise InvalidQueryError(f"{where}: a term of a CNF query cannot be empty")
            if not isinstance(term, str):
                check_vocabulary(index, ids, where)
            total += len(ids)
            terms.append(ids)
        out.append(terms)
    if not out:
        raise InvalidQueryError(f"{field}: a CNF query needs at least one clause")
    check_at_most(field, total, limits.max_query_tokens, "tokens in all terms")
    return out


def display_pieces(index: ServedIndex, ids: Sequence[int]) -> List[str]:
    """The text each token adds, for display: joined they give the decoded text.

    A character split over several tokens (a UTF-8 sequence in byte-level vocabularies)
    is given to the token that completes it; the others get "". Each piece is the
    difference of decoding a short window with and without the token, which also keeps
    the spaces that SentencePiece-style decoders drop at the start of a text."""
    if index.tokenizer is None:
        return [str(i) for i in ids]
    decode = index.tokenizer.decode
    pieces = []
    for i in range(len(ids)):
        start = max(0, i - 4)
        before = decode(ids[start:i]).rstrip("\ufffd")
        after = decode(ids[start : i + 1])
        if after.endswith("\ufffd"):
            pieces.append("")  # an incomplete character: wait for the token that completes it
            continue
        pieces.append(after[len(before) :] if after.startswith(before) else after)
    return pieces


def highlight(
    index: ServedIndex, ids: Sequence[int], needles: Sequence[Tuple[Sequence[int], str]]
) -> List[List[Optional[str]]]:
    """infini-gram's ``spans``: the text as ``[text, label]`` pairs, ``label`` the clause
    number (as a string) of the needle matched there, or null. Every occurrence of each
    needle is marked, left to right, earlier needles first."""
    # owner[i]: (label, occurrence number) of the match covering token i, so that adjacent
    # matches stay separate spans.
    owner: List[Optional[Tuple[str, int]]] = [None] * len(ids)
    occurrences = 0
    for needle, label in needles:
        n = len(needle)
        if n == 0:
            continue
        first = needle[0]
        i = 0
        while i + n <= len(ids):
            if (
                ids[i] == first
                and list(ids[i : i + n]) == list(needle)
                and all(owner[j] is None for j in range(i, i + n))
            ):
                owner[i : i + n] = [(label, occurrences)] * n
                occurrences += 1
                i += n
            else:
                i += 1
    spans: List[List[Optional[str]]] = []
    start = 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or owner[i] != owner[start]:
            run = owner[start]
            if spans and not index.has_tokenizer:
                spans.append([" ", None])  # ids are shown joined by spaces: keep the runs apart too
            spans.append([index.decode(list(ids[start:i])), None if run is None else run[0]])
            start = i
    return spans


def add_spans(index: ServedIndex, documents: List[Dict[str, Any]], needles, deadline: Deadline) -> None:
    for doc in documents:
        deadline.check()
        doc["spans"] = highlight(index, doc["token_ids"], needles)


SCORE_FIELDS = ("prob", "suffix_len", "prompt_cnt", "cont_cnt")


def score_many(index: ServedIndex, texts: List[List[int]]) -> List[Dict[str, List[Any]]]:
    """For every position i of each text: the ∞-gram probability of token i given tokens[:i],
    the suffix length used and the counts. One native call when the engine has
    ``score_batch`` (a left-to-right pass per text, texts on all cores), else one
    ``infgram_prob_batch`` call per text over all its prefixes (same answers, more work)."""
    engine = index.engine
    if hasattr(engine, "score_batch"):
        results = engine.score_batch(texts)
    elif hasattr(engine, "score"):
        results = [engine.score(ids) for ids in texts]
    else:
        results = [
            engine.infgram_prob_batch([ids[:i] for i in range(len(ids))], ids) if ids else {}
            for ids in texts
        ]
    out = []
    for ids, result in zip(texts, results):
        if not ids:
            out.append({key: [] for key in SCORE_FIELDS})
            continue
        out.append({key: _as_list(result[key]) for key in SCORE_FIELDS})
    return out


def _as_list(values: Any) -> List[Any]:
    return values.tolist() if hasattr(values, "tolist") else list(values)


def longest_occurring_span(index: ServedIndex, ids: List[int]) -> Tuple[int, int]:
    """``(start, end)``: the longest ``ids[start:end]`` that occurs in the corpus (the
    leftmost of the longest); ``(0, 0)`` when no token of ``ids`` occurs.

    The longest occurring substring ending at ``e`` is the ∞-gram's suffix length of the
    context ``ids[:e]``: one scoring pass gives it for every ``e < len(ids)``, and one
    ∞-gram lookup (the next token is any, it does not change the suffix) for the whole."""
    if not ids:
        return 0, 0
    suffix_len = score_many(index, [ids])[0]["suffix_len"]
    suffix_len.append(int(index.engine.prob(ids, 0)["suffix_len"]))
    end = max(range(len(suffix_len)), key=lambda e: (suffix_len[e], -e))
    return end - suffix_len[end], end
