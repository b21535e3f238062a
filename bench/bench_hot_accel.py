#!/usr/bin/env python3
"""Hot-cache cost of single queries with and without the search accelerator,
several builds of the package side by side in one run.

Each build runs in its own child process (its own PYTHONPATH) over the same
index files, all in the page cache: count, prob and infgram_prob from Python,
p50/p95 in µs, through the accelerator (its default adaptive search; and the
tree pinned, ``search_path="tree"``, where the build has it) and through the
plain search (no accelerator: sampled keys in RAM). A build
that reads another accelerator format version gets its own directory of links
to the index with an accelerator it writes itself (e.g. /work/main's v1).

Usage: python bench/bench_hot_accel.py --index DIR \
           --build new=python --build main=/work/main/python [--queries 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
KINDS = ["count", "prob", "infgram_prob"]
VOCAB, EOS = 50257, 50256


def child(index: str, queries_file: str) -> None:
    import anygram
    from bench_queries import calls, time_calls

    with open(queries_file) as f:
        queries = json.load(f)
    # Hot: every index file read whole first, so that all of it is in the page cache.
    for name in sorted(os.listdir(index)):
        with open(os.path.join(index, name), "rb") as f:
            while f.read(1 << 24):
                pass
    out = {}
    # The accelerator's default (adaptive: the tree while reads are slow, the plain search
    # inside its bracket once they come from RAM), the tree pinned, and no accelerator.
    modes = {"accel": dict(accelerator=True), "tree": dict(accelerator=True, search_path="tree"),
             "plain": dict(accelerator=False)}
    for mode, options in modes.items():
        try:
            engine = anygram.Engine.open(index, token_width=2, vocab_size=VOCAB, eos_token_id=EOS, **options)
        except TypeError:  # a build without search_path
            continue
        if not options["accelerator"]:
            time.sleep(3)  # the sampled keys, built in the background after open
        pair = calls(engine, None)
        for kind in KINDS:
            us = time_calls(pair[kind][0], queries[kind])
            out[f"{kind}/{mode}"] = {"p50_us": float(np.percentile(us, 50)), "p95_us": float(np.percentile(us, 95))}
    print(json.dumps(out))


def linked_index(index: str, name: str, pythonpath: str) -> str:
    """A directory of hard links to `index`'s files plus an accelerator written by this build."""
    target = os.path.join(os.path.dirname(index), f"{os.path.basename(index)}-{name}")
    if not os.path.isdir(target):
        os.makedirs(target)
        for f in os.listdir(index):
            if not f.startswith("accel."):
                os.link(os.path.join(index, f), os.path.join(target, f))
        code = f"import anygram._anygram as a; a.write_accelerators({target!r}, token_width=2)"
        subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": pythonpath})
    return target


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--index", required=True)
    p.add_argument("--build", action="append", required=True, help="LABEL=PYTHONPATH")
    p.add_argument("--queries", type=int, default=3000)
    p.add_argument("--shared", default=None,
                   help="the shared data directory (held-out tokens in lm_eval/); default bench_queries'")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--queries-file", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.index, args.queries_file)
    args.index = os.path.abspath(args.index)
    builds = [b.split("=", 1) for b in args.build]
    queries_file = os.path.join(os.path.dirname(os.path.abspath(args.index)), "hot-queries.json")
    first_path = os.path.abspath(builds[0][1])
    code = ("import json, sys, anygram; sys.path.insert(0, %r); import bench_queries as b; "
            + (f"b.SHARED = {args.shared!r}; " if args.shared else "") +
            "e = anygram.Engine.open(%r, token_width=2, vocab_size=%d, eos_token_id=%d); "
            "s = b.query_sets(e, %d, 'heldout'); "
            "json.dump({k: s[k] for k in %r}, open(%r, 'w'))") % (
        HERE, args.index, VOCAB, EOS, args.queries, KINDS, queries_file)
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": first_path})
    rows = {}
    for label, path in builds:
        path = os.path.abspath(path)
        index = args.index if label == builds[0][0] else linked_index(args.index, label, path)
        res = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", "--index", index,
                              "--queries-file", queries_file, "--build", "x=y"],
                             check=True, capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": path})
        rows[label] = json.loads(res.stdout.strip().splitlines()[-1])
    columns = [(label, mode) for label, _ in builds for mode in ("accel", "tree", "plain")
               if f"{KINDS[0]}/{mode}" in rows[label]]
    print("| query | " + " | ".join(f"{label} {mode} p50/p95 µs" for label, mode in columns) + " |")
    print("| --- |" + " ---: |" * len(columns))
    for kind in KINDS:
        cells = [f"{rows[label][f'{kind}/{mode}']['p50_us']:.1f} / {rows[label][f'{kind}/{mode}']['p95_us']:.1f}"
                 for label, mode in columns]
        print(f"| {kind} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
