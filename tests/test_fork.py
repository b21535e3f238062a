"""A forked child (PyTorch DataLoader workers, multiprocessing with fork, gunicorn
--preload) can use an engine its parent opened and used: every parallel call of the
bindings runs on anygram's fork-safe pool, which the child rebuilds. On rayon's global
pool the child would wait forever for threads it does not have."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import select
import signal

import numpy as np
import pytest

import anygram
from anygram import _anygram
from conftest import build_from_tokens
from trained_tokenizer import train_gpt2_like

# A hang is the failure this guards against; the work itself takes well under a second.
CHILD_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def sharded_engine(tmp_path_factory):
    rng = np.random.default_rng(7)
    docs = [rng.integers(0, 6, size=rng.integers(0, 40)).tolist() for _ in range(60)]
    path = build_from_tokens(str(tmp_path_factory.mktemp("fork")), docs, 2, 1000, 0, shards=3)
    engine = anygram.Engine.open(path)
    assert engine.num_shards == 3
    engine.test_tokenizer = _anygram.Tokenizer(train_gpt2_like(str(tmp_path_factory.mktemp("tok") / "t.json")))
    return engine


def every_parallel_call(engine) -> dict:
    """One of each kind of parallel call, as plain picklable values."""
    queries = [[1, 2], [3], [], [4, 5, 1], [9]]
    return {
        "count_batch": engine.count_batch(queries).tolist(),
        "ntd": engine.ntd([1], max_support=10**6),  # several shards, merged in parallel
        "infgram_prob_batch": {k: v.tolist() for k, v in engine.infgram_prob_batch(queries[:2], [3, 1]).items()},
        "infgram_ntd_batch": engine.infgram_ntd_batch(queries, max_support=5),
        "score_batch": [{k: v.tolist() for k, v in s.items()} for s in engine.score_batch([[1, 2, 3, 4], [5, 5, 0]])],
        "ntd_dense": engine.ntd_dense([[1], [2, 3]], vocab_size=16)["probs"].tolist(),
        "contamination": [c["matching"].tolist() for c in _anygram.contamination_batch(engine, [[1, 2, 3, 4, 5]], 2)],
        "dedup_self": {k: v.tolist() for k, v in _anygram.dedup_self(engine, 4).items()},
        "search_docs": engine.search_docs([1, 2], maxnum=3, seed=5),
        "count_cnf": engine.count_cnf([[[1]], [[2], [3]]]),
        "docs_by_ixs": engine.get_docs_by_ixs([0, 30, 59]),
        "encode_batch": [a.tolist() for a in engine.test_tokenizer.encode_batch(["the cat", "it's 42 👍🏽"])],
        "decode_batch": engine.test_tokenizer.decode_batch([[1, 2, 3], [70, 80]]),
    }


def test_multiprocessing_fork_child(sharded_engine):
    expected = every_parallel_call(sharded_engine)  # the parent's pool is up
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)

    def child():
        send.send(every_parallel_call(sharded_engine))

    process = context.Process(target=child)
    process.start()
    try:
        assert receive.poll(CHILD_TIMEOUT_S), "the forked child hung"
        assert receive.recv() == expected
    finally:
        process.join(5)
        if process.is_alive():
            process.kill()
    assert process.exitcode == 0


def test_os_fork_child(sharded_engine):
    expected = every_parallel_call(sharded_engine)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer through the pipe, never return into pytest
        code = 1
        try:
            os.close(read_end)
            with os.fdopen(write_end, "wb") as out:
                pickle.dump(every_parallel_call(sharded_engine), out)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        ready, _, _ = select.select([pipe], [], [], CHILD_TIMEOUT_S)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        got = pickle.load(pipe)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert got == expected


def test_fork_child_counts_cnf_windows_in_shared_pieces(tmp_path):
    """A CNF count with more windows than one piece walks them on the calling thread
    and the pool's threads together (and remembers its clauses): in a forked child too."""
    rng = np.random.default_rng(3)
    docs = [rng.integers(1, 3, size=rng.integers(1, 60)).tolist() for _ in range(600)]
    engine = anygram.Engine.open(build_from_tokens(str(tmp_path), docs, 2, 1000, 0))
    query = [[[1]], [[2]]]
    assert min(engine.count([1]), engine.count([2])) > 4096  # windows in pieces

    def count():
        return engine.count_cnf(query, max_clause_freq=10**9, max_diff_tokens=3)

    expected = count()
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=lambda: send.send([count(), count()]))
    process.start()
    try:
        assert receive.poll(CHILD_TIMEOUT_S), "the forked child hung"
        assert receive.recv() == [expected, expected]
    finally:
        process.join(5)
        if process.is_alive():
            process.kill()
    assert process.exitcode == 0
