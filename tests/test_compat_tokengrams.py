"""anygram.compat.tokengrams against tokengrams 0.3.3 on the same files: the same calls give the
same answers where tokengrams' answers are deterministic (counts, positions, next-token counts,
Kneser-Ney distributions before and after estimating discounts); the samplers are checked for
shape, prefix, repeatability and their distribution (chi-square, fixed seeds)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from anygram.compat import tokengrams as shim
from anygram.errors import CorruptIndexError, InvalidArgumentError, InvalidQueryError
from conftest import build_from_tokens

tokengrams = pytest.importorskip("tokengrams")


def zipf_tokens(rng, size, vocab):
    return [int(t) for t in rng.zipf(1.5, size=size) % vocab]


def queries(rng, tokens, vocab, count=25):
    out = [[], [0], [vocab - 1], tokens[:3], tokens[-2:], tokens[-1:]]
    for _ in range(count):
        start = int(rng.integers(0, len(tokens) - 4))
        out.append(tokens[start:start + int(rng.integers(1, 5))])
        out.append([int(t) for t in rng.integers(0, vocab, size=int(rng.integers(1, 3)))])
    return out


def assert_same(ours, theirs, qs, positions=True):
    for q in qs:
        assert ours.count(q) == theirs.count(q), q
        assert ours.contains(q) == theirs.contains(q), q
        if positions:
            assert sorted(ours.positions(q)) == sorted(theirs.positions(q)), q
        assert ours.count_next(q) == theirs.count_next(q), q
    assert ours.batch_count_next(qs) == theirs.batch_count_next(qs)
    np.testing.assert_allclose(ours.batch_get_smoothed_probs(qs), theirs.batch_get_smoothed_probs(qs), rtol=1e-12, atol=1e-20)
    for q in qs[:5]:
        np.testing.assert_allclose(ours.get_smoothed_probs(q), theirs.get_smoothed_probs(q), rtol=1e-12, atol=1e-20)
    theirs.estimate_deltas(3)
    ours.estimate_deltas(3)
    np.testing.assert_allclose(ours.batch_get_smoothed_probs(qs), theirs.batch_get_smoothed_probs(qs), rtol=1e-12, atol=1e-20)


@pytest.mark.parametrize("vocab,dtype", [(600, np.uint16), (2**16, np.uint16), (70000, np.uint32)])
def test_memmap_index_answers_as_tokengrams_on_its_files(tmp_path, vocab, dtype):
    rng = np.random.default_rng(vocab)
    tokens = zipf_tokens(rng, 3000, vocab)
    # Ids whose little-endian bytes sort otherwise than their values (and the largest id).
    tokens[10:14] = [256, 1, 511, vocab - 1]
    token_path, table_path = str(tmp_path / "tokens.bin"), str(tmp_path / "tokens.idx")
    np.asarray(tokens, dtype=dtype).tofile(token_path)
    theirs = tokengrams.MemmapIndex.build(token_path, table_path, vocab=vocab)
    ours = shim.MemmapIndex(token_path, table_path, vocab=vocab)
    assert os.path.isdir(table_path + ".anygram")
    assert ours.is_sorted() and theirs.is_sorted()
    assert_same(ours, theirs, queries(rng, tokens, vocab))
    # Reopening uses the converted index (no second conversion).
    stamp = os.path.getmtime(os.path.join(table_path + ".anygram", "anygram.json"))
    again = shim.MemmapIndex(token_path, table_path, vocab=vocab)
    assert os.path.getmtime(os.path.join(table_path + ".anygram", "anygram.json")) == stamp
    assert again.count(tokens[:2]) == theirs.count(tokens[:2])


def test_in_memory_index_answers_as_tokengrams(tmp_path):
    rng = np.random.default_rng(5)
    vocab = 50
    tokens = zipf_tokens(rng, 1500, vocab)
    theirs = tokengrams.InMemoryIndex(tokens, vocab=vocab)
    ours = shim.InMemoryIndex(tokens, vocab=vocab)
    assert_same(ours, theirs, queries(rng, tokens, vocab))
    # Token files, with a limit, and the saved tokens read back.
    path = str(tmp_path / "t.bin")
    ours.save_tokens(path)
    assert np.fromfile(path, dtype=np.uint16).tolist() == tokens
    limited = shim.InMemoryIndex.from_token_file(path, token_limit=700, vocab=vocab)
    their_limited = tokengrams.InMemoryIndex.from_token_file(path, token_limit=700, vocab=vocab)
    assert [limited.count(q) for q in ([tokens[0]], tokens[:2])] == [their_limited.count(q) for q in ([tokens[0]], tokens[:2])]
    ours.save_index(str(tmp_path / "saved"))
    reopened = shim.InMemoryIndex.from_disk(path, str(tmp_path / "saved"), vocab=vocab)
    assert reopened.count_next(tokens[:1]) == theirs.count_next(tokens[:1])


def test_sharded_memmap_index_counts_as_tokengrams(tmp_path):
    rng = np.random.default_rng(9)
    vocab = 40
    pairs, parts = [], []
    for i in range(3):
        part = zipf_tokens(rng, 800 + 100 * i, vocab)
        parts.append(part)
        token_path, table_path = str(tmp_path / f"s{i}.bin"), str(tmp_path / f"s{i}.idx")
        np.asarray(part, dtype=np.uint16).tofile(token_path)
        pairs.append((token_path, table_path))
    theirs = tokengrams.ShardedMemmapIndex.build(pairs, vocab=vocab)
    ours = shim.ShardedMemmapIndex(pairs, vocab=vocab)
    qs = queries(rng, parts[0], vocab) + [parts[1][-2:], parts[2][:3]]
    for q in qs:
        assert ours.count(q) == theirs.count(q), q
        assert ours.count_next(q) == theirs.count_next(q), q
    assert ours.batch_count_next(qs) == theirs.batch_count_next(qs)
    # Smoothed distributions differ on purpose (README): tokengrams sums per-shard tables of
    # n-gram frequencies to estimate discounts, anygram counts each n-gram over all shards.
    # With the counts identical, each row is still a distribution of the same support.
    ours_rows = np.array(ours.batch_get_smoothed_probs(qs))
    assert ours_rows.shape == (len(qs), vocab) and (ours_rows > 0).all()


def test_anygram_index_opens_directly(tmp_path):
    docs = [[1, 2, 3, 1, 2], [2, 3, 2]]
    path = build_from_tokens(str(tmp_path), docs, 2, 10, 0)
    index = shim.MemmapIndex(path, vocab=10)
    assert index.count([2, 3]) == 2
    # Documents are separate streams: no n-gram spans two, positions skip the separators.
    assert index.count([2, 2]) == 0
    assert sorted(index.positions([2, 3])) == [1, 5]
    assert index.count_next([2]) == [0, 0, 0, 2, 0, 0, 0, 0, 0, 0]
    assert sorted(index.positions([2])) == [1, 4, 5, 7]
    # The native index behind the methods: rows are separate lists; a vocabulary the counts
    # do not fit, or none at all, is an error.
    from anygram import _anygram

    memo = _anygram.NextTokenMemo(index.engine)
    rows = _anygram.TokengramsIndex(index.engine, memo, 10).batch_count_next([[2], [2], [3]])
    assert rows == [[0, 0, 0, 2, 0, 0, 0, 0, 0, 0]] * 2 + [[0, 1, 1, 0, 0, 0, 0, 0, 0, 0]]
    rows[0][0] = 7
    assert rows[1][0] == 0
    with pytest.raises(InvalidQueryError, match="does not fit width 3"):
        _anygram.TokengramsIndex(index.engine, memo, 3).count_next([2])
    with pytest.raises(InvalidQueryError, match="vocab"):
        _anygram.TokengramsIndex(index.engine, memo, 0)


def test_smoothed_prob_lists_share_equal_floats_and_hold_their_references(tmp_path):
    """get_smoothed_probs' lists hold one float object per distinct value, stored straight into
    the list with each float's references added once: the values are the engine's, and every
    float's reference count is exactly what the lists hold (none leaked, none missing)."""
    import sys

    rng = np.random.default_rng(5)
    vocab = 300
    docs = [list(map(int, rng.integers(0, 40, size=int(rng.integers(1, 200))))) for _ in range(20)]
    index = shim.MemmapIndex(build_from_tokens(str(tmp_path), docs, 2, vocab, 0), vocab=vocab)
    dense = index.engine.kneser_ney("skip")
    for context in ([], [3], [3, 7], [39, 1, 2]):
        row = index.get_smoothed_probs(context)
        assert type(row) is list and len(row) == vocab and all(type(p) is float for p in row)
        assert row == dense.probs(index.engine, context).tolist()
        floats = {id(p): p for p in row}
        assert len(floats) < vocab // 2  # the unseen tokens' values repeat
        held = {key: sum(p is f for p in row) for key, f in floats.items()}
        # A fresh float held only by the dict: what every count is beside the lists' items.
        floats[0], held[0] = 2.0 + float(rng.random()), 0

        def references():
            return {key: sys.getrefcount(f) for key, f in floats.items()}

        counts = references()
        assert {key: counts[key] - held[key] for key in floats} == dict.fromkeys(floats, counts[0])
        row[0] = None  # an item replaced releases one reference
        del row
        assert references() == dict.fromkeys(floats, counts[0])
    batch = index.batch_get_smoothed_probs([[3], [3, 7], [], [3]])
    assert batch == [index.get_smoothed_probs(c) for c in ([3], [3, 7], [], [3])]
    assert batch[0] is not batch[3]
    batch[0][5] = -1.0
    assert batch[3][5] != -1.0


def brute_count_next(tokens, query, vocab):
    """What follows each occurrence of ``query`` in one token stream (nothing after its end)."""
    counts = [0] * vocab
    n = len(query)
    for i in range(len(tokens) - n):
        if tokens[i:i + n] == query:
            counts[tokens[i + n]] += 1
    return counts


def test_count_next_of_frequent_contexts_is_exact_and_remembered(tmp_path):
    # Ids whose little-endian bytes order differently from their values (0x00FF < 0x0100),
    # one of them frequent enough (>= 1,024 occurrences) for the index to remember its
    # counts: the second answer comes from the memo and must equal the first and brute force.
    rng = np.random.default_rng(11)
    ids = [0x0001, 0x00FF, 0x0100, 0x01FE, 0xFF00, 0x0002]
    vocab = 0xFF01
    tokens = [ids[int(i)] for i in np.minimum(rng.zipf(1.3, size=20000) - 1, 5)]
    index = shim.InMemoryIndex(tokens, vocab=vocab)
    frequent = [[0x0001], [0x0001, 0x0001], [], [0x00FF]]
    assert index.count([0x0001]) >= 1024 and index.count([0x0001, 0x0001]) >= 1024
    for query in frequent + [[0xFF00, 0x0001], [0x0002]]:
        expected = brute_count_next(tokens, query, vocab) if query else \
            np.bincount(tokens, minlength=vocab).tolist()
        assert index.count_next(query) == expected, query
        assert index.count_next(query) == expected, query
    assert index.batch_count_next(frequent * 3) == [index.count_next(q) for q in frequent * 3]


@pytest.mark.parametrize("shards", [1, 3])
def test_positions_in_many_documents_equal_brute_force(tmp_path, shards):
    # Documents of 0-40 tokens over few ids (byte order differs from numeric order): a
    # frequent id's occurrences are placed by one walk over the document offsets, a rare
    # n-gram's by bisection; both against the documents laid end to end.
    rng = np.random.default_rng(5)
    ids = [0x0001, 0x00FF, 0x0100, 0x01FE]
    docs = [[ids[int(i)] for i in rng.integers(0, 4, size=int(rng.integers(0, 40)))] for _ in range(300)]
    path = build_from_tokens(str(tmp_path), docs, 2, 0x0200, 0, shards=shards)
    index = shim.MemmapIndex(path, vocab=0x0200)
    stream = [t for d in docs for t in d]
    starts = set(np.cumsum([0] + [len(d) for d in docs]).tolist())
    for query in ([0x0001], [0x00FF, 0x0100], [0x01FE, 0x01FE, 0x0001, 0x00FF], [0x0100] * 5):
        expected = [i for i in range(len(stream) - len(query) + 1) if stream[i:i + len(query)] == query
                    # an n-gram within one document: no document starts inside it
                    and not any(i < s < i + len(query) for s in starts)]
        assert sorted(index.positions(query)) == expected, query


def test_samplers(tmp_path):
    rng = np.random.default_rng(3)
    vocab = 12
    tokens = zipf_tokens(rng, 2000, vocab)
    ours = shim.InMemoryIndex(tokens, vocab=vocab)
    theirs = tokengrams.InMemoryIndex(tokens, vocab=vocab)
    query = tokens[:2]
    for method in ("sample_smoothed", "sample_unsmoothed"):
        rows = getattr(ours, method)(query, 3, 5, 4)
        their_rows = getattr(theirs, method)(query, 3, 5, 4)
        assert [len(r) for r in rows] == [len(r) for r in their_rows] == [7] * 4
        assert all(r[:2] == query and all(0 <= t < vocab for t in r) for r in rows)
        assert getattr(ours, method)(query, 3, 5, 4, seed=1) == getattr(ours, method)(query, 3, 5, 4, seed=1)
    # The first unsmoothed bigram draw follows tokengrams' own next-token counts.
    draws = np.array(ours.sample_unsmoothed(query, 2, 1, 3000, seed=4))[:, 2]
    observed = np.bincount(draws, minlength=vocab)
    expected = np.array(theirs.count_next(query[-1:]), dtype=float)
    assert observed[expected == 0].sum() == 0
    expected = expected / expected.sum() * len(draws)
    keep = expected > 0
    stat = ((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    dof = keep.sum() - 1
    assert stat < dof + 6 * np.sqrt(2 * dof) + 10  # far beyond the 1e-4 tail
    with pytest.raises(InvalidQueryError, match="no token follows"):
        ours.sample_unsmoothed(tokens[-1:], 2, 1, 1) if ours.count_next(tokens[-1:]) == [0] * vocab \
            else ours.sample_unsmoothed([vocab - 1] * 40, 41, 1, 1)


def test_bad_inputs_are_errors(tmp_path):
    token_path, table_path = str(tmp_path / "t.bin"), str(tmp_path / "t.idx")
    np.asarray([1, 2, 3], dtype=np.uint16).tofile(token_path)
    (tmp_path / "t.idx").write_bytes(b"\0" * 16)  # two positions for three tokens
    with pytest.raises(CorruptIndexError, match="holds 16 bytes"):
        shim.MemmapIndex(token_path, table_path)
    (tmp_path / "odd.bin").write_bytes(b"\0" * 3)
    with pytest.raises(CorruptIndexError, match="whole number"):
        shim.InMemoryIndex.from_token_file(str(tmp_path / "odd.bin"))
    with pytest.raises(InvalidArgumentError, match="tokens must be ids"):
        shim.InMemoryIndex([1, 2, 70], vocab=50)
    with pytest.raises(InvalidArgumentError, match="vocab"):
        shim.InMemoryIndex([1, 2], vocab=0)
    index = shim.InMemoryIndex([1, 2, 3, 1, 2], vocab=10)
    with pytest.raises(InvalidQueryError, match="outside the vocabulary"):
        index.count([10])
    with pytest.raises(InvalidQueryError):
        index.sample_smoothed([1], 0, 2, 1)
