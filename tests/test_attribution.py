"""Engine.creativity / Engine.attribute against a brute-force oracle that scans the documents:
texts long enough to be cut into chunks searched on several cores, indexes of one and three
shards with and without search accelerators, token ids whose byte order differs from their
numeric order (the suffix array sorts bytes), and documents that share long passages (ranges
of many ranks, matches that end where one copy diverges)."""

from __future__ import annotations

import random

import pytest

import anygram
from conftest import build_from_tokens

# Little-endian u16 bytes sort 256 < 512 < 1 < 2 < 3: byte order is not numeric order.
SYMBOLS = [1, 2, 3, 256, 257, 512, 600]
VOCAB = 1000


class Docs(list):
    """The documents, with where each token occurs (to keep the scans short)."""

    def __init__(self, docs):
        super().__init__(docs)
        self.starts = {}
        for d, doc in enumerate(docs):
            for i, t in enumerate(doc):
                self.starts.setdefault(t, []).append((d, i))


def occurrences(docs, pattern):
    """(doc, offset) of every occurrence of a non-empty pattern (never across a document end):
    a scan of every place where its first token occurs."""
    n = len(pattern)
    return [(d, i) for d, i in docs.starts.get(pattern[0], []) if docs[d][i:i + n] == pattern]


def longest_ends(docs, text):
    ends = []
    for l in range(len(text)):
        r = l
        while r < len(text) and occurrences(docs, text[l:r + 1]):
            r += 1
        ends.append(r)
    return ends


def attribute_oracle(docs, text, ends, delim_ids, min_len, max_cnt, bow_ids):
    """infini-gram's attribute rule over brute-force ends: (l, r, occurrences) of each span."""
    spans, last_r = [], 0
    for l in range(len(text)):
        if bow_ids is not None and text[l] not in bow_ids:
            continue
        length = ends[l] - l
        cut = next((p for p in range(length - 1) if text[l + p] in delim_ids), None)
        if cut is not None:
            length = cut + 1
        while bow_ids is not None and length > 0 and l + length < len(text) and text[l + length] not in bow_ids:
            length -= 1
        found = occurrences(docs, text[l:l + length]) if length else None
        if length < min_len or l + length <= last_r or found is None or len(found) > max_cnt:
            continue
        last_r = l + length
        spans.append((l, l + length, sorted(found)))
    return spans


@pytest.fixture(scope="module", params=[(1, False), (3, True), (3, False)], ids=["1-shard", "3-shards-accel", "3-shards"])
def corpus(request, tmp_path_factory):
    shards, accelerator = request.param
    rng = random.Random(f"attribution-{shards}-{accelerator}")
    passage = [rng.choice(SYMBOLS) for _ in range(40)]
    docs = []
    for _ in range(40):
        doc = [rng.choice(SYMBOLS) for _ in range(rng.randint(0, 60))]
        if rng.random() < 0.5:  # long shared passages: wide ranges, long matches
            at, cut = rng.randrange(len(doc) + 1), rng.randint(5, len(passage))
            doc[at:at] = passage[:cut]
        docs.append(doc)
    path = build_from_tokens(str(tmp_path_factory.mktemp("attr")), docs, 2, VOCAB, 0, shards=shards,
                             accelerator=accelerator)
    return anygram.Engine.open(path), Docs(docs), rng, passage


def held_out_text(docs, rng, passage, length):
    """Pieces of documents and of the shared passage, spliced with random and absent ids."""
    flat = [t for d in docs for t in d]
    text = []
    while len(text) < length:
        kind = rng.random()
        if kind < 0.5:
            i = rng.randrange(len(flat))
            text += flat[i:i + rng.randint(1, 25)]
        elif kind < 0.7:
            text += passage[rng.randrange(len(passage)):]
        elif kind < 0.9:
            text.append(rng.choice(SYMBOLS))
        else:
            text.append(rng.randrange(700, VOCAB))  # occurs nowhere
    return text[:length]


def document_position(engine, s, ptr):
    doc = engine.get_doc_by_ptr(s, ptr, 1)
    return doc["doc_ix"], doc["offset"]


def test_creativity_of_long_texts_is_the_longest_match_from_each_start(corpus):
    engine, docs, rng, passage = corpus
    for length in (0, 1, 63, 64, 65, 300):
        text = held_out_text(docs, rng, passage, length)
        assert list(engine.creativity(text)["rs"]) == longest_ends(docs, text)


def test_attribute_of_long_texts_matches_the_oracle(corpus):
    engine, docs, rng, passage = corpus
    bow_ids = set(SYMBOLS[::2])
    settings = (([], 1, 1000, None), ([], 1, 3, None), ([3], 2, 50, None), ([], 0, 10, bow_ids),
                ([2, 600], 4, 1000, bow_ids))
    for length in (70, 200):
        text = held_out_text(docs, rng, passage, length)
        ends = longest_ends(docs, text)
        for delim_ids, min_len, max_cnt, bow in settings:
            spans = engine.attribute(text, delim_ids, min_len, max_cnt,
                                     None if bow is None else sorted(bow))["spans"]
            got = [(s["l"], s["r"], sorted(document_position(engine, d["s"], d["ptr"]) for d in s["docs"]))
                   for s in spans]
            assert got == attribute_oracle(docs, text, ends, set(delim_ids), min_len, max_cnt, bow)
            assert all(s["count"] == len(s["docs"]) and s["length"] == s["r"] - s["l"] for s in spans)
