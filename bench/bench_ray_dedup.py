#!/usr/bin/env python3
"""Self dedup split by key range (issue 16): local vs a Ray cluster of key parts.

On one index (``--shards`` shards of the corpus bench_ray.py makes: Zipf u16 ids with copies of
earlier spans, ``--tokens`` in all), in one run:

1. ``local``: ``run_dedup`` locally (the core's ``dedup_self``: the unbounded key part);
   with ``--base-module`` also ``dedup_self`` of another build of ``_anygram`` (e.g. main's,
   before the split) against this one, alternating, each in a fresh process (does one
   algorithm for parts and whole cost the local run anything?);
2. ``parts``: the key parts of the Ray run (``self_dedup_parts``) run one after the other in
   this process with all cores, each timed: their sum against the whole pass is what
   splitting costs in work; the largest part bounds the wall time on many nodes;
3. ``ray``: ``run_dedup(ray=True)`` on a local two-node cluster on loopback (one CPU each,
   both on this machine's cores: Ray's overhead, not its scaling), outputs compared byte
   for byte with the local one.

The machine is shared: the 1-minute load average is beside each figure.

Usage: python bench/bench_ray_dedup.py [--tokens 200000000] [--shards 2] [--min-len 32]
       [--base-module PATH/_anygram.abi3.so] [--ab-rounds N] [--workdir DIR] [--out results/...json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # every Ray address on 127.0.0.1

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = os.path.join(HERE, "..", "python", "anygram")

# Times the core's whole self dedup in a fresh process, with the package at sys.argv[1].
_WHOLE_PASS = """
import sys, time
sys.path.insert(0, sys.argv[1])
import anygram
from anygram import _anygram
engine = anygram.Engine.open(sys.argv[2])
t0 = time.perf_counter()
arrays = _anygram.dedup_self(engine, int(sys.argv[3]))
print(time.perf_counter() - t0, int(arrays["num_ranges"].sum()))
"""


def load() -> float:
    return round(os.getloadavg()[0], 2)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def corpus(work: str, tokens: int) -> None:
    """bench_ray.py's corpus: Zipf ids, ~2.5% of the text copies of earlier spans."""
    rng = np.random.default_rng(0)
    ids = np.minimum(rng.zipf(1.3, size=tokens), 60000).astype(np.uint16)
    for _ in range(tokens // 20000):
        length = int(rng.integers(50, 1000))
        src, dst = sorted(int(x) for x in rng.integers(0, tokens - length, size=2))
        ids[dst:dst + length] = ids[src:src + length]
    doc_lengths = rng.integers(50, 4000, size=tokens // 500)
    starts = np.concatenate([[0], np.cumsum(doc_lengths)])
    starts = np.concatenate([starts[starts < tokens], [tokens]])
    np.save(os.path.join(work, "corpus.npy"), ids)
    np.save(os.path.join(work, "corpus.offsets.npy"), starts.astype(np.int64))


def whole_pass(package_parent: str, index: str, min_len: int):
    done = subprocess.run([sys.executable, "-c", _WHOLE_PASS, package_parent, index, str(min_len)],
                          capture_output=True, text=True, check=True)
    seconds, ranges = done.stdout.split()
    return float(seconds), int(ranges)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=200_000_000)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--min-len", type=int, default=32)
    ap.add_argument("--base-module", default=None, help="another build of _anygram to time dedup_self against")
    ap.add_argument("--repeats", type=int, default=2, help="whole passes per module (alternating)")
    ap.add_argument("--ab-rounds", type=int, default=0,
                    help="also alternate the whole pass and the 8 parts one after the other in this process")
    ap.add_argument("--workdir", default=None, help="reuses the corpus and index found there")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    import ray
    from ray.cluster_utils import Cluster

    import anygram
    from anygram import _anygram
    from anygram.distributed import scans

    work = args.workdir or tempfile.mkdtemp(prefix="anygram-bench-ray-dedup-")
    os.makedirs(work, exist_ok=True)
    index = os.path.join(work, f"index-{args.tokens}-{args.shards}")
    results = {"machine": f"{platform.node()}, {os.cpu_count()} cores (shared), Ray {ray.__version__}",
               "tokens": args.tokens, "shards": args.shards, "min_len": args.min_len,
               "command": " ".join(["python", "bench/bench_ray_dedup.py", *sys.argv[1:]])}
    if not os.path.exists(os.path.join(index, "anygram.json")):
        corpus(work, args.tokens)
        t, _ = timed(lambda: anygram.build_index(os.path.join(work, "corpus.npy"), index, token_width=2,
                                                 vocab_size=65535, shards=args.shards, progress=False))
        results["build_s"] = round(t, 2)
    engine = anygram.Engine.open(index)

    # 1. Local: the whole pass, this build against the base one in fresh processes.
    if args.base_module:
        base = tempfile.mkdtemp(prefix="anygram-base-")
        shutil.copytree(PACKAGE, os.path.join(base, "anygram"))
        shutil.copy(args.base_module, os.path.join(base, "anygram", "_anygram.abi3.so"))
        runs = {"base": [], "this": []}
        for _ in range(args.repeats):
            for name, parent in (("base", base), ("this", os.path.dirname(PACKAGE))):
                l0 = load()
                seconds, ranges = whole_pass(parent, index, args.min_len)
                runs[name].append({"s": round(seconds, 2), "ranges": ranges, "load": [l0, load()]})
        results["dedup_self_whole_pass"] = runs
        print("whole pass", runs, flush=True)
        shutil.rmtree(base, ignore_errors=True)
    if args.ab_rounds:
        # The same work as one pass or as 8 parts in a row, alternating (the machine's load
        # drifts over minutes: compare within a round).
        keys = _anygram.dedup_self_split_keys(engine, args.min_len, 8)
        bounds = [None, *keys, None]
        rounds = []
        for _ in range(args.ab_rounds):
            l0 = load()
            t_whole, _ = timed(lambda: _anygram.dedup_self(engine, args.min_len))
            l1 = load()
            t_parts, _ = timed(lambda: [_anygram.dedup_self_part(engine, args.min_len, lo, hi)
                                        for lo, hi in zip(bounds, bounds[1:])])
            rounds.append({"whole_s": round(t_whole, 2), "parts_s": round(t_parts, 2), "load": [l0, l1, load()]})
            print("whole vs parts", rounds[-1], flush=True)
        results["whole_vs_8_parts_in_process"] = rounds
    l0 = load()
    t_local, _ = timed(lambda: anygram.scan.run_dedup(engine, os.path.join(work, "dedup-local.jsonl"),
                                                      min_len=args.min_len, restart=True))
    with open(os.path.join(work, "dedup-local.jsonl")) as f:
        affected = sum(1 for _ in f)
    results["local"] = {"run_dedup_s": round(t_local, 2), "documents_affected": affected, "load": [l0, load()]}
    print("local", results["local"], flush=True)

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1",
                                                             "include_dashboard": False,
                                                             "object_store_memory": 400 << 20})
    cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1", object_store_memory=400 << 20)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        # 2. The Ray run's key parts, one after the other here: what splitting costs in work.
        t_split, units = timed(lambda: scans.self_dedup_parts(engine, args.min_len, ray=True))
        parts = []
        l0 = load()
        for u in units:
            t, arrays = timed(lambda: _anygram.dedup_self_part(engine, args.min_len, u.lo, u.hi))
            parts.append({"suffixes": u.work, "s": round(t, 2), "ranges": int(arrays["num_ranges"].sum())})
        total = sum(p["s"] for p in parts)
        results["parts"] = {"count": len(units), "split_s": round(t_split, 3), "each": parts,
                            "sum_s": round(total, 2), "largest_s": max(p["s"] for p in parts),
                            "load": [l0, load()]}
        print("parts", results["parts"], flush=True)

        # 3. On the cluster, the output compared with the local one.
        l0 = load()
        t_ray, _ = timed(lambda: anygram.scan.run_dedup(engine, os.path.join(work, "dedup-ray.jsonl"),
                                                        min_len=args.min_len, restart=True, ray=True))
        with open(os.path.join(work, "dedup-local.jsonl"), "rb") as a, \
                open(os.path.join(work, "dedup-ray.jsonl"), "rb") as b:
            same = a.read() == b.read()
        results["ray"] = {"run_dedup_s": round(t_ray, 2), "ray_over_local": round(t_ray / t_local, 3),
                          "parts": len(units), "identical_output": same, "load": [l0, load()]}
        print("ray", results["ray"], flush=True)
    finally:
        ray.shutdown()
        cluster.shutdown()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
            f.write("\n")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if results["ray"]["identical_output"] else 1


if __name__ == "__main__":
    sys.exit(main())
