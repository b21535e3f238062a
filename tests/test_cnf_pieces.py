"""CNF queries with more windows than one piece (over 4,096: the windows are extended in
pieces on the pool and the last clause's pieces checked for separators as they are made)
give infini-gram's answers, windows in infini-gram's order: every token width, ids whose
byte order differs from their numeric order, clauses rare and frequent, two or three of
them (so that windows also pass between clauses in pieces), windows at document edges
(short documents), subsampling on, each way of finding a clause's occurrences."""

from __future__ import annotations

import bisect
import random

import numpy as np
import pytest

import anygram
from anygram import _anygram
from byte_order_ids import BYTE_ORDER_IDS
from conftest import SEPARATOR, build_from_tokens
from peer import PeerEngine

PEER_DTYPE = {1: "u8", 2: "u16", 4: "u32"}
PIECE_WINDOWS = 4096  # cnf.rs's PARALLEL_ITEMS: more windows than this go in pieces


@pytest.fixture(scope="module", params=[(1, 1), (2, 1), (2, 2), (4, 1)], ids=lambda p: f"u{8 * p[0]}-{p[1]}shard")
def pair(request, tmp_path_factory):
    width, shards = request.param
    rng = random.Random(17 * width + shards)
    # No u16 pair whose bytes hold FF FF across the two tokens (0x00FF then 0xFF00):
    # infini-gram drops a window holding those bytes anywhere, anygram only a whole
    # separator token (its windows would differ there, not in the pieces).
    ids = BYTE_ORDER_IDS[width][: 5 if width == 2 else 6]
    # Skewed: the first ids are frequent (their unigrams anchor over 4,096 windows),
    # the last rare; documents short enough that many windows reach a document's edge.
    weights = [40, 25, 15, 10, 6, 4][: len(ids)]
    docs = [rng.choices(ids, weights, k=rng.randint(0, 60)) for _ in range(1500)]
    separator = SEPARATOR[width]
    path = build_from_tokens(str(tmp_path_factory.mktemp("pieces")), docs, width, separator, ids[0],
                             shards=shards)
    ours = anygram.Engine.open(path)
    theirs = PeerEngine(index_dir=path, eos_token_id=ids[0], vocab_size=separator,
                        token_dtype=PEER_DTYPE[width])
    return ours, theirs, ids, rng


@pytest.fixture(autouse=True)
def restore_probe_choice():
    yield
    _anygram._cnf_probe_for_test("auto")


def cnf_with_a_frequent_anchor(rng, ids):
    """Every clause holds a frequent unigram, so the rarest still has thousands of
    occurrences; the others add a rare n-gram or two."""
    clauses = []
    for _ in range(rng.randint(2, 3)):
        clause = [[rng.choice(ids[:2])]]
        clause += [[rng.choice(ids) for _ in range(rng.randint(1, 3))] for _ in range(rng.randint(0, 2))]
        clauses.append(clause)
    return clauses


@pytest.mark.parametrize("probe", ["text", "sorted", "auto"])
def test_windows_in_pieces_agree_with_infinigram(pair, probe):
    ours, theirs, ids, rng = pair
    _anygram._cnf_probe_for_test(probe)
    pieces = subsampled = 0
    for _ in range(8):
        cnf = cnf_with_a_frequent_anchor(rng, ids)
        freq = rng.choice([3000, 9000, 10**9])
        diff = rng.choice([1, 4, 30])
        a = ours.find_cnf(cnf, max_clause_freq=freq, max_diff_tokens=diff)
        b = theirs.find_cnf(cnf, max_clause_freq=freq, max_diff_tokens=diff)
        assert (a["cnt"], a["approx"]) == (b["cnt"], b["approx"]), (cnf, freq, diff)
        assert a["ptrs_by_shard"] == [list(p) for p in b["ptrs_by_shard"]], (cnf, freq, diff)
        assert ours.count_cnf(cnf, max_clause_freq=freq, max_diff_tokens=diff) == {
            "count": a["cnt"], "approx": a["approx"]}
        # The anchor's windows (its kept occurrences, per shard) outnumber one piece.
        anchor = min(sum(ours.count(t) for t in clause) for clause in cnf)
        pieces += anchor > PIECE_WINDOWS * len(a["ptrs_by_shard"]) and min(freq, anchor) > PIECE_WINDOWS
        subsampled += a["approx"]
    assert pieces > 0 and subsampled > 0


def test_counts_from_remembered_clauses_are_infinigrams(pair):
    """count_cnf gives infini-gram's answers whether a clause's sorted occurrences come
    from the engine's memo (the query seen before, or another query sharing a clause,
    identical clauses in one query), are made afresh (no memo), or the memo is so small
    that it keeps starting over."""
    ours, theirs, ids, rng = pair
    engines = [ours, anygram.Engine.open(ours.path, cnf_memo_bytes=0),
               anygram.Engine.open(ours.path, cnf_memo_bytes=3 * 1024 * 8)]
    frequent = [[[i]] for i in ids[:2]] + [[[ids[0], ids[1]]]]
    queries = []
    for _ in range(6):
        queries.append([rng.choice(frequent) for _ in range(rng.randint(2, 3))])
    queries.append([frequent[0], frequent[0]])
    frequent_enough = 0
    for query in queries * 4:  # met again: remembered, or read until sorting pays
        for freq, diff in [(3000, 4), (10**9, 30)]:
            want = theirs.find_cnf(query, max_clause_freq=freq, max_diff_tokens=diff)
            for engine in engines:
                got = engine.count_cnf(query, max_clause_freq=freq, max_diff_tokens=diff)
                assert (got["count"], got["approx"]) == (want["cnt"], want["approx"]), (query, freq, diff)
            # The rarest clause has enough occurrences to be remembered (1,024).
            frequent_enough += min(sum(ours.count(t) for t in clause) for clause in query) >= 1024
    assert frequent_enough > 0


def test_documents_holding_the_separator_id_are_cut_there_as_infinigram_cuts_them(tmp_path):
    """Index files whose documents hold the separator's id (which `verify` refuses, but
    other tools may write) answer CNF queries as infini-gram does: a window holding such
    a token is dropped, as a brute-force count drops it, though no document starts there
    (a check against the document offsets alone would keep it)."""
    width, separator = 2, SEPARATOR[2]
    rng = random.Random(23)
    ids = BYTE_ORDER_IDS[width][:5]
    # Every third document may hold the separator's id among its tokens.
    alphabets = [ids + [separator] * (d % 3 == 0) for d in range(300)]
    docs = [[rng.choice(alphabet) for _ in range(rng.randint(1, 50))] for alphabet in alphabets]
    tokens, starts = [], []
    for doc in docs:
        starts.append(len(tokens) * width)
        tokens += [separator] + doc
    (tmp_path / "tokenized.0").write_bytes(np.asarray(tokens, dtype="<u2").tobytes())
    (tmp_path / "offset.0").write_bytes(np.asarray(starts, dtype="<u8").tobytes())
    _anygram.build_suffix_array(str(tmp_path / "tokenized.0"), str(tmp_path / "table.0"), width)
    ours = anygram.Engine.open(str(tmp_path), vocab_size=separator, eos_token_id=ids[0])
    theirs = PeerEngine(index_dir=str(tmp_path), eos_token_id=ids[0], vocab_size=separator, token_dtype="u16")

    at = {t: [i for i, x in enumerate(tokens) if x == t] for t in ids}
    cuts_at = {True: [i for i, x in enumerate(tokens) if x == separator], False: [s // width for s in starts]}

    def brute_force(a_id, b_id, reach, cut_at_every_separator):
        """infini-gram's count of the CNF [[a], [b]] (two unigrams, no subsampling)."""
        anchor, other = sorted((at[a_id], at[b_id]), key=len)
        cuts = cuts_at[cut_at_every_separator]
        count = 0
        for p in anchor:
            i = bisect.bisect_left(other, p)
            left = other[i - 1] if i > 0 and other[i - 1] + reach >= p else None
            right = other[i] if i < len(other) and other[i] <= p + reach else None
            if left is None and right is None:
                continue
            lo, hi = (p if left is None else left), (p if right is None else right)
            count += bisect.bisect_left(cuts, lo) == bisect.bisect_left(cuts, hi)  # no cut in [lo, hi)
        return count

    differs = 0
    for a_id in ids:
        for b_id in ids:
            if a_id == b_id:
                continue
            for reach in (1, 5, 40):
                cnf = [[[a_id]], [[b_id]]]
                got = ours.count_cnf(cnf, max_clause_freq=10**9, max_diff_tokens=reach)["count"]
                assert got == theirs.find_cnf(cnf, max_clause_freq=10**9, max_diff_tokens=reach)["cnt"]
                assert got == brute_force(a_id, b_id, reach, cut_at_every_separator=True), (cnf, reach)
                differs += got != brute_force(a_id, b_id, reach, cut_at_every_separator=False)
    assert differs > 0  # the stray separators cut windows that the offsets alone would keep
    assert not ours.verify()["ok"]
