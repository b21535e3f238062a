"""anygram.compat.InfiniGramEngine against infini-gram 2.6.0's InfiniGramEngine: the same
calls on the same index files (built by anygram and by infini-gram's own indexer; one
directory of 1 or 3 shards, and a list of two directories), the same result dicts, bad
arguments included. infini-gram's known defects are checked as such (README, differences)."""

from __future__ import annotations

import json
import math
import os
import random
import sys

import numpy as np
import pytest

from anygram.compat import InfiniGramArgumentError, InfiniGramEngine
from anygram.errors import InvalidQueryError
from conftest import build_from_tokens
from peer import PeerEngine
from test_infinigram import check_known_deviation

pytest.importorskip("infini_gram.engine")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench", "peers"))
from infinigram_build import build_with_infinigram  # noqa: E402

# Ids whose little-endian bytes sort otherwise than their values (256 < 512 < 1 < 2 as bytes).
SYMBOLS = {1: [0, 1, 2, 3, 5, 8, 200], 2: [0, 1, 2, 3, 256, 257, 512, 600], 4: [0, 1, 2, 256, 512, 600]}
VOCAB = {1: 255, 2: 1000, 4: 1000}
DTYPE = {1: "u8", 2: "u16", 4: "u32"}
EOS = 2  # also a real token: where infini-gram's ntd lumps (check_known_deviation)
WORDS = "the of and a to in is was for on that with as by at from it an be this are or".split()


def random_docs(rng, width, count):
    docs = [[rng.choice(SYMBOLS[width]) for _ in range(rng.randint(0, 30))] for _ in range(count)]
    docs[3] = []
    return docs


def anygram_built(root, rng, width, shards_per_dir):
    """Index directories built by anygram, one per entry of shards_per_dir; their documents."""
    dirs, docs = [], []
    for i, shards in enumerate(shards_per_dir):
        part = random_docs(rng, width, 60)
        dirs.append(build_from_tokens(str(root / f"dir{i}"), part, width, VOCAB[width], EOS, shards=shards))
        docs += part
    return dirs, docs


def infinigram_built(root, rng):
    """A UTF-8 byte index built by infini-gram's own indexer (2 shards, cpus=1: exact tables)."""
    corpus = root / "corpus.jsonl"
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 12))) for _ in range(60)]
    corpus.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(texts)))
    out = str(root / "built-by-infinigram")
    assert build_with_infinigram(str(corpus), out, shards=2, cpus=1)["valid"]
    return [out], [list(t.encode()) for t in texts]


CASES = {
    "u8-1-shard": (1, [1]),
    "u16-3-shards": (2, [3]),
    "u32-1-shard": (4, [1]),
    "u16-two-dirs": (2, [1, 2]),
    "u8-by-infinigram": (1, None),
}


@pytest.fixture(scope="module", params=list(CASES))
def pair(request, tmp_path_factory):
    width, shards_per_dir = CASES[request.param]
    rng = random.Random(request.param)
    root = tmp_path_factory.mktemp(request.param)
    if shards_per_dir is None:
        dirs, docs = infinigram_built(root, rng)
        eos, vocab = 0, 255
    else:
        dirs, docs = anygram_built(root, rng, width, shards_per_dir)
        eos, vocab = EOS, VOCAB[width]
    bow = root / "bow.txt"
    bow.write_text("".join(f"{t}\n" for t in SYMBOLS[width][::2]))
    kwargs = dict(index_dir=dirs if len(dirs) > 1 else dirs[0], eos_token_id=eos, vocab_size=vocab,
                  token_dtype=DTYPE[width], precompute_unigram_logprobs=True, bow_ids_path=str(bow))
    ours, theirs = InfiniGramEngine(**kwargs), PeerEngine(**kwargs)
    yield ours, theirs, docs, rng, width
    theirs.close()


def call(engine, method, *args, **kwargs):
    try:
        return getattr(engine, method)(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - compared by type below
        return e


def separator_offset(width):
    """infini-gram's needle_offset for a pointer on a document separator (u64 underflow)."""
    return (2**64 - width) // width


def assert_same_doc(ours, theirs, width):
    if theirs.get("needle_offset") == separator_offset(width):
        assert ours["needle_offset"] == 0  # the exact offset (README, differences)
        ours, theirs = dict(ours, needle_offset=0), dict(theirs, needle_offset=0)
    assert ours == theirs


def same(ours, theirs, width, method, *args, **kwargs):
    a, b = call(ours, method, *args, **kwargs), call(theirs, method, *args, **kwargs)
    where = (method, args, kwargs)
    if isinstance(b, Exception):
        assert isinstance(a, Exception) and type(b) in type(a).__mro__, (where, a, b)
    elif method in ("ntd", "infgram_ntd") and a != b:
        check_known_deviation(a, b, ours.eos_token_id)
        assert a.get("suffix_len") == b.get("suffix_len"), where
    elif method.startswith("get_doc_by"):
        assert_same_doc(a, b, width)
    elif method.startswith("get_docs_by") and isinstance(b, list):
        assert len(a) == len(b), where
        for x, y in zip(a, b):
            assert_same_doc(x, y, width)
    else:
        assert a == b, where
    return a


def queries(docs, rng, vocab, width, n=50):
    """n-grams that occur (across document ends too), random ones, and some with ids
    outside the vocabulary (infini-gram accepts every id of the width)."""
    flat = [t for d in docs for t in d]
    out = [[]]
    for _ in range(n):
        i = rng.randrange(len(flat))
        out.append(flat[i:i + rng.randint(1, 7)])
        out.append([rng.choice(SYMBOLS[width]) for _ in range(rng.randint(1, 5))])
    separator = 2 ** (8 * width) - 1
    for _ in range(n // 6 if vocab < separator else 0):
        q = list(rng.choice(out[1:]))
        q.insert(rng.randrange(len(q) + 1), rng.randrange(vocab, separator))
        out.append(q)
    return out


def test_counts_and_distributions(pair):
    ours, theirs, docs, rng, width = pair
    for q in queries(docs, rng, ours.vocab_size, width):
        same(ours, theirs, width, "count", q)
        if all(t < ours.vocab_size for t in q):  # else the empty range's place differs (README)
            same(ours, theirs, width, "find", q)
        if not q:
            continue
        context, token = q[:-1], q[-1]
        same(ours, theirs, width, "prob", context, token)
        same(ours, theirs, width, "prob", prompt_ids=context, cont_id=token)
        same(ours, theirs, width, "infgram_prob", context, token)
        for max_support in (1, 3, 1000):
            same(ours, theirs, width, "ntd", q, max_support=max_support)
        # infini-gram's ntd of the empty context can crash (bench/peers/FACTS.md, e).
        if ours.infgram_ntd(q, 5)["suffix_len"] > 0:
            same(ours, theirs, width, "infgram_ntd", q, 5)
    same(ours, theirs, width, "ntd", [SYMBOLS[width][1]])  # the constructor's max_support


def exact_ends(theirs, text):
    """For each l, l + the longest n-gram starting at l that occurs: by the peer's counts."""
    ends = []
    for l in range(len(text)):
        r = l
        while r < len(text) and theirs.count(text[l:r + 1])["count"] > 0:
            r += 1
        ends.append(r)
    return ends


def attribute_oracle(theirs, text, ends, delim_ids, min_len, max_cnt, bow_ids, enforce_bow, logprobs):
    """infini-gram's attribute (its source, cpp_engine.h) over exact longest-match ends:
    spans without their pointers."""
    spans, last_r = [], 0
    for l in range(len(text)):
        if enforce_bow and text[l] not in bow_ids:
            continue
        length = ends[l] - l
        cut = next((pos for pos in range(length - 1) if text[l + pos] in delim_ids), None)
        if cut is not None:
            length = cut + 1
        while enforce_bow and length > 0 and l + length < len(text) and text[l + length] not in bow_ids:
            length -= 1
        count = theirs.count(text[l:l + length])["count"]
        if length < min_len or count > max_cnt or l + length <= last_r:
            continue
        last_r = l + length
        logprob = 0.0
        for t in text[l:l + length]:
            logprob += logprobs.get(t, -10000.0)
        spans.append({"l": l, "r": l + length, "length": length, "count": count,
                      "unigram_logprob_sum": logprob})
    return spans


def test_creativity_and_attribute(pair):
    """The same answers, but where infini-gram misses a match (a text that sorts before every
    suffix of a shard inspects no neighbour there: README, differences); ours is then the exact
    one by infini-gram's own counts."""
    ours, theirs, docs, rng, width = pair
    flat = [t for d in docs for t in d]
    shards = len(theirs.find([])["segment_by_shard"])
    unigrams = {}
    for s in range(shards):
        for t, c in theirs.compute_unigram_counts(s).items():
            unigrams[t] = unigrams.get(t, 0) + c
    total = sum(unigrams.values())
    logprobs = {t: math.log(c) - math.log(total) for t, c in unigrams.items() if c}
    bow_ids = set(SYMBOLS[width][::2])
    deviations = 0
    for _ in range(15):
        i = rng.randrange(len(flat))
        text = flat[i:i + rng.randint(0, 14)]
        for _ in range(rng.randint(0, 3)):  # splice in something rarer
            text.insert(rng.randrange(len(text) + 1), rng.choice(SYMBOLS[width]))
        mine, peer = ours.creativity(text), theirs.creativity(text)
        ends = exact_ends(theirs, text)
        assert mine == {"rs": ends}
        deviations += mine != peer
        if mine != peer:
            assert all(p <= e for p, e in zip(peer["rs"], ends))
        settings = (([], 1, 10, False), ([SYMBOLS[width][2]], 2, 3, False), ([], 0, 1000, True),
                    ([1], 3, 50, True))
        for delim_ids, min_len, max_cnt, enforce_bow in settings:
            args = (text, delim_ids, min_len, max_cnt, enforce_bow)
            if mine == peer:
                same(ours, theirs, width, "attribute", *args)
            spans = ours.attribute(*args)["spans"]
            expected = attribute_oracle(theirs, text, ends, set(delim_ids), min_len, max_cnt, bow_ids,
                                        enforce_bow, logprobs)
            assert [{k: v for k, v in span.items() if k != "docs"} for span in spans] == expected
            for span in spans:
                assert len(span["docs"]) == span["count"]
                for doc in span["docs"][:3]:
                    if doc["ptr"] % 2 == 0:  # infini-gram shows no odd pointer
                        shown = theirs.get_doc_by_ptr_2(doc["s"], doc["ptr"], span["length"], 0)
                        assert shown["token_ids"] == text[span["l"]:span["r"]]
    assert any(ours.attribute(flat[:20], [], 1, 1000, False)["spans"])
    assert deviations < 5


def test_engine_creativity_and_attribute_answer_as_infinigram(pair):
    """Engine.creativity / Engine.attribute (the core's, which the shim calls) on each
    directory: infini-gram's exact ends and spans, with every occurrence's pointer."""
    ours, theirs, docs, rng, width = pair
    flat = [t for d in docs for t in d]
    bow_ids = set(SYMBOLS[width][::2])
    for part in ours._parts:
        engine = part.engine
        for _ in range(10):
            i = rng.randrange(len(flat))
            text = [t for t in flat[i:i + rng.randint(1, 14)] if t < engine.vocab_size]
            exact = [l + max(0, next((n for n in range(len(text) - l, 0, -1) if engine.count(text[l:l + n])), 0))
                     for l in range(len(text))]
            assert engine.creativity(text) == {"rs": exact}
            for delim_ids, min_len, max_cnt, bow in (([], 1, 10, None), ([SYMBOLS[width][2]], 2, 3, None),
                                                     ([], 0, 1000, bow_ids)):
                delim_ids = [t for t in delim_ids if t < engine.vocab_size]
                bow_list = None if bow is None else [t for t in sorted(bow) if t < engine.vocab_size]
                spans = engine.attribute(text, delim_ids, min_len, max_cnt, bow_list)["spans"]
                expected = attribute_oracle(theirs, text, exact, set(delim_ids), min_len, max_cnt, bow or set(),
                                            bow is not None, {}) if len(ours._parts) == 1 else None
                if expected is not None:
                    assert [(s["l"], s["r"], s["count"]) for s in spans] == [(e["l"], e["r"], e["count"]) for e in expected]
                for span in spans:
                    # (the pointers themselves are checked through the shim in the test above)
                    assert span["length"] == span["r"] - span["l"] and len(span["docs"]) == span["count"]
                    assert len({(d["s"], d["ptr"]) for d in span["docs"]}) == span["count"]
    # Errors are the engine's: ids outside the vocabulary, bad bounds.
    engine = ours._parts[0].engine
    with pytest.raises(InvalidQueryError):
        engine.attribute([engine.vocab_size], [], 1, 10)
    with pytest.raises(InvalidQueryError, match="max_cnt"):
        engine.attribute([1], [], 1, 0)
    with pytest.raises(InvalidQueryError, match="min_len"):
        engine.attribute([1], [], -1, 5)


def test_documents(pair):
    ours, theirs, docs, rng, width = pair
    total = same(ours, theirs, width, "get_total_doc_cnt")
    assert total == len(docs)
    shards = len(theirs.find([])["segment_by_shard"])
    for ix in [0, 3, total - 1] + rng.sample(range(total), 5):
        for mdl in (1, 4, 1000):
            same(ours, theirs, width, "get_doc_by_ix", ix, mdl)
        for ctx in (0, 1, 5):
            same(ours, theirs, width, "get_doc_by_ix_2", ix, ctx)
    same(ours, theirs, width, "get_docs_by_ixs", [0, total - 1, 5], 7)
    same(ours, theirs, width, "get_docs_by_ixs_2", [(0, 3), (total - 1, 0)])
    for s in range(shards):
        same(ours, theirs, width, "compute_unigram_counts", s)
        tok_cnt = theirs.find([])["segment_by_shard"][s][1]
        for rank in rng.sample(range(tok_cnt), 6):
            for mdl in (1, 5, 1000):
                same(ours, theirs, width, "get_doc_by_rank", s, rank, mdl)
            same(ours, theirs, width, "get_doc_by_rank_2", s, rank, rng.randint(0, 3), rng.randint(1, 4))
            # infini-gram's get_docs_by_ranks calls a method its engine lacks (AttributeError);
            # ours answers: one get_doc_by_rank each.
            with pytest.raises(AttributeError):
                theirs.get_docs_by_ranks([(s, rank)], 5)
            mine = ours.get_docs_by_ranks([(s, rank)], 5)[0]
            assert_same_doc(mine, theirs.get_doc_by_rank(s, rank, 5), width)
        for ptr in rng.sample(range(0, tok_cnt * width, width), 6):
            if ptr % 2:
                continue  # refused by both: see test_error_responses
            for mdl in (1, 6):
                same(ours, theirs, width, "get_doc_by_ptr", s, ptr, mdl)
            same(ours, theirs, width, "get_doc_by_ptr_2", s, ptr, rng.randint(0, 3), rng.randint(1, 4))
            same(ours, theirs, width, "get_docs_by_ptrs", [(s, ptr)], 3)
            same(ours, theirs, width, "get_docs_by_ptrs_2", [(s, ptr, 1, 2)])
            same(ours, theirs, width, "get_docs_by_ranks_2", [(s, 0, 2, 2)])


def separator_pointers(ours, width):
    """(global shard, byte ptr) of every document separator, read straight from the
    tokenized.N files (the brute-force side), with the tokens that follow each separator up
    to the next one: the document it opens."""
    dtype = {1: np.uint8, 2: np.uint16, 4: np.uint32}[width]
    separator = 2 ** (8 * width) - 1
    out, s = [], 0
    for path in ours.get_new_shards_by_index_dir():
        local = 0
        while os.path.exists(os.path.join(path, f"tokenized.{local}")):
            tokens = np.fromfile(os.path.join(path, f"tokenized.{local}"), dtype=dtype).tolist()
            starts = [i for i, t in enumerate(tokens) if t == separator] + [len(tokens)]
            for i, j in zip(starts, starts[1:]):
                out.append((s, i * width, tokens[i + 1:j]))
            s, local = s + 1, local + 1
    return out


def test_pointer_on_a_separator(pair):
    """Regression (bench_compat: 1 get_docs_by_ptrs call in 200 differed). A pointer on the
    separator that opens a document: both engines show the same window, that document's first
    tokens (the separator is no token of it); the match starts before the window, so no
    token of the window precedes it: needle_offset 0. infini-gram computes ptr - start with
    start = ptr + width in u64, and answers (2^64 - width) // width (README, differences)."""
    ours, theirs, docs, rng, width = pair
    pointers = separator_pointers(ours, width)
    assert len(pointers) == len(docs)
    wrapped = separator_offset(width)
    for s, ptr, doc in rng.sample(pointers, 12) + [p for p in pointers if not p[2]][:2]:
        if ptr % 2:
            continue  # refused by infini-gram (u8 odd pointers: test_error_responses)
        for mdl in (1, 2, 5, 1000):
            mine, peer = ours.get_doc_by_ptr(s, ptr, mdl), theirs.get_doc_by_ptr(s, ptr, mdl)
            expected = doc[:(mdl + 1) // 2 - 1]  # [ptr, ptr + ceil(mdl/2)) clipped to the document
            assert mine["token_ids"] == peer["token_ids"] == expected
            assert (mine["needle_offset"], peer["needle_offset"]) == (0, wrapped)
            assert dict(mine, needle_offset=None) == dict(peer, needle_offset=None)
        # In a batch (as in the bench): only that item differs, and only so.
        batch = [(s, ptr)] + [(s, ptr + 2 * width)] * (len(doc) >= 2)
        mine, peer = ours.get_docs_by_ptrs(batch, 7), theirs.get_docs_by_ptrs(batch, 7)
        assert (mine[0]["needle_offset"], peer[0]["needle_offset"]) == (0, wrapped)
        assert [dict(mine[0], needle_offset=None)] + mine[1:] == [dict(peer[0], needle_offset=None)] + peer[1:]
        for needle_len, ctx in ((1, 0), (0, 3), (5, 50)):
            mine = ours.get_doc_by_ptr_2(s, ptr, needle_len, ctx)
            peer = theirs.get_docs_by_ptrs_2([(s, ptr, needle_len, ctx)])[0]
            assert mine["token_ids"] == peer["token_ids"] == doc[:max(needle_len + ctx - 1, 0)]
            assert (mine["needle_offset"], peer["needle_offset"]) == (0, wrapped)
        # A window of 0 tokens ends before it starts there: infini-gram raises, ours is empty.
        with pytest.raises(ValueError):
            theirs.get_doc_by_ptr_2(s, ptr, 0, 0)
        assert ours.get_doc_by_ptr_2(s, ptr, 0, 0)["token_ids"] == []


def test_search_docs(pair):
    ours, theirs, docs, rng, width = pair
    flat = [t for d in docs for t in d]
    for _ in range(20):
        i = rng.randrange(len(flat))
        q = flat[i:i + rng.randint(1, 4)]
        maxnum, mdl = rng.choice([1, 3, 50]), rng.choice([1, 5, 40])
        a, b = ours.search_docs(q, maxnum, mdl), theirs.search_docs(q, maxnum, mdl)
        assert (a["cnt"], a["approx"]) == (b["cnt"], b["approx"])
        # infini-gram draws with replacement (repeats); ours: every occurrence up to maxnum,
        # else distinct ones. Each document is the one infini-gram shows for that idx.
        assert len(a["idxs"]) == min(a["cnt"], maxnum) == len(set(a["idxs"]))
        segments = theirs.find(q)["segment_by_shard"]
        for idx, doc in zip(a["idxs"], a["documents"]):
            for s, (lo, hi) in enumerate(segments):
                if idx < hi - lo:
                    assert_same_doc(doc, theirs.get_doc_by_rank(s, lo + idx, mdl), width)
                    break
                idx -= hi - lo


def test_cnf(pair):
    ours, theirs, docs, rng, width = pair
    flat = [t for d in docs for t in d]

    def term():
        i = rng.randrange(len(flat) - 3)
        return flat[i:i + rng.randint(1, 2)]

    for _ in range(25):
        cnf = [[term() for _ in range(rng.randint(1, 2))] for _ in range(rng.randint(1, 3))]
        mcf, mdt = rng.choice([3, 20, 50000]), rng.choice([1, 5, 100])
        same(ours, theirs, width, "find_cnf", cnf, mcf, mdt)
        same(ours, theirs, width, "count_cnf", cnf, max_clause_freq=mcf, max_diff_tokens=mdt)
        a = ours.search_docs_cnf(cnf, 4, 6, mcf, mdt)
        b = theirs.search_docs_cnf(cnf, 4, 6, mcf, mdt)
        assert (a["cnt"], a["approx"]) == (b["cnt"], b["approx"])
        found = theirs.find_cnf(cnf, mcf, mdt)["ptrs_by_shard"]
        survivors = [(s, p) for s, ptrs in enumerate(found) for p in ptrs]
        assert len(a["documents"]) == min(4, len(survivors))
        shown = [theirs.get_doc_by_ptr(s, p, 6) for s, p in survivors if p % 2 == 0]
        if any(p % 2 for s, p in survivors):
            # infini-gram's get_doc_by_ptr refuses odd u8 pointers; its search_docs_cnf shows them.
            # 1500 draws with replacement miss none of at most 60 survivors (p < 1e-9).
            if len(survivors) > 60:
                continue
            shown += theirs.search_docs_cnf(cnf, 1500, 6, mcf, mdt)["documents"]
        for doc in a["documents"]:
            assert doc in shown
    same(ours, theirs, width, "count_cnf", [[[SYMBOLS[width][1]]], [[SYMBOLS[width][2]]]])  # defaults


def test_error_responses(pair):
    """Bad arguments: infini-gram's {'error': ...} answers, word for word."""
    ours, theirs, docs, rng, width = pair
    shards = len(theirs.find([])["segment_by_shard"])
    too_big = 2 ** (8 * width)
    ids = [[-1], [too_big], "abc", (1, 2), [1.0], [True], None]
    for bad in ids:
        for method in ("count", "find", "creativity", "search_docs"):
            same(ours, theirs, width, method, bad)
        same(ours, theirs, width, "prob", bad, 1)
        same(ours, theirs, width, "infgram_prob", bad, 1)
        same(ours, theirs, width, "ntd", bad)
        same(ours, theirs, width, "infgram_ntd", bad)
        same(ours, theirs, width, "attribute", bad, [], 1, 1, False)
        same(ours, theirs, width, "attribute", [1], bad, 1, 1, False)
    for bad in (-1, too_big, 1.0, True, None):
        same(ours, theirs, width, "prob", [1], bad)
        same(ours, theirs, width, "infgram_prob", [1], bad)
    for bad in (0, -3, 2.0, False, "5"):
        same(ours, theirs, width, "ntd", [1], max_support=bad)
        same(ours, theirs, width, "infgram_ntd", [1], bad)
        same(ours, theirs, width, "search_docs", [1], maxnum=bad)
        same(ours, theirs, width, "search_docs", [1], 1, bad)
        same(ours, theirs, width, "find_cnf", [[[1]]], max_clause_freq=bad)
        same(ours, theirs, width, "count_cnf", [[[1]]], 10, bad)
        same(ours, theirs, width, "search_docs_cnf", [[[1]]], bad)
        same(ours, theirs, width, "search_docs_cnf", [[[1]]], 1, 1, bad)
        same(ours, theirs, width, "get_doc_by_ix", 0, bad)
        same(ours, theirs, width, "get_doc_by_rank", 0, 0, bad)
        same(ours, theirs, width, "get_doc_by_ptr", 0, 0, bad)
        same(ours, theirs, width, "get_docs_by_ixs", [0], bad)
        same(ours, theirs, width, "get_docs_by_ptrs", [(0, 0)], bad)
        same(ours, theirs, width, "attribute", [1], [], 1, bad, False)
    for bad in ([], [[]], [[[]]], [[[-1]]], [[[too_big]]], [[1]], "x", [[["a"]]]):
        same(ours, theirs, width, "find_cnf", bad)
        same(ours, theirs, width, "count_cnf", bad)
        same(ours, theirs, width, "search_docs_cnf", bad)
    for bad in (-1, 1.5, True):
        same(ours, theirs, width, "attribute", [1], [], bad, 1, False)
        same(ours, theirs, width, "get_doc_by_ix_2", 0, bad)
        same(ours, theirs, width, "get_doc_by_rank_2", 0, 0, bad, 1)
        same(ours, theirs, width, "get_doc_by_ptr_2", 0, 0, 1, bad)
        same(ours, theirs, width, "get_docs_by_ranks_2", [(0, 0, bad, 1)])
        same(ours, theirs, width, "get_docs_by_ptrs_2", [(0, 0, 1, bad)])
        same(ours, theirs, width, "get_docs_by_ixs_2", [(0, bad)])
    same(ours, theirs, width, "attribute", [1], [], 1, 1, 1)
    tok_cnt = theirs.find([])["segment_by_shard"][0][1]
    for s in (-1, shards, 1.0, True):
        same(ours, theirs, width, "get_doc_by_rank", s, 0)
        same(ours, theirs, width, "get_doc_by_ptr", s, 0)
        same(ours, theirs, width, "get_doc_by_rank_2", s, 0, 1, 1)
        same(ours, theirs, width, "get_docs_by_ptrs", [(s, 0)])
    for rank in (-1, tok_cnt, 2.0):
        same(ours, theirs, width, "get_doc_by_rank", 0, rank)
        same(ours, theirs, width, "get_docs_by_ranks_2", [(0, rank, 1, 1)])
    for ptr in (-2, 1, tok_cnt * width, tok_cnt * width + 2):
        same(ours, theirs, width, "get_doc_by_ptr", 0, ptr)
        same(ours, theirs, width, "get_doc_by_ptr_2", 0, ptr, 1, 1)
        same(ours, theirs, width, "get_docs_by_ptrs_2", [(0, ptr, 1, 1)])
    for ix in (-1, len(docs), "0"):
        same(ours, theirs, width, "get_doc_by_ix", ix)
        same(ours, theirs, width, "get_docs_by_ixs", [0, ix])
        same(ours, theirs, width, "get_doc_by_ix_2", ix, 1)
        same(ours, theirs, width, "get_docs_by_ixs_2", [(ix, 1)])


def test_constructor_refuses_what_infinigram_refuses(tmp_path):
    from infini_gram.engine import InfiniGramEngine as Peer  # refuses these before its native code runs

    path = build_from_tokens(str(tmp_path), [[1, 2, 3], [4, 5]], 2, 100, 0)
    for kwargs, error in ((dict(token_dtype="u12"), ValueError), (dict(eos_token_id=100), AssertionError),
                          (dict(eos_token_id=-1), AssertionError), (dict(max_support=0), AssertionError),
                          (dict(sa_prefetch_depth=0, ds_prefetch_depth=2), AssertionError),
                          (dict(load_to_ram="yes"), AssertionError),
                          (dict(index_dir=[path, 3]), AssertionError)):
        args = dict(dict(index_dir=path, eos_token_id=0, vocab_size=100), **kwargs)
        with pytest.raises(error):
            Peer(**args)
        with pytest.raises(error) as raised:
            InfiniGramEngine(**args)
        assert isinstance(raised.value, (InfiniGramArgumentError, ValueError))
    # Refused here where infini-gram answers garbage: the wrong token width or eos of an anygram index.
    with pytest.raises(ValueError, match="u16 tokens"):
        InfiniGramEngine(path, 0, token_dtype="u8")
    with pytest.raises(ValueError, match="eos_token_id 0"):
        InfiniGramEngine(path, 5, vocab_size=100)


def test_several_directories_answer_as_one_index(tmp_path):
    """Two directories opened as one answer what one index of all their documents answers
    (counts add up, documents numbered across them, ntd sampled with one stride)."""
    rng = random.Random(5)
    a, b = random_docs(rng, 2, 80), random_docs(rng, 2, 50)
    dirs = [build_from_tokens(str(tmp_path / "a"), a, 2, 1000, EOS, shards=2),
            build_from_tokens(str(tmp_path / "b"), b, 2, 1000, EOS, shards=1)]
    whole = build_from_tokens(str(tmp_path / "whole"), a + b, 2, 1000, EOS, shards=1)
    two, one = InfiniGramEngine(dirs, EOS, 1000), InfiniGramEngine(whole, EOS, 1000)
    assert two.get_total_doc_cnt() == one.get_total_doc_cnt() == 130
    for ix in (0, 79, 80, 129):
        assert two.get_doc_by_ix(ix)["token_ids"] == one.get_doc_by_ix(ix)["token_ids"] == (a + b)[ix]
        assert two.get_doc_by_ix(ix)["doc_ix"] == ix
    for q in queries(a + b, rng, 1000, 2, 60)[1:]:
        assert two.count(q) == one.count(q)
        assert two.infgram_prob(q[:-1], q[-1])["suffix_len"] == one.infgram_prob(q[:-1], q[-1])["suffix_len"]
        exact = two.ntd(q, max_support=10**9)
        assert exact == one.ntd(q, max_support=10**9)
        assert two.creativity(q) == one.creativity(q)


def test_native_document_calls_check_their_arguments(tmp_path):
    """The shim checks arguments first (infini-gram's error dicts); the native calls it uses
    check them again: an out-of-range value is an error naming it, never a wrong window."""
    from anygram import _anygram

    path = build_from_tokens(str(tmp_path), [[1, 2, 3], [], [4, 5]], 2, 100, 0)
    engine = InfiniGramEngine(path, 0, vocab_size=100)._parts[0].engine
    def shown(docs):
        return [{k: v for k, v in d.items() if k != "metadata"} for d in docs]

    # ptr 4: the second token of document 0; 1 token before it, 2 from it on; doc_ix from 10
    assert shown(_anygram.infinigram_windows(engine, [(0, 4, 1, 2)], False, 10)) == [
        {"doc_ix": 10, "doc_len": 3, "disp_len": 3, "needle_offset": 1, "token_ids": [1, 2, 3], "blocked": False}]
    heads = _anygram.infinigram_heads(engine, [(2, 0), (2, 1)], 0)
    assert shown(heads) == [
        {"doc_ix": 2, "doc_len": 2, "disp_len": 0, "needle_offset": 0, "token_ids": [], "blocked": False},
        {"doc_ix": 2, "doc_len": 2, "disp_len": 1, "needle_offset": 0, "token_ids": [4], "blocked": False}]
    assert heads[0]["metadata"] == engine.get_doc_by_ix(2)["metadata"]
    for request, by_rank in (((1, 0, 1, 1), False), ((0, 3, 1, 1), False), ((0, 2 * 9, 1, 1), False),
                             ((0, 9, 1, 1), True)):
        with pytest.raises(InvalidQueryError):
            _anygram.infinigram_windows(engine, [request], by_rank, 0)
    with pytest.raises(InvalidQueryError):
        _anygram.infinigram_heads(engine, [(3, 1)], 0)
    with pytest.raises((OverflowError, TypeError)):
        _anygram.infinigram_windows(engine, [(0, -2, 1, 1)], False, 0)
    with pytest.raises(OverflowError):
        _anygram.infinigram_heads(engine, [(1, 1)], 2**64 - 1)  # doc_ix past 2^64
