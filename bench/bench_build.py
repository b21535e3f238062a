#!/usr/bin/env python3
"""Build benchmark: end-to-end build time (JSONL → index) and peak resident memory of
anygram, side by side with infini-gram's own indexer and tokengrams, in one run.

* anygram: `anygram build CORPUS --tokenizer gpt2 --mem M` in a subprocess, once per
  budget given with --mem (e.g. `--mem 4G 1G`: the second one sorts in parts and merges);
  every table is compared byte for byte with the first one's (`cmp`).
* infini-gram 2.6.0: its indexer (tokenize + make-part + merge + concat) through
  bench/peers/infinigram_build.py, with --ig-mem-gib and all cores. Its table is compared
  with ours too (infini-gram's table is wrong on small corpora, see FACTS.md).
* tokengrams 0.3.3 (if installed): `MemmapIndex.build` over the same token stream (it
  takes tokens, not text, so this is its suffix-array step alone; compare it with
  anygram's `suffix_array` time).

Peak RSS is GNU time's "Maximum resident set size" of each process tree's largest
process (infini-gram runs its steps in child processes). The machine is shared: run the
peers in the same invocation and read the ratios.

Usage:
    python bench/bench_build.py [--corpus PATH] [--mem 4G 1G] [--skip-infinigram]
        [--skip-tokengrams] [--work DIR] [--out bench/results]
    python bench/bench_build.py --calibrate   # bytes/token of the in-memory sort per width
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.abspath(os.path.join(HERE, "..", "..", "shared", "data"))
sys.path.insert(0, os.path.join(HERE, "peers"))


def timed_run(cmd, env=None):
    """Runs cmd under GNU time: (seconds, peak RSS bytes, stdout, stderr)."""
    time_bin = ["/usr/bin/time", "-v"] if os.path.exists("/usr/bin/time") else []
    t0 = time.perf_counter()
    proc = subprocess.run(time_bin + cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    return seconds, int(m.group(1)) * 1024 if m else None, proc.stdout, proc.stderr


def same_file(a, b):
    return subprocess.run(["cmp", "-s", a, b]).returncode == 0


def build_anygram(corpus, out, tokenizer, mem):
    cmd = [sys.executable, "-m", "anygram.cli", "build", corpus, "--output", out, "--tokenizer", tokenizer,
           "--overwrite", "--quiet", "--no-resume"]
    if mem:
        cmd += ["--mem", mem]
    seconds, peak, stdout, _ = timed_run(cmd)
    with open(os.path.join(out, "anygram.json")) as f:
        manifest = json.load(f)
    return {"tool": "anygram", "mem": mem, "seconds": seconds, "peak_rss_bytes": peak,
            "steps": manifest["build"]["seconds"], "suffix_arrays": manifest["build"]["suffix_arrays"],
            "num_tokens": sum(s["num_tokens"] for s in manifest["shards"]), "summary": stdout}


def build_infinigram(corpus, out, tokenizer, mem_gib):
    from infinigram_build import build_with_infinigram

    r = build_with_infinigram(corpus, out, tokenizer_json=tokenizer, token_dtype="u16", mem_gib=mem_gib)
    shutil.rmtree(out + ".data", ignore_errors=True)
    return {"tool": "infini-gram", "mem": f"{mem_gib}G", "seconds": r["seconds"], "peak_rss_bytes": r["peak_rss_bytes"],
            "peak_tree_rss_bytes": r["peak_tree_rss_bytes"], "valid": r["valid"]}


def build_tokengrams(tokenized, out_dir):
    """tokengrams over anygram's token stream (u16, separators included)."""
    code = ("import sys, tokengrams; tokengrams.MemmapIndex.build(sys.argv[1], sys.argv[2], vocab=2**16, "
            "verbose=False)")
    table = os.path.join(out_dir, "tokengrams.table")
    os.makedirs(out_dir, exist_ok=True)
    seconds, peak, _, _ = timed_run([sys.executable, "-c", code, tokenized, table])
    os.remove(table)
    return {"tool": "tokengrams (suffix array only)", "mem": None, "seconds": seconds, "peak_rss_bytes": peak}


def calibrate(n=30_000_000):
    """Peak bytes per token of the in-memory sort, per token width (feeds build/memory.rs)."""
    code = r"""
import sys, resource, numpy as np
from anygram import _anygram
w, n, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
dt = {1: np.uint8, 2: np.uint16, 4: np.uint32}[w]
hi = {1: 255, 2: 50000, 4: 200000}[w]
rng = np.random.default_rng(0)
with open(path, "wb") as f:
    for i in range(0, n, 1 << 20):
        rng.integers(0, hi, min(1 << 20, n - i), dtype=np.int64).astype(dt).tofile(f)
base = _anygram.resident_bytes()
_anygram.build_suffix_array(path, path + ".table", w)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print((peak - base) / n)
"""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        for w in (1, 2, 4):
            out = subprocess.run([sys.executable, "-c", code, str(w), str(n), os.path.join(d, "t")],
                                 capture_output=True, text=True, check=True).stdout
            print(f"u{8 * w}: {float(out):.2f} bytes/token above the resident set before the sort")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=os.path.join(SHARED, "docs.jsonl.zst"))
    ap.add_argument("--tokenizer", default=os.path.join(SHARED, "gpt2-tokenizer.json"))
    ap.add_argument("--mem", nargs="+", default=["4G"], help="anygram budgets; the first one is the reference")
    ap.add_argument("--ig-mem-gib", type=int, default=8)
    ap.add_argument("--skip-infinigram", action="store_true")
    ap.add_argument("--skip-tokengrams", action="store_true")
    ap.add_argument("--work", default=os.path.join(HERE, "..", ".bench-build"))
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--keep", action="store_true", help="keep the built indexes")
    ap.add_argument("--calibrate", action="store_true")
    args = ap.parse_args()
    if args.calibrate:
        calibrate()
        return
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    rows = []
    reference = None
    for mem in args.mem:
        out = os.path.join(work, f"anygram-{mem}")
        print(f"anygram build --mem {mem} ...", flush=True)
        r = build_anygram(args.corpus, out, args.tokenizer, mem)
        if reference is None:
            reference = out
        else:
            r["tables_identical_to_first"] = all(
                same_file(os.path.join(out, n), os.path.join(reference, n))
                for n in os.listdir(reference) if n.startswith(("table.", "tokenized.", "offset.")))
        rows.append(r)
        print(r["summary"], flush=True)
    num_tokens = rows[0]["num_tokens"]
    if not args.skip_infinigram:
        print("infini-gram indexer ...", flush=True)
        ig_out = os.path.join(work, "infinigram")
        r = build_infinigram(args.corpus, ig_out, args.tokenizer, args.ig_mem_gib)
        r["table_identical_to_anygram"] = same_file(os.path.join(ig_out, "table.0"),
                                                    os.path.join(reference, "table.0"))
        rows.append(r)
        if not args.keep:
            shutil.rmtree(ig_out, ignore_errors=True)
    if not args.skip_tokengrams:
        try:
            import tokengrams  # noqa: F401

            print("tokengrams ...", flush=True)
            rows.append(build_tokengrams(os.path.join(reference, "tokenized.0"), os.path.join(work, "tokengrams")))
        except ImportError:
            print("tokengrams is not installed (pip install tokengrams==0.3.3): skipped")

    print(f"\ncorpus {args.corpus}: {num_tokens:,} tokens; {os.cpu_count()} cores; shared machine, noisy")
    print(f"{'tool':34} {'budget':>7} {'seconds':>8} {'Mtok/s':>7} {'peak RSS':>10}  notes")
    base = rows[0]
    for r in rows:
        notes = []
        if "steps" in r:
            notes.append(", ".join(f"{k} {v:.0f}s" for k, v in r["steps"].items() if k != "total"))
            parts = [s.get("num_parts", 1) for s in r["suffix_arrays"] if s.get("external")]
            notes.append(f"external, {parts} parts" if parts else "in memory")
        for key in ("tables_identical_to_first", "table_identical_to_anygram", "valid"):
            if key in r:
                notes.append(f"{key}={r[key]}")
        if r is not base:
            notes.append(f"time x{r['seconds'] / base['seconds']:.2f} of anygram --mem {base['mem']}")
        peak = r["peak_rss_bytes"]
        print(f"{r['tool']:34} {str(r['mem'] or '-'):>7} {r['seconds']:8.1f} {num_tokens / r['seconds'] / 1e6:7.2f} "
              f"{(peak or 0) / 2**30:8.2f}Gi  {'; '.join(notes)}")
    os.makedirs(args.out, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d")
    result = {"corpus": args.corpus, "num_tokens": num_tokens, "machine": platform.node(), "cpus": os.cpu_count(),
              "date": stamp, "rows": [{k: v for k, v in r.items() if k != "summary"} for r in rows]}
    path = os.path.join(args.out, f"build-{os.path.basename(args.corpus).split('.')[0]}-{stamp}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"results: {path}")
    if not args.keep:
        for mem in args.mem:
            shutil.rmtree(os.path.join(work, f"anygram-{mem}"), ignore_errors=True)


if __name__ == "__main__":
    main()
