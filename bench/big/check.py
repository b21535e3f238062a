"""Checks a big one-shard index (made by ``make_index.py``) three ways, with timings:

1. ``anygram verify`` on it, in a subprocess under ``/usr/bin/time -v`` (wall time, peak RSS).
2. Sampled queries (n-grams of 1-12 tokens from random positions of the token stream, contexts
   whose front does not occur, and absent n-grams) answered by anygram's ``count``, ``find``,
   ``prob``, ``ntd`` and ``infgram_prob`` and compared with brute force over the memory-mapped
   token stream: one pass over ``tokenized.0`` in chunks finds every occurrence of every
   pattern (a lookup table of first tokens picks candidates, the following tokens filter them)
   and the token after each. ``find``'s segment is also read back from ``table.0`` (the 5-byte
   pointers, decoded here with numpy) and must hold exactly the brute-force positions.
3. infini-gram 2.6.0's ``InfiniGramEngine`` opened on the same files: the same queries, the
   same answers (count, find, prob, ntd, infgram_prob), compared with ``anygram.compat``.

Then the hot latency of both engines per query type on this index. Writes
``bench/results/DATE-big-u16.{json,md}``.

    python bench/big/check.py --index /work/big/tiled84 [--queries 250] [--skip-verify]
"""

from __future__ import annotations

import argparse
import json
import hashlib
import os
import pickle
import platform
import re
import subprocess
import sys
import time
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "..", "results")
SEPARATOR = 0xFFFF
MAX_SUPPORT = 1000
POSITIONS_CHECKED_UP_TO = 20_000  # find's pointers are compared one by one up to this count
CHUNK = 1 << 26  # tokens per brute-force step (128 MiB of u16)


# ---------------------------------------------------------------- the queries

def draw_queries(tokens: np.ndarray, vocab: int, eos: int, n: int, seed: int) -> Dict[str, list]:
    """``n`` n-grams of 1-12 tokens from random positions (cut at a document end), with
    ``n // 5`` absent-looking ones (random ids) on top; prob/ntd use their prompts (length >= 2
    n-grams), infgram_prob puts 1-4 random ids in front of the prompt so that the longest
    occurring suffix is shorter than the context."""
    rng = np.random.default_rng(seed)
    present: List[Tuple[int, ...]] = []
    while len(present) < n:
        length = int(rng.integers(1, 13))
        start = int(rng.integers(0, len(tokens) - length))
        window = np.asarray(tokens[start:start + length])
        cut = np.flatnonzero(window == SEPARATOR)
        window = window[:cut[0]] if len(cut) else window
        if len(window):
            present.append(tuple(int(t) for t in window))
    ids = [i for i in range(vocab) if i != eos]
    absent = [tuple(int(t) for t in rng.choice(ids, size=int(rng.integers(2, 7)))) for _ in range(n // 5)]
    grams = present + absent
    grams = [grams[i] for i in rng.permutation(len(grams))]  # absent ones in every prefix
    with_prompt = [q for q in grams if len(q) >= 2]
    infgram = [(tuple(int(t) for t in rng.choice(ids, size=int(rng.integers(1, 5)))) + q[:-1], q[-1])
               for q in present if len(q) >= 2]
    return {"count": [(q,) for q in grams], "find": [(q,) for q in grams],
            "prob": [(q[:-1], q[-1]) for q in with_prompt], "ntd": [(q[:-1],) for q in with_prompt],
            "infgram_prob": infgram}


# ---------------------------------------------------------------- brute force

class Occurrences:
    """Every occurrence of a pattern: its count, the tokens after it (the separator and the
    end of the stream read as eos, as both engines report them), and its positions when there
    are at most POSITIONS_CHECKED_UP_TO."""

    def __init__(self) -> None:
        self.count = 0
        self.next_tokens: Counter = Counter()
        self.positions: List[np.ndarray] = []


def brute_force(tokens: np.ndarray, patterns: Sequence[Tuple[int, ...]], eos: int) -> Dict[Tuple[int, ...], Occurrences]:
    """One pass over the memory-mapped stream for all ``patterns`` (none holds a separator)."""
    found = {p: Occurrences() for p in patterns}
    longest = max(len(p) for p in patterns)
    firsts = np.zeros(1 << 16, dtype=bool)
    firsts[[p[0] for p in patterns]] = True
    by_first: Dict[int, List[Tuple[int, ...]]] = {}
    for p in patterns:
        by_first.setdefault(p[0], []).append(p)
    n = len(tokens)
    for lo in range(0, n, CHUNK):
        hi = min(n, lo + CHUNK)
        window = np.asarray(tokens[lo:min(n, hi + longest)])  # a view of the mapping, no copy
        candidates = np.flatnonzero(firsts[window[:hi - lo]])
        # Candidates grouped by first token (a stable sort keeps each group's positions in order).
        order = np.argsort(window[candidates], kind="stable")
        candidates, candidate_tokens = candidates[order], window[candidates[order]]
        # (the needles in the array's own dtype: a Python int would make numpy copy the haystack)
        first_ids = np.array(sorted(by_first), dtype=candidate_tokens.dtype)
        group_lo = np.searchsorted(candidate_tokens, first_ids, "left")
        group_hi = np.searchsorted(candidate_tokens, first_ids, "right")
        for first, lo_at, hi_at in zip(first_ids.tolist(), group_lo.tolist(), group_hi.tolist()):
            group, starts = by_first[first], candidates[lo_at:hi_at]
            for p in group:
                at = starts
                for k in range(1, len(p)):
                    at = at[at + k < len(window)]
                    at = at[window[at + k] == p[k]]
                occ = found[p]
                occ.count += len(at)
                after = at + len(p)
                inside = after < len(window)
                following = window[after[inside]].astype(np.int64)
                following[following == SEPARATOR] = eos
                occ.next_tokens.update(dict(zip(*np.unique(following, return_counts=True))))
                occ.next_tokens[eos] += int((~inside).sum())  # only at the end of the stream
                if occ.count <= POSITIONS_CHECKED_UP_TO:
                    occ.positions.append(at + lo)
    for occ in found.values():
        occ.next_tokens = Counter({int(k): int(v) for k, v in occ.next_tokens.items() if v})
    return found


def stream_fingerprint(tokens: np.ndarray) -> str:
    """Length and a hash of 64 spread blocks of 4096 tokens: which stream a cache belongs to."""
    h = hashlib.sha256(str(len(tokens)).encode())
    for start in np.linspace(0, max(len(tokens) - 4096, 0), 64).astype(np.int64):
        h.update(np.asarray(tokens[start:start + 4096]).tobytes())
    return h.hexdigest()


def cached_brute_force(cache: Optional[str], tokens: np.ndarray, patterns, eos: int):
    """``brute_force``'s answer and the seconds it took, through a pickle at ``cache`` (when
    given) tied to the stream and the patterns: the scan can run on the token stream while the
    suffix array of the same stream is still being built (``--brute-only``)."""
    key = (stream_fingerprint(tokens), tuple(patterns), eos)
    if cache and os.path.exists(cache):
        with open(cache, "rb") as f:
            saved = pickle.load(f)
        if saved["key"] == key:
            print(f"brute force: read from {cache}", flush=True)
            return saved["occ"], saved["seconds"]
        print(f"brute force: {cache} is for another stream or sample; scanning again", flush=True)
    t0 = time.perf_counter()
    occ = brute_force(tokens, patterns, eos)
    seconds = time.perf_counter() - t0
    if cache:
        with open(cache + ".tmp", "wb") as f:
            pickle.dump({"key": key, "occ": occ, "seconds": seconds}, f)
        os.replace(cache + ".tmp", cache)
    return occ, seconds


def sa_positions(table: np.ndarray, ptr_size: int, lo: int, hi: int) -> np.ndarray:
    """Token positions of suffix-array ranks ``lo..hi``: ``ptr_size``-byte little-endian byte
    offsets in ``table.0``, decoded here without the engine."""
    raw = np.asarray(table[lo * ptr_size:hi * ptr_size]).reshape(-1, ptr_size).astype(np.uint64)
    offsets = np.zeros(hi - lo, dtype=np.uint64)
    for b in range(ptr_size):
        offsets |= raw[:, b] << np.uint64(8 * b)
    return (offsets // np.uint64(2)).astype(np.int64)


def expected(method: str, args: tuple, occ: Dict[Tuple[int, ...], Occurrences]):
    """Brute force's answer, in the shape of anygram's native engine (None: not decided here)."""
    if method == "count":
        return occ[args[0]].count
    if method == "prob":
        prompt, cont = args
        total = occ[prompt].count
        hits = occ[prompt].next_tokens.get(cont, 0)
        return {"prompt_cnt": total, "cont_cnt": hits, "prob": hits / total if total else -1.0}
    if method == "ntd":
        o = occ[args[0]]
        if o.count > MAX_SUPPORT:
            return {"prompt_cnt": o.count}  # sampled beyond max_support: compared with infini-gram
        return {"prompt_cnt": o.count, "result_by_token_id": dict(o.next_tokens)}
    if method == "infgram_prob":
        context, cont = args
        suffix_len = max(s for s in range(len(context) + 1) if s == 0 or occ[context[-s:]].count)
        prompt = context[len(context) - suffix_len:]
        total = occ[prompt].count
        hits = occ[prompt].next_tokens.get(cont, 0)
        return {"prompt_cnt": total, "cont_cnt": hits, "prob": hits / total, "suffix_len": suffix_len}
    raise ValueError(method)


def patterns_needed(queries: Dict[str, list]) -> List[Tuple[int, ...]]:
    needed = set()
    for q, in queries["count"]:
        needed.add(q)
    for prompt, _ in queries["prob"]:
        needed.add(prompt)
    for context, _ in queries["infgram_prob"]:
        needed.update(context[-s:] for s in range(1, len(context) + 1))
    return sorted(needed)


def native_call(engine, method: str):
    """anygram's native method with infini-gram's meaning: ``prob`` and ``ntd`` are the
    n-gram forms (``n`` = context length + 1; without ``n`` they are ∞-gram)."""
    if method == "prob":
        return lambda context, token: engine.prob(context, token, n=len(context) + 1)
    if method == "ntd":
        return lambda context: engine.ntd(context, n=len(context) + 1)
    return getattr(engine, method)


def native_comparable(method: str, answer):
    if method == "ntd":
        out = {"prompt_cnt": answer["prompt_cnt"]}
        if answer["prompt_cnt"] <= MAX_SUPPORT:
            out["result_by_token_id"] = {int(t): r["cont_cnt"] for t, r in answer["result_by_token_id"].items()}
        return out
    if method in ("prob", "infgram_prob"):
        keys = ("prompt_cnt", "cont_cnt", "prob") + (("suffix_len",) if method == "infgram_prob" else ())
        return {k: answer[k] for k in keys}
    return answer


def check_against_brute_force(engine, table, ptr_size, queries, occ) -> Dict[str, dict]:
    results = {}
    for method in ("count", "prob", "ntd", "infgram_prob"):
        agree, mismatches = 0, []
        for args in queries[method]:
            got = native_comparable(method, native_call(engine, method)(*args))
            want = expected(method, args, occ)
            if isinstance(want, dict):
                got = {k: got.get(k) for k in want}
                same = all((got[k] is not None and abs(got[k] - want[k]) < 1e-12) if k == "prob" else got[k] == want[k]
                           for k in want)
            else:
                same = got == want
            agree += same
            if not same and len(mismatches) < 5:
                mismatches.append({"args": repr(args), "anygram": repr(got), "brute_force": repr(want)})
        results[method] = {"queries": len(queries[method]), "agree": agree, "mismatches": mismatches}
    # find: the segment's length is the count, and its pointers are exactly the occurrences.
    agree, pointer_checked, mismatches = 0, 0, []
    for q, in queries["find"]:
        got = engine.find(q)
        (lo, hi), = got["segment_by_shard"]
        o = occ[q]
        same = got["cnt"] == o.count == hi - lo
        if same and o.count <= POSITIONS_CHECKED_UP_TO:
            want = np.sort(np.concatenate(o.positions)) if o.positions else np.zeros(0, np.int64)
            same = np.array_equal(np.sort(sa_positions(table, ptr_size, lo, hi)), want)
            pointer_checked += 1
        agree += same
        if not same and len(mismatches) < 5:
            mismatches.append({"args": repr(q), "anygram": repr(got), "brute_force_count": o.count})
    results["find"] = {"queries": len(queries["find"]), "agree": agree, "pointers_compared_for": pointer_checked,
                       "mismatches": mismatches}
    return results


# ---------------------------------------------------------------- infini-gram

def comparable(method: str, answer):
    if method == "find" and isinstance(answer, dict) and "segment_by_shard" in answer:
        return answer["cnt"], [tuple(int(x) for x in s) for s in answer["segment_by_shard"]]
    return answer


def eos_lumped(theirs: dict, ours: dict, eos: int) -> bool:
    """infini-gram's ntd defect (README): a range whose first and last continuations both
    read as eos (the shard's end sorts first, the separator last) is reported as all eos."""
    lumped = theirs.get("result_by_token_id", {})
    return (list(lumped) == [eos] and lumped[eos]["cont_cnt"] == theirs["prompt_cnt"] == ours["prompt_cnt"]
            and eos in ours.get("result_by_token_id", {}) and len(ours["result_by_token_id"]) > 1)


def check_against_infinigram(ours, theirs, queries, eos: int) -> Dict[str, dict]:
    results = {}
    for method, calls in queries.items():
        agree, known, mismatches = 0, 0, []
        for args in calls:
            a = comparable(method, getattr(ours, method)(*[list(x) if isinstance(x, tuple) else x for x in args]))
            b = comparable(method, getattr(theirs, method)(*[list(x) if isinstance(x, tuple) else x for x in args]))
            if a != b and method == "ntd" and eos_lumped(b, a, eos):
                known += 1
                continue
            agree += a == b
            if a != b and len(mismatches) < 5:
                mismatches.append({"args": repr(args), "anygram": repr(a), "infini_gram": repr(b)})
        results[method] = {"queries": len(calls), "agree": agree, "mismatches": mismatches}
        if method == "ntd":
            results[method]["infinigram_eos_lumping"] = known
    return results


def latencies(fn, calls, repeats: int = 3) -> Dict[str, float]:
    """Hot latency of each call (µs, from Python): one pass to warm the pages, then the best
    of ``repeats`` passes per call."""
    calls = [[list(x) if isinstance(x, tuple) else x for x in a] for a in calls]
    for a in calls:
        fn(*a)
    best = np.full(len(calls), np.inf)
    for _ in range(repeats):
        for i, a in enumerate(calls):
            t0 = time.perf_counter_ns()
            fn(*a)
            best[i] = min(best[i], time.perf_counter_ns() - t0)
    us = best / 1000.0
    return {f"p{p}": float(np.percentile(us, p)) for p in (50, 95, 99)}


# ---------------------------------------------------------------- verify

def run_verify(index: str) -> dict:
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "anygram.cli", "verify", "--index", index,
           "--format", "json"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        report = {"stdout": done.stdout[-2000:], "stderr": done.stderr[-2000:]}
    return {"returncode": done.returncode, "seconds": round(wall, 1),
            "peak_rss_bytes": int(rss.group(1)) * 1024 if rss else None, "report": report}


# ---------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", required=True)
    ap.add_argument("--queries", type=int, default=250, help="n-grams drawn from the stream (plus 1/5 absent)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--brute", type=int, default=100,
                    help="queries of each type also checked by brute force (the first ones drawn)")
    ap.add_argument("--skip-verify", action="store_true")
    ap.add_argument("--settle", type=float, default=0.0,
                    help="seconds after opening before the latency passes (anygram loads its sampled keys "
                         "in the background at open: without them a search is a full binary search)")
    ap.add_argument("--brute-cache", help="pickle of the brute-force scan (reused when it matches)")
    ap.add_argument("--brute-only", metavar="TOKENS",
                    help="only scan this token stream (tokenized.0, e.g. of a build still sorting) into "
                         "--brute-cache, with --vocab-size/--eos-token-id")
    ap.add_argument("--vocab-size", type=int, default=50257)
    ap.add_argument("--eos-token-id", type=int, default=50256)
    ap.add_argument("--out", default=RESULTS)
    ap.add_argument("--name", default="big-u16")
    args = ap.parse_args()

    if args.brute_only:
        tokens = np.memmap(args.brute_only, dtype="<u2", mode="r")
        queries = draw_queries(tokens, args.vocab_size, args.eos_token_id, args.queries, args.seed)
        patterns = patterns_needed({m: calls[:args.brute] for m, calls in queries.items()})
        _, seconds = cached_brute_force(args.brute_cache, tokens, patterns, args.eos_token_id)
        print(f"brute force: {len(patterns)} patterns in {seconds:.1f} s, saved in {args.brute_cache}")
        return

    import anygram
    from anygram.compat import InfiniGramEngine as Compat
    from infini_gram.engine import InfiniGramEngine as Peer

    report: dict = {"index": os.path.abspath(args.index), "machine": f"{platform.machine()}, {os.cpu_count()} cores"}
    build_json = args.index.rstrip("/") + ".build.json"
    if os.path.exists(build_json):
        report["build"] = json.load(open(build_json))
    report["index_bytes"] = sum(os.path.getsize(os.path.join(args.index, f)) for f in os.listdir(args.index))
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"{time.strftime('%Y-%m-%d')}-{args.name}")

    def save() -> None:
        """Written after every stage: a long run that is stopped keeps what it measured."""
        with open(stem + ".json", "w") as f:
            json.dump(report, f, indent=2, default=str)
        with open(stem + ".md", "w") as f:
            f.write(markdown(report) + "\n")

    t0 = time.perf_counter()
    engine = anygram.Engine.open(args.index)
    opened = time.perf_counter()
    report["anygram_open_seconds"] = time.perf_counter() - t0
    info = engine.shard_info()[0]
    eos, vocab = engine.eos_token_id, engine.vocab_size
    tokens = np.memmap(os.path.join(args.index, "tokenized.0"), dtype="<u2", mode="r")
    table = np.memmap(os.path.join(args.index, "table.0"), dtype=np.uint8, mode="r")
    ptr_size = len(table) // len(tokens)
    assert ptr_size * len(tokens) == len(table), "table.0 is not a whole number of pointers"
    report.update(num_tokens=len(tokens), text_bytes=2 * len(tokens), ptr_size=ptr_size, shard_info=info)
    print(f"{len(tokens):,} tokens ({2 * len(tokens) / 2**30:.2f} GiB of text), {ptr_size}-byte pointers", flush=True)

    queries = draw_queries(tokens, vocab, eos, args.queries, args.seed)
    report["queries"] = {m: len(c) for m, c in queries.items()}
    sample = {m: calls[:args.brute] for m, calls in queries.items()}
    patterns = patterns_needed(sample)
    t0 = time.perf_counter()
    occ, seconds = cached_brute_force(args.brute_cache, tokens, patterns, eos)
    report["brute_force"] = {"patterns": len(patterns), "seconds": round(seconds, 1)}
    print(f"brute force: {len(patterns)} patterns in {report['brute_force']['seconds']} s", flush=True)
    report["absent_ngrams"] = sum(1 for q, in sample["count"] if occ[q].count == 0)
    save()

    t0 = time.perf_counter()
    report["vs_brute_force"] = check_against_brute_force(engine, table, ptr_size, sample, occ)
    report["vs_brute_force_seconds"] = round(time.perf_counter() - t0, 1)
    for m, r in report["vs_brute_force"].items():
        print(f"  vs brute force {m:13} {r['agree']}/{r['queries']} agree", flush=True)
    save()

    kwargs = dict(index_dir=args.index, eos_token_id=eos, vocab_size=vocab, token_dtype="u16")
    t0 = time.perf_counter()
    theirs = Peer(**kwargs)
    report["infinigram_open_seconds"] = time.perf_counter() - t0
    ours = Compat(**kwargs)
    t0 = time.perf_counter()
    report["vs_infinigram"] = check_against_infinigram(ours, theirs, queries, eos)
    report["vs_infinigram_seconds"] = round(time.perf_counter() - t0, 1)
    for m, r in report["vs_infinigram"].items():
        print(f"  vs infini-gram  {m:13} {r['agree']}/{r['queries']} agree"
              + (f" (+{r['infinigram_eos_lumping']} lumped into eos by infini-gram)"
                 if r.get("infinigram_eos_lumping") else ""), flush=True)
    save()

    time.sleep(max(0.0, args.settle - (time.perf_counter() - opened)))
    report["settle_seconds"] = args.settle
    report["hot_latency_us"] = {}
    for method, calls in queries.items():
        row = {"anygram": latencies(native_call(engine, method), calls),
               "infini_gram": latencies(getattr(theirs, method), calls)}
        row["ratio_p50"] = row["infini_gram"]["p50"] / row["anygram"]["p50"]
        report["hot_latency_us"][method] = row
        print(f"  hot {method:13} anygram p50 {row['anygram']['p50']:8.1f} µs p99 {row['anygram']['p99']:8.1f} | "
              f"infini-gram p50 {row['infini_gram']['p50']:8.1f} p99 {row['infini_gram']['p99']:8.1f} | "
              f"x{row['ratio_p50']:.1f}", flush=True)

    save()
    if not args.skip_verify:
        print("anygram verify ...", flush=True)
        report["verify"] = run_verify(args.index)
        print(json.dumps(report["verify"], indent=1), flush=True)
        save()
    print(f"wrote {stem}.json and .md")
    failed = [f"{key}.{m}" for key in ("vs_brute_force", "vs_infinigram") for m, r in report[key].items()
              if r["agree"] + r.get("infinigram_eos_lumping", 0) != r["queries"]]
    verify_ok = args.skip_verify or report["verify"]["report"].get("ok") is True
    if failed or not verify_ok:
        sys.exit(f"FAILED: {failed}{'' if verify_ok else ' and verify'}")


def markdown(r: dict) -> str:
    past = "past" if r["text_bytes"] > 2**32 else "below"
    lines = [f"# One u16 shard {past} 2^32 bytes of text: {r['num_tokens']:,} tokens, "
             f"{r['text_bytes'] / 2**30:.2f} GiB of text, {r['ptr_size']}-byte pointers",
             "", f"index {r['index']} ({r['index_bytes'] / 1e9:.1f} GB on disk); machine {r['machine']}.", ""]
    if "build" in r:
        b = r["build"]
        lines += [f"build (`bench/big/make_index.py`, {b['copies']} copies, --mem {b['mem']}): "
                  f"streaming {b['stream_seconds']} s, suffix array + finish {b['sort_and_finish_seconds']} s, "
                  f"total {b['total_seconds']} s, peak RSS {b['peak_rss_bytes'] / 2**30:.2f} GiB", ""]
    if "verify" in r:
        v = r["verify"]
        lines += [f"`anygram verify`: ok={v['report'].get('ok')}, {v['seconds']} s, peak RSS "
                  f"{(v['peak_rss_bytes'] or 0) / 2**30:.2f} GiB; {json.dumps(v['report'])}", ""]
    if "vs_brute_force" not in r:
        return "\n".join(lines)
    lines += [f"brute force over the mapped token stream: {r['brute_force']['patterns']} patterns in one pass, "
              f"{r['brute_force']['seconds']} s; {r['absent_ngrams']} of the brute-forced count queries are absent n-grams.", "",
              "| query | vs brute force | vs infini-gram 2.6.0 | anygram hot p50 / p99 µs | infini-gram hot p50 / p99 µs | ratio p50 |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for m in ("count", "find", "prob", "ntd", "infgram_prob"):
        bf = r["vs_brute_force"][m]
        ig = r.get("vs_infinigram", {}).get(m)
        lat = r.get("hot_latency_us", {}).get(m)
        lumped = ig.get("infinigram_eos_lumping") if ig else None
        lines.append(f"| {m} | {bf['agree']}/{bf['queries']} | "
                     + (f"{ig['agree']}/{ig['queries']}" if ig else "not run")
                     + (f" (+{lumped} eos-lumped by infini-gram)" if lumped else "") + " | "
                     + (f"{lat['anygram']['p50']:.1f} / {lat['anygram']['p99']:.1f} | "
                        f"{lat['infini_gram']['p50']:.1f} / {lat['infini_gram']['p99']:.1f} | {lat['ratio_p50']:.1f}x |"
                        if lat else "not run | not run | |"))
    lines += ["", "find vs brute force also compares the suffix-array pointers of the segment (decoded from "
              f"table.0 with numpy) with the brute-force positions, for {r['vs_brute_force']['find']['pointers_compared_for']} "
              f"n-grams of at most {POSITIONS_CHECKED_UP_TO:,} occurrences. ntd beyond max_support={MAX_SUPPORT} is "
              "compared with brute force on prompt_cnt only (it samples) and with infini-gram in full; "
              "prob and ntd are the n-gram forms (anygram's `n=len(context)+1`), as in infini-gram. "
              f"Hot latency: per call from Python, best of 3 passes after a warm-up pass, from "
              f"{r.get('settle_seconds', 0):.0f} s after opening."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
