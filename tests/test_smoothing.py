"""Kneser-Ney distributions and the samplers in the engine (anygram::smoothing).

* KN probabilities against a brute-force implementation of tokengrams 0.3.3's definition on
  random small multi-document corpora (both ways of counting document ends), with token ids
  whose byte order differs from their numeric order;
* against tokengrams itself on the same tokens (one document, ends skipped: its view);
* the samplers: chi-square tests of the first drawn token against the distribution it is
  drawn from (fixed seeds, so deterministic; generous thresholds), repeatability by seed.
"""

from __future__ import annotations

from collections import Counter
from typing import Dict, List, Sequence

import numpy as np
import pytest

import anygram
from anygram.errors import InvalidQueryError
from byte_order_ids import BYTE_ORDER_IDS
from conftest import build_from_tokens

tokengrams = pytest.importorskip("tokengrams")

EPSILON = 1e-9


class KneserNeyOracle:
    """tokengrams 0.3.3's interpolated Kneser-Ney, written from its definition over documents
    by scanning them (n-grams never span documents; a document end is ``eos`` or nothing)."""

    def __init__(self, docs: Sequence[Sequence[int]], vocab: int, eos: int, ends: str):
        self.docs, self.vocab, self.eos, self.ends = [list(d) for d in docs], vocab, eos, ends
        self.deltas: Dict[int, float] = {}
        self.estimate(1)

    def next_counts(self, context: Sequence[int]) -> Counter:
        c, out = list(context), Counter()
        for doc in self.docs:
            for i in range(len(doc) - len(c) + 1):
                if doc[i:i + len(c)] == c:
                    j = i + len(c)
                    if j < len(doc):
                        out[doc[j]] += 1
                    elif self.ends == "eos" and c:
                        out[self.eos] += 1
            if not c and self.ends == "eos":
                out[self.eos] += 1  # one end per document
        return out

    def estimate(self, n: int) -> None:
        for order in range(1, n + 1):
            if order in self.deltas:
                continue
            grams = Counter(tuple(d[i:i + order]) for d in self.docs for i in range(len(d) - order + 1))
            once = sum(1 for v in grams.values() if v == 1)
            twice = sum(1 for v in grams.values() if v == 2)
            self.deltas[order] = 1.0 if once == 0 or twice == 0 else once / (once + 2 * twice)

    def probs(self, context: Sequence[int]) -> np.ndarray:
        unigram = self.next_counts([])
        total = sum(unigram.values())
        row = np.array([(unigram[t] + EPSILON) / (total + EPSILON * self.vocab) for t in range(self.vocab)])
        for length in range(0, len(context) + 1):
            counts = self.next_counts(context[len(context) - length:])
            total = sum(counts.values())
            if total == 0:
                continue
            seen = sum(1 for v in counts.values() if v > 0)
            once = sum(1 for v in counts.values() if v == 1)
            delta = self.deltas.get(length + 1, 0.5)
            lam = delta * seen / total if delta < 1 else once + delta * (seen - once) / total
            row = np.array([max(counts[t] - delta, 0) / total + lam * row[t] for t in range(self.vocab)])
        return row


def random_docs(rng, ids: Sequence[int], count: int) -> List[List[int]]:
    # Few distinct ids and a skewed draw, so that n-grams repeat (counts of 1 and 2 both occur).
    weights = np.linspace(3, 1, len(ids))
    weights /= weights.sum()
    return [[int(ids[k]) for k in rng.choice(len(ids), size=int(rng.integers(1, 40)), p=weights)]
            for _ in range(count)]


@pytest.fixture(scope="module", params=[(2, 0), (2, 1), (1, 2)], ids=["u16-a", "u16-b", "u8"])
def corpus(request, tmp_path_factory):
    width, seed = request.param
    rng = np.random.default_rng(seed)
    ids = BYTE_ORDER_IDS[width][:5]
    vocab = max(ids) + 1
    docs = random_docs(rng, ids, 12)
    eos = ids[0]
    path = build_from_tokens(str(tmp_path_factory.mktemp(f"kn{width}{seed}")), docs, width, vocab, eos,
                             shards=1 + seed % 2)
    return anygram.Engine.open(path), docs, ids, vocab, eos, rng


@pytest.mark.parametrize("ends", ["eos", "skip"])
def test_probabilities_match_the_definition(corpus, ends):
    engine, docs, ids, vocab, eos, rng = corpus
    oracle = KneserNeyOracle(docs, vocab, eos, ends)
    contexts = [[], [ids[1]], [ids[2], ids[3]], [ids[4]] * 3, docs[0][:3], docs[1][-2:], [ids[3], ids[1], ids[2], ids[0]]]
    contexts += [[int(ids[k]) for k in rng.integers(0, len(ids), size=int(rng.integers(1, 5)))] for _ in range(8)]
    for estimate in (None, 3):
        if estimate:
            oracle.estimate(estimate)
            assert engine.estimate_deltas(estimate, document_ends=ends) == pytest.approx(oracle.deltas)
        batch = engine.smoothed_probs_batch(contexts, document_ends=ends)
        for context, row in zip(contexts, batch):
            expected = oracle.probs(context)
            np.testing.assert_allclose(engine.smoothed_probs(context, document_ends=ends), expected, rtol=1e-9, atol=1e-15)
            np.testing.assert_allclose(row, expected, rtol=1e-9, atol=1e-15)
    # n keeps the last n - 1 tokens.
    context = docs[2][:5]
    np.testing.assert_allclose(engine.smoothed_probs(context, n=2, document_ends=ends), oracle.probs(context[-1:]), rtol=1e-9)
    np.testing.assert_allclose(engine.smoothed_probs(context, n=1, document_ends=ends), oracle.probs([]), rtol=1e-9)


def test_next_counts_match_the_scan(corpus):
    engine, docs, ids, vocab, eos, rng = corpus
    for ends in ("eos", "skip"):
        oracle = KneserNeyOracle(docs, vocab, eos, ends)
        contexts = [[], [ids[1]], [ids[2], ids[1]], docs[3][-2:]]
        dense = engine.count_next(contexts, document_ends=ends)
        assert dense.shape == (len(contexts), vocab) and dense.dtype == np.uint64
        for context, row in zip(contexts, dense):
            assert {t: int(c) for t, c in enumerate(row) if c} == dict(oracle.next_counts(context))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_as_tokengrams_on_the_same_tokens(tmp_path, seed):
    rng = np.random.default_rng(seed)
    vocab = 9 + seed
    tokens = [int(t) for t in rng.zipf(1.6, size=400) % vocab]
    engine = anygram.Engine.open(build_from_tokens(str(tmp_path), [tokens], 2, vocab, 0))
    theirs = tokengrams.InMemoryIndex(tokens, vocab=vocab)
    contexts = [[], tokens[:1], tokens[5:8], tokens[-3:], [vocab - 1] * 4]
    contexts += [[int(t) for t in rng.integers(0, vocab, size=int(rng.integers(1, 6)))] for _ in range(10)]
    for context in contexts:
        assert engine.count_next([context], document_ends="skip")[0].tolist() == theirs.count_next(context)
    for estimate in (None, 4):
        if estimate:
            theirs.estimate_deltas(estimate)
            engine.estimate_deltas(estimate, document_ends="skip")
        ours = engine.smoothed_probs_batch(contexts, document_ends="skip")
        np.testing.assert_allclose(ours, np.array(theirs.batch_get_smoothed_probs(contexts)), rtol=1e-12, atol=1e-18)


def chi_square_p(observed: np.ndarray, expected_probs: np.ndarray) -> float:
    """p-value of Pearson's chi-square test (scipy-free: the regularized gamma via the
    Wilson-Hilferty normal approximation is enough for a generous threshold)."""
    keep = expected_probs > 0
    assert observed[~keep].sum() == 0, "a draw of a token with probability 0"
    n = observed.sum()
    expected = expected_probs[keep] / expected_probs[keep].sum() * n
    stat = float(((observed[keep] - expected) ** 2 / expected).sum())
    dof = max(int(keep.sum()) - 1, 1)
    z = ((stat / dof) ** (1 / 3) - (1 - 2 / (9 * dof))) / np.sqrt(2 / (9 * dof))
    from math import erfc, sqrt
    return 0.5 * erfc(z / sqrt(2))


def first_tokens(samples: np.ndarray, vocab: int) -> np.ndarray:
    return np.bincount(samples[:, 0].astype(np.int64), minlength=vocab)


def test_samplers_draw_from_their_distributions(corpus):
    engine, docs, ids, vocab, eos, rng = corpus
    context = docs[0][:2]
    draws = 3000
    # Kneser-Ney of order 3: the first token follows the smoothed distribution after the last 2.
    kn = engine.sample(context, 2, method="kneser_ney", n=3, num_samples=draws, seed=11)
    assert kn.shape == (draws, 2) and kn.dtype == np.uint32
    assert chi_square_p(first_tokens(kn, vocab), engine.smoothed_probs(context[-2:])) > 1e-4
    # Unsmoothed bigram: the counts after the last token.
    ngram = engine.sample(context, 1, method="ngram", n=2, num_samples=draws, seed=12)
    counts = engine.count_next([context[-1:]])[0].astype(float)
    assert chi_square_p(first_tokens(ngram, vocab), counts) > 1e-4
    # ∞-gram: infini-gram's exact distribution after the whole context.
    inf = engine.sample(context, 1, method="infgram", num_samples=draws, seed=13)
    ntd = engine.infgram_ntd(context, max_support=10**9)
    expected = np.zeros(vocab)
    for token, entry in ntd["result_by_token_id"].items():
        expected[token] = entry["cont_cnt"]
    assert chi_square_p(first_tokens(inf, vocab), expected) > 1e-4
    # Every drawn token is in the vocabulary and every later token was possible too.
    assert int(kn.max()) < vocab and int(inf.max()) < vocab


def test_samples_repeat_by_seed_and_batch_rows_are_the_single_samples(corpus):
    engine, docs, ids, vocab, eos, rng = corpus
    contexts = [docs[0][:2], docs[1][:1], []]
    for method, n in (("kneser_ney", 2), ("ngram", 1), ("infgram", None)):
        batch = engine.sample_batch(contexts, 5, method=method, n=n, num_samples=4, seed=7)
        assert batch.shape == (3, 4, 5)
        again = engine.sample_batch(contexts, 5, method=method, n=n, num_samples=4, seed=7)
        assert np.array_equal(batch, again)
        other = engine.sample_batch(contexts, 5, method=method, n=n, num_samples=4, seed=8)
        assert not np.array_equal(batch, other)
        # Context 0's samples in a batch of one are the batch's first rows (same generators).
        assert np.array_equal(engine.sample(contexts[0], 5, method=method, n=n, num_samples=4, seed=7), batch[0])


def test_bad_arguments_are_errors(corpus):
    engine, docs, ids, vocab, eos, rng = corpus
    with pytest.raises(InvalidQueryError, match="document_ends"):
        engine.smoothed_probs([ids[1]], document_ends="drop")
    with pytest.raises(InvalidQueryError, match="n must be"):
        engine.smoothed_probs([ids[1]], n=0)
    with pytest.raises(InvalidQueryError, match="needs the order n"):
        engine.sample([ids[1]], 3)
    with pytest.raises(InvalidQueryError, match="n 0 is out of range"):
        engine.sample([ids[1]], 3, n=0)
    with pytest.raises(InvalidQueryError, match="k"):
        engine.sample([ids[1]], -1, n=2)
    with pytest.raises(InvalidQueryError, match="num_samples"):
        engine.sample([ids[1]], 1, n=2, num_samples=0)
    with pytest.raises(InvalidQueryError, match="seed"):
        engine.sample([ids[1]], 1, n=2, seed=-1)
    with pytest.raises(InvalidQueryError, match="method"):
        engine.sample([ids[1]], 1, n=2, method="beam")
    with pytest.raises(InvalidQueryError, match="vocabulary"):
        engine.smoothed_probs([vocab])
    with pytest.raises(InvalidQueryError, match="n 0 is out of range"):
        engine.estimate_deltas(0)
    # A context never followed by anything stops unsmoothed sampling with an error.
    absent = [ids[4]] * 60
    with pytest.raises(InvalidQueryError, match="no token follows"):
        engine.sample(absent, 1, method="ngram", n=61)
