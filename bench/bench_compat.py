#!/usr/bin/env python3
"""Every method of anygram.compat.InfiniGramEngine side by side with infini-gram 2.6.0's
InfiniGramEngine, both in this process, on the same index files (built by infini-gram's own
indexer): p50/p99 latency per call from Python, the ratio, and how many answers agree.

Reads the first --docs documents of ../shared/data/docs.jsonl.zst (GPT-2 tokens, u16) when
present, else a synthetic corpus of UTF-8 bytes (u8).

Usage: python bench/bench_compat.py [--docs N] [--queries N] [--out bench/results]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
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
    return args


def comparable(method: str, answer):
    """The part of an answer that must agree: search_docs draws documents at random."""
    if method.startswith("search_docs") and isinstance(answer, dict) and "cnt" in answer:
        return answer["cnt"], answer["approx"], min(len(answer["documents"]), 1)
    if method == "find" and isinstance(answer, dict):
        return answer["cnt"], [tuple(s) for s in answer["segment_by_shard"]]
    return answer


def timed(fn, calls):
    for a in calls[: min(len(calls), 50)]:  # warm the page cache and the code
        fn(*a)
    out = np.empty(len(calls))
    for i, a in enumerate(calls):
        t0 = time.perf_counter_ns()
        fn(*a)
        out[i] = time.perf_counter_ns() - t0
    return out / 1000.0  # µs


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--docs", type=int, default=3000, help="documents of the corpus to index")
    p.add_argument("--queries", type=int, default=300, help="calls per method")
    p.add_argument("--workdir", default=os.path.join(HERE, "results", "tmp"))
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--shared", default=SHARED, help="the shared data directory (default: ../shared/data)")
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

    kwargs = dict(index_dir=index_dir, eos_token_id=eos, vocab_size=vocab, token_dtype=dtype)
    ours, theirs = Compat(**kwargs), Peer(**kwargs)
    width = {"u8": 1, "u16": 2}[dtype]
    work = workload(index_dir, width, args.queries)
    rows = []
    for method, calls in work.items():
        agree = sum(comparable(method, getattr(ours, method)(*a))
                    == comparable(method, getattr(theirs, method)(*a)) for a in calls)
        t_ours, t_theirs = timed(getattr(ours, method), calls), timed(getattr(theirs, method), calls)
        row = {"method": method, "calls": len(calls), "agree": agree,
               "anygram_p50_us": float(np.percentile(t_ours, 50)),
               "anygram_p99_us": float(np.percentile(t_ours, 99)),
               "infinigram_p50_us": float(np.percentile(t_theirs, 50)),
               "infinigram_p99_us": float(np.percentile(t_theirs, 99))}
        row["ratio_p50"] = row["infinigram_p50_us"] / row["anygram_p50_us"]
        row["ratio_p99"] = row["infinigram_p99_us"] / row["anygram_p99_us"]
        rows.append(row)
        print(f"{method:20} ours p50 {row['anygram_p50_us']:9.1f} p99 {row['anygram_p99_us']:9.1f} µs | "
              f"infini-gram p50 {row['infinigram_p50_us']:9.1f} p99 {row['infinigram_p99_us']:9.1f} µs | "
              f"x{row['ratio_p50']:.1f} / x{row['ratio_p99']:.1f} | agree {agree}/{len(calls)}", flush=True)

    engine = ours.get_new_shards_by_index_dir()[index_dir]
    lines = [
        f"# anygram.compat.InfiniGramEngine vs infini-gram 2.6.0 ({engine.num_tokens:,} {dtype} tokens, "
        f"{engine.num_documents:,} documents{', GPT-2' if tokenizer else ', synthetic UTF-8'})",
        "",
        f"machine: {platform.machine()}, {os.cpu_count()} cores; both engines in one process on "
        f"infini-gram's own index files, hot page cache, {args.queries} calls per method, latency per call "
        "from Python. "
        "search_docs answers are compared on cnt/approx only (both draw at random); other differences "
        "are infini-gram's defects listed in the README (ntd eos lumping, creativity misses).",
        "",
        "| method | compat p50 µs | compat p99 µs | infini-gram p50 µs | infini-gram p99 µs | ratio p50 "
        "| ratio p99 | same answer |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| {r['method']} | {r['anygram_p50_us']:.1f} | {r['anygram_p99_us']:.1f} | "
                     f"{r['infinigram_p50_us']:.1f} | {r['infinigram_p99_us']:.1f} | {r['ratio_p50']:.1f}x | "
                     f"{r['ratio_p99']:.1f}x | {r['agree']}/{r['calls']} |")
    report = "\n".join(lines)
    print("\n" + report)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"{time.strftime('%Y-%m-%d')}-compat-{args.docs}")
    with open(stem + ".md", "w") as f:
        f.write(report + "\n")
    with open(stem + ".json", "w") as f:
        json.dump({"rows": rows, "docs": args.docs, "dtype": dtype}, f, indent=2)


if __name__ == "__main__":
    main()
