"""Batch inputs: lists of queries, 2-D integer arrays (rows cut by lengths or a fill value)
and 1-D arrays cut at offsets give the answers of one call per query, for every dtype and
memory layout; a malformed batch is an InvalidQueryError naming the query."""

from __future__ import annotations

import random

import numpy as np
import pytest

import anygram
from anygram.errors import InvalidQueryError
from byte_order_ids import BYTE_ORDER_IDS
from conftest import build_from_tokens

WIDTH = 2
IDS = BYTE_ORDER_IDS[WIDTH]  # ids whose byte order differs from their numeric order
EOS = IDS[-1]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    rng = random.Random(7)
    docs = [[rng.choice(IDS[:4]) for _ in range(rng.randint(1, 40))] for _ in range(30)]
    index = build_from_tokens(str(tmp_path_factory.mktemp("batch")), docs, WIDTH, 0xFFFF, EOS)
    return anygram.Engine.open(index)


def random_queries(seed: int, n: int = 60):
    rng = random.Random(seed)
    return [[rng.choice(IDS[:4]) for _ in range(rng.randint(0, 5))] for _ in range(n)]


def padded(queries, fill, dtype):
    width = max(len(q) for q in queries)
    rows = np.full((len(queries), width), fill, dtype=dtype)
    for i, q in enumerate(queries):
        rows[i, : len(q)] = q
    return rows


@pytest.mark.parametrize("dtype", [np.uint32, np.int64, np.uint16, np.int32, ">u4"])
def test_every_array_form_counts_as_single_calls(engine, dtype):
    queries = random_queries(1)
    expected = [engine.count(q) for q in queries]
    assert list(engine.count_batch(queries)) == expected
    assert list(engine.count_batch([np.asarray(q, dtype=np.uint32) for q in queries])) == expected
    lengths = np.array([len(q) for q in queries])
    rows = padded(queries, 0, dtype)
    assert list(engine.count_batch(rows, lengths=lengths)) == expected
    assert list(engine.count_batch(rows, lengths=lengths.tolist())) == expected
    fill = 0xFFFF if np.dtype(dtype).itemsize == 2 else 0xFFFFFFFF if np.dtype(dtype).kind == "u" else -1
    assert list(engine.count_batch(padded(queries, fill, dtype), fill=fill)) == expected
    flat = np.asarray([t for q in queries for t in q], dtype=dtype)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    assert list(engine.count_batch(flat, offsets=offsets)) == expected


def test_strided_and_full_rows(engine):
    queries = [q + [IDS[0]] * (3 - len(q)) for q in random_queries(2) if len(q) <= 3]
    rows = np.asarray(queries, dtype=np.uint32)
    expected = [engine.count(q) for q in queries]
    assert list(engine.count_batch(rows)) == expected
    # A Fortran-ordered copy and a strided view are read in logical order.
    assert list(engine.count_batch(np.asfortranarray(rows))) == expected
    wide = np.zeros((len(rows), 6), dtype=np.uint32)
    wide[:, ::2] = rows
    assert list(engine.count_batch(wide[:, ::2])) == expected


def test_prob_and_ntd_batches_take_arrays(engine):
    contexts = [q for q in random_queries(3) if q]
    tokens = [IDS[i % 4] for i in range(len(contexts))]
    lengths = [len(c) for c in contexts]
    rows = padded(contexts, 0, np.uint32)
    by_list = engine.prob_batch(contexts, tokens)
    by_rows = engine.prob_batch(rows, np.asarray(tokens, dtype=np.uint32), lengths=lengths)
    for key in by_list:
        assert list(by_list[key]) == list(by_rows[key]), key
    flat = np.asarray([t for c in contexts for t in c], dtype=np.uint32)
    offsets = np.cumsum([0] + lengths)
    by_flat = engine.infgram_prob_batch(flat, tokens, offsets=offsets)
    assert list(by_flat["prob"]) == list(engine.infgram_prob_batch(contexts, tokens)["prob"])
    assert engine.ntd_batch(rows, lengths=lengths) == engine.ntd_batch(contexts)
    assert engine.infgram_ntd_batch(flat, offsets=offsets) == [engine.infgram_ntd(c) for c in contexts]


def test_errors_name_the_query(engine):
    rows = np.array([[IDS[0], IDS[1]], [IDS[2], 0xFFFF]], dtype=np.uint32)
    with pytest.raises(InvalidQueryError, match="query 1: token id 65535 at position 1"):
        engine.count_batch(rows)
    # Padding is not a token: the same value past a row's length is fine.
    assert list(engine.count_batch(rows, lengths=[2, 1])) == [engine.count(rows[0]), engine.count(rows[1, :1])]
    with pytest.raises(InvalidQueryError, match="query 1: token id -3"):
        engine.count_batch(np.array([[1, 1], [1, -3]], dtype=np.int64), fill=-1)
    with pytest.raises(InvalidQueryError, match="query 1: offsets 3..2"):
        engine.count_batch(np.array([1, 1, 1], dtype=np.uint32), offsets=[0, 3, 2])
    with pytest.raises(InvalidQueryError, match="query 0: offsets 0..4"):
        engine.count_batch(np.array([1, 1, 1], dtype=np.uint32), offsets=[0, 4])
    with pytest.raises(InvalidQueryError, match="query 0: length 3 is longer"):
        engine.count_batch(rows, lengths=[3, 1])
    with pytest.raises(InvalidQueryError, match="one length per row"):
        engine.count_batch(rows, lengths=[1])
    with pytest.raises(InvalidQueryError, match="not both"):
        engine.count_batch(rows, lengths=[1, 1], fill=0)
    with pytest.raises(InvalidQueryError, match="offsets"):
        engine.count_batch(np.array([1, 1], dtype=np.uint32))
    with pytest.raises(InvalidQueryError, match="3-D"):
        engine.count_batch(np.zeros((2, 2, 2), dtype=np.uint32))
    with pytest.raises(InvalidQueryError, match="integer dtype"):
        engine.count_batch(np.zeros((2, 2), dtype=np.float64))
    with pytest.raises(InvalidQueryError, match="numpy array"):
        engine.count_batch([[1]], offsets=[0, 1])
    with pytest.raises(InvalidQueryError, match="offsets"):
        engine.count_batch(np.array([1], dtype=np.uint32), offsets=[-1, 1])
    with pytest.raises(InvalidQueryError, match=r"query 2: position 1 is a bool"):
        engine.count_batch([[1], [], [1, True]])
    with pytest.raises(InvalidQueryError, match=r"query 1: token id 65535 at position 0"):
        engine.count_batch([[1], [0xFFFF]])


@pytest.mark.parametrize("dtype", ["u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8", ">i8", "<u4"])
def test_offsets_and_lengths_arrays_of_every_integer_dtype(engine, dtype):
    """offsets and lengths given as numpy arrays are read as they are (no Python int
    per element), whatever their width, signedness or byte order."""
    queries = random_queries(4, n=20)  # offsets up to 100: within every dtype here
    expected = [engine.count(q) for q in queries]
    lengths = np.array([len(q) for q in queries], dtype=dtype)
    offsets = np.concatenate([[0], np.cumsum([len(q) for q in queries])]).astype(dtype)
    flat = np.asarray([t for q in queries for t in q], dtype=np.uint32)
    assert list(engine.count_batch(flat, offsets=offsets)) == expected
    assert list(engine.count_batch(padded(queries, 0, np.uint32), lengths=lengths)) == expected
    assert engine.ntd_batch(flat, offsets=offsets) == [engine.ntd(q) for q in queries]


def test_bad_offsets_and_lengths_arrays_are_refused_by_name(engine):
    flat = np.array([IDS[0], IDS[1], IDS[2]], dtype=np.uint32)
    rows = np.array([[IDS[0], IDS[1]], [IDS[2], IDS[3]]], dtype=np.uint32)
    with pytest.raises(InvalidQueryError, match=r"offsets must be integers, not an array of dtype float64"):
        engine.count_batch(flat, offsets=np.array([0.0, 3.0]))
    with pytest.raises(InvalidQueryError, match=r"lengths must be integers, not an array of dtype bool"):
        engine.count_batch(rows, lengths=np.array([True, False]))
    with pytest.raises(InvalidQueryError, match=r"offsets must be a 1-D array, not 2-D"):
        engine.count_batch(flat, offsets=np.array([[0, 3]]))
    with pytest.raises(InvalidQueryError, match=r"offsets\[1\] -2 is out of range"):
        engine.count_batch(flat, offsets=np.array([0, -2], dtype=np.int8))
    with pytest.raises(InvalidQueryError, match=r"lengths\[0\] -1 is out of range"):
        engine.count_batch(rows, lengths=np.array([-1, 1], dtype=">i4"))
    with pytest.raises(InvalidQueryError, match=r"lengths\[1\] 18446744073709551615 is out of range"):
        engine.count_batch(rows, lengths=np.array([1, 2**64 - 1], dtype=np.uint64))
    with pytest.raises(InvalidQueryError, match=r"query 1: offsets 3..2"):
        engine.count_batch(flat, offsets=np.array([0, 3, 2], dtype=np.uint16))


def test_ntd_batch_of_many_contexts_keeps_their_order(engine):
    """ntd_batch builds each answer's dicts while the pool answers later contexts: with
    many chunks in flight the answers still come back in query order, equal to single calls."""
    contexts = [q for q in random_queries(5, n=700) if q]
    assert engine.ntd_batch(contexts) == [engine.ntd(c) for c in contexts]
    assert engine.infgram_ntd_batch(contexts, max_support=2) == [engine.infgram_ntd(c, max_support=2) for c in contexts]
