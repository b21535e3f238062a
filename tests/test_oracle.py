"""Every query against a brute-force oracle on random small corpora of every token
width: ids whose little-endian byte order differs from their numeric order, token 0
and the largest token, empty and one-token documents, one-document
corpora, several shards."""

from __future__ import annotations

import tempfile

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

import anygram
from byte_order_ids import BYTE_ORDER_IDS
from conftest import SEPARATOR, Oracle, build_from_tokens


@st.composite
def corpora(draw):
    width = draw(st.sampled_from([1, 2, 4]))
    vocab_size = SEPARATOR[width]  # the largest vocabulary: its last id is separator - 1
    # Ids whose byte order differs from their numeric order, 0 and the largest id always in.
    pool = BYTE_ORDER_IDS[width]
    symbols = sorted(draw(st.sets(st.sampled_from(pool), min_size=1, max_size=4)) | {0, vocab_size - 1})
    token = st.sampled_from(symbols)
    docs = draw(st.lists(st.lists(token, min_size=0, max_size=10), min_size=1, max_size=7))
    shards = draw(st.integers(1, min(3, len(docs))))
    queries = draw(st.lists(st.lists(token, min_size=0, max_size=4), min_size=1, max_size=6))
    eos = draw(st.sampled_from([0, symbols[len(symbols) // 2], vocab_size - 1]))
    return width, vocab_size, eos, docs, shards, queries


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corpora())
def test_every_query_matches_the_oracle(case):
    width, vocab_size, eos, docs, shards, queries = case
    oracle = Oracle(docs, eos)
    with tempfile.TemporaryDirectory() as tmp:
        path = build_from_tokens(tmp, docs, width, vocab_size, eos, shards=shards)
        engine = anygram.Engine.open(path)
        assert engine.num_shards == shards
        assert engine.num_documents == len(docs)
        assert engine.num_tokens == oracle.total
        counts = engine.count_batch(queries)
        for q, batch_count in zip(queries, counts):
            expected = oracle.count(q)
            assert engine.count(q) == expected == batch_count, q
            found = engine.find(q)
            assert found["cnt"] == expected
            assert sum(hi - lo for lo, hi in found["segment_by_shard"]) == expected

            ntd = engine.ntd(q, n=len(q) + 1, max_support=10**9)
            truth = oracle.ntd(q)
            assert ntd["prompt_cnt"] == expected
            assert {t: r["cont_cnt"] for t, r in ntd["result_by_token_id"].items()} == truth
            assert not ntd["approx"]

            sampled = engine.ntd(q, n=len(q) + 1, max_support=2)
            assert sampled["prompt_cnt"] == expected
            assert sampled["approx"] == (expected > 2)

            if q:
                context, token = q[:-1], q[-1]
                prompt, cont, prob = oracle.prob(context, token)
                p = engine.prob(context, token, n=len(q))
                assert (p["prompt_cnt"], p["cont_cnt"], p["prob"]) == (prompt, cont, prob)

                k = oracle.suffix_len(context)
                suffix = context[len(context) - k:]
                inf = engine.infgram_prob(context, token)
                assert inf["suffix_len"] == k
                assert (inf["prompt_cnt"], inf["cont_cnt"], inf["prob"]) == oracle.prob(suffix, token)
                assert engine.prob(context, token) == inf  # n=None is the ∞-gram

                inf_ntd = engine.infgram_ntd(context, max_support=10**9)
                assert inf_ntd["suffix_len"] == k
                assert {t: r["cont_cnt"] for t, r in inf_ntd["result_by_token_id"].items()} == oracle.ntd(suffix)

                # n-gram with n smaller than the context: only the last n-1 tokens count.
                p2 = engine.prob(context, token, n=2)
                assert (p2["prompt_cnt"], p2["cont_cnt"], p2["prob"]) == oracle.prob(context[-1:], token)

        contexts = [q[:-1] for q in queries if q]
        tokens = [q[-1] for q in queries if q]
        if contexts:
            batch = engine.infgram_prob_batch(contexts, tokens)
            for i, (c, t) in enumerate(zip(contexts, tokens)):
                single = engine.infgram_prob(c, t)
                assert batch["prob"][i] == single["prob"]
                assert batch["suffix_len"][i] == single["suffix_len"]
            for single, c in zip(engine.infgram_ntd_batch(contexts, max_support=3), contexts):
                assert single == engine.infgram_ntd(c, max_support=3)
        assert engine.verify()["ok"]
