"""CNF's two ways of finding a clause's occurrences near each window (reading the text
around the window, with kept-run checks by suffix comparison when the clause is
subsampled; or sorting the clause's kept occurrences) each give infini-gram's answers,
subsampling included, on ids whose byte order differs from their numeric order, and on a
corpus whose long repeated passage makes the suffix comparisons give up (the clause then
falls back to sorting)."""

from __future__ import annotations

import random

import pytest

import anygram
from anygram import _anygram
from byte_order_ids import BYTE_ORDER_IDS
from conftest import build_from_tokens
from peer import PeerEngine

IDS = BYTE_ORDER_IDS[2][:5]  # 0, 1, 0x00FF, 0x0100, 0x01FE: bytes sort unlike numbers
EOS = 0xFFFE


@pytest.fixture(scope="module", params=["random", "repeated"])
def pair(request, tmp_path_factory):
    rng = random.Random(11)
    if request.param == "random":
        docs = [[rng.choice(IDS) for _ in range(rng.randint(0, 90))] for _ in range(150)]
    else:
        # One passage twice, longer than the comparison limit (64 KiB = 32,768 tokens).
        passage = [rng.choice(IDS) for _ in range(34_000)]
        docs = [passage, [rng.choice(IDS) for _ in range(300)], passage]
    path = build_from_tokens(str(tmp_path_factory.mktemp("probes")), docs, 2, 0xFFFF, EOS)
    ours = anygram.Engine.open(path)
    theirs = PeerEngine(index_dir=path, eos_token_id=EOS, vocab_size=0xFFFF, token_dtype="u16")
    return request.param, ours, theirs, rng


@pytest.fixture(autouse=True)
def restore_probe_choice():
    yield
    _anygram._cnf_probe_for_test("auto")


def random_cnf(rng):
    return [[[rng.choice(IDS) for _ in range(rng.randint(1, 3))] for _ in range(rng.randint(1, 2))]
            for _ in range(rng.randint(2, 3))]


@pytest.mark.parametrize("probe", ["text", "sorted", "auto"])
def test_each_probe_agrees_with_infinigram(pair, probe):
    kind, ours, theirs, rng = pair
    _anygram._cnf_probe_for_test(probe)
    subsampled = 0
    for _ in range(40 if kind == "random" else 12):
        cnf = random_cnf(rng)
        freq = rng.choice([3, 20, 200, 10**9])
        diff = rng.choice([1, 3, 10, 100])
        a = ours.find_cnf(cnf, max_clause_freq=freq, max_diff_tokens=diff)
        b = theirs.find_cnf(cnf, max_clause_freq=freq, max_diff_tokens=diff)
        assert (a["cnt"], a["approx"]) == (b["cnt"], b["approx"]), (cnf, freq, diff)
        assert a["ptrs_by_shard"] == [list(p) for p in b["ptrs_by_shard"]], (cnf, freq, diff)
        subsampled += a["approx"]
    assert subsampled > 0  # the kept-run checks were exercised


def test_probe_names_are_checked():
    with pytest.raises(anygram.errors.InvalidQueryError):
        _anygram._cnf_probe_for_test("fastest")
