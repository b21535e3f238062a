"""Differential tests against the `infini-gram` package (the peer we must agree with),
on the same index files: anygram's indexes opened by `InfiniGramEngine`, and
infini-gram's own indexes opened by anygram."""

from __future__ import annotations

import io
import json
import os
import random

import numpy as np
import pytest

import anygram
from conftest import SEPARATOR, Oracle, build_from_tokens
from peer import PeerEngine

pytest.importorskip("infini_gram.engine")
DTYPE_NAME = {1: "u8", 2: "u16", 4: "u32"}


def peer(path: str, eos: int, vocab_size: int, width: int):
    """infini-gram's engine on ``path``, in a child process (see peer.py)."""
    return PeerEngine(index_dir=path, eos_token_id=eos, vocab_size=vocab_size, token_dtype=DTYPE_NAME[width])


def check_known_deviation(ours, theirs, eos, truth=None):
    """infini-gram's ntd decides that a run of suffixes all continue with one token by
    comparing the first and last continuation *after* mapping separators and the end
    of the shard to eos; when eos also occurs as a real token, or the run starts at the
    end of the shard, it lumps different tokens into eos. Ours compares stored values:
    it must be exact where the peer lumps (see Shard::count_next_tokens)."""
    assert ours["prompt_cnt"] == theirs["prompt_cnt"]
    mine = {t: r["cont_cnt"] for t, r in ours["result_by_token_id"].items()}
    peer_counts = {t: r["cont_cnt"] for t, r in theirs["result_by_token_id"].items()}
    assert peer_counts.get(eos, 0) > mine.get(eos, 0), (ours, theirs)
    if truth is not None and not ours["approx"]:
        assert mine == truth


def assert_same_answers(engine, ig, queries, oracle=None):
    for q in queries:
        q = [int(t) for t in q]
        assert engine.count(q) == ig.count(q)["count"], q
        assert engine.find(q) == {**ig.find(q), "segment_by_shard": [tuple(s) for s in ig.find(q)["segment_by_shard"]]}
        # infini-gram's ntd of the empty context can segfault (bench/peers/FACTS.md, e);
        # ours is checked against the oracle in test_oracle.py instead.
        for max_support in (1, 3, 1000) if q else ():
            ours = engine.ntd(q, n=len(q) + 1, max_support=max_support)
            theirs = ig.ntd(q, max_support=max_support)
            ours_cmp = {k: v for k, v in ours.items() if k != "suffix_len"}
            if ours_cmp != theirs:
                check_known_deviation(ours, theirs, engine.eos_token_id, oracle.ntd(q) if oracle else None)
        if q:
            context, token = q[:-1], q[-1]
            p = engine.prob(context, token, n=len(q))
            assert {k: v for k, v in p.items() if k != "suffix_len"} == ig.prob(context, token)
            assert engine.infgram_prob(context, token) == ig.infgram_prob(context, token)
            ours = engine.infgram_ntd(context, max_support=5)
            if ours["suffix_len"] == 0:
                continue  # the peer would back off to the empty context (see above)
            theirs = ig.infgram_ntd(context, max_support=5)
            if ours != theirs:
                assert ours["suffix_len"] == theirs["suffix_len"]
                check_known_deviation(ours, theirs, engine.eos_token_id)


@pytest.mark.parametrize("width", [1, 2, 4])
@pytest.mark.parametrize("shards", [1, 3])
def test_anygram_index_answers_like_infinigram(tmp_path, width, shards):
    rng = random.Random(width * 10 + shards)
    vocab_size = SEPARATOR[width]
    symbols = [0, 1, 2, 3, 5, 8, vocab_size - 1]
    docs = [[rng.choice(symbols) for _ in range(rng.randint(0, 60))] for _ in range(300)]
    docs[7] = []
    docs[8] = [vocab_size - 1]
    eos = 2
    path = build_from_tokens(str(tmp_path), docs, width, vocab_size, eos, shards=shards)
    engine = anygram.Engine.open(path)
    ig = peer(path, eos, vocab_size, width)
    queries = [[]] + [[rng.choice(symbols) for _ in range(rng.randint(1, 6))] for _ in range(150)]
    # n-grams that occur, including document ends
    for _ in range(100):
        doc = rng.choice([d for d in docs if d])
        i = rng.randrange(len(doc))
        queries.append(doc[i:i + rng.randint(1, 8)])
    queries += [d[-3:] for d in docs[-5:] if d]
    assert_same_answers(engine, ig, queries, Oracle(docs, eos))


def _read_docs(path: str, limit: int):
    import zstandard

    docs = []
    with open(path, "rb") as f:
        reader = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8")
        for line in reader:
            docs.append(json.loads(line))
            if len(docs) >= limit:
                break
    return docs


def test_gpt2_docs_corpus_agrees(tmp_path, shared_data):
    """A slice of the real docs corpus with the GPT-2 tokenizer, queried with n-grams
    taken from documents that are not in the index."""
    docs = _read_docs(os.path.join(shared_data, "docs.jsonl.zst"), 1200)
    indexed, held_out = docs[:1000], docs[1000:]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in indexed))
    tokenizer = os.path.join(shared_data, "gpt2-tokenizer.json")
    path = str(tmp_path / "gpt2-index")
    anygram.build_index(str(corpus), path, tokenizer=tokenizer, progress=False)
    engine = anygram.Engine.open(path)
    assert engine.token_width == 2 and engine.eos_token_id == 50256
    ig = peer(path, 50256, 50257, 2)
    rng = random.Random(0)
    queries = []
    for d in held_out[:100]:
        ids = engine.tokenize(d["text"])
        for _ in range(3):
            i = rng.randrange(max(1, len(ids) - 1))
            queries.append(ids[i:i + rng.randint(1, 12)])
    assert_same_answers(engine, ig, queries)
    # Strings are tokenized with the index's tokenizer: the same as ids.
    text = held_out[0]["text"][:40]
    assert engine.count(text) == engine.count(engine.tokenize(text))
