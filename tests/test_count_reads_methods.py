"""``Engine.count_reads(query, method, token)``: the read counter on every query
type the cold-cache benchmark measures (bench/bench_cold.py), each answer's count
checked against a brute-force oracle, and ∞-gram prob within twice a count's
rounds on an accelerated index; bad methods and missing tokens are clear errors."""

from __future__ import annotations

import random

import pytest

import anygram
from anygram.errors import InvalidQueryError
from conftest import Oracle, build_from_tokens


def test_count_reads_runs_each_method_and_counts_its_rounds(tmp_path):
    rng = random.Random(3)
    # Many distinct ids: patterns longer than the accelerator's 32-byte keys seldom tie on
    # them (ties add k-ary rounds to any search, a count's too; rust/anygram/tests/accel.rs).
    docs = [[rng.randrange(1000) for _ in range(rng.randint(1, 40))] for _ in range(400)]
    index = build_from_tokens(str(tmp_path), docs, 2, 1001, 1000)
    engine = anygram.Engine.open(index)
    oracle = Oracle(docs, 1000)
    for _ in range(40):
        doc = rng.choice(docs)
        i = rng.randrange(len(doc))
        context, token = [rng.choice([0, 1, 2]) for _ in range(5)] + doc[:i], doc[i]
        count = engine.count_reads(context)
        assert count["count"] == oracle.count(context)
        got = engine.infgram_prob(context, token)
        infgram = engine.count_reads(context, "infgram_prob", token)
        assert infgram["count"] == got["prompt_cnt"]
        assert infgram["pages"] and max(infgram["rounds"].values()) >= 1
        suffix = context[len(context) - got["suffix_len"]:]
        assert engine.count_reads(context, "prob", token)["count"] == oracle.count(context)
        assert engine.count_reads(suffix, "ntd")["count"] == oracle.count(suffix)
        assert engine.count_reads(context, "infgram_ntd")["count"] == oracle.count(suffix)
        assert engine.count_reads(suffix, "search_docs")["count"] == oracle.count(suffix)
        # Shared rounds: a batch costs its slowest search, so at most twice the slowest
        # count of a suffix of the context (3 rounds; 5 for one past the 32-byte keys,
        # whose bound can span two buckets), where bisection paid one count per probe.
        # (A count the resident root answers, e.g. below every key, reads nothing.)
        slowest = max(max(engine.count_reads(context[-n:])["rounds"].values(), default=0)
                      for n in range(1, len(context) + 1))
        assert max(infgram["rounds"].values()) <= 2 * slowest, (context, infgram, slowest)
    with pytest.raises(InvalidQueryError, match="method"):
        engine.count_reads([1], "bogus")
    with pytest.raises(InvalidQueryError, match="needs a token"):
        engine.count_reads([1], "infgram_prob")
    with pytest.raises(InvalidQueryError, match="token"):
        engine.count_reads([1], "prob", 1001)
