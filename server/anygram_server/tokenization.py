"""Queries (text or token ids, n-grams or CNF) turned into checked token ids, within the
service's limits. Runs in an engine thread (see :mod:`runner`).

Text is tokenized exactly as the Python API tokenizes it (``engine.tokenize``), so the service
answers what ``anygram.Engine`` answers for the same query.
"""

from __future__ import annotations

import re
from typing import Any, List, Sequence, Union

# CNF text is parsed by the package's one parser.
from anygram.cnf import is_cnf_text  # noqa: F401
from anygram.cnf import parse as parse_cnf_text
from anygram.errors import InvalidArgumentError, InvalidQueryError

from .config import Limits
from .errors import LimitExceededError
from .limit_checks import check_at_most
from .registry import ServedIndex
from .runner import Deadline

Query = Union[str, Sequence[int]]
Cnf = List[List[List[int]]]


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


def one_token(index: ServedIndex, token: Union[str, int], limits: Limits, field: str) -> int:
    """A next token given as text (which must tokenize to exactly one id) or as an id."""
    if isinstance(token, str):
        ids = tokenize(index, token, limits, field)
        if len(ids) != 1:
            raise InvalidQueryError(
                f"{field}: {token!r} is {len(ids)} tokens {ids}; the next token must be one"
            )
        return ids[0]
    check_vocabulary(index, [token], field)
    return token
