#!/usr/bin/env python3
"""Every method of anygram.compat.InfiniGramEngine side by side with infini-gram 2.6.0's
InfiniGramEngine, both in this process, on the same index files (built by infini-gram's own
indexer): p50/p99 latency per call from Python, the ratio, and how many answers agree; then
every method of anygram.compat.tokengrams.MemmapIndex beside tokengrams 0.3.3's on the same
token file and table (the same corpus, documents laid end to end), with Kneser-Ney
probabilities and sampling throughput.

Reads the first --docs documents of ../shared/data/docs.jsonl.zst (GPT-2 tokens, u16) when
present, else a synthetic corpus of UTF-8 bytes (u8).

Floor-bound methods (a call's cost from Python) also get their floor: the cheapest C call with
the same argument and result shapes, and peer / floor, the best ratio possible (FLOORS).

Usage: python bench/bench_compat.py [--docs N] [--queries N] [--peers infinigram,tokengrams] [--out bench/results]
       [--name FILE_STEM]
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import marshal
import operator
import os
import platform
import random
import shutil
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.abspath(os.path.join(HERE, "..", "..", "shared", "data"))
sys.path.insert(0, os.path.join(HERE, "peers"))
WORDS = "the of and a to in is was for on that with as by at from it an be this are or".split()


def write_corpus(path: str, docs: int, shared: str) -> tuple:
    """The corpus as JSONL: (tokenizer or None, token dtype, eos, vocab size)."""
    source = os.path.join(shared, "docs.jsonl.zst")
    with open(path, "w") as out:
        if os.path.exists(source):
            import zstandard

            with open(source, "rb") as f:
                reader = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8")
                for i, line in enumerate(reader):
                    if i >= docs:
                        break
                    out.write(line)
            return os.path.join(shared, "gpt2-tokenizer.json"), "u16", 50256, 50257
        rng = random.Random(0)
        for i in range(docs):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 400)))
            out.write(json.dumps({"text": text, "id": i}) + "\n")
    return None, "u8", 0, 255


def workload(index_dir: str, width: int, n: int, seed: int = 0):
    """Arguments per method, drawn from the index's own token stream (so that most occur)."""
    import anygram

    engine = anygram.Engine.open(index_dir, token_width=width)
    rng = random.Random(seed)
    dtype = {1: np.uint8, 2: np.uint16}[width]
    stream = np.memmap(os.path.join(index_dir, "tokenized.0"), dtype=dtype, mode="r")
    separator = 2 ** (8 * width) - 1
    tokens = [int(t) for t in stream[: 2_000_000] if t != separator]
    tok_cnt, docs = engine.shard_info()[0]["num_tokens"], engine.num_documents

    def window(lo, hi):
        i = rng.randrange(len(tokens) - hi - 1)
        return tokens[i:i + rng.randint(lo, hi)]

    def ptr():
        return engine.get_doc_by_rank(0, rng.randrange(tok_cnt), 1)["ptr"] // 2 * 2 // width * width

    args = {name: [] for name in (
        "count", "find", "prob", "ntd", "infgram_prob", "infgram_ntd", "count_cnf", "find_cnf", "search_docs",
        "search_docs_cnf", "get_doc_by_ix", "get_doc_by_ix_2", "get_doc_by_rank", "get_doc_by_rank_2",
        "get_doc_by_ptr", "get_doc_by_ptr_2", "get_docs_by_ixs", "get_docs_by_ixs_2", "get_docs_by_ptrs",
        "get_docs_by_ptrs_2", "get_docs_by_ranks_2", "creativity", "attribute", "get_total_doc_cnt")}
    for _ in range(n):
        q = window(1, 10)
        args["count"].append((q,))
        args["find"].append((q,))
        args["prob"].append((q[:-1], q[-1]))
        args["ntd"].append((window(1, 5),))
        q = window(20, 100)
        args["infgram_prob"].append((q[:-1], q[-1]))
        args["infgram_ntd"].append((window(20, 100), 1000))
        passage = window(12, 30)
        cnf = [[passage[:2]], [passage[-2:]]]
        args["count_cnf"].append((cnf,))
        args["find_cnf"].append((cnf,))
        args["search_docs_cnf"].append((cnf, 1, 100))
        args["search_docs"].append((window(1, 4), 1, 100))
        ix, rank = rng.randrange(docs), rng.randrange(tok_cnt)
        args["get_doc_by_ix"].append((ix, 100))
        args["get_doc_by_ix_2"].append((ix, 100))
        args["get_doc_by_rank"].append((0, rank, 100))
        args["get_doc_by_rank_2"].append((0, rank, 5, 50))
        p = ptr()
        args["get_doc_by_ptr"].append((0, p, 100))
        args["get_doc_by_ptr_2"].append((0, p, 5, 50))
        args["get_docs_by_ixs"].append(([rng.randrange(docs) for _ in range(8)], 100))
        args["get_docs_by_ixs_2"].append(([(rng.randrange(docs), 50) for _ in range(8)],))
        args["get_docs_by_ptrs"].append(([(0, ptr()) for _ in range(8)], 100))
        args["get_docs_by_ptrs_2"].append(([(0, ptr(), 5, 50) for _ in range(8)],))
        args["get_docs_by_ranks_2"].append(([(0, rng.randrange(tok_cnt), 5, 50) for _ in range(8)],))
        text = window(50, 100)
        args["creativity"].append((text,))
        args["attribute"].append((text, [], 1, 1000, False))
        args["get_total_doc_cnt"].append(())
    # The goal: attribute/creativity of held-out-sized texts of 100-1,000 tokens.
    args["creativity_1000"] = [(window(1000, 1000),) for _ in range(max(5, n // 20))]
    args["attribute_1000"] = [(t, [], 1, 1000, False) for (t,) in args["creativity_1000"]]
    return args


def tokengrams_workload(tokens: np.ndarray, vocab: int, n: int, seed: int = 1):
    """Arguments per tokengrams method, windows of the token stream (so that most occur)."""
    rng = random.Random(seed)

    def window(lo, hi):
        i = rng.randrange(len(tokens) - hi - 1)
        return [int(t) for t in tokens[i:i + rng.randint(lo, hi)]]

    args = {name: [] for name in ("count", "contains", "positions", "count_next", "batch_count_next",
                                  "get_smoothed_probs", "batch_get_smoothed_probs", "sample_unsmoothed",
                                  "sample_smoothed")}
    for _ in range(n):
        args["count"].append((window(1, 8),))
        args["contains"].append((window(1, 8),))
        args["positions"].append((window(2, 6),))
        args["count_next"].append((window(1, 4),))
        args["batch_count_next"].append(([window(1, 4) for _ in range(16)],))
        args["get_smoothed_probs"].append((window(1, 4),))
        args["batch_get_smoothed_probs"].append(([window(1, 4) for _ in range(8)],))
    for _ in range(max(5, n // 10)):
        args["sample_unsmoothed"].append((window(2, 2), 3, 20, 8))
        args["sample_smoothed"].append((window(2, 2), 3, 20, 8))
    return args


def tokengrams_rows(index_dir: str, width: int, vocab: int, n: int, workdir: str):
    """tokengrams 0.3.3 and the shim on one token file + table (built by tokengrams)."""
    import tokengrams
    from anygram.compat import tokengrams as shim

    dtype = {1: np.uint8, 2: np.uint16}[width]
    stream = np.memmap(os.path.join(index_dir, "tokenized.0"), dtype=dtype, mode="r")
    tokens = np.asarray(stream[stream != 2 ** (8 * width) - 1], dtype=np.uint16)
    token_path, table_path = os.path.join(workdir, "tokengrams.tokens"), os.path.join(workdir, "tokengrams.table")
    tokens.tofile(token_path)
    t0 = time.perf_counter()
    theirs = tokengrams.MemmapIndex.build(token_path, table_path, vocab=vocab)
    build_theirs = time.perf_counter() - t0
    shutil.rmtree(table_path + ".anygram", ignore_errors=True)
    t0 = time.perf_counter()
    ours = shim.MemmapIndex(token_path, table_path, vocab=vocab)
    convert_ours = time.perf_counter() - t0
    # Both compute their smoothed unigram distribution once, on first use: not in the timings.
    ours.get_smoothed_probs([]), theirs.get_smoothed_probs([])
    rows = []
    for method, calls in tokengrams_workload(tokens, vocab, n).items():
        deterministic = not method.startswith("sample")
        agree = None
        if deterministic:
            def same(a, b):
                if method == "positions":
                    return sorted(a) == sorted(b)
                if "smoothed" in method:
                    return bool(np.allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=0))
                return a == b
            agree = sum(same(getattr(ours, method)(*a), getattr(theirs, method)(*a)) for a in calls)
        t_ours, t_theirs = timed(getattr(ours, method), calls), timed(getattr(theirs, method), calls)
        rows.append(row_of(method, calls, agree, t_ours, t_theirs, "tokengrams"))
        if method in FLOORS["tokengrams"]:
            floor_row(rows[-1], getattr(ours, method), calls)
    return rows, {"tokens": int(len(tokens)), "tokengrams_build_s": build_theirs, "anygram_convert_s": convert_ours}


def row_of(method, calls, agree, t_ours, t_theirs, peer):
    row = {"peer": peer, "method": method, "calls": len(calls), "agree": agree,
           "anygram_p50_us": float(np.percentile(t_ours, 50)),
           "anygram_p99_us": float(np.percentile(t_ours, 99)),
           "peer_p50_us": float(np.percentile(t_theirs, 50)),
           "peer_p99_us": float(np.percentile(t_theirs, 99))}
    row["ratio_p50"] = row["peer_p50_us"] / row["anygram_p50_us"]
    row["ratio_p99"] = row["peer_p99_us"] / row["anygram_p99_us"]
    shown = "-" if agree is None else f"{agree}/{len(calls)}"
    print(f"{peer:10} {method:24} ours p50 {row['anygram_p50_us']:9.1f} p99 {row['anygram_p99_us']:9.1f} µs | "
          f"peer p50 {row['peer_p50_us']:9.1f} p99 {row['peer_p99_us']:9.1f} µs | "
          f"x{row['ratio_p50']:.1f} / x{row['ratio_p99']:.1f} | agree {shown}", flush=True)
    return row


def table(rows, peer_name):
    lines = [f"| method | anygram p50 µs | anygram p99 µs | {peer_name} p50 µs | {peer_name} p99 µs | ratio p50 "
             "| ratio p99 | same answer |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        shown = "- (random)" if r["agree"] is None else f"{r['agree']}/{r['calls']}"
        if r.get("documented"):
            shown += f" ({r['documented']} a separator pointer)"
        lines.append(f"| {r['method']} | {r['anygram_p50_us']:.1f} | {r['anygram_p99_us']:.1f} | "
                     f"{r['peer_p50_us']:.1f} | {r['peer_p99_us']:.1f} | {r['ratio_p50']:.1f}x | "
                     f"{r['ratio_p99']:.1f}x | {shown} |")
    return lines


def comparable(method: str, answer):
    """The part of an answer that must agree: search_docs draws documents at random."""
    if method.startswith("search_docs") and isinstance(answer, dict) and "cnt" in answer:
        return answer["cnt"], answer["approx"], min(len(answer["documents"]), 1)
    if method == "find" and isinstance(answer, dict):
        return answer["cnt"], [tuple(s) for s in answer["segment_by_shard"]]
    return answer


def separator_documented(ours, theirs, width: int) -> bool:
    """Whether two document answers differ only as the README's differences say: a pointer on
    a document separator, where infini-gram's needle_offset is a wrapped u64 subtraction
    ((2^64 - width) // width) and ours is 0 (tests/test_compat_infinigram.py::
    test_pointer_on_a_separator)."""
    ours = ours if isinstance(ours, list) else [ours]
    theirs = theirs if isinstance(theirs, list) else [theirs]
    wrapped = (2 ** 64 - width) // width
    if len(ours) != len(theirs) or not all(isinstance(d, dict) and "needle_offset" in d for d in ours + theirs):
        return False
    documented = [a["needle_offset"] == 0 and b["needle_offset"] == wrapped for a, b in zip(ours, theirs)]
    return any(documented) and all(
        (dict(a, needle_offset=0) if d else a) == (dict(b, needle_offset=0) if d else b)
        for a, b, d in zip(ours, theirs, documented))


def agreement(method: str, ours, theirs, width: int) -> str:
    """'same', 'documented' (a difference the README lists) or 'differs'."""
    if comparable(method, ours) == comparable(method, theirs):
        return "same"
    return "documented" if separator_documented(ours, theirs, width) else "differs"


def timed(fn, calls):
    for a in calls[: min(len(calls), 50)]:  # warm the page cache and the code
        fn(*a)
    out = np.empty(len(calls))
    for i, a in enumerate(calls):
        t0 = time.perf_counter_ns()
        fn(*a)
        out[i] = time.perf_counter_ns() - t0
    return out / 1000.0  # µs


#: The floor-bound methods: for each, the cheapest call from Python with the same argument and
#: result shapes, made from the call's arguments and anygram's answer (built before the timer,
#: called inside it, its result dropped there as a method's is): C calls only, no Python frame.
FLOORS = {"tokengrams": {
    # an int from the query list / a bool from it
    "count": lambda args, answer: functools.partial(len, args[0]),
    "contains": lambda args, answer: functools.partial(bool, args[0]),
    # a fresh list of the answer's length (its ints shared: below any real answer's cost)
    "positions": lambda args, answer: answer.copy,
    # a list of `vocab` items, all one object: `[x] * vocab`, the cheapest list of that length
    "count_next": lambda args, answer: functools.partial(operator.mul, answer[:1], len(answer)),
    "get_smoothed_probs": lambda args, answer: functools.partial(operator.mul, answer[:1], len(answer)),
    "batch_count_next": lambda args, answer: functools.partial(
        list, map(operator.mul, [row[:1] for row in answer], map(len, answer))),
    "batch_get_smoothed_probs": lambda args, answer: functools.partial(
        list, map(operator.mul, [row[:1] for row in answer], map(len, answer))),
}, "infini-gram": {
    # the same dict (7 keys, a list of fresh ints) decoded by marshal, CPython's fastest decoder
    "get_doc_by_ix": lambda args, answer: functools.partial(marshal.loads, marshal.dumps(answer)),
    "get_doc_by_ix_2": lambda args, answer: functools.partial(marshal.loads, marshal.dumps(answer)),
    # a constant int: a C call that returns it
    "get_total_doc_cnt": lambda args, answer: functools.partial(int, answer),
}}


def floor_row(row, fn, calls):
    """The floor of a floor-bound method beside its row: `floor_p50_us`, and the best ratio any
    Python extension could reach (`best_ratio_p50` = peer / floor)."""
    make = FLOORS[row["peer"]][row["method"]]
    floor = timed_calls([make(a, fn(*a)) for a in calls])
    row["floor_p50_us"] = float(np.percentile(floor, 50))
    row["best_ratio_p50"] = row["peer_p50_us"] / row["floor_p50_us"]
    print(f"{'':10} {row['method']:24} floor p50 {row['floor_p50_us']:9.2f} µs: best ratio possible "
          f"x{row['best_ratio_p50']:.1f}, anygram at x{row['anygram_p50_us'] / row['floor_p50_us']:.1f} the floor",
          flush=True)


def timed_calls(thunks):
    """Latency of each zero-argument call (each called once: a thunk may be single-use)."""
    out = np.empty(len(thunks))
    for i, thunk in enumerate(thunks):
        t0 = time.perf_counter_ns()
        thunk()
        out[i] = time.perf_counter_ns() - t0
    return out / 1000.0


def floor_table(rows):
    lines = ["| method | floor p50 µs | anygram p50 µs | peer p50 µs | ratio p50 | best ratio possible (peer / floor) "
             "| anygram / floor |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        if "floor_p50_us" in r:
            lines.append(f"| {r['method']} ({r['peer']}) | {r['floor_p50_us']:.2f} | {r['anygram_p50_us']:.2f} | "
                         f"{r['peer_p50_us']:.2f} | {r['ratio_p50']:.1f}x | {r['best_ratio_p50']:.1f}x | "
                         f"{r['anygram_p50_us'] / r['floor_p50_us']:.1f}x |")
    return lines


def held_out_texts(tokenizer_json: str, count: int, length: int = 1000):
    """Texts of `length` GPT-2 tokens that no document corpus of ours holds: the Python
    standard library's docstrings, tokenized, laid end to end and cut."""
    import importlib

    from anygram.tokenizer import Tokenizer

    tokenizer = Tokenizer(tokenizer_json)
    modules = ["json", "argparse", "collections", "functools", "itertools", "pathlib", "subprocess", "asyncio",
               "email", "http.client", "logging", "re", "os", "shutil", "tarfile", "unittest", "zipfile",
               "datetime", "decimal", "fractions", "statistics", "textwrap", "string", "inspect", "dataclasses"]
    docs = set()
    for name in modules:
        for obj in vars(importlib.import_module(name)).values():
            doc = obj.__doc__ if isinstance(getattr(obj, "__doc__", None), str) else None
            if doc and len(doc) > 200:
                docs.add(doc)
    texts, pending = [], []
    for doc in sorted(docs):
        pending += [int(t) for t in tokenizer.encode(doc)]
        while len(pending) >= length and len(texts) < count:
            texts.append(pending[:length])
            pending = pending[length:]
    return texts


def docs_index_rows(index_dir: str, tokenizer_json: str, count: int, peer_count: int):
    """attribute and creativity of held-out 1,000-token texts on a large index (the issue's
    goal: under 10 ms on the docs corpus), anygram's Engine and the compat shim beside
    infini-gram on the same files (fewer texts for infini-gram: about a second each)."""
    import anygram
    from anygram.compat import InfiniGramEngine as Compat
    from infini_gram.engine import InfiniGramEngine as Peer

    texts = held_out_texts(tokenizer_json, count)
    engine = anygram.Engine.open(index_dir)
    kwargs = dict(index_dir=index_dir, eos_token_id=engine.eos_token_id, vocab_size=engine.vocab_size,
                  token_dtype=f"u{8 * engine.token_width}")
    ours, theirs = Compat(**kwargs), Peer(**kwargs)
    rows = []
    for method, args in (("creativity", lambda t: (t,)), ("attribute", lambda t: (t, [], 1, 1000, False))):
        calls = [args(t) for t in texts]
        peer_calls = calls[:peer_count]
        agree = sum(getattr(ours, method)(*a) == getattr(theirs, method)(*a) for a in peer_calls)
        t_ours, t_theirs = timed(getattr(ours, method), calls), timed(getattr(theirs, method), peer_calls)
        rows.append(row_of(f"{method}_1000_held_out", peer_calls, agree, t_ours, t_theirs, "infini-gram"))
        rows[-1]["calls_anygram"] = len(calls)
    return rows, engine


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--docs", type=int, default=3000, help="documents of the corpus to index")
    p.add_argument("--queries", type=int, default=300, help="calls per method")
    p.add_argument("--workdir", default=os.path.join(HERE, "results", "tmp"))
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--shared", default=SHARED, help="the shared data directory (default: ../shared/data)")
    p.add_argument("--peers", default="infinigram,tokengrams", help="which peers to compare with")
    p.add_argument("--docs-index", default=None,
                   help="a large GPT-2 index (e.g. of docs.jsonl.zst): attribute/creativity of held-out "
                        "1,000-token texts there too")
    p.add_argument("--held-out", type=int, default=40, help="held-out texts for --docs-index")
    p.add_argument("--name", default=None,
                   help="the results' file name without .md/.json (default: DATE-compat-DOCS, which a later run "
                        "of the same day overwrites)")
    args = p.parse_args()

    from anygram.compat import InfiniGramEngine as Compat
    from infini_gram.engine import InfiniGramEngine as Peer
    from infinigram_build import build_with_infinigram

    os.makedirs(args.workdir, exist_ok=True)
    corpus = os.path.join(args.workdir, f"compat-{args.docs}.jsonl")
    tokenizer, dtype, eos, vocab = write_corpus(corpus, args.docs, args.shared)
    index_dir = os.path.join(args.workdir, f"compat-{args.docs}-{dtype}-infinigram")
    print(f"building {args.docs} documents with infini-gram's indexer ...", flush=True)
    built = build_with_infinigram(corpus, index_dir, tokenizer_json=tokenizer, token_dtype=dtype, cpus=1)
    assert built.get("valid", True), "infini-gram's table is broken for this size (bench/peers/FACTS.md c)"

    width = {"u8": 1, "u16": 2}[dtype]
    peers = set(args.peers.split(","))
    rows, facts = [], {}
    lines = []
    if "infinigram" in peers:
        kwargs = dict(index_dir=index_dir, eos_token_id=eos, vocab_size=vocab, token_dtype=dtype)
        ours, theirs = Compat(**kwargs), Peer(**kwargs)
        for method, calls in workload(index_dir, width, args.queries).items():
            name = method.replace("_1000", "")
            verdicts = [agreement(name, getattr(ours, name)(*a), getattr(theirs, name)(*a), width) for a in calls]
            agree = sum(v != "differs" for v in verdicts)
            t_ours, t_theirs = timed(getattr(ours, name), calls), timed(getattr(theirs, name), calls)
            rows.append(row_of(method, calls, agree, t_ours, t_theirs, "infini-gram"))
            rows[-1]["documented"] = verdicts.count("documented")
            if method in FLOORS["infini-gram"]:
                floor_row(rows[-1], getattr(ours, name), calls)
        engine = ours.get_new_shards_by_index_dir()[index_dir]
        lines += [
            f"# anygram.compat vs infini-gram 2.6.0 and tokengrams 0.3.3 ({engine.num_tokens:,} {dtype} tokens, "
            f"{engine.num_documents:,} documents{', GPT-2' if tokenizer else ', synthetic UTF-8'})",
            "",
            f"machine: {platform.machine()}, {os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f} at the "
            f"end); each pair in one process on the same files, hot page cache, {args.queries} calls per method, "
            "latency per call from Python. "
            "search_docs answers are compared on cnt/approx only (both draw at random); other differences "
            "are infini-gram's defects listed in the README (ntd eos lumping, creativity misses; \"a separator "
            "pointer\": the same window, needle_offset 0 where infini-gram wraps to 2^63-1). "
            "`*_1000`: texts of 1,000 tokens.",
            "",
            "## InfiniGramEngine (infini-gram's index files)",
            "",
        ] + table([r for r in rows if r["peer"] == "infini-gram"], "infini-gram")
    if "tokengrams" in peers:
        tg_rows, facts = tokengrams_rows(index_dir, width, vocab, args.queries, args.workdir)
        rows += tg_rows
        lines += [
            "",
            f"## tokengrams MemmapIndex ({facts['tokens']:,} tokens, one token file + tokengrams' table; "
            f"tokengrams built its table in {facts['tokengrams_build_s']:.1f} s, anygram converted it once in "
            f"{facts['anygram_convert_s']:.1f} s)",
            "",
            "batch_count_next: 16 queries a call; batch_get_smoothed_probs: 8; sample_*: n=3, k=20, "
            "8 samples a call (random: not compared).",
            "",
        ] + table(tg_rows, "tokengrams")
    if any("floor_p50_us" in r for r in rows):
        lines += [
            "",
            "## Floors: the cheapest call of the same shapes",
            "",
            "Beside each method bound by the cost of a call from Python, the cheapest call with the same "
            "argument and result shapes (C calls only, no Python frame; bench_compat.FLOORS): count `len(query)`, "
            "contains `bool(query)`, positions a copy of the answer list (its ints shared), "
            "count_next/get_smoothed_probs `[x] * vocab` (one object in every item), the batch forms a list of those, get_doc_by_ix(_2) `marshal.loads` of "
            "the answer dict, get_total_doc_cnt `int(n)`. The peer's time over the floor is the best ratio "
            "any extension could reach; anygram's over the floor is what it spends above it.",
            "",
        ] + floor_table(rows)
    if args.docs_index:
        docs_rows, docs_engine = docs_index_rows(args.docs_index, os.path.join(args.shared, "gpt2-tokenizer.json"),
                                                 args.held_out, max(3, args.held_out // 8))
        rows += docs_rows
        lines += [
            "",
            f"## attribute and creativity of held-out 1,000-token texts on {args.docs_index} "
            f"({docs_engine.num_tokens:,} tokens, {docs_engine.num_documents:,} documents)",
            "",
            f"Texts: the Python standard library's docstrings, GPT-2 tokens, cut into 1,000-token pieces; "
            f"{args.held_out} texts for anygram.compat, the first {docs_rows[0]['calls']} of them for infini-gram "
            "(answers compared on those). attribute(text, [], 1, 1000, False).",
            "",
        ] + table(docs_rows, "infini-gram")
    report = "\n".join(lines)
    print("\n" + report)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, args.name or f"{time.strftime('%Y-%m-%d')}-compat-{args.docs}")
    with open(stem + ".md", "w") as f:
        f.write(report + "\n")
    with open(stem + ".json", "w") as f:
        json.dump({"rows": rows, "docs": args.docs, "dtype": dtype, "tokengrams": facts}, f, indent=2)


if __name__ == "__main__":
    main()
