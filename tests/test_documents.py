"""Documents: search_docs, get_doc_by_ix/ptr/rank against a brute-force oracle and
against infini-gram on the same index."""

from __future__ import annotations

import json
import random

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

import anygram
from anygram.errors import InvalidQueryError


def build_text_index(tmp_path, texts, shards=1, name="docs-index"):
    corpus = tmp_path / f"{name}.jsonl"
    corpus.write_text("".join(json.dumps({"text": t, "n": i}) + "\n" for i, t in enumerate(texts)))
    return anygram.build_index(str(corpus), str(tmp_path / name), shards=shards, progress=False).output


def occurrences(docs, query):
    """(doc_ix, token offset) of every occurrence, by brute force."""
    out = []
    for d, doc in enumerate(docs):
        for i in range(len(doc) - len(query) + 1):
            if doc[i:i + len(query)] == query:
                out.append((d, i))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.text(alphabet="abc ", max_size=30), min_size=1, max_size=12),
       query=st.text(alphabet="abc ", min_size=1, max_size=3),
       shards=st.integers(1, 3), disp=st.integers(1, 12))
def test_search_docs_matches_the_oracle(tmp_path_factory, texts, query, shards, disp):
    tmp_path = tmp_path_factory.mktemp("search")
    shards = min(shards, len(texts))
    engine = anygram.Engine.open(build_text_index(tmp_path, texts, shards))
    docs = [list(t.encode()) for t in texts]
    q = list(query.encode())
    truth = occurrences(docs, q)
    result = engine.search_docs(q, maxnum=10**6, max_disp_len=disp)
    assert result["cnt"] == len(truth) == len(result["documents"])
    assert result["idxs"] == list(range(len(truth)))
    found = []
    for doc in result["documents"]:
        full = docs[doc["doc_ix"]]
        assert doc["doc_len"] == len(full)
        # the window is [match - disp//2, match + ceil(disp/2)) clipped to the document
        match_at = doc["offset"]
        assert full[match_at:match_at + len(q)] == q
        lo = max(0, match_at - disp // 2)
        hi = min(len(full), match_at + (disp + 1) // 2)
        assert doc["token_ids"] == full[lo:hi] and doc["disp_len"] == hi - lo
        assert doc["needle_offset"] == match_at - lo
        assert json.loads(doc["metadata"])["metadata"] == {"n": doc["doc_ix"]}
        assert doc["text"] == bytes(doc["token_ids"]).decode("utf-8", "replace")
        found.append((doc["doc_ix"], match_at))
    assert sorted(found) == truth
    if len(truth) > 2:
        few = engine.search_docs(q, maxnum=2, max_disp_len=disp, seed=7)
        assert few["cnt"] == len(truth) and len(few["documents"]) == 2 and len(set(few["idxs"])) == 2
        assert few == engine.search_docs(q, maxnum=2, max_disp_len=disp, seed=7)


def test_get_doc_by_ix_and_batch(tmp_path):
    texts = [f"document number {i} " * (i % 4) for i in range(40)]
    engine = anygram.Engine.open(build_text_index(tmp_path, texts, shards=3))
    for i, text in enumerate(texts):
        doc = engine.get_doc_by_ix(i, max_disp_len=10**6)
        assert doc["doc_ix"] == i and doc["token_ids"] == list(text.encode()) and doc["needle_offset"] == 0
        meta = json.loads(doc["metadata"])
        assert meta["linenum"] == i and meta["metadata"] == {"n": i}
    short = engine.get_doc_by_ix(5, max_disp_len=3)
    assert short["token_ids"] == list(texts[5].encode()[:3]) and short["doc_len"] == len(texts[5].encode())
    batch = engine.get_docs_by_ixs([3, 0, 39], max_disp_len=10**6)
    assert [d["doc_ix"] for d in batch] == [3, 0, 39]
    hits = engine.search_docs("number 7", maxnum=100)["documents"]
    by_ptr = engine.get_docs_by_ptrs([(d["shard"], d["ptr"]) for d in hits], max_disp_len=10**6)
    assert [d["doc_ix"] for d in by_ptr] == [d["doc_ix"] for d in hits] and by_ptr[0]["text"] == texts[7]


def test_document_errors(tmp_path):
    engine = anygram.Engine.open(build_text_index(tmp_path, ["abc", "abd"]))
    with pytest.raises(InvalidQueryError, match=r"doc_ix 2 is out of range: it must be an integer in \[0, 1\]"):
        engine.get_doc_by_ix(2)
    with pytest.raises(InvalidQueryError, match="out of range"):
        engine.get_doc_by_ix(-1)
    with pytest.raises(InvalidQueryError, match=r"doc_ixs\[1\] 5 is out of range"):
        engine.get_docs_by_ixs([0, 5])
    with pytest.raises(InvalidQueryError, match="max_disp_len"):
        engine.get_doc_by_ix(0, max_disp_len=0)
    with pytest.raises(InvalidQueryError, match="maxnum"):
        engine.search_docs("ab", maxnum=0)
    with pytest.raises(InvalidQueryError, match="shard 3"):
        engine.get_doc_by_ptr(3, 0)
    with pytest.raises(InvalidQueryError, match="ptr 99"):
        engine.get_doc_by_ptr(0, 99)
    assert engine.search_docs("zzz")["documents"] == []


def cnf_oracle(shard_streams, cnf, max_diff_tokens):
    """infini-gram's CNF windows by brute force, per shard (streams of token ids with
    separators as None): anchor = clause with fewest occurrences in the shard."""
    total, ptrs_by_shard, seen = 0, [], [False] * len(cnf)
    for stream in shard_streams:
        def starts(clause):
            out = []
            for term in clause:
                out += [i for i in range(len(stream) - len(term) + 1) if stream[i:i + len(term)] == term]
            return out
        occ = [starts(c) for c in cnf]
        seen = [s or bool(o) for s, o in zip(seen, occ)]
        if any(not o for o in occ):
            ptrs_by_shard.append([])
            continue
        order = sorted(range(len(cnf)), key=lambda c: len(occ[c]))
        windows = [(p, p) for p in occ[order[0]]]
        for c in order[1:]:
            ps = sorted(occ[c])
            nxt = []
            for l, r in windows:
                left = [p for p in ps if p < r]
                right = [p for p in ps if p >= l]
                nl = min(l, left[-1]) if left else None
                nr = max(r, right[0]) if right else None
                lok = nl is not None and nl + max_diff_tokens >= l
                rok = nr is not None and nr <= r + max_diff_tokens
                if lok and rok:
                    nxt.append((nl, nr))
                else:
                    if lok:
                        nxt.append((nl, r))
                    if rok:
                        nxt.append((l, nr))
            windows = nxt
        kept = [l for l, r in windows if None not in stream[l:r]]
        total += len(kept)
        ptrs_by_shard.append(kept)
    if not all(seen):  # as infini-gram: a clause found nowhere gives no per-shard lists
        return 0, []
    return total, ptrs_by_shard


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.text(alphabet="abcd", max_size=25), min_size=1, max_size=10),
       cnf=st.lists(st.lists(st.text(alphabet="abcd", min_size=1, max_size=2), min_size=1, max_size=2),
                    min_size=1, max_size=3),
       shards=st.integers(1, 3), diff=st.integers(1, 6))
def test_cnf_matches_the_oracle(tmp_path_factory, texts, cnf, shards, diff):
    tmp_path = tmp_path_factory.mktemp("cnf")
    shards = min(shards, len(texts))
    engine = anygram.Engine.open(build_text_index(tmp_path, texts, shards))
    streams, first = [], 0
    for info in engine.shard_info():
        stream = []
        for t in texts[first:first + info["num_documents"]]:
            stream += [None] + list(t.encode())
        streams.append(stream)
        first += info["num_documents"]
    ids = [[list(term.encode()) for term in clause] for clause in cnf]
    count, ptrs = cnf_oracle(streams, ids, diff)
    result = engine.find_cnf(ids, max_diff_tokens=diff)
    assert result["cnt"] == count and not result["approx"]
    # byte offsets = token offsets for bytes; the order (suffix-array order of the
    # anchor) is checked against infini-gram in test_documents_infinigram.py
    assert [sorted(p) for p in result["ptrs_by_shard"]] == [sorted(p) for p in ptrs]
    docs = engine.search_docs_cnf(" AND ".join(" OR ".join(c) for c in cnf), maxnum=10**6, max_diff_tokens=diff)
    assert docs["cnt"] == count == len(docs["documents"])


def test_malformed_cnf(tmp_path):
    engine = anygram.Engine.open(build_text_index(tmp_path, ["abc", "abd"]))
    with pytest.raises(InvalidQueryError, match="at least one clause"):
        engine.count_cnf([])
    with pytest.raises(InvalidQueryError, match="clause 1 of the CNF query is empty"):
        engine.count_cnf([[[97]], []])
    with pytest.raises(InvalidQueryError, match="n-gram 0 of clause 0 is empty"):
        engine.count_cnf([[[]]])
    with pytest.raises(InvalidQueryError, match="outside the vocabulary"):
        engine.count_cnf([[[97, 300]]])
    with pytest.raises(InvalidQueryError, match="max_diff_tokens"):
        engine.count_cnf("a AND b", max_diff_tokens=0)
    with pytest.raises(InvalidQueryError, match="a CNF query is a string or a list"):
        engine.count_cnf(5)
    # "a AND b" holds in both documents, but infini-gram's window for the second "a"
    # spans the nearest "b" on both sides, one of them in the other document, so it
    # is dropped: 1, as infini-gram answers (see the Quirk in rust/anygram/src/cnf.rs).
    assert engine.count_cnf("a AND b") == {"count": 1, "approx": False}
