"""tokengrams' `count_next` of frequent contexts the first time each is asked, beside
tokengrams 0.3.3 on the same token file and table.

The compat benchmark (bench_compat.py) times each method after checking its answers, so
anygram's memo of frequent contexts' counts (`NextTokenMemo`) is warm there. Here the shim
index gets an empty memo before every timed call (what a new index object starts with;
the files stay mapped, as in a process that has been answering for a while, and as
tokengrams' index object stays open), so the figure is the exact count itself. The
contexts are the most frequent tokens of the corpus (tens of thousands of occurrences
followed by thousands of distinct tokens, the costliest one-token contexts) and the most
frequent pairs.

Usage: python bench/bench_count_next_first.py [--source /work/idx/docs/tokenized.0]
       [--tokens 3000000] [--contexts 8] [--repeats 7] [--out results/...json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time

import numpy as np

VOCAB = 50257
SEPARATOR = 0xFFFF


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="/work/idx/docs/tokenized.0",
                    help="a u16 token stream (an index's tokenized.0: its separators are dropped)")
    ap.add_argument("--tokens", type=int, default=3_000_000)
    ap.add_argument("--contexts", type=int, default=8, help="most frequent tokens, and as many pairs")
    ap.add_argument("--repeats", type=int, default=7, help="first calls per context and engine")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    import tokengrams
    from anygram import _anygram
    from anygram.compat import tokengrams as shim

    work = args.workdir or tempfile.mkdtemp(prefix="anygram-count-next-")
    os.makedirs(work, exist_ok=True)
    stream = np.memmap(args.source, dtype=np.uint16, mode="r")[: args.tokens]
    tokens = np.asarray(stream[stream != SEPARATOR], dtype=np.uint16)
    token_path, table_path = os.path.join(work, "tokens.bin"), os.path.join(work, "tokens.table")
    tokens.tofile(token_path)
    tokengrams.MemmapIndex.build(token_path, table_path, vocab=VOCAB)
    shutil.rmtree(table_path + ".anygram", ignore_errors=True)
    theirs = tokengrams.MemmapIndex(token_path, table_path, vocab=VOCAB)
    ours = shim.MemmapIndex(token_path, table_path, vocab=VOCAB)  # converts the table once

    unigrams = np.argsort(np.bincount(tokens, minlength=VOCAB))[::-1][: args.contexts]
    pairs = tokens[:-1].astype(np.uint32) * VOCAB + tokens[1:]
    values, counts = np.unique(pairs, return_counts=True)
    top_pairs = values[np.argsort(counts)[::-1][: args.contexts]]
    contexts = [[int(t)] for t in unigrams] + [[int(p // VOCAB), int(p % VOCAB)] for p in top_pairs]

    for context in contexts:  # both engines' pages mapped and in the page cache
        ours.count_next(context), theirs.count_next(context)
    rows = []
    for context in contexts:
        ours_s, theirs_s = [], []
        for _ in range(args.repeats):
            ours._next_counts = _anygram.NextTokenMemo(ours._engine)  # empty: nothing remembered
            t0 = time.perf_counter()
            answer = ours.count_next(context)
            ours_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            expected = theirs.count_next(context)
            theirs_s.append(time.perf_counter() - t0)
            assert answer == expected, context
        row = {"context": context, "occurrences": int(sum(answer)),
               "distinct_next": int(sum(1 for c in answer if c)),
               "anygram_median_ms": statistics.median(ours_s) * 1e3,
               "tokengrams_median_ms": statistics.median(theirs_s) * 1e3}
        row["ratio"] = row["tokengrams_median_ms"] / row["anygram_median_ms"]
        rows.append(row)
        print(f"{str(context):16} occ {row['occurrences']:>8,} next {row['distinct_next']:>5,} | "
              f"anygram {row['anygram_median_ms']:7.3f} ms | tokengrams {row['tokengrams_median_ms']:7.3f} ms | "
              f"x{row['ratio']:.2f}", flush=True)
    ratios = [r["ratio"] for r in rows]
    print(f"median ratio x{statistics.median(ratios):.2f}, min x{min(ratios):.2f}; "
          f"load average {os.getloadavg()[0]:.2f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"machine": platform.machine(), "cpus": os.cpu_count(), "load": os.getloadavg()[0],
                       "tokens": int(len(tokens)), "source": args.source, "rows": rows}, f, indent=1)
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
