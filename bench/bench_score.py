#!/usr/bin/env python3
"""`Engine.score` throughput vs a loop of infini-gram's `infgram_prob`, side by side
in one run on the same index files.

The index: the docs corpus of ../shared/data without its held-out documents
(index % 20 == 19), GPT-2 tokens, built by anygram (infini-gram opens it). The text:
the 749 held-out documents (lm_eval/heldout_tokens.npy, 1.5M tokens).

* anygram `score_batch` over every held-out token (all cores), with and without the
  sparse flag, and with the ntd mode per position (`top=True`, what eval-lm uses);
  `score` of the held-out text as one long text;
* anygram `infgram_prob` called per token over a sample of positions (context: the
  document up to the token), and infini-gram's `infgram_prob` over the same sample:
  per-token cost; every sampled answer of all three must agree.

Usage: python bench/bench_score.py [--positions 1000] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.abspath(os.path.join(HERE, "..", "..", "shared", "data"))


def training_corpus(path: str) -> None:
    """docs.jsonl.zst without the held-out documents (index % 20 == 19)."""
    import io

    import zstandard

    with open(os.path.join(SHARED, "docs.jsonl.zst"), "rb") as raw, open(path, "w") as out:
        reader = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(raw), encoding="utf-8")
        for i, line in enumerate(reader):
            if i % 20 != 19:
                out.write(line)


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--positions", type=int, default=1000, help="sampled positions for the per-call loops")
    p.add_argument("--workdir", default=os.path.join(HERE, "results", "tmp"))
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    import anygram
    from infini_gram.engine import InfiniGramEngine

    os.makedirs(args.workdir, exist_ok=True)
    index = os.path.join(args.workdir, "docs-train-index")
    if not os.path.isfile(os.path.join(index, "anygram.json")):
        corpus = os.path.join(args.workdir, "docs-train.jsonl")
        training_corpus(corpus)
        subprocess.run([sys.executable, "-m", "anygram.cli", "build", corpus, "--output", index, "--tokenizer",
                        os.path.join(SHARED, "gpt2-tokenizer.json"), "--overwrite", "--quiet"], check=True)
        os.remove(corpus)
    ours = anygram.Engine.open(index)
    time.sleep(3)  # the sampled suffix keys build in the background after open
    theirs = InfiniGramEngine(index_dir=index, eos_token_id=ours.eos_token_id, vocab_size=ours.vocab_size,
                              token_dtype="u16")

    tokens = np.load(os.path.join(SHARED, "lm_eval", "heldout_tokens.npy")).astype(np.int64)
    offsets = np.load(os.path.join(SHARED, "lm_eval", "heldout_offsets.npy"))
    docs = [tokens[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
    n_tokens = len(tokens)
    ours.score_batch(docs[:50])  # warm the page cache

    results = {}
    for name, kwargs in [("score_batch", {"sparse": False}), ("score_batch_sparse", {"sparse": True}),
                         ("score_batch_top", {"sparse": True, "top": True})]:
        seconds = best_of(lambda: ours.score_batch(docs, **kwargs), repeat=2 if "top" in name else 3)
        results[name] = {"seconds": seconds, "tokens": n_tokens, "tokens_per_second": n_tokens / seconds}
        print(f"anygram {name:<20} {n_tokens / seconds:>12,.0f} tokens/s ({seconds:.2f} s)", flush=True)
    # CPU time is less sensitive than wall time to other jobs sharing the cores.
    cpu = []
    for _ in range(3):
        c0 = time.process_time()
        ours.score_batch(docs, sparse=False)
        cpu.append(time.process_time() - c0)
    results["score_batch_cpu"] = {"cpu_seconds": min(cpu), "tokens": n_tokens,
                                  "tokens_per_cpu_second": n_tokens / min(cpu),
                                  "tokens_per_second_on_idle_cores": os.cpu_count() * n_tokens / min(cpu)}
    print(f"anygram score_batch CPU time    {1e9 * min(cpu) / n_tokens:,.0f} ns/token: "
          f"{os.cpu_count() * n_tokens / min(cpu):,.0f} tokens/s on {os.cpu_count()} idle cores", flush=True)
    seconds = best_of(lambda: ours.score(tokens, sparse=False))
    results["score_one_text"] = {"seconds": seconds, "tokens": n_tokens, "tokens_per_second": n_tokens / seconds}
    print(f"anygram {'score (one text)':<20} {n_tokens / seconds:>12,.0f} tokens/s ({seconds:.2f} s)", flush=True)

    # The per-call loops over a sample of positions.
    rng = random.Random(args.seed)
    sample = sorted(rng.sample(range(n_tokens), args.positions))
    doc_of = np.searchsorted(offsets, sample, side="right") - 1
    queries = [(tokens[offsets[d]:i].tolist(), int(tokens[i])) for d, i in zip(doc_of, sample)]
    scores = ours.score_batch(docs, sparse=False)
    want = [(float(scores[d]["prob"][i - offsets[d]]), int(scores[d]["suffix_len"][i - offsets[d]]))
            for d, i in zip(doc_of, sample)]

    t0 = time.perf_counter()
    answers_theirs = [theirs.infgram_prob(prompt_ids=c, cont_id=t) for c, t in queries]
    theirs_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    answers_ours = [ours.infgram_prob(c, t) for c, t in queries]
    ours_s = time.perf_counter() - t0
    mismatches = 0
    for (prob, n), a, b in zip(want, answers_ours, answers_theirs):
        if not (a["prob"] == b["prob"] == prob and a["suffix_len"] == b["suffix_len"] == n):
            mismatches += 1
    contexts = [len(c) for c, _ in queries]
    results["infini_gram_infgram_prob_loop"] = {
        "positions": len(queries), "seconds": theirs_s, "ms_per_token": 1000 * theirs_s / len(queries),
        "tokens_per_second": len(queries) / theirs_s}
    results["anygram_infgram_prob_loop"] = {
        "positions": len(queries), "seconds": ours_s, "ms_per_token": 1000 * ours_s / len(queries),
        "tokens_per_second": len(queries) / ours_s}
    results["agreement"] = {"positions": len(queries), "mismatches": mismatches,
                            "mean_context_len": float(np.mean(contexts))}
    per_token = results["infini_gram_infgram_prob_loop"]["ms_per_token"]
    print(f"infini-gram infgram_prob loop   {per_token:.3f} ms/token "
          f"({len(queries) / theirs_s:,.0f} tokens/s, {len(queries)} positions, "
          f"mean context {np.mean(contexts):.0f} tokens)")
    print(f"anygram infgram_prob loop       {1000 * ours_s / len(queries):.3f} ms/token")
    print(f"answers: {mismatches} mismatches of {len(queries)}")
    ratios = {name: results[name]["tokens_per_second"] / results["infini_gram_infgram_prob_loop"]["tokens_per_second"]
              for name in ("score_batch", "score_batch_sparse", "score_batch_top", "score_one_text",
                           "anygram_infgram_prob_loop")}
    results["speedup_vs_infini_gram_loop"] = ratios
    for name, r in ratios.items():
        print(f"  {name:<28} {r:>10,.0f}x infini-gram's loop")

    report = {
        "benchmark": "score",
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "note": "2 shared cores; other jobs ran at the same time, so absolute figures are noisy; "
                            "ratios come from one run"},
        "index": {"path": index, "tokens": ours.num_tokens, "documents": ours.num_documents},
        "text": {"documents": len(docs), "tokens": n_tokens},
        "command": "python bench/bench_score.py " + " ".join(sys.argv[1:]),
        "results": results,
    }
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, time.strftime("%Y-%m-%d", time.gmtime()) + "-score")
    with open(stem + ".json", "w") as f:
        json.dump(report, f, indent=2)
    with open(stem + ".md", "w") as f:
        f.write(f"# score benchmark ({report['date']})\n\n`{report['command']}` on {report['machine']['cpus']} "
                f"shared cores; index: docs corpus without held-out documents ({ours.num_tokens:,} tokens); "
                f"text: {len(docs)} held-out documents ({n_tokens:,} tokens).\n\n")
        f.write("| what | tokens/s | vs infini-gram loop |\n| --- | ---: | ---: |\n")
        for name in ("score_batch", "score_batch_sparse", "score_batch_top", "score_one_text",
                     "anygram_infgram_prob_loop", "infini_gram_infgram_prob_loop"):
            r = results[name]
            ratio = ratios.get(name, 1.0)
            f.write(f"| {name} | {r['tokens_per_second']:,.0f} | {ratio:,.0f}x |\n")
        f.write(f"\nCPU time of score_batch: {1e9 / results['score_batch_cpu']['tokens_per_cpu_second']:,.0f} ns a "
                f"token, i.e. {results['score_batch_cpu']['tokens_per_second_on_idle_cores']:,.0f} tokens/s on "
                f"{os.cpu_count()} idle cores (less sensitive to the other jobs than wall time).\n")
        f.write(f"\ninfini-gram's `infgram_prob`: {per_token:.3f} ms a token over {len(queries)} sampled positions "
                f"(mean context {np.mean(contexts):.0f} tokens); answers of score, anygram's and infini-gram's "
                f"infgram_prob: {mismatches} mismatches.\n")
    print(f"wrote {stem}.json and {stem}.md")


if __name__ == "__main__":
    main()
