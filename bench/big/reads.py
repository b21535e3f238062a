"""Dependent reads and pages per query on the big index, with and without its accelerator.

    python bench/big/reads.py --index /work/big/tiled84 --queries 300

Counts what a query reads (``Engine.count_reads``: rounds of dependent reads, distinct 4 KiB
pages), not time: it needs no cold cache and no quiet machine. The two engines' answers are
compared query by query."""
import argparse
import json
import os
import time

import numpy as np

import anygram


def percentile(values, q):
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", required=True)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out")
    args = ap.parse_args()
    tokens = np.memmap(os.path.join(args.index, "tokenized.0"), dtype="<u2", mode="r")
    rng = np.random.default_rng(args.seed)
    queries = []
    while len(queries) < args.queries:
        n = int(rng.integers(1, 13))
        at = int(rng.integers(0, len(tokens) - n - 1))
        q = [int(t) for t in tokens[at:at + n + 1]]
        if 0xFFFF in q:
            continue
        queries.append(q)
    t0 = time.perf_counter()
    fast = anygram.Engine.open(args.index, accelerator=True)
    open_fast = time.perf_counter() - t0
    plain = anygram.Engine.open(args.index, accelerator=False)
    report = {"index": args.index, "num_tokens": fast.num_tokens, "queries": len(queries),
              "open_with_accelerator_s": open_fast, "kinds": {}}
    for kind in ("count", "prob", "infgram_prob"):
        rows = {"rounds": [], "pages": [], "plain_rounds": [], "plain_pages": []}
        same = 0
        for q in queries:
            if kind == "count":
                a, b = fast.count_reads(q[:-1], kind), plain.count_reads(q[:-1], kind)
            else:
                a, b = fast.count_reads(q[:-1], kind, q[-1]), plain.count_reads(q[:-1], kind, q[-1])
            same += a["count"] == b["count"]
            rows["rounds"].append(max(a["rounds"].values(), default=0))
            rows["pages"].append(sum(a["pages"].values()))
            rows["plain_rounds"].append(max(b["rounds"].values(), default=0))
            rows["plain_pages"].append(sum(b["pages"].values()))
        report["kinds"][kind] = {k: {"p50": percentile(v, 50), "p95": percentile(v, 95)} for k, v in rows.items()}
        report["kinds"][kind]["same_count"] = f"{same}/{len(queries)}"
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
