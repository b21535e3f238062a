#!/usr/bin/env python3
"""Object-storage latency: anygram's queries on an index in S3 (s3s-fs on
127.0.0.1) behind an added round-trip latency, beside the same queries on the
local files (anygram and infini-gram 2.6.0).

One command (builds the index on first use, then runs everything):

    /work/main/.venv/bin/python bench/bench_s3.py            # PYTHONPATH: python/, server/

Options: --queries N (default 100 per type), --rtt-ms 0,1,10, --index DIR (an
anygram index built with --accelerator; default: the docs corpus, GPT-2
tokenizer, 4 shards, under bench/results/tmp/s3root/bench/docs), --out DIR.

* Latency: `tc netem` on a veth pair in a network namespace when the kernel has
  netem; otherwise (these machines: "qdisc kind netem unknown") a delaying TCP
  proxy on 127.0.0.1 (asyncio): every byte from the client reaches the server
  one RTT later, so each request/response exchange costs at least one RTT;
  connection set-up is not delayed (as with a kept-alive connection pool).
* Queries: bench_cold.py's held-out queries (bench_queries.query_sets), per type
  count, prob, infgram_prob, ntd, search_docs.
* Per type and RTT: round trips (the query's critical path,
  `_anygram.storage_round_trips`: shards searched concurrently count once)
  p50/p95, latency p50/p95/p99, with a cold block cache (a fresh open before
  each query: the accelerators' resident levels are loaded, no block is cached)
  and warm (the same queries again on one engine). Open: time and round trips.
* Local: the same queries on the local files (hot page cache), anygram and
  infini-gram's engine. infini-gram's S3 engine is not on PyPI: its cost is
  stated from its algorithm (one ranged GET per binary-search probe: ~2·log2 N
  round trips a bound).
* A projection: 1.4T tokens in 8 shards at 20 ms a round trip.

Results: bench/results/<date>-docs-s3.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import bench_queries  # noqa: E402
from bench_queries import query_sets  # noqa: E402

KINDS = ["count", "prob", "infgram_prob", "ntd", "search_docs"]
VOCAB, EOS = 50257, 50256
ACCESS_KEY, SECRET_KEY = "anygram-bench", "anygram-bench-secret"
BUCKET = "bench"
PROJECTION = {"tokens": 1.4e12, "shards": 8, "rtt_s": 20e-3}
DEFAULT_ROOT = os.path.join(HERE, "results", "tmp", "s3root")


def percentile(values, p) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), p)) if len(values) else float("nan")


# --- the index -------------------------------------------------------------

def ensure_index(index: str, shared: str) -> None:
    if os.path.exists(os.path.join(index, "anygram.json")):
        return
    print(f"building {index} (docs corpus, 4 shards, --accelerator) ...", flush=True)
    subprocess.run([sys.executable, "-m", "anygram.cli", "build", os.path.join(shared, "docs.jsonl.zst"),
                    "-o", index, "--tokenizer", os.path.join(shared, "gpt2-tokenizer.json"),
                    "--shards", "4", "--accelerator"], check=True)


# --- latency: netem if the kernel has it, else a delaying proxy ----------------

def netem_available() -> str:
    """Why tc netem cannot be used here ('' when it can)."""
    probe = "anygram-bench-probe"
    try:
        r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
        if r.returncode:
            return f"ip netns add: {r.stderr.strip()}"
        r = subprocess.run(["ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo", "root",
                            "netem", "delay", "1ms"], capture_output=True, text=True)
        return "" if r.returncode == 0 else f"tc netem: {r.stderr.strip()}"
    except FileNotFoundError as e:
        return str(e)
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)


class DelayProxy:
    """TCP proxy on 127.0.0.1 that delivers client→server bytes `rtt` seconds
    late (in order, pipelined: many requests can be in flight)."""

    def __init__(self, upstream_port: int, rtt_s: float):
        self.upstream_port, self.rtt_s = upstream_port, rtt_s
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    async def _client(self, reader, writer) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        queue: asyncio.Queue = asyncio.Queue()

        async def receive():
            while data := await reader.read(1 << 16):
                await queue.put((time.monotonic() + self.rtt_s, data))
            await queue.put((0.0, b""))

        async def deliver():
            while True:
                due, data = await queue.get()
                if not data:
                    break
                if (wait := due - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def back():
            while data := await up_reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
            writer.close()

        try:
            await asyncio.gather(receive(), deliver(), back())
        except (ConnectionError, OSError):
            pass

    def close(self) -> None:
        # Stops accepting; the connections end with the measuring process.
        self.loop.call_soon_threadsafe(self.server.close)


def seed_etags(root: str, index: str) -> None:
    """Stores each file's MD5 where s3s-fs keeps an uploaded object's ETag.
    Files copied into its directory have none, and s3s-fs then hashes the whole
    file on every GET (seconds per query on a 120 MB suffix array): a cost of
    the test server, not of S3, which never hashes on read."""
    import base64
    import hashlib

    def b64(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    for name in sorted(os.listdir(index)):
        key = f"{os.path.basename(index)}/{name}"
        info = os.path.join(root, f".bucket-{b64(BUCKET)}.object-{b64(key)}.internal.json")
        if os.path.exists(info) and os.path.getmtime(info) >= os.path.getmtime(os.path.join(index, name)):
            continue
        md5 = hashlib.md5()
        with open(os.path.join(index, name), "rb") as f:
            while chunk := f.read(8 << 20):
                md5.update(chunk)
        with open(info, "w") as f:
            json.dump({"e_tag": md5.hexdigest()}, f)


def start_s3(root: str) -> tuple:
    from serving import free_port  # tests/serving.py: a free loopback port

    exe = shutil.which("s3s-fs") or os.path.expanduser("~/.cargo/bin/s3s-fs")
    port = free_port()
    proc = subprocess.Popen([exe, "--host", "127.0.0.1", "--port", str(port), "--access-key", ACCESS_KEY,
                             "--secret-key", SECRET_KEY, root], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import socket

    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("s3s-fs did not start")


# --- one measuring process per RTT (its own client and cache) -----------------

def native_engine(path: str):
    from anygram import _anygram

    return _anygram.Engine(path, 2, VOCAB, EOS, None, None, True)


def one_call(engine, kind: str, q):
    if kind == "count":
        return engine.count(q)
    if kind == "prob":
        return engine.prob(q[0], q[1], len(q[0]) + 1)
    if kind == "infgram_prob":
        return engine.infgram_prob(q[0], q[1])
    if kind == "ntd":
        return engine.ntd(q, len(q) + 1)
    return engine.search_docs(q, maxnum=1, max_disp_len=100, seed=0)


def measure(engine, kind: str, q) -> tuple:
    from anygram import _anygram

    trips = _anygram.storage_round_trips()
    t0 = time.perf_counter()
    answer = one_call(engine, kind, q)
    return time.perf_counter() - t0, _anygram.storage_round_trips() - trips, answer


def summary(samples) -> dict:
    seconds = [s[0] for s in samples]
    trips = [s[1] for s in samples]
    return {"round_trips_p50": percentile(trips, 50), "round_trips_p95": percentile(trips, 95),
            "round_trips_max": max(trips, default=0),
            "p50_ms": percentile(seconds, 50) * 1e3, "p95_ms": percentile(seconds, 95) * 1e3,
            "p99_ms": percentile(seconds, 99) * 1e3}


def child(args) -> None:
    from anygram import _anygram

    sets = json.load(open(args.queries_file))
    url = f"s3://{BUCKET}/{os.path.basename(args.index)}"
    _anygram.configure_storage()  # defaults: 64 KiB blocks, 256 MiB of RAM
    before, t0 = _anygram.storage_batch_count(), time.perf_counter()
    engine = native_engine(url)
    open_s, open_trips = time.perf_counter() - t0, _anygram.storage_batch_count() - before
    local = native_engine(args.index)
    out = {"open_ms": open_s * 1e3, "open_round_trips": open_trips, "kinds": {}}
    for kind in KINDS:
        queries = sets[kind]
        cold = []
        for q in queries:
            _anygram.configure_storage()  # an empty cache for the engine opened next
            fresh = native_engine(url)
            cold.append(measure(fresh, kind, q))
            del fresh
        warm_engine = native_engine(url)
        for q in queries:
            one_call(warm_engine, kind, q)
        warm = [measure(warm_engine, kind, q) for q in queries]
        # Same answers as the local files (search_docs draws documents: compare counts).
        for q, (_, _, answer) in zip(queries, warm):
            expected = one_call(local, kind, q)
            if kind == "search_docs":
                answer, expected = answer["cnt"], expected["cnt"]
            assert answer == expected, (kind, q)
        out["kinds"][kind] = {"cold": summary(cold), "warm": summary(warm)}
        print(f"  rtt {float(args.rtt_ms):g} ms {kind:13} cold {out['kinds'][kind]['cold']}\n"
              f"  {'':23} warm {out['kinds'][kind]['warm']}", flush=True)
    json.dump(out, open(args.result_file, "w"))


def run_rtt(args, rtt_ms: float, s3_port: int, queries_file: str) -> dict:
    proxy = DelayProxy(s3_port, rtt_ms / 1e3)
    result_file = queries_file + f".rtt{rtt_ms:g}.json"
    env = dict(os.environ, AWS_ENDPOINT_URL=f"http://127.0.0.1:{proxy.port}", AWS_ACCESS_KEY_ID=ACCESS_KEY,
               AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_REGION="us-east-1", AWS_ALLOW_HTTP="true")
    try:
        subprocess.run([sys.executable, __file__, "--child", "--rtt-ms", str(rtt_ms), "--index", args.index,
                        "--queries-file", queries_file, "--result-file", result_file], env=env, check=True)
    finally:
        proxy.close()
    result = json.load(open(result_file))
    os.remove(result_file)
    return result


# --- local, side by side -------------------------------------------------------

def time_local(fn, queries) -> dict:
    for q in queries:
        fn(q)
    seconds = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        seconds.append(time.perf_counter() - t0)
    return {"p50_ms": percentile(seconds, 50) * 1e3, "p95_ms": percentile(seconds, 95) * 1e3,
            "p99_ms": percentile(seconds, 99) * 1e3}


def local_timings(index: str, sets: dict) -> dict:
    from infini_gram.engine import InfiniGramEngine

    ours = native_engine(index)
    theirs = InfiniGramEngine(index_dir=index, eos_token_id=EOS, vocab_size=VOCAB, token_dtype="u16")
    their_calls = {
        "count": lambda q: theirs.count(q),
        "prob": lambda q: theirs.prob(q[0], q[1]),
        "infgram_prob": lambda q: theirs.infgram_prob(q[0], q[1]),
        "ntd": lambda q: theirs.ntd(q),
        "search_docs": lambda q: theirs.search_docs(q, maxnum=1, max_disp_len=100),
    }
    return {kind: {"anygram": time_local(lambda q: one_call(ours, kind, q), sets[kind]),
                   "infini-gram": time_local(their_calls[kind], sets[kind])} for kind in KINDS}


# --- report --------------------------------------------------------------------

def infinigram_s3_round_trips(tokens_per_shard: float, kind: str) -> float:
    """infini-gram's S3 engine: a binary-search probe is one ranged GET (the
    pointer) and another for the text, ~log2 N probes, two bounds: ~2·log2 N a
    bound. Only find/count/documents exist there; prob is two counts."""
    per_bound = 2 * math.log2(max(tokens_per_shard, 2))
    return {"count": 2, "search_docs": 2, "prob": 4}.get(kind, float("nan")) * per_bound


def report(r: dict) -> str:
    lines = [f"# Object storage: anygram over S3 (s3s-fs, loopback) with added latency, docs corpus "
             f"({r['num_tokens']:,} GPT-2 tokens, {r['num_shards']} shards, accelerators)", ""]
    lines.append(f"{r['machine']}; {r['queries']} held-out queries per type (bench_cold.py's); latency: {r['latency_method']}. "
                 "Round trips: the query's critical path (shards searched concurrently count once). "
                 "Cold: a fresh open (the accelerators' resident levels loaded) and an empty block cache before each "
                 "query; warm: the same queries again on one engine. Local: the same queries on the local files, "
                 "hot page cache. Command: `" + r["command"] + "`.")
    lines.append("")
    lines.append("Reading the latencies: the server (s3s-fs) runs on the same cores as the client, so a cold query's "
                 "time beyond its round trips × RTT is mostly the server's own work per GET (the 0 ms rows measure it); "
                 "a cold query here reads 64 KiB blocks (the default), ~150 GETs for a count over 4 shards. "
                 f"Load average during the run: {r.get('load_average', 'not recorded')}.")
    lines.append("")
    for rtt, res in r["s3"].items():
        lines.append(f"## {rtt} ms a round trip: open {res['open_ms']:.1f} ms in {res['open_round_trips']} round trips")
        lines.append("")
        lines.append("| query | cold round trips p50/p95 | cold p50/p95/p99 ms | warm round trips p50/p95 | warm p50/p95/p99 ms |"
                     " local anygram p50/p95 ms | local infini-gram p50/p95 ms | infini-gram S3 engine (est.) |")
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for kind in KINDS:
            c, w = res["kinds"][kind]["cold"], res["kinds"][kind]["warm"]
            la, li = r["local"][kind]["anygram"], r["local"][kind]["infini-gram"]
            est = infinigram_s3_round_trips(r["num_tokens"] / r["num_shards"], kind)
            est_text = "n/a" if math.isnan(est) else f"~{est:.0f} RT = {est * float(rtt):.0f} ms"
            lines.append(f"| {kind} | {c['round_trips_p50']:.0f} / {c['round_trips_p95']:.0f} | "
                         f"{c['p50_ms']:.1f} / {c['p95_ms']:.1f} / {c['p99_ms']:.1f} | "
                         f"{w['round_trips_p50']:.0f} / {w['round_trips_p95']:.0f} | "
                         f"{w['p50_ms']:.2f} / {w['p95_ms']:.2f} / {w['p99_ms']:.2f} | "
                         f"{la['p50_ms']:.3f} / {la['p95_ms']:.3f} | {li['p50_ms']:.3f} / {li['p95_ms']:.3f} | {est_text} |")
        lines.append("")
    p = r["projection"]
    lines.append(f"## Projection: {p['tokens']:.1e} tokens in {p['shards']} shards at {p['rtt_s'] * 1e3:.0f} ms a round trip")
    lines.append("")
    lines.append("Shards are searched concurrently and the accelerator's levels above the bottom one stay resident, so "
                 "a query's round trips do not grow with the shard (measured cold p95 × RTT); infini-gram's S3 engine "
                 f"~2·log2 N a bound with N = {p['tokens'] / p['shards']:.2e} tokens a shard.")
    lines.append("")
    lines.append("| query | anygram round trips p95 | anygram p95 | infini-gram S3 engine |")
    lines.append("| --- | ---: | ---: | ---: |")
    for kind, row in p["kinds"].items():
        theirs = "n/a (not supported)" if row["infinigram_round_trips"] is None else \
            f"~{row['infinigram_round_trips']:.0f} RT = {row['infinigram_ms']:.0f} ms"
        lines.append(f"| {kind} | {row['round_trips_p95']:.0f} | {row['ms']:.0f} ms | {theirs} |")
    lines.append(f"| open | {p['open_round_trips']} | {p['open_round_trips'] * p['rtt_s'] * 1e3:.0f} ms + the resident levels' transfer | |")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--index", default=os.path.join(DEFAULT_ROOT, BUCKET, "docs"),
                   help="an anygram index with accelerators, inside <root>/<bucket>/ (s3s-fs serves <root>)")
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--rtt-ms", default="0,1,10", help="added round-trip latencies, ms (0: the local server's own time)")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--shared", default=bench_queries.SHARED if os.path.isdir(bench_queries.SHARED)
                   else "/work/shared/data", help="the shared data (docs corpus, tokenizer, lm_eval/)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--queries-file", help=argparse.SUPPRESS)
    p.add_argument("--result-file", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.index = os.path.abspath(args.index)
    if os.path.basename(os.path.dirname(args.index)) != BUCKET:
        p.error(f"--index must lie in a directory named {BUCKET!r} (the bucket s3s-fs serves)")
    if args.child:
        return child(args)
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    bench_queries.SHARED = args.shared
    ensure_index(args.index, args.shared)

    import anygram

    engine = anygram.Engine.open(args.index)
    sets = query_sets(engine, args.queries, "heldout")
    sets = json.loads(json.dumps({k: sets[k] for k in KINDS}))
    manifest = engine.manifest
    num_tokens = sum(s["num_tokens"] for s in manifest["shards"])
    queries_file = os.path.join(args.out, "tmp", f"s3-queries-{os.getpid()}.json")
    os.makedirs(os.path.dirname(queries_file), exist_ok=True)
    json.dump(sets, open(queries_file, "w"))

    why_not_netem = netem_available()
    latency_method = ("tc netem (veth pair, network namespace)" if not why_not_netem else
                      f"a delaying TCP proxy on 127.0.0.1 (asyncio; netem unavailable: {why_not_netem})")
    if not why_not_netem:
        print("note: netem is available, but this script delays through its proxy (the same for both RTTs)")
    root = os.path.dirname(os.path.dirname(args.index))
    seed_etags(root, args.index)
    s3, s3_port = start_s3(root)
    results = {}
    try:
        for rtt in [float(x) for x in args.rtt_ms.split(",")]:
            print(f"S3 at {rtt:g} ms a round trip ...", flush=True)
            results[f"{rtt:g}"] = run_rtt(args, rtt, s3_port, queries_file)
    finally:
        s3.terminate()
        s3.wait(10)
        os.remove(queries_file)
    print("local timings ...", flush=True)
    local = local_timings(args.index, sets)

    rtt_key = max(results, key=float)
    worst = results[rtt_key]
    tokens_per_shard = PROJECTION["tokens"] / PROJECTION["shards"]
    projection = dict(PROJECTION, open_round_trips=worst["open_round_trips"], kinds={})
    for kind in KINDS:
        trips = worst["kinds"][kind]["cold"]["round_trips_p95"]
        theirs = infinigram_s3_round_trips(tokens_per_shard, kind)
        projection["kinds"][kind] = {
            "round_trips_p95": trips, "ms": trips * PROJECTION["rtt_s"] * 1e3,
            "infinigram_round_trips": None if math.isnan(theirs) else theirs,
            "infinigram_ms": None if math.isnan(theirs) else theirs * PROJECTION["rtt_s"] * 1e3}
    date = datetime.date.today().isoformat()
    r = {"date": date, "machine": f"{os.uname().machine}, {os.cpu_count()} cores",
         "command": "python bench/bench_s3.py " + " ".join(sys.argv[1:]), "queries": args.queries,
         "num_tokens": num_tokens, "num_shards": len(manifest["shards"]), "latency_method": latency_method,
         "s3": results, "local": local, "projection": projection,
         "load_average": " / ".join(f"{x:.1f}" for x in os.getloadavg()) + " (1/5/15 min, at the end)"}
    base = os.path.join(args.out, f"{date}-docs-s3")
    json.dump(r, open(base + ".json", "w"), indent=1)
    open(base + ".md", "w").write(report(r))
    print(report(r))


if __name__ == "__main__":
    main()
