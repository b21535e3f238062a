"""Indexes built by infini-gram's own indexer open in anygram and answer the same as
infini-gram's engine; anygram's builder writes byte-identical files from the same corpus."""

from __future__ import annotations

import json
import os
import random
import sys

import pytest

import anygram
from anygram import _anygram

pytest.importorskip("infini_gram.engine")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench", "peers"))
from infinigram_build import build_with_infinigram  # noqa: E402

from test_infinigram import assert_same_answers, peer  # noqa: E402

WORDS = "the of and a to in is was for on that with as by at from it an be this are or".split()


def synthetic_corpus(path, docs=300, seed=0):
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(docs):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 40)))
            f.write(json.dumps({"text": text, "id": i, "src": "synthétique"}) + "\n")


def same_bytes(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


def check_against_peer_build(tmp_path, corpus, tokenizer, width, vocab_size, eos, queries_from):
    theirs = str(tmp_path / "built-by-infinigram")
    result = build_with_infinigram(str(corpus), theirs, tokenizer_json=tokenizer,
                                   token_dtype={1: "u8", 2: "u16"}[width], cpus=1)
    assert result["valid"]
    # Our suffix sort of their token stream is their table, byte for byte.
    _anygram.build_suffix_array(os.path.join(theirs, "tokenized.0"), str(tmp_path / "table.ours"), width)
    assert same_bytes(str(tmp_path / "table.ours"), os.path.join(theirs, "table.0"))
    # Our builder writes the same shard files from the same corpus.
    ours = anygram.build_index(str(corpus), str(tmp_path / "built-by-anygram"), tokenizer=tokenizer,
                               progress=False).output
    for name in ("tokenized.0", "table.0", "offset.0", "metadata.0", "metaoff.0"):
        assert same_bytes(os.path.join(ours, name), os.path.join(theirs, name)), name
    # Their index opens in anygram (no manifest: the width is inferred) and answers the same.
    engine = anygram.Engine.open(theirs, tokenizer=tokenizer, vocab_size=vocab_size, eos_token_id=eos)
    assert engine.token_width == width and engine.manifest is None
    ig = peer(theirs, eos, vocab_size, width)
    rng = random.Random(1)
    queries = [[]]
    for _ in range(300):
        ids = queries_from(engine)
        i = rng.randrange(max(1, len(ids)))
        queries.append(ids[i:i + rng.randint(1, 10)])
    assert_same_answers(engine, ig, queries)
    assert engine.verify()["ok"]


def test_byte_level_index_built_by_infinigram(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    synthetic_corpus(corpus)
    rng = random.Random(2)
    check_against_peer_build(
        tmp_path, corpus, None, 1, 255, 0,
        lambda engine: list(" ".join(rng.choice(WORDS) for _ in range(6)).encode()),
    )


def test_gpt2_index_built_by_infinigram(tmp_path, shared_data):
    from test_infinigram import _read_docs

    docs = _read_docs(os.path.join(shared_data, "docs.jsonl.zst"), 150)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    tokenizer = os.path.join(shared_data, "gpt2-tokenizer.json")
    rng = random.Random(3)
    check_against_peer_build(
        tmp_path, corpus, tokenizer, 2, 50257, 50256,
        lambda engine: engine.tokenize(rng.choice(docs)["text"][:300]),
    )
