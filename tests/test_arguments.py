"""Every argument a caller passes is checked before it reaches the core: token ids
from numpy arrays of integer dtypes only (no silent casts of floats, bools or
strings), integer arguments in range (an ``InvalidQueryError`` naming the argument,
never OverflowError/TypeError), text that is valid Unicode, Rust panics as
``InternalError``, and an allocation that fails as ``MemoryError``, not an abort."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import anygram
from anygram import _anygram
from anygram.errors import AnygramError, InternalError, InvalidQueryError, OutOfMemoryError
from conftest import build_from_tokens
from trained_tokenizer import train_gpt2_like

DOCS = [[1, 2, 3, 4], [2, 3], [5], [], [1, 2, 5, 7, 1, 2]]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    path = build_from_tokens(str(tmp_path_factory.mktemp("args")), DOCS, 2, 1000, 0, shards=2)
    return anygram.Engine.open(path)


@pytest.fixture(scope="module")
def text_engine(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("text")
    tokenizer = train_gpt2_like(str(tmp / "tokenizer.json"))
    corpus = tmp / "c.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"the cat {i} and the dog"}) + "\n" for i in range(20)))
    return anygram.Engine.open(anygram.build_index(str(corpus), str(tmp / "index"), tokenizer=tokenizer,
                                                   progress=False).output)


# --- numpy token ids -------------------------------------------------------------

NOT_INTEGER_ARRAYS = [np.array([1.7, 2.2, 3.9]), np.array([1.0, 2.0]), np.array([True, False]),
                      np.array(["1", "2"]), np.array([1 + 0j]), np.array([1, 2], dtype=object)]


@pytest.mark.parametrize("bad", NOT_INTEGER_ARRAYS, ids=lambda a: str(a.dtype))
def test_non_integer_arrays_are_refused_everywhere(engine, bad):
    calls = {
        "count": lambda: engine.count(bad),
        "count_batch": lambda: engine.count_batch([[1], bad]),
        "prob context": lambda: engine.prob(bad, 1),
        "prob_batch tokens": lambda: engine.infgram_prob_batch([[1], [2]], bad),
        "ntd_batch": lambda: engine.ntd_batch([bad]),
        "score": lambda: engine.score(bad),
        "score_batch": lambda: engine.score_batch([bad]),
        "ntd_dense": lambda: engine.ntd_dense([bad]),
        "count_cnf": lambda: engine.count_cnf([[bad]]),
        "search_docs": lambda: engine.search_docs(bad),
        "contamination": lambda: _anygram.contamination_batch(engine, [bad], 2),
    }
    for name, call in calls.items():
        with pytest.raises(InvalidQueryError, match="integer dtype|not a token id"):
            call()
            pytest.fail(f"{name} accepted a {bad.dtype} array")


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
                                   np.uint64, ">u2", ">i8", "<u4"])
def test_integer_arrays_of_every_width_and_order(engine, dtype):
    assert engine.count(np.array([1, 2], dtype=dtype)) == engine.count([1, 2]) == 3
    assert engine.count_batch([np.array([2, 3], dtype=dtype)]).tolist() == [2]
    strided = np.array([1, 9, 2, 9], dtype=dtype)[::2]
    assert engine.count(strided) == 3


def test_out_of_range_ids_are_refused_not_wrapped(engine):
    for bad, shown in [(np.array([1, 2**32 + 1], dtype=np.uint64), "4294967297"),
                       (np.array([1, -1], dtype=np.int8), "-1"),
                       (np.array([1, 1000], dtype=np.uint16), "1000"),
                       ([1, 2**64 + 1], "18446744073709551617")]:
        with pytest.raises(InvalidQueryError, match=f"token id {shown} at position 1 is outside the vocabulary"):
            engine.count(bad)
    with pytest.raises(InvalidQueryError, match="bool"):
        engine.count([1, True])
    with pytest.raises(InvalidQueryError, match="float"):
        engine.count([1, 2.0])


# --- integer arguments -----------------------------------------------------------

BAD_INTEGERS = [-1, -5, 2**64, 2**70, 1.5, True, "3"]


def argument_calls(engine):
    """(argument name as errors show it, call with that argument set to a value)."""
    return [
        ("maxnum", lambda v: engine.search_docs([1], maxnum=v)),
        ("max_disp_len", lambda v: engine.search_docs([1], max_disp_len=v)),
        ("seed", lambda v: engine.search_docs([1], seed=v)),
        ("max_support", lambda v: engine.ntd([1], max_support=v)),
        ("max_support", lambda v: engine.infgram_ntd_batch([[1]], max_support=v)),
        ("n", lambda v: engine.ntd([1], n=v)),
        ("n", lambda v: engine.prob([1], 2, n=v)),
        ("n", lambda v: engine.prob_batch([[1]], [2], n=v)),
        ("token", lambda v: engine.prob([1], v)),
        ("doc_ix", lambda v: engine.get_doc_by_ix(v)),
        ("doc_ixs[1]", lambda v: engine.get_docs_by_ixs([0, v])),
        ("shard", lambda v: engine.get_doc_by_ptr(v, 0)),
        ("ptr", lambda v: engine.get_doc_by_ptr(0, v)),
        ("shard", lambda v: engine.get_doc_by_rank(v, 0)),
        ("rank", lambda v: engine.get_doc_by_rank(0, v)),
        ("shard_ptrs[0] ptr", lambda v: engine.get_docs_by_ptrs([(0, v)])),
        ("max_clause_freq", lambda v: engine.count_cnf([[[1]]], max_clause_freq=v)),
        ("max_diff_tokens", lambda v: engine.find_cnf([[[1]]], max_diff_tokens=v)),
        ("maxnum", lambda v: engine.search_docs_cnf([[[1]]], maxnum=v)),
        ("seed", lambda v: engine.search_docs_cnf([[[1]]], seed=v)),
        ("max_support", lambda v: engine.score([1, 2], top=True, max_support=v)),
        ("max_support", lambda v: engine.score_batch([[1, 2]], max_support=v)),
        ("max_support", lambda v: engine.ntd_dense([[1]], max_support=v)),
        ("vocab_size", lambda v: engine.ntd_dense([[1]], vocab_size=v)),
        ("min_len", lambda v: _anygram.contamination_batch(engine, [[1, 2]], v)),
        ("k", lambda v: _anygram.contamination_batch(engine, [[1, 2]], 2, k=v)),
        ("min_len", lambda v: _anygram.dedup_self(engine, v)),
        ("shard", lambda v: _anygram.dedup_against(engine, engine, v, 0, 1, 2)),
        ("doc_start", lambda v: _anygram.dedup_against(engine, engine, 0, v, 1, 2)),
        ("doc_end", lambda v: _anygram.dedup_against(engine, engine, 0, 0, v, 2)),
        ("token_width", lambda v: anygram.Engine.open(engine.path, token_width=v)),
        ("vocab_size", lambda v: anygram.Engine.open(engine.path, vocab_size=v)),
        ("eos_token_id", lambda v: anygram.Engine.open(engine.path, eos_token_id=v)),
        ("cnf_memo_bytes", lambda v: anygram.Engine.open(engine.path, cnf_memo_bytes=v)),
    ]


@pytest.mark.parametrize("value", BAD_INTEGERS, ids=repr)
def test_every_integer_argument_is_checked(engine, value):
    for name, call in argument_calls(engine):
        if name in ("seed", "k", "doc_start", "doc_end", "ptr", "rank", "shard_ptrs[0] ptr") and value == 0:
            continue
        with pytest.raises(InvalidQueryError) as raised:
            call(value)
        message = str(raised.value)
        assert message.startswith(f"{name} ") or f": {name} " in message or message.startswith(f"token: "), \
            (name, value, message)


def test_integer_arguments_accept_numpy_integers_and_their_bounds(engine):
    assert engine.search_docs([1], maxnum=np.int64(2), seed=np.uint64(2**64 - 1))["cnt"] == 3
    assert engine.get_doc_by_ix(np.uint8(4))["token_ids"] == DOCS[4]
    assert engine.ntd([1], n=np.int32(2), max_support=2**48)["prompt_cnt"] == 3


# --- text ------------------------------------------------------------------------

def test_lone_surrogate_is_an_invalid_query(text_engine, tmp_path):
    text = json.loads('"the c\\ud800t"')  # valid JSON, not valid UTF-8
    for call in (lambda: text_engine.count(text), lambda: text_engine.count_batch(["ok", text]),
                 lambda: text_engine.tokenize(text), lambda: text_engine.tokenizer.encode_batch([text])):
        with pytest.raises(InvalidQueryError, match=r"lone surrogate U\+D800 at character 5"):
            call()
    corpus = tmp_path / "b.jsonl"
    corpus.write_text(json.dumps({"text": "abc"}) + "\n")
    byte_engine = anygram.Engine.open(anygram.build_index(str(corpus), str(tmp_path / "b"), progress=False).output)
    with pytest.raises(InvalidQueryError, match=r"lone surrogate U\+DFFF at character 1"):
        byte_engine.count("a\udfffb")


# --- panics and allocation failures --------------------------------------------------

@pytest.mark.parametrize("place", ["call", "batch", "list"])
def test_a_panic_is_an_internal_error(engine, place):
    with pytest.raises(InternalError, match="deliberate panic.*please report this bug") as raised:
        _anygram._panic_for_test(place)
    assert isinstance(raised.value, AnygramError) and isinstance(raised.value, Exception)
    assert engine.count_batch([[1, 2]]).tolist() == [3]  # the pool still works


def test_a_batch_of_python_answers_keeps_order_and_names_the_first_failure(engine):
    """The batch that builds Python objects while the pool works (ntd_batch's) returns
    them in query order and, where several queries fail, names the first of them."""
    _anygram._panic_for_test("list_ok")  # raises unless 0..1000 come back in order
    with pytest.raises(InvalidQueryError, match=r"^query 377: .*item 377 fails"):
        _anygram._panic_for_test("list_error")
    assert engine.count_batch([[1, 2]]).tolist() == [3]  # the pool still works


def test_ntd_dense_failed_allocation_raises_memory_error(engine):
    """Under an address-space limit a dense [1, 2^31] float32 array (8 GiB) cannot be
    had: a MemoryError naming the size, where an infallible allocation aborts (SIGABRT)."""
    script = textwrap.dedent(f"""
        import resource
        import anygram
        from anygram.errors import OutOfMemoryError
        engine = anygram.Engine.open({engine.path!r})
        engine.count_batch([[1]])  # threads and pools up before the limit
        with open("/proc/self/status") as f:
            vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize"))
        resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), resource.RLIM_INFINITY))
        try:
            engine.ntd_dense([[1]], vocab_size=2**31)
        except OutOfMemoryError as e:
            assert isinstance(e, MemoryError)
            print("MemoryError:", e)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert "MemoryError: cannot allocate a dense [1, 2147483648] float32 array (8.00 GiB)" in done.stdout
