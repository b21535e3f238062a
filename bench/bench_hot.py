#!/usr/bin/env python3
"""Hot-path benchmark (issue 17): per-call cost, batch forms against the Rust floor,
count_cnf by clause frequency against infini-gram, score beside KenLM; this build beside a
baseline build of the package (e.g. main) in the same run, interleaved query by query so
that a busy machine slows both alike.

    cargo build --release -p anygram --example hot_floor
    python bench/bench_hot.py --baseline /work/main/python/anygram [--index DIR] [--kenlm]

The docs corpus index (../shared/data) is built once with `anygram build` into --workdir;
infini-gram opens the same files. Queries are the query benchmark's (bench_queries.py).
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import bench_queries  # noqa: E402


def load_baseline(package_dir: str):
    """The package at package_dir imported as `anygram_baseline` (its imports are relative)."""
    tmp = tempfile.mkdtemp(prefix="anygram-baseline-")
    shutil.copytree(package_dir, os.path.join(tmp, "anygram_baseline"))
    sys.path.insert(0, tmp)
    return importlib.import_module("anygram_baseline")


def percentiles(times):
    a = np.asarray(times)
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def interleaved(fns, queries, warm=200):
    """Per-query µs of each fn, the fns taking turns on every query. Their order cycles
    through every permutation: the first one warms the page cache for the others, and
    each one leaves the CPU caches to the next (a peer's query evicts what the one after
    it needs), so each fn goes first, and follows each other fn, equally often."""
    for q in queries[:warm]:
        for fn in fns:
            fn(q)
    out = [[] for _ in fns]
    orders = list(itertools.permutations(range(len(fns))))
    for i, q in enumerate(queries):
        for j in orders[i % len(orders)]:
            t0 = time.perf_counter_ns()
            fns[j](q)
            out[j].append((time.perf_counter_ns() - t0) / 1000)
    return out


def evict_cpu_caches(megabytes=512):
    """Reads a buffer far larger than any last-level cache, so that a pass starts with
    none of the index's lines cached (the page cache is untouched)."""
    global _EVICTION_BUFFER
    if _EVICTION_BUFFER is None:
        _EVICTION_BUFFER = np.ones(megabytes << 17, dtype=np.float64)
    _EVICTION_BUFFER.sum()


_EVICTION_BUFFER = None


def separate_passes(fns, queries, repeat=3, warm=200):
    """Per-query µs of each fn, each in passes of its own over the queries, the CPU
    caches evicted before every pass and the order of the fns rotating: interleaving
    them query by query (`interleaved`) lets the first one's misses warm the CPU cache
    for the others (they read the same files), which hides a change in miss latency."""
    out = [[] for _ in fns]
    for r in range(repeat):
        for k in range(len(fns)):
            j = (r + k) % len(fns)
            evict_cpu_caches()
            for q in queries[-warm:]:  # code and the top levels of the search, not these queries' lines
                fns[j](q)
            for q in queries[:-warm]:
                t0 = time.perf_counter_ns()
                fns[j](q)
                out[j].append((time.perf_counter_ns() - t0) / 1000)
    return out


def per_query(fn, n, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e6 / n


def batch_forms(engine, kind, queries):
    """name -> callable running the whole batch of one kind in one form."""
    if kind in ("prob", "infgram_prob"):
        contexts, tokens = [q[0] for q in queries], [q[1] for q in queries]
    else:
        contexts, tokens = queries, None
    lengths = np.array([len(c) for c in contexts])
    rows = np.zeros((len(contexts), max(1, lengths.max())), dtype=np.uint32)
    for i, c in enumerate(contexts):
        rows[i, :len(c)] = c
    flat = np.concatenate([np.asarray(c, dtype=np.uint32) for c in contexts])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    tok = np.asarray(tokens, dtype=np.uint32) if tokens is not None else None
    batch = {
        "count": lambda x, **kw: engine.count_batch(x, **kw),
        # n past every context's length: the whole context, as the floor's n-gram queries
        "prob": lambda x, **kw: engine.prob_batch(x, tok, n=11, **kw),
        "ntd": lambda x, **kw: engine.ntd_batch(x, n=6, **kw),
        "infgram_prob": lambda x, **kw: engine.infgram_prob_batch(x, tok, **kw),
        "infgram_ntd": lambda x, **kw: engine.infgram_ntd_batch(x, **kw),
    }[kind]
    single = {
        "count": lambda: [engine.count(c) for c in contexts],
        "prob": lambda: [engine.prob(c, t, n=11) for c, t in zip(contexts, tokens)],
        "ntd": lambda: [engine.ntd(c, n=6) for c in contexts],
        "infgram_prob": lambda: [engine.infgram_prob(c, t) for c, t in zip(contexts, tokens)],
        "infgram_ntd": lambda: [engine.infgram_ntd(c) for c in contexts],
    }[kind]
    forms = {"single-call loop": single, "lists": lambda: batch(contexts)}
    try:
        batch(rows, lengths=lengths)
        forms["2-D uint32 + lengths"] = lambda: batch(rows, lengths=lengths)
        forms["1-D uint32 + offsets"] = lambda: batch(flat, offsets=offsets)
    except TypeError:  # a build without array batches
        pass
    return forms


def floor_figures(index, sets, workdir):
    exe = os.path.join(ROOT, "target", "release", "examples", "hot_floor")
    # A no-op when the example is up to date with this tree.
    subprocess.run(["cargo", "build", "--release", "-p", "anygram", "--example", "hot_floor"], cwd=ROOT, check=True)
    path = os.path.join(workdir, "floor-queries.tsv")
    with open(path, "w") as f:
        for kind in ("count", "ntd", "infgram_ntd"):
            for q in sets[kind]:
                f.write(f"{kind}\t{' '.join(map(str, q))}\t\n")
        for kind in ("prob", "infgram_prob"):
            for c, t in sets[kind]:
                f.write(f"{kind}\t{' '.join(map(str, c))}\t{t}\n")
    out = subprocess.run([exe, index, path], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def kenlm_model(index: str, arpa: str):
    """KenLM's model of the index's corpus (bench/kenlm_arpa.py writes the ARPA file once)."""
    import kenlm

    if not os.path.exists(arpa):
        subprocess.run([sys.executable, os.path.join(HERE, "kenlm_arpa.py"), index, arpa], check=True)
    return kenlm.Model(arpa)


def cpu_and_wall(fn, repeat=3):
    """Best wall seconds and best CPU seconds (all threads of this process) of fn()."""
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return wall, cpu


def training_index(args, engine_modules):
    """The docs corpus without its held-out documents (bench_score.py's), built once into
    --workdir; opened by every engine under test."""
    import bench_score

    index = os.path.join(args.workdir, "docs-train")
    if not os.path.exists(os.path.join(index, "anygram.json")):
        bench_score.SHARED = args.shared
        corpus = os.path.join(args.workdir, "docs-train.jsonl")
        bench_score.training_corpus(corpus)
        subprocess.run([sys.executable, "-m", "anygram.cli", "build", corpus, "--output", index, "--tokenizer",
                        os.path.join(args.shared, "gpt2-tokenizer.json"), "--overwrite", "--quiet"], check=True)
        os.remove(corpus)
    return index, {name: m.Engine.open(index, accelerator=False) for name, m in engine_modules.items()}


def score_section(engine_modules, args, lines):
    """Tokens/s of score_batch and a loop of score beside KenLM's score and full_scores on the
    held-out documents (token ids as words), all models built from the docs corpus without
    them; one run. Tokens per CPU-second as well: our batch uses every core, KenLM one thread."""
    index, engines = training_index(args, engine_modules)
    time.sleep(3)  # sampled keys, built in the background after open
    tokens = np.load(os.path.join(args.shared, "lm_eval", "heldout_tokens.npy")).astype(np.uint32)
    offsets = np.load(os.path.join(args.shared, "lm_eval", "heldout_offsets.npy"))
    texts = [tokens[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)][:args.score_docs]
    n = sum(len(t) for t in texts)
    runs = {}
    for name, e in engines.items():
        e.score_batch(texts[:20])  # page cache
        # The first call long enough builds the unigram/bigram table (context_table.rs).
        runs[f"{name}: score_batch, first call"] = cpu_and_wall(lambda e=e: e.score_batch(texts), repeat=1)
        runs[f"{name}: score_batch (all cores)"] = cpu_and_wall(lambda e=e: e.score_batch(texts))
        runs[f"{name}: score_batch, sparse=False"] = cpu_and_wall(lambda e=e: e.score_batch(texts, sparse=False))
        runs[f"{name}: score, a call per text"] = cpu_and_wall(lambda e=e: [e.score(t) for t in texts])
    kenlm_note = ""
    if args.kenlm:
        arpa = os.path.join(args.workdir, "docs-train.4gram.arpa")
        model = kenlm_model(index, arpa)
        t0 = time.perf_counter()
        sentences = [" ".join(map(str, t.tolist())) for t in texts]
        to_words = time.perf_counter() - t0
        runs["KenLM: Model.score (1 thread)"] = cpu_and_wall(
            lambda: [model.score(s, bos=True, eos=False) for s in sentences])
        runs["KenLM: Model.full_scores (1 thread)"] = cpu_and_wall(
            lambda: [list(model.full_scores(s, bos=True, eos=False)) for s in sentences])
        kenlm_note = (f"KenLM: {model.order}-gram from bench/kenlm_arpa.py ({arpa}); its input is "
                      f"text, so the ids were joined into strings beforehand ({to_words:.2f} s, not counted).")
    lines += [f"## score (∞-gram LM) beside KenLM: {len(texts)} held-out documents, {n:,} tokens; "
              f"index and KenLM model: the docs corpus without them ({engines['this build'].num_tokens:,} tokens)",
              "",
              "| what | tokens/s (wall) | tokens per CPU-second |", "| --- | ---: | ---: |"]
    out = {}
    for name, (wall, cpu) in runs.items():
        out[name] = {"tokens_per_second": n / wall, "tokens_per_cpu_second": n / cpu}
        lines.append(f"| {name} | {n / wall / 1e6:.2f}M | {n / cpu / 1e6:.2f}M |")
    lines += ["", kenlm_note, ""] if kenlm_note else [""]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default="/tmp/anygram-bench-hot")
    p.add_argument("--shared", default=os.path.abspath(os.path.join(ROOT, "..", "..", "shared", "data")))
    p.add_argument("--baseline", help="another build's python/anygram directory (e.g. main's)")
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--cnf-queries", type=int, default=1000)
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--only", default="calls,batches,cnf,score")
    p.add_argument("--index", help="an existing build of the docs corpus (default: built into --workdir)")
    p.add_argument("--name", default="hot", help="results go to bench/results/DATE-NAME.{md,json}")
    p.add_argument("--score-docs", type=int, default=749, help="held-out documents scored")
    p.add_argument("--kenlm", action="store_true", help="score beside KenLM (its model written once by "
                   "bench/kenlm_arpa.py into --workdir)")
    args = p.parse_args()
    if not os.path.exists(args.shared):
        args.shared = "/work/shared/data"
    bench_queries.SHARED = args.shared
    only = set(args.only.split(","))
    import anygram
    from infini_gram.engine import InfiniGramEngine

    os.makedirs(args.workdir, exist_ok=True)
    index = args.index or os.path.join(args.workdir, "docs")
    if not os.path.exists(os.path.join(index, "anygram.json")):
        subprocess.run([sys.executable, "-m", "anygram.cli", "build", os.path.join(args.shared, "docs.jsonl.zst"),
                        "--output", index, "--tokenizer", os.path.join(args.shared, "gpt2-tokenizer.json"),
                        "--overwrite", "--quiet"], check=True)
    ours = anygram.Engine.open(index, accelerator=False)
    engines = {"this build": ours}
    modules = {"this build": anygram}
    if args.baseline:
        base = load_baseline(args.baseline)
        engines["baseline"] = base.Engine.open(index, accelerator=False)
        modules["baseline"] = base
    theirs = InfiniGramEngine(index_dir=index, eos_token_id=50256, vocab_size=50257, token_dtype="u16")
    time.sleep(4)  # sampled keys, built in the background after open
    sets = bench_queries.query_sets(ours, max(args.queries, args.cnf_queries), "heldout")
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "index_tokens": ours.num_tokens}
    lines = [f"# Hot paths: this build vs baseline vs infini-gram, docs corpus ({ours.num_tokens:,} tokens)", "",
             f"machine: {report['machine']}; load average at start {os.getloadavg()[0]:.1f}", ""]

    if "calls" in only:
        lines += ["## Single calls from Python (p50 / p99 µs; each build in passes of its own, CPU caches "
                  "evicted before each pass, order rotating)", "",
                  "| call | " + " | ".join(engines) + " |", "| --- |" + " ---: |" * len(engines)]
        report["calls"] = {}
        for kind, make in [("count", lambda e: lambda q: e.count(q)),
                           ("prob", lambda e: lambda q: e.prob(q[0], q[1], n=11)),
                           ("ntd", lambda e: lambda q: e.ntd(q, n=6))]:
            times = separate_passes([make(e) for e in engines.values()], sets[kind][:args.queries])
            stats = [percentiles(t) for t in times]
            report["calls"][kind] = dict(zip(engines, stats))
            lines.append(f"| {kind} | " + " | ".join(f"{a:.2f} / {b:.1f}" for a, b in stats) + " |")
        lines.append("")

    if "batches" in only:
        floor = floor_figures(index, {k: v[:args.queries] for k, v in sets.items()}, args.workdir)
        report["floor"] = floor
        lines += ["## Batches: µs per query (all cores), ratio to the Rust floor (pool; for count's batch "
                  "forms the floor is the interleaved Rust loop, `interleave::count_many`)", "",
                  "| query | form | " + " | ".join(engines) + " | Rust floor 1 thread | Rust floor pool | this/floor |",
                  "| --- | --- |" + " ---: |" * (len(engines) + 3)]
        report["batches"] = {}
        for kind in ("count", "prob", "ntd", "infgram_prob", "infgram_ntd"):
            queries = sets[kind][:args.queries]
            forms = {name: batch_forms(e, kind, queries) for name, e in engines.items()}
            for form in forms["this build"]:
                row = {name: per_query(f[form], len(queries)) for name, f in forms.items() if form in f}
                report["batches"][f"{kind} {form}"] = row
                # count_batch interleaves its searches: its floor is the interleaved Rust loop.
                fl = floor.get(f"{kind} interleaved", floor[kind]) if form != "single-call loop" else floor[kind]
                cells = [f"{row[n]:.2f}" if n in row else "n/a" for n in engines]
                lines.append(f"| {kind} | {form} | " + " | ".join(cells) +
                             f" | {fl['one_thread_us']:.2f} | {fl['pool_us']:.2f} | "
                             f"{row['this build'] / fl['pool_us']:.2f}x |")
        lines.append("")

    if "cnf" in only:
        queries = sets["count_cnf"][:args.cnf_queries]
        # This build remembers frequent clauses' sorted occurrences (and the check of
        # every answer below runs each query once before the timed pass); the same
        # build without that memo shows what a query whose clauses were never seen costs.
        cnf_engines = dict(engines)
        cnf_engines["this build, no memo"] = anygram.Engine.open(index, accelerator=False, cnf_memo_bytes=0)
        fns = [lambda q, e=e: e.count_cnf(q, max_clause_freq=50000, max_diff_tokens=100)
               for e in cnf_engines.values()]
        fns.append(lambda q: theirs.count_cnf(q, max_clause_freq=50000, max_diff_tokens=100))
        mismatches = sum(fns[0](q) != fns[-1](q) or fns[-2](q) != fns[-1](q) for q in queries)
        times = [np.asarray(t) for t in interleaved(fns, queries, warm=50)]
        rarest = np.array([min(ours.count(c[0]) for c in q) for q in queries])
        names = list(cnf_engines) + ["infini-gram"]
        distinct = len({repr(q) for q in queries})
        lines += [f"## count_cnf (two bigrams ≤ 30 tokens apart; max_clause_freq 50000, max_diff_tokens 100), "
                  f"p50 / p99 µs; {distinct} distinct queries of {len(queries)}; answers differing from "
                  f"infini-gram: {mismatches}/{len(queries)}", "",
                  "| rarest clause's count | queries | " + " | ".join(names) + " | infini-gram / this (p50, p99) |",
                  "| --- | ---: |" + " ---: |" * (len(names) + 1)]
        report["cnf"] = {"mismatches": mismatches}
        for lo, hi in [(0, 10**12), (0, 100), (100, 1000), (1000, 10000), (10000, 50000), (50000, 10**12)]:
            m = (rarest >= lo) & (rarest < hi)
            if not m.any():
                continue
            stats = [percentiles(t[m]) for t in times]
            label = "all" if (lo, hi) == (0, 10**12) else f"[{lo}, {hi if hi < 10**12 else '∞'})"
            report["cnf"][label] = dict(zip(names, stats))
            lines.append(f"| {label} | {m.sum()} | " + " | ".join(f"{a:.0f} / {b:.0f}" for a, b in stats) +
                         f" | {stats[-1][0] / stats[0][0]:.1f}x, {stats[-1][1] / stats[0][1]:.1f}x "
                         f"(no memo: {stats[-1][0] / stats[-2][0]:.1f}x, {stats[-1][1] / stats[-2][1]:.1f}x) |")
        lines.append("")

    if "score" in only:
        report["score"] = score_section(modules, args, lines)

    text = "\n".join(lines)
    print(text)
    os.makedirs(args.out, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d")
    with open(os.path.join(args.out, f"{stamp}-{args.name}.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(args.out, f"{stamp}-{args.name}.json"), "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
