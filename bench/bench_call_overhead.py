"""Per-call cost of single queries and of count_batch from Python, on a synthetic index.

Compares two builds of the package in one run (alternate them with PYTHONPATH), e.g. the
start and the end of a change:

    PYTHONPATH=/path/to/old/python python bench/bench_call_overhead.py --label old
    python bench/bench_call_overhead.py --label new

The index (3M u16 tokens, Zipf-distributed ids, 1,000-token documents) is built once in
--workdir and reused, so both builds query the same files; searches use the plain path
(no accelerator), the one every index takes by default.
"""

from __future__ import annotations

import argparse
import inspect
import os
import time

import numpy as np

import anygram


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default="/tmp/anygram-bench-calls")
    p.add_argument("--label", default="this build")
    p.add_argument("--queries", type=int, default=4000)
    args = p.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    corpus, index = os.path.join(args.workdir, "c.npy"), os.path.join(args.workdir, "idx")
    rng = np.random.default_rng(0)
    if not os.path.exists(index):
        tokens = (rng.zipf(1.3, 3_000_000) % 50000).astype(np.uint16)
        np.save(corpus, tokens)
        np.save(os.path.join(args.workdir, "c.offsets.npy"), np.arange(0, len(tokens) + 1, 1000, dtype=np.int64))
        anygram.build_index(corpus, index, token_width=2, vocab_size=50001, eos_token_id=50000, progress=False)
    tokens = np.load(corpus)
    rng = np.random.default_rng(1)
    queries = [tokens[i:i + int(rng.integers(1, 6))].tolist()
               for i in rng.integers(0, len(tokens) - 10, args.queries)]
    plain = {"accelerator": False} if "accelerator" in inspect.signature(anygram.Engine.open).parameters else {}
    engine = anygram.Engine.open(index, **plain)
    time.sleep(4)  # the sampled keys are built in the background after open
    for q in queries[:500]:
        engine.count(q)
    p50 = {}
    for name, call in [("count", lambda q: engine.count(q)),
                       ("prob", lambda q: engine.prob(q[:-1] or q, q[-1])),
                       ("ntd", lambda q: engine.ntd(q))]:
        times = []
        for q in queries:
            t = time.perf_counter()
            call(q)
            times.append(time.perf_counter() - t)
        p50[name] = np.percentile(np.array(times) * 1e6, 50)
    t = time.perf_counter()
    engine.count_batch(queries)
    batch = (time.perf_counter() - t) / len(queries) * 1e6
    print(args.label, " ".join(f"{k} p50 {v:.2f} µs" for k, v in p50.items()), f"count_batch {batch:.2f} µs/query")


if __name__ == "__main__":
    main()
