#!/usr/bin/env python3
"""Scan benchmark: contamination throughput (eval tokens/s) and self-dedup throughput
(corpus tokens/s) with peak memory, through the `anygram` CLI as a user runs it.

1. Builds the corpus index with `anygram build` (reused with --skip-build).
2. Contamination: eval sets of about --eval-tokens GPT-2 tokens, each scanned by
   `anygram contamination` in a subprocess under /usr/bin/time -v (wall time, peak RSS):
   * `heldout-text`: the held-out documents of the docs corpus (index % 20 == 19) as
     text (tokenization included), against an index of the other documents (docs
     corpus only: its held-out documents are not in that index);
   * `heldout-ids`: the same documents as token ids (lm_eval/heldout_tokens.npy);
   * `from-corpus`: windows of 1,000 tokens cut from random documents of the corpus
     itself, so every token is covered (the slow case: every match is long).
3. Dedup: `anygram dedup --min-len N` of the whole index (the scan), then the same
   command with --write (the resumed run only writes the cleaned corpus); with
   --cross OTHER, `anygram dedup --against OTHER` too.
4. Baseline and cross-check: numpy hashes of every N-token window, first occurrence by
   `np.unique`: the tokens it would remove must equal dedup's (a different method on
   the same definition), and its time is the "hash every window" baseline.

The machine is shared (2 cores, other jobs running): figures are noisy, ratios within
one run are the ones to compare.

Usage: python bench/bench_scan.py [--corpus FILE.jsonl(.zst)] [--name docs] [--skip-build]
"""

from __future__ import annotations

import argparse
import io
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
TOKENIZER = os.path.join(SHARED, "gpt2-tokenizer.json")


def _anon_rss(pid: int) -> int:
    """Anonymous resident memory (heap, not mapped index files) of a process and its
    children, in bytes (0 once gone)."""
    total = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    total += int(line.split()[1]) * 1024
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(c) for c in f.read().split()]
    except (OSError, ValueError):
        return total
    return total + sum(_anon_rss(c) for c in children)


def timed(cmd, log_name: str, workdir: str) -> dict:
    """Runs `cmd` under /usr/bin/time -v: wall seconds, peak RSS (which counts the
    pages of the memory-mapped index the scan touched), peak anonymous RSS (its own
    memory, sampled every 50 ms), stdout."""
    t0 = time.perf_counter()
    prefix = ["/usr/bin/time", "-v"] if os.path.exists("/usr/bin/time") else []
    proc = subprocess.Popen(prefix + cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_anon = 0
    while proc.poll() is None:
        peak_anon = max(peak_anon, _anon_rss(proc.pid))
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - t0
    with open(os.path.join(workdir, log_name + ".log"), "w") as f:
        f.write(" ".join(cmd) + "\n" + stdout + "\n" + stderr)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{stdout}\n{stderr[-3000:]}")
    peak = None
    for line in stderr.splitlines():
        if "Maximum resident set size" in line:
            peak = int(line.split(":")[1]) * 1024
    return {
        "seconds": round(seconds, 3),
        "peak_rss_bytes": peak,
        "peak_anon_rss_bytes": peak_anon,
        "stdout": stdout,
    }


def anygram_cmd(*args: str):
    return [sys.executable, "-m", "anygram.cli", *args]


def read_jsonl(path: str):
    if path.endswith(".zst"):
        import zstandard

        with (
            open(path, "rb") as raw,
            io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(raw), encoding="utf-8") as f,
        ):
            yield from f
    else:
        with open(path, encoding="utf-8") as f:
            yield from f


def build(corpus: str, out: str, workdir: str, skip: bool, log: str) -> dict:
    if skip and os.path.exists(os.path.join(out, "anygram.json")):
        return {"reused": True}
    r = timed(
        anygram_cmd("build", corpus, "--output", out, "--tokenizer", TOKENIZER, "--overwrite", "--quiet"),
        log,
        workdir,
    )
    r.pop("stdout")
    return r


def write_eval_sets(args, engine, workdir: str) -> dict:
    """The eval sets (JSONL) and their token counts."""
    sets = {}
    rng = random.Random(0)
    if args.name == "docs":
        heldout = []
        for i, line in enumerate(read_jsonl(args.corpus)):
            if i % 20 == 19:
                heldout.append(json.loads(line)["text"])
        path = os.path.join(workdir, "eval-heldout-text.jsonl")
        tokens, n = 0, 0
        with open(path, "w") as f:
            for j, text in enumerate(heldout):
                if tokens >= args.eval_tokens:
                    break
                f.write(json.dumps({"id": j, "text": text}) + "\n")
                tokens += len(engine.tokenize(text))
                n += 1
        sets["heldout-text"] = {
            "path": path,
            "tokens": tokens,
            "examples": n,
            "field": "text",
            "against": "train",
        }
    ids = np.load(os.path.join(SHARED, "lm_eval", "heldout_tokens.npy"))
    offsets = np.load(os.path.join(SHARED, "lm_eval", "heldout_offsets.npy"))
    path = os.path.join(workdir, "eval-heldout-ids.jsonl")
    tokens, n = 0, 0
    with open(path, "w") as f:
        for j in range(len(offsets) - 1):
            if tokens >= args.eval_tokens:
                break
            doc = ids[offsets[j] : offsets[j + 1]].tolist()
            f.write(json.dumps({"id": j, "token_ids": doc}) + "\n")
            tokens += len(doc)
            n += 1
    sets["heldout-ids"] = {
        "path": path,
        "tokens": tokens,
        "examples": n,
        "field": "token_ids",
        "against": "train" if args.name == "docs" else "full",
    }
    path = os.path.join(workdir, "eval-from-corpus.jsonl")
    long_docs = (
        [d for d in range(engine.num_documents) if engine.get_doc_by_ix(d, 1)["doc_len"] >= 1000]
        if engine.num_documents < 100_000
        else None
    )
    tokens, n = 0, 0
    with open(path, "w") as f:
        while tokens < args.eval_tokens:
            d = rng.choice(long_docs) if long_docs else rng.randrange(engine.num_documents)
            doc = engine.get_doc_by_ix(d, 1 << 40)["token_ids"]
            if len(doc) < 1000:
                continue
            start = rng.randrange(len(doc) - 1000 + 1)
            f.write(json.dumps({"id": f"{d}:{start}", "token_ids": list(doc[start : start + 1000])}) + "\n")
            tokens += 1000
            n += 1
    sets["from-corpus"] = {
        "path": path,
        "tokens": tokens,
        "examples": n,
        "field": "token_ids",
        "against": "full",
    }
    return sets


def hash_baseline(index: str, min_len: int) -> dict:
    """Tokens removed by self dedup, found by hashing every window (numpy)."""
    t0 = time.perf_counter()
    tokens = np.fromfile(os.path.join(index, "tokenized.0"), dtype="<u2")
    sep = np.uint16(0xFFFF)
    m = len(tokens) - min_len + 1
    h = np.zeros(m, dtype=np.uint64)
    has_sep = np.zeros(m, dtype=bool)
    base = np.uint64(1_000_003)
    with np.errstate(over="ignore"):
        for j in range(min_len):
            part = tokens[j : j + m]
            h = h * base + part.astype(np.uint64) + np.uint64(1)
            has_sep |= part == sep
    valid = np.flatnonzero(~has_sep)
    hv = h[valid]
    del h
    _, first = np.unique(hv, return_index=True)
    later = np.ones(len(valid), dtype=bool)
    later[first] = False
    starts = valid[later]
    delta = np.zeros(len(tokens) + 1, dtype=np.int32)
    np.add.at(delta, starts, 1)
    np.add.at(delta, starts + min_len, -1)
    removed = int(np.count_nonzero(np.cumsum(delta[:-1]) > 0))
    return {
        "seconds": round(time.perf_counter() - t0, 3),
        "tokens_removed": removed,
        "windows_repeated": int(len(starts)),
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--corpus", default=os.path.join(SHARED, "docs.jsonl.zst"))
    p.add_argument("--name", default="docs")
    p.add_argument("--workdir", default=os.path.join(HERE, "results", "tmp"))
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--skip-build", action="store_true")
    p.add_argument("--eval-tokens", type=int, default=1_000_000)
    p.add_argument("--contamination-min-len", type=int, default=13)
    p.add_argument("--dedup-min-len", type=int, default=50)
    p.add_argument("--no-baseline", action="store_true", help="skip the numpy hash baseline (large corpora)")
    p.add_argument("--no-write", action="store_true", help="skip writing the cleaned corpus")
    p.add_argument("--cross", help="also time cross dedup of the index against this other index")
    p.add_argument(
        "--skip-contamination",
        action="store_true",
        help="keep today's contamination results of this corpus, rerun dedup only",
    )
    args = p.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    import anygram

    full = os.path.join(args.workdir, f"{args.name}-index")
    result = {
        "corpus": args.corpus,
        "name": args.name,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "note": "shared 2-core machine, other jobs running: noisy",
    }
    result["build"] = {"full": build(args.corpus, full, args.workdir, args.skip_build, f"{args.name}-build")}
    engine = anygram.Engine.open(full)
    indexes = {"full": full}
    if args.name == "docs":
        train_jsonl = os.path.join(args.workdir, "train.jsonl")
        if not os.path.exists(train_jsonl):
            with open(train_jsonl, "w") as f:
                for i, line in enumerate(read_jsonl(args.corpus)):
                    if i % 20 != 19:
                        f.write(line)
        indexes["train"] = os.path.join(args.workdir, "train-index")
        result["build"]["train"] = build(
            train_jsonl, indexes["train"], args.workdir, args.skip_build, "train-build"
        )
        # The held-out documents' own index: cross dedup of the training part against it
        # removes every span of the eval documents from the training data.
        heldout_jsonl = os.path.join(args.workdir, "heldout.jsonl")
        if not os.path.exists(heldout_jsonl):
            with open(heldout_jsonl, "w") as f:
                for i, line in enumerate(read_jsonl(args.corpus)):
                    if i % 20 == 19:
                        f.write(line)
        indexes["heldout"] = os.path.join(args.workdir, "heldout-index")
        result["build"]["heldout"] = build(
            heldout_jsonl, indexes["heldout"], args.workdir, args.skip_build, "heldout-build"
        )
        if not args.cross:
            args.cross = indexes["heldout"]
            indexes["cross_from"] = indexes["train"]
    result["index"] = {"num_tokens": engine.num_tokens, "num_documents": engine.num_documents}

    stem = os.path.join(args.out, f"{time.strftime('%Y-%m-%d', time.gmtime())}-{args.name}-scan")
    result["contamination"] = {}
    sets = {}
    if args.skip_contamination and os.path.exists(stem + ".json"):
        with open(stem + ".json") as f:
            result["contamination"] = json.load(f)["contamination"]
    elif not args.skip_contamination:
        sets = write_eval_sets(args, engine, args.workdir)
    for name, s in sets.items():
        out = os.path.join(args.workdir, f"contamination-{args.name}-{name}.jsonl")
        summary = out + ".summary.json"
        cmd = anygram_cmd(
            "contamination",
            "--index",
            indexes[s["against"]],
            "--eval",
            s["path"],
            "--field",
            s["field"],
            "--min-len",
            str(args.contamination_min_len),
            "--out",
            out,
            "--summary",
            summary,
            "--restart",
            "--quiet",
        )
        r = timed(cmd, f"contamination-{args.name}-{name}", args.workdir)
        with open(summary) as f:
            sm = json.load(f)
        result["contamination"][name] = {
            "against": s["against"],
            "examples": s["examples"],
            "eval_tokens": s["tokens"],
            "seconds": r["seconds"],
            "eval_tokens_per_s": round(s["tokens"] / r["seconds"]),
            "peak_rss_bytes": r["peak_rss_bytes"],
            "peak_anon_rss_bytes": r["peak_anon_rss_bytes"],
            "token_coverage": round(sm["token_coverage"], 4),
            "num_contaminated": sm["num_contaminated"],
            "histogram": sm["histogram"]["counts"],
        }
        print(name, result["contamination"][name], flush=True)

    ranges = os.path.join(args.workdir, f"dedup-{args.name}.ranges.jsonl")
    base = ("dedup", "--index", full, "--min-len", str(args.dedup_min_len), "--ranges", ranges, "--quiet")
    r = timed(anygram_cmd(*base, "--restart"), f"dedup-{args.name}", args.workdir)
    summary = json.loads(r["stdout"])
    corpus_tokens = summary["num_tokens"]
    result["dedup"] = {
        "min_len": args.dedup_min_len,
        "seconds": r["seconds"],
        "corpus_tokens_per_s": round(corpus_tokens / r["seconds"]),
        "peak_rss_bytes": r["peak_rss_bytes"],
        "peak_anon_rss_bytes": r["peak_anon_rss_bytes"],
        "summary": summary,
    }
    print("dedup", result["dedup"], flush=True)
    if not args.no_write:
        clean = os.path.join(args.workdir, f"dedup-{args.name}.clean.jsonl.zst")
        if os.path.exists(clean):
            os.remove(clean)
        r = timed(anygram_cmd(*base, "--write", clean), f"dedup-write-{args.name}", args.workdir)
        result["dedup"]["write"] = {
            "seconds": r["seconds"],
            "peak_rss_bytes": r["peak_rss_bytes"],
            "peak_anon_rss_bytes": r["peak_anon_rss_bytes"],
            "bytes": os.path.getsize(clean),
        }
        print("write", result["dedup"]["write"], flush=True)
    if args.cross:
        # Cross dedup: this index against another one (e.g. a pretraining corpus
        # against an eval set's index), in one merged pass over both suffix arrays.
        other = anygram.Engine.open(args.cross)
        cross_ranges = os.path.join(args.workdir, f"dedup-{args.name}-cross.ranges.jsonl")
        r = timed(
            anygram_cmd(
                "dedup",
                "--index",
                indexes.get("cross_from", full),
                "--against",
                args.cross,
                "--min-len",
                str(args.dedup_min_len),
                "--ranges",
                cross_ranges,
                "--quiet",
                "--restart",
            ),
            f"dedup-cross-{args.name}",
            args.workdir,
        )
        cs = json.loads(r["stdout"])
        both = cs["num_tokens"] + other.num_tokens - other.num_documents
        result["dedup"]["cross"] = {
            "index": indexes.get("cross_from", full),
            "against": args.cross,
            "against_tokens": other.num_tokens - other.num_documents,
            "seconds": r["seconds"],
            "tokens_per_s_both_indexes": round(both / r["seconds"]),
            "peak_rss_bytes": r["peak_rss_bytes"],
            "peak_anon_rss_bytes": r["peak_anon_rss_bytes"],
            "summary": cs,
        }
        print("cross", result["dedup"]["cross"], flush=True)
    if not args.no_baseline:
        b = hash_baseline(full, args.dedup_min_len)
        b["agrees"] = b["tokens_removed"] == summary["tokens_removed"]
        b["ratio_baseline_over_anygram"] = round(b["seconds"] / result["dedup"]["seconds"], 2)
        result["dedup"]["hash_baseline"] = b
        print("baseline", b, flush=True)

    with open(stem + ".json", "w") as f:
        json.dump(result, f, indent=2)
    lines = [
        f"# Scans on the {args.name} corpus "
        f"({engine.num_tokens:,} tokens, {engine.num_documents:,} documents)",
        "",
        f"{result['date']}, {result['note']}.",
        "",
        "Peak RSS counts the pages of the memory-mapped index that a scan touched (page cache, shared);"
        " anonymous RSS is the scan's own memory.",
        "",
        "| contamination eval set | against | examples | eval tokens | seconds | eval tokens/s | peak RSS | "
        "peak anon RSS | token coverage |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, c in result["contamination"].items():
        lines.append(
            f"| {name} | {c['against']} | {c['examples']:,} | {c['eval_tokens']:,} | {c['seconds']:.2f} | "
            f"{c['eval_tokens_per_s']:,} | {c['peak_rss_bytes'] / 2**20:.0f} MiB | "
            f"{c.get('peak_anon_rss_bytes', 0) / 2**20:.0f} MiB | {100 * c['token_coverage']:.1f}% |"
        )
    d = result["dedup"]
    lines += [
        "",
        f"Dedup (self, --min-len {d['min_len']}): {d['seconds']:.2f} s, "
        f"{d['corpus_tokens_per_s']:,} corpus tokens/s, peak RSS {d['peak_rss_bytes'] / 2**20:.0f} MiB "
        f"(anonymous {d['peak_anon_rss_bytes'] / 2**20:.0f} MiB); "
        f"{d['summary']['tokens_removed']:,} tokens removed "
        f"({100 * d['summary']['fraction_tokens_removed']:.2f}%) from "
        f"{d['summary']['documents_affected']:,} documents.",
    ]
    if "write" in d:
        lines.append(
            f"Writing the cleaned corpus (.jsonl.zst, decoded text): {d['write']['seconds']:.2f} s, "
            f"peak RSS {d['write']['peak_rss_bytes'] / 2**20:.0f} MiB "
            f"(anonymous {d['write']['peak_anon_rss_bytes'] / 2**20:.0f} MiB)."
        )
    if "cross" in d:
        c = d["cross"]
        lines.append(
            f"Cross dedup of {os.path.basename(c['index'])} ({c['summary']['num_tokens']:,} tokens) against "
            f"{os.path.basename(c['against'])} ({c['against_tokens']:,} tokens): "
            f"{c['seconds']:.2f} s, {c['tokens_per_s_both_indexes']:,} tokens of both indexes/s, peak RSS "
            f"{c['peak_rss_bytes'] / 2**20:.0f} MiB (anonymous {c['peak_anon_rss_bytes'] / 2**20:.0f} MiB); "
            f"{c['summary']['tokens_removed']:,} tokens removed from {c['summary']['documents_affected']:,} "
            "documents."
        )
    if "hash_baseline" in d:
        b = d["hash_baseline"]
        lines.append(
            f"numpy hash of every window (baseline, one core): {b['seconds']:.2f} s "
            f"({b['ratio_baseline_over_anygram']}x anygram's time); removes {b['tokens_removed']:,} "
            f"tokens: {'agrees' if b['agrees'] else 'DISAGREES'} with anygram."
        )
    with open(stem + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
