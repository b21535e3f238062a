#!/usr/bin/env python3
"""Query and build benchmark, anygram side by side with infini-gram (and tokengrams
for counts) in one run, on the docs corpus of ../shared/data (GPT-2 tokens).

1. Builds the corpus with `anygram build` and with infini-gram's own indexer
   (bench/peers/infinigram_build.py), each in a subprocess: wall time and peak RSS.
2. Opens infini-gram's index files with both engines and checks that every answer
   agrees (one known, documented deviation of infini-gram's ntd is counted apart).
3. Times count, prob, ntd, infgram_prob and infgram_ntd from Python, per query, on
   a hot page cache: p50 and p99 per engine and the ratio.

Usage: python bench/bench_queries.py [--docs N] [--queries N] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.abspath(os.path.join(HERE, "..", "..", "shared", "data"))
sys.path.insert(0, os.path.join(HERE, "peers"))


def build_anygram(corpus: str, out: str, tokenizer: str) -> dict:
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    cmd = ["/usr/bin/time", "-v"] if os.path.exists("/usr/bin/time") else []
    proc = subprocess.run(cmd + [sys.executable, "-m", "anygram.cli", "build", corpus, "--output", out,
                                 "--tokenizer", tokenizer, "--overwrite", "--quiet"],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"anygram build failed:\n{proc.stdout}\n{proc.stderr}")
    peak = None
    for line in proc.stderr.splitlines():
        if "Maximum resident set size" in line:
            peak = int(line.split(":")[1]) * 1024
    if peak is None:
        peak = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) * 1024
    return {"seconds": seconds, "peak_rss_bytes": peak, "log": proc.stdout}


def query_sets(engine, n: int, source: str, seed: int = 0):
    """n-grams from the held-out documents' GPT-2 tokens (lm_eval/), or from the
    indexed corpus itself (``source="corpus"``: every query then occurs)."""
    rng = random.Random(seed)
    if source == "heldout":
        tokens = np.load(os.path.join(SHARED, "lm_eval", "heldout_tokens.npy")).astype(np.int64)
    else:
        shard = os.path.join(engine.path, "tokenized.0")
        stream = np.memmap(shard, dtype=np.uint16, mode="r")
        start = rng.randrange(0, max(1, len(stream) - 2_000_000))
        tokens = np.asarray(stream[start:start + 2_000_000]).astype(np.int64)
        tokens = tokens[tokens != 0xFFFF]

    def window(max_len, min_len=1):
        i = rng.randrange(100, len(tokens) - 1)
        k = rng.randint(min_len, max_len)
        return [int(t) for t in tokens[max(0, i - k):i]], int(tokens[i])

    sets = {"count": [], "prob": [], "ntd": [], "infgram_prob": [], "infgram_ntd": [],
            "search_docs": [], "count_cnf": []}
    for _ in range(n):
        ctx, nxt = window(20)
        sets["count"].append(ctx)
        ctx, nxt = window(10)
        sets["prob"].append((ctx, nxt))
        ctx, _ = window(5)
        sets["ntd"].append(ctx)
        ctx, nxt = window(100, 20)
        sets["infgram_prob"].append((ctx, nxt))
        ctx, _ = window(100, 20)
        sets["infgram_ntd"].append(ctx)
        ctx, _ = window(4, 1)
        sets["search_docs"].append(ctx)
        ctx, _ = window(30, 12)  # two short n-grams of one passage, up to 30 tokens apart
        sets["count_cnf"].append([[ctx[:2]], [ctx[-2:]]])
    return sets


def calls(ours, theirs):
    """(our call, their call, comparable form of an answer) per query type."""
    strip = lambda d: {k: v for k, v in d.items() if k != "suffix_len"}  # noqa: E731
    return {
        "count": (lambda q: ours.count(q), lambda q: theirs.count(q)["count"]),
        "prob": (lambda q: strip(ours.prob(q[0], q[1], n=len(q[0]) + 1)), lambda q: theirs.prob(q[0], q[1])),
        "ntd": (lambda q: strip(ours.ntd(q, n=len(q) + 1)), lambda q: theirs.ntd(q)),
        "infgram_prob": (lambda q: ours.infgram_prob(q[0], q[1]), lambda q: theirs.infgram_prob(q[0], q[1])),
        "infgram_ntd": (lambda q: ours.infgram_ntd(q), lambda q: theirs.infgram_ntd(q)),
        # documents are drawn at random by both: compare the counts and the window size
        "search_docs": (lambda q: _search_summary(ours.search_docs(q, maxnum=1, max_disp_len=100)),
                        lambda q: _search_summary(theirs.search_docs(q, maxnum=1, max_disp_len=100))),
        "count_cnf": (lambda q: ours.count_cnf(q, max_clause_freq=50000, max_diff_tokens=100),
                      lambda q: theirs.count_cnf(q, max_clause_freq=50000, max_diff_tokens=100)),
    }


def _search_summary(result):
    docs = result["documents"]
    return (result["cnt"], len(docs), [len(d["token_ids"]) > 0 for d in docs])


def time_calls(fn, queries):
    for q in queries[: min(len(queries), 200)]:  # warm the page cache and the code
        fn(q)
    out = np.empty(len(queries))
    for i, q in enumerate(queries):
        t0 = time.perf_counter_ns()
        fn(q)
        out[i] = time.perf_counter_ns() - t0
    return out / 1000.0  # µs


def is_known_ntd_deviation(ours, theirs, eos):
    """infini-gram lumps a run of continuations into eos when the first and last map to eos."""
    if not isinstance(ours, dict) or "result_by_token_id" not in ours:
        return False
    a = {t: r["cont_cnt"] for t, r in ours["result_by_token_id"].items()}
    b = {t: r["cont_cnt"] for t, r in theirs["result_by_token_id"].items()}
    return ours["prompt_cnt"] == theirs["prompt_cnt"] and b.get(eos, 0) > a.get(eos, 0)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--workdir", default=os.path.join(HERE, "results", "tmp"))
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--skip-build", action="store_true", help="reuse the indexes in --workdir")
    p.add_argument("--corpus", default=os.path.join(SHARED, "docs.jsonl.zst"),
                   help="JSONL corpus (default: the docs corpus; the code corpus is made by make_corpus.py)")
    p.add_argument("--name", default="docs", help="name of the corpus in file names and the report")
    p.add_argument("--query-source", choices=["heldout", "corpus"], default="heldout")
    args = p.parse_args()
    corpus = args.corpus
    tokenizer = os.path.join(SHARED, "gpt2-tokenizer.json")
    if not os.path.exists(corpus):
        raise SystemExit(f"{corpus} not found: the benchmark reads ../shared/data")
    os.makedirs(args.workdir, exist_ok=True)
    ours_dir = os.path.join(args.workdir, f"{args.name}-anygram")
    theirs_dir = os.path.join(args.workdir, f"{args.name}-infinigram")

    import anygram
    from infini_gram.engine import InfiniGramEngine

    builds = {}
    if not args.skip_build:
        from infinigram_build import build_with_infinigram

        print("building with anygram ...", flush=True)
        builds["anygram"] = build_anygram(corpus, ours_dir, tokenizer)
        print("building with infini-gram ...", flush=True)
        r = build_with_infinigram(corpus, theirs_dir, tokenizer_json=tokenizer, token_dtype="u16", cpus=os.cpu_count(),
                                  mem_gib=16)
        builds["infini-gram"] = {"seconds": r["seconds"], "peak_rss_bytes": r["peak_rss_bytes"],
                                 "peak_tree_rss_bytes": r.get("peak_tree_rss_bytes")}
        if not r.get("valid", True):
            print("warning: infini-gram's table is known to be broken for this size", flush=True)
        for name, b in builds.items():
            print(f"  {name:12} {b['seconds']:7.1f} s  peak RSS {b['peak_rss_bytes'] / 2**20:7.0f} MiB", flush=True)

    # Both engines on infini-gram's own index files; ours also on its own build.
    ours = anygram.Engine.open(theirs_dir, token_width=2, vocab_size=50257, eos_token_id=50256)
    theirs = InfiniGramEngine(index_dir=theirs_dir, eos_token_id=50256, vocab_size=50257, token_dtype="u16")
    own = anygram.Engine.open(ours_dir)
    same_table = open(os.path.join(ours_dir, "table.0"), "rb").read() == open(os.path.join(theirs_dir, "table.0"), "rb").read()
    same_tokens = open(os.path.join(ours_dir, "tokenized.0"), "rb").read() == open(os.path.join(theirs_dir, "tokenized.0"), "rb").read()
    print(f"identical files: tokenized.0 {same_tokens}, table.0 {same_table}", flush=True)

    sets = query_sets(ours, args.queries, args.query_source)
    rows, agreement = [], {}
    for kind, (our_fn, their_fn) in calls(ours, theirs).items():
        queries = sets[kind]
        mismatches = deviations = 0
        for q in queries:
            a, b = our_fn(q), their_fn(q)
            if a != b:
                if is_known_ntd_deviation(a, b, 50256):
                    deviations += 1
                else:
                    mismatches += 1
            own_answer = calls(own, theirs)[kind][0](q)
            if own_answer != a:
                mismatches += 1
        agreement[kind] = {"queries": len(queries), "mismatches": mismatches, "known_ntd_deviations": deviations}
        t_ours = time_calls(our_fn, queries)
        t_theirs = time_calls(their_fn, queries)
        row = {
            "query": kind,
            "anygram_p50_us": float(np.percentile(t_ours, 50)),
            "anygram_p99_us": float(np.percentile(t_ours, 99)),
            "infinigram_p50_us": float(np.percentile(t_theirs, 50)),
            "infinigram_p99_us": float(np.percentile(t_theirs, 99)),
        }
        row["speedup_p50"] = row["infinigram_p50_us"] / row["anygram_p50_us"]
        row["speedup_p99"] = row["infinigram_p99_us"] / row["anygram_p99_us"]
        rows.append(row)
        print(f"{kind:13} anygram p50 {row['anygram_p50_us']:8.1f} µs p99 {row['anygram_p99_us']:8.1f} µs | "
              f"infini-gram p50 {row['infinigram_p50_us']:8.1f} µs p99 {row['infinigram_p99_us']:8.1f} µs | "
              f"x{row['speedup_p50']:.1f} / x{row['speedup_p99']:.1f}  {agreement[kind]}", flush=True)

    # Batch throughput (all cores) for counts.
    t0 = time.perf_counter()
    ours.count_batch(sets["count"])
    batch_us = (time.perf_counter() - t0) * 1e6 / len(sets["count"])

    lines = [
        f"# anygram vs infini-gram 2.6.0: {args.name} corpus ({ours.num_tokens:,} GPT-2 tokens, "
        f"{ours.num_documents:,} documents)",
        "",
        f"machine: {platform.machine()}, {os.cpu_count()} cores; {args.queries} queries per type from "
        f"{'the held-out documents' if args.query_source == 'heldout' else 'the indexed corpus'}' tokens; both engines "
        "on infini-gram's own index files, hot page cache, per-query latency from Python.",
        "",
        "| query | anygram p50 µs | anygram p99 µs | infini-gram p50 µs | infini-gram p99 µs | speedup p50 | speedup p99 | answers agree |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        a = agreement[r["query"]]
        agree = f"{a['queries'] - a['mismatches'] - a['known_ntd_deviations']}/{a['queries']}"
        if a["known_ntd_deviations"]:
            agree += f" (+{a['known_ntd_deviations']} infini-gram eos lumping)"
        lines.append(f"| {r['query']} | {r['anygram_p50_us']:.1f} | {r['anygram_p99_us']:.1f} | "
                     f"{r['infinigram_p50_us']:.1f} | {r['infinigram_p99_us']:.1f} | "
                     f"{r['speedup_p50']:.1f}x | {r['speedup_p99']:.1f}x | {agree} |")
    lines.append("")
    lines.append(f"count_batch (all cores): {batch_us:.2f} µs per query")
    if builds:
        lines += ["", f"| build ({os.path.basename(corpus)} → index, end to end) | seconds | peak RSS MiB, "
                  "largest process | peak RSS MiB, all processes |", "| --- | ---: | ---: | ---: |"]
        for name, b in builds.items():
            tree = b.get("peak_tree_rss_bytes") or b["peak_rss_bytes"]
            lines.append(f"| {name} | {b['seconds']:.1f} | {b['peak_rss_bytes'] / 2**20:.0f} | {tree / 2**20:.0f} |")
        a, b = builds["anygram"], builds["infini-gram"]
        lines.append(f"| ratio infini-gram/anygram | {b['seconds'] / a['seconds']:.2f}x | "
                     f"{b['peak_rss_bytes'] / a['peak_rss_bytes']:.2f}x | "
                     f"{(b.get('peak_tree_rss_bytes') or b['peak_rss_bytes']) / a['peak_rss_bytes']:.2f}x |")
    lines.append(f"\nidentical index files from both builders: tokenized.0 {same_tokens}, table.0 {same_table}")
    report = "\n".join(lines)
    print("\n" + report)
    os.makedirs(args.out, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d")
    with open(os.path.join(args.out, f"{stamp}-{args.name}-queries.md"), "w") as f:
        f.write(report + "\n")
    with open(os.path.join(args.out, f"{stamp}-{args.name}-queries.json"), "w") as f:
        json.dump({"rows": rows, "agreement": agreement, "builds": builds, "batch_count_us": batch_us}, f, indent=2)


if __name__ == "__main__":
    main()
