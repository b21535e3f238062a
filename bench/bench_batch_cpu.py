#!/usr/bin/env python3
"""Batch forms' cost split by thread, this build beside a baseline build (issue 17): per
query, the best wall time, the calling thread's CPU time (argument conversion, result
objects: what holds the GIL) and the whole process's CPU time (median), over runs that
alternate the two builds. CPU times hold up on a busy machine where wall times do not.

    PYTHONPATH=python python bench/bench_batch_cpu.py --baseline /tmp/pkg_base/anygram \\
        --index /work/idx/docs [--kinds count,ntd]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_hot  # noqa: E402
import bench_queries  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", required=True, help="another build's python/anygram directory")
    p.add_argument("--index", required=True)
    p.add_argument("--shared", default="/work/shared/data")
    p.add_argument("--kinds", default="count,ntd")
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--runs", type=int, default=15)
    args = p.parse_args()
    bench_queries.SHARED = args.shared
    import anygram

    base = bench_hot.load_baseline(args.baseline)
    engines = {"this build": anygram.Engine.open(args.index, accelerator=False),
               "baseline": base.Engine.open(args.index, accelerator=False)}
    time.sleep(4)  # sampled keys, built in the background after open
    sets = bench_queries.query_sets(engines["this build"], args.queries, "heldout")
    n = args.queries
    print(f"load average at start {os.getloadavg()[0]:.1f}; µs per query: wall (best) / calling thread CPU / "
          "process CPU (medians)")
    for kind in args.kinds.split(","):
        forms = {name: bench_hot.batch_forms(e, kind, sets[kind][:n]) for name, e in engines.items()}
        for form in forms["this build"]:
            if form == "single-call loop":
                continue
            runs = {name: [] for name in engines}
            for r in range(args.runs):
                for name in (list(engines) if r % 2 else list(engines)[::-1]):
                    w, t, c = time.perf_counter(), time.thread_time(), time.process_time()
                    forms[name][form]()
                    runs[name].append([(time.perf_counter() - w) * 1e6 / n, (time.thread_time() - t) * 1e6 / n,
                                       (time.process_time() - c) * 1e6 / n])
            cells = []
            for name, v in runs.items():
                v = np.asarray(v)
                cells.append(f"{name} {v[:, 0].min():.3f} / {np.median(v[:, 1]):.3f} / {np.median(v[:, 2]):.3f}")
            print(f"{kind} | {form} | " + " | ".join(cells), flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
