"""`Engine.score` (the ∞-gram LM over a whole text) equals `infgram_prob` at every
position, and `ntd_dense` equals `infgram_ntd`, on random corpora of every token
width (several shards, eos also a real token, the largest id); the document-start
form against the oracle; errors."""

from __future__ import annotations

import tempfile

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import anygram
from byte_order_ids import BYTE_ORDER_IDS
from conftest import SEPARATOR, Oracle, build_from_tokens


@st.composite
def cases(draw):
    width = draw(st.sampled_from([1, 2, 4]))
    vocab_size = SEPARATOR[width]
    # Ids whose little-endian byte order differs from their numeric order.
    symbols = draw(st.sets(st.sampled_from(BYTE_ORDER_IDS[width]), min_size=3, max_size=5).map(lambda s: sorted(s | {vocab_size - 1})))
    token = st.sampled_from(symbols)
    docs = draw(st.lists(st.lists(token, max_size=12), min_size=1, max_size=6))
    shards = draw(st.integers(1, min(3, len(docs))))
    texts = draw(st.lists(st.lists(token, max_size=30), min_size=1, max_size=3))
    eos = draw(st.sampled_from([symbols[1], vocab_size - 1]))
    return width, vocab_size, eos, docs, shards, texts


def oracle_ntd_of_longest_suffix(oracle: Oracle, context):
    n = oracle.suffix_len(context)
    return n, oracle.ntd(context[len(context) - n:])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_score_equals_infgram_prob_at_every_position(case):
    width, vocab_size, eos, docs, shards, texts = case
    oracle = Oracle(docs, eos)
    with tempfile.TemporaryDirectory() as tmp:
        engine = anygram.Engine.open(build_from_tokens(tmp, docs, width, vocab_size, eos, shards=shards))
        batch = engine.score_batch(texts, top=True, max_support=10**9)
        for text, batched in zip(texts, batch):
            scores = engine.score(np.asarray(text, dtype=np.int64), top=True, max_support=10**9)
            assert set(scores) == {"prob", "suffix_len", "prompt_cnt", "cont_cnt", "sparse",
                                   "top_token", "top_prob", "top_approx"}
            for key in scores:
                assert len(scores[key]) == len(text)
                np.testing.assert_array_equal(scores[key], batched[key])
            for i, token in enumerate(text):
                expected = engine.infgram_prob(text[:i], token)
                got = {"prob": float(scores["prob"][i]), "prompt_cnt": int(scores["prompt_cnt"][i]),
                       "cont_cnt": int(scores["cont_cnt"][i]), "suffix_len": int(scores["suffix_len"][i])}
                assert got == expected, (text, i)
                n, ntd = oracle_ntd_of_longest_suffix(oracle, text[:i])
                assert n == got["suffix_len"]
                assert bool(scores["sparse"][i]) == (len(ntd) == 1), (text, i, ntd)
                best = max(ntd.values())
                assert int(scores["top_token"][i]) == min(t for t, c in ntd.items() if c == best)
                assert scores["top_prob"][i] == best / sum(ntd.values())

        # The dense next-token distributions of every prefix of the first text.
        text = texts[0]
        contexts = [text[:i] for i in range(len(text) + 1)]
        if width == 4:
            # [B, 2^32 - 1] floats: refused with a clear error, never an abort.
            with pytest.raises(anygram.InvalidQueryError, match="GiB"):
                engine.ntd_dense(contexts * 2)
            return
        dense = engine.ntd_dense(contexts, max_support=10**9)
        assert dense["probs"].shape == (len(contexts), vocab_size) and dense["probs"].dtype == np.float32
        for i, context in enumerate(contexts):
            n, ntd = oracle_ntd_of_longest_suffix(oracle, context)
            total = sum(ntd.values())
            row = dense["probs"][i]
            assert dense["suffix_len"][i] == n and dense["prompt_cnt"][i] == total
            assert dense["sparse"][i] == (len(ntd) == 1)
            assert np.count_nonzero(row) == len(ntd)
            for t, c in ntd.items():
                assert row[t] == np.float32(c / total)
            assert abs(float(row.sum()) - 1.0) < 1e-5


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_score_of_a_whole_document_matches_document_starts(case):
    """doc_start=True: the context reaches back to the separator before the text, so
    the first tokens are predicted from documents that start the same way."""
    width, vocab_size, eos, docs, shards, texts = case
    starts = [list(d) for d in docs]

    def count_prefix(prefix):
        # Documents starting with prefix (a "document start" followed by prefix).
        return sum(1 for d in starts if d[:len(prefix)] == prefix)

    oracle = Oracle(docs, eos)
    with tempfile.TemporaryDirectory() as tmp:
        engine = anygram.Engine.open(build_from_tokens(tmp, docs, width, vocab_size, eos, shards=shards))
        for text in texts:
            scores = engine.score(text, doc_start=True)
            for i, token in enumerate(text):
                if count_prefix(text[:i]) > 0:
                    # The whole prefix is a document start: that is the longest context.
                    assert scores["suffix_len"][i] == i + 1
                    assert scores["prompt_cnt"][i] == count_prefix(text[:i])
                    assert scores["cont_cnt"][i] == count_prefix(text[:i + 1])
                else:
                    # Otherwise exactly the plain ∞-gram.
                    p = engine.infgram_prob(text[:i], token)
                    assert (scores["suffix_len"][i], scores["prompt_cnt"][i], scores["cont_cnt"][i]) == \
                        (p["suffix_len"], p["prompt_cnt"], p["cont_cnt"])
            assert len(scores["prob"]) == len(text)
        assert oracle.total == engine.num_tokens


def test_score_takes_strings_and_reports_bad_input(tmp_path):
    docs = [[1, 2, 3, 4], [2, 3, 5]]
    engine = anygram.Engine.open(build_from_tokens(str(tmp_path), docs, 2, 100, 0))
    empty = engine.score([])
    assert all(len(v) == 0 for v in empty.values())
    with pytest.raises(anygram.InvalidQueryError, match="position 2"):
        engine.score([1, 2, 100])
    with pytest.raises(anygram.InvalidQueryError):
        engine.score([1, -1])
    with pytest.raises(anygram.InvalidQueryError, match="no tokenizer"):
        engine.score("some text")
    with pytest.raises(anygram.InvalidQueryError, match="query 1"):
        engine.score_batch([[1], [100]])
    with pytest.raises(anygram.InvalidQueryError, match="max_support"):
        engine.score([1], top=True, max_support=0)
    with pytest.raises(anygram.InvalidQueryError, match="does not fit vocab_size"):
        engine.ntd_dense([[3]], vocab_size=5)  # 4 and 5 follow [3]
    assert engine.ntd_dense([[2]], vocab_size=200)["probs"].shape == (1, 200)


def test_score_with_the_index_tokenizer(shared_data, tmp_path):
    import json
    import os

    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("\n".join(json.dumps({"text": t}) for t in
                                ["the cat sat on the mat", "the cat ate the rat", "a dog sat"]))
    out = str(tmp_path / "index")
    anygram.build_index(str(corpus), out, tokenizer=os.path.join(shared_data, "gpt2-tokenizer.json"),
                        progress=False)
    engine = anygram.Engine.open(out)
    text = "the cat sat on the rat"
    ids = engine.tokenize(text)
    by_text, by_ids = engine.score(text), engine.score(ids)
    for key in by_text:
        np.testing.assert_array_equal(by_text[key], by_ids[key])
    assert by_text["suffix_len"].tolist()[:3] == [0, 1, 2]


def test_score_agrees_with_infini_gram(tmp_path):
    """The same index files opened by infini-gram: its infgram_prob at every position."""
    infini_gram_engine = pytest.importorskip("infini_gram.engine")
    rng = np.random.default_rng(7)
    vocab, eos = 50, 49
    docs = [list(rng.integers(0, 8, rng.integers(0, 60))) for _ in range(40)]
    path = build_from_tokens(str(tmp_path), docs, 2, vocab, eos, shards=2)
    engine = anygram.Engine.open(path)
    peer = infini_gram_engine.InfiniGramEngine(index_dir=path, eos_token_id=eos, vocab_size=vocab,
                                               token_dtype="u16")
    texts = [list(rng.integers(0, 9, 80)) for _ in range(3)] + [docs[0] + docs[1]]
    for text, scores in zip(texts, engine.score_batch(texts)):
        for i, token in enumerate(text):
            theirs = peer.infgram_prob(prompt_ids=[int(t) for t in text[:i]], cont_id=int(token))
            ours = {"prob": float(scores["prob"][i]), "prompt_cnt": int(scores["prompt_cnt"][i]),
                    "cont_cnt": int(scores["cont_cnt"][i]), "suffix_len": int(scores["suffix_len"][i])}
            assert ours == {k: theirs[k] for k in ours}, (i, theirs)
