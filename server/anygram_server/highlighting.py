"""Token ids shown as text: the pieces each token adds, token texts of a next-token
distribution, and documents marked where a query's n-grams occur (infini-gram's ``spans``)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from .registry import ServedIndex
from .runner import Deadline
from .tokenization import Cnf

Needles = Sequence[Tuple[Sequence[int], str]]


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
    index: ServedIndex, ids: Sequence[int], needles: Needles
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


def add_spans(index: ServedIndex, documents: List[Dict[str, Any]], needles: Needles, deadline: Deadline) -> None:
    """Marks every document's ``spans`` (:func:`highlight`), checking the deadline between them."""
    for doc in documents:
        deadline.check()
        doc["spans"] = highlight(index, doc["token_ids"], needles)


def cnf_needles(cnf: Cnf) -> List[Tuple[List[int], str]]:
    """Every term of a CNF query, labelled with its clause number."""
    return [(term, str(c)) for c, clause in enumerate(cnf) for term in clause]


def add_token_texts(index: ServedIndex, ntd_result: Dict[str, Any]) -> None:
    """Adds each entry's ``token`` text to a next-token distribution."""
    for token_id, entry in ntd_result["result_by_token_id"].items():
        entry["token"] = index.decode([token_id])
