#!/usr/bin/env python3
"""Load test of `anygram serve` on loopback: throughput and latency under concurrent clients.

1. Opens the index in-process and draws n-gram queries from its documents; times the
   direct Python call `engine.count` on them (the floor HTTP adds to).
2. Starts `anygram serve` (a subprocess, loopback only, access log off).
3. For each workload and each number of concurrent clients (1, 8, 64), sends requests for
   a fixed duration over keep-alive HTTP/1.1 connections and checks every answer against
   the engine's: throughput, p50/p99 latency, failures. Workloads: `count` (infini-gram's
   `POST /`), `mix` (count, infgram_prob, infgram_ntd, search_docs, CNF count), `ntd`
   (∞-gram next-token distributions of frequent contexts: native work that runs in
   parallel in the engine threads) and `batch64` (/v1 count, 64 n-grams a request).
4. HTTP overhead = p50 of an HTTP count at 1 client - p50 of `engine.count`, same run.

The client is a minimal asyncio HTTP/1.1 client (one connection per simulated client), so
that it costs less CPU than the server it measures; it still shares the machine's cores
with the server, so the figures are a lower bound of what the server does alone.

Index: ../shared/data/docs.jsonl.zst built with the GPT-2 tokenizer (into bench/results/tmp)
when present, else the demo index (`anygram demo`). Results: bench/results/<date>-server.{json,md}.

Usage: python bench/bench_server.py [--index PATH] [--duration 4] [--clients 1,8,64] [--workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import subprocess
import sys
import time
from typing import Callable, Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.abspath(os.path.join(ROOT, "..", "shared", "data"))

import anygram  # noqa: E402

Request = Tuple[bytes, Callable[[dict], bool]]


def default_index(workdir: str) -> str:
    corpus = os.path.join(SHARED, "docs.jsonl.zst")
    tokenizer = os.path.join(SHARED, "gpt2-tokenizer.json")
    if os.path.isfile(corpus) and os.path.isfile(tokenizer):
        out = os.path.join(workdir, "server-docs")
        if not os.path.isdir(out):
            print(f"building {out} from {corpus} (GPT-2 tokens)...", flush=True)
            anygram.build_index(corpus, out, tokenizer=tokenizer, progress=False)
        return out
    out = os.path.join(ROOT, "demo-index")
    if not os.path.isdir(out):
        subprocess.run([sys.executable, "-m", "anygram.cli", "demo", "--output", out], check=True)
    return out


def sample_ngrams(engine, n: int, seed: int = 0) -> List[List[int]]:
    """n-grams of 1 to 20 tokens cut from random documents (so most occur)."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        doc = engine.get_doc_by_ix(rng.randrange(engine.num_documents), max_disp_len=2000)["token_ids"]
        if len(doc) < 2:
            continue
        length = rng.randint(1, min(20, len(doc)))
        start = rng.randrange(len(doc) - length + 1)
        out.append(list(doc[start : start + length]))
    return out


def percentile(sorted_values: List[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def direct_count_latency(engine, queries: List[List[int]], rounds: int = 5) -> Dict[str, float]:
    times = []
    for _ in range(rounds):
        for q in queries:
            t0 = time.perf_counter_ns()
            engine.count(q)
            times.append(time.perf_counter_ns() - t0)
    times.sort()
    return {"p50_us": percentile(times, 0.5) / 1e3, "p99_us": percentile(times, 0.99) / 1e3}


def http_request(body: dict, path: str = "/") -> bytes:
    payload = json.dumps(body).encode()
    return (
        b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
    )


def count_requests(name: str, engine, queries) -> List[Request]:
    out = []
    for q in queries:
        expected = engine.count(q)
        out.append(
            (
                http_request({"index": name, "query_type": "count", "query_ids": q}),
                lambda a, e=expected: a.get("count") == e,
            )
        )
    return out


def batch_requests(name: str, engine, queries, size: int = 64) -> List[Request]:
    """/v1 count with `size` n-grams a request (one native call on all cores)."""
    out = []
    for start in range(0, len(queries) - size + 1, size):
        batch = queries[start : start + size]
        expected = [engine.count(q) for q in batch]
        out.append(
            (
                http_request({"queries": batch}, f"/v1/indexes/{name}/count"),
                lambda a, e=expected: a.get("counts") == e,
            )
        )
    return out


def ntd_requests(name: str, engine, queries) -> List[Request]:
    """∞-gram next-token distributions after 1- and 2-token contexts: frequent contexts,
    so each is a sampled count of up to 1000 continuations (tens to hundreds of µs native)."""
    out = []
    for q in queries:
        context = q[-2:] if len(q) % 2 else q[-1:]
        expected = engine.ntd(context)["prompt_cnt"]
        body = {"index": name, "query_type": "infgram_ntd", "query_ids": context}
        out.append((http_request(body), lambda a, e=expected: a.get("prompt_cnt") == e))
    return out


def mixed_requests(name: str, engine, queries) -> List[Request]:
    """40% count, 25% infgram_prob, 15% infgram_ntd, 10% search_docs, 10% CNF count."""
    rng = random.Random(1)
    out = []
    for i, q in enumerate(queries):
        roll = rng.random()
        if roll < 0.40:
            body, want = {"query_type": "count", "query_ids": q}, ("count", engine.count(q))
        elif roll < 0.65:
            body = {"query_type": "infgram_prob", "query_ids": q}
            if len(q) < 2:
                q = q + q
                body["query_ids"] = q
            want = ("prob", engine.prob(q[:-1], q[-1])["prob"])
        elif roll < 0.80:
            body, want = (
                {"query_type": "infgram_ntd", "query_ids": q},
                ("prompt_cnt", engine.ntd(q)["prompt_cnt"]),
            )
        elif roll < 0.90:
            body = {"query_type": "search_docs", "query_ids": q, "maxnum": 1, "max_disp_len": 50}
            want = ("cnt", engine.search_docs(q, maxnum=1, max_disp_len=50)["cnt"])
        else:
            other = queries[(i * 7 + 3) % len(queries)]
            cnf = [[q[:3]], [other[:2]]]
            body = {"query_type": "count", "query_ids": cnf}
            want = ("count", engine.count_cnf(cnf)["count"])
        body["index"] = name
        key, value = want
        out.append((http_request(body), lambda a, k=key, v=value: a.get(k) == v))
    rng.shuffle(out)
    return out


async def client(
    port: int,
    requests: List[Request],
    offset: int,
    stop_at: float,
    latencies: List[float],
    failures: List[str],
) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as e:
        failures.append(f"connect: {e}")
        return
    i = offset
    try:
        while time.perf_counter() < stop_at:
            raw, check = requests[i % len(requests)]
            i += 1
            t0 = time.perf_counter()
            writer.write(raw)
            status = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            if not status.startswith(b"HTTP/1.1 200"):
                failures.append(f"{status.strip().decode()}: {body[:200].decode(errors='replace')}")
            elif not check(json.loads(body)):
                failures.append(f"wrong answer: {body[:200].decode(errors='replace')}")
    except (OSError, asyncio.IncompleteReadError) as e:
        failures.append(f"connection: {e!r}")
    finally:
        writer.close()


async def load(port: int, requests: List[Request], clients: int, seconds: float) -> Dict[str, float]:
    latencies: List[float] = []
    failures: List[str] = []
    stop_at = time.perf_counter() + seconds
    start = time.perf_counter()
    await asyncio.gather(
        *[client(port, requests, c * 997, stop_at, latencies, failures) for c in range(clients)]
    )
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "clients": clients,
        "requests": len(latencies),
        "seconds": elapsed,
        "throughput_rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "failed": len(failures),
        "first_failures": failures[:3],
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(index: str, workers: int) -> Tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "anygram.cli",
            "serve",
            "--index",
            f"bench={index}",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                if s.recv(100).startswith(b"HTTP/1.1 200"):
                    return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("anygram serve did not start")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--index", help="index directory (default: the docs corpus, else the demo index)")
    p.add_argument("--duration", type=float, default=4.0, help="seconds per workload and client count")
    p.add_argument("--clients", default="1,8,64")
    p.add_argument("--workers", default="1", help="server processes to compare, e.g. 1,2")
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--workdir", default=os.path.join(HERE, "results", "tmp"))
    args = p.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    index = args.index or default_index(args.workdir)
    engine = anygram.Engine.open(index)
    queries = sample_ngrams(engine, args.queries)
    direct = direct_count_latency(engine, queries)
    print(
        f"index {index}: {engine.num_tokens:,} tokens; engine.count p50 {direct['p50_us']:.1f} µs, "
        f"p99 {direct['p99_us']:.1f} µs",
        flush=True,
    )
    workloads = {
        "count": count_requests("bench", engine, queries),
        "mix": mixed_requests("bench", engine, queries),
        "ntd": ntd_requests("bench", engine, queries),
        "batch64": batch_requests("bench", engine, queries),
    }

    runs = []
    for workers in [int(w) for w in args.workers.split(",")]:
        proc, port = start_server(index, workers)
        try:
            for name, requests in workloads.items():
                asyncio.run(load(port, requests, 1, 0.5))  # warm-up
                for clients in [int(c) for c in args.clients.split(",")]:
                    r = asyncio.run(load(port, requests, clients, args.duration))
                    per_request = 64 if name == "batch64" else 1
                    r.update(
                        {
                            "workload": name,
                            "workers": workers,
                            "queries_per_s": r["throughput_rps"] * per_request,
                        }
                    )
                    runs.append(r)
                    print(
                        f"workers {workers}  {name:5}  clients {clients:3}: "
                        f"{r['throughput_rps']:8.0f} req/s  p50 {r['p50_ms']:6.2f} ms  "
                        f"p99 {r['p99_ms']:6.2f} ms  failed {r['failed']}",
                        flush=True,
                    )
        finally:
            proc.terminate()
            proc.wait(30)

    single = next(
        r
        for r in runs
        if r["workload"] == "count" and r["clients"] == 1 and r["workers"] == runs[0]["workers"]
    )
    overhead_ms = single["p50_ms"] - direct["p50_us"] / 1e3
    print(
        f"HTTP overhead on a count at p50: {overhead_ms * 1e3:.0f} µs "
        f"({single['p50_ms'] * 1e3:.0f} µs over HTTP - {direct['p50_us']:.1f} µs direct)"
    )
    failed = sum(r["failed"] for r in runs)
    print(f"failed requests: {failed}")

    result = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "index": index,
        "num_tokens": engine.num_tokens,
        "duration_s": args.duration,
        "direct_count": direct,
        "http_overhead_p50_us": overhead_ms * 1e3,
        "failed": failed,
        "runs": runs,
    }
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, time.strftime("%Y-%m-%d") + "-server")
    with open(stem + ".json", "w") as f:
        json.dump(result, f, indent=2)
    with open(stem + ".md", "w") as f:
        f.write(f"# anygram serve load test ({result['date']}, {result['cpus']} CPUs, loopback)\n\n")
        f.write(
            f"Index `{index}` ({engine.num_tokens:,} tokens). Direct `engine.count`: p50 "
            f"{direct['p50_us']:.1f} µs, p99 {direct['p99_us']:.1f} µs. HTTP overhead on a count at p50: "
            f"**{overhead_ms * 1e3:.0f} µs**. Failed requests: **{failed}**.\n\n"
        )
        f.write(
            "| workers | workload | clients | req/s | queries/s | p50 ms | p99 ms | failed |\n"
            "|---|---|---|---|---|---|---|---|\n"
        )
        for r in runs:
            f.write(
                f"| {r['workers']} | {r['workload']} | {r['clients']} | {r['throughput_rps']:.0f} | "
                f"{r['queries_per_s']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['failed']} |\n"
            )
        f.write(
            f"\nCommand: `python bench/bench_server.py {' '.join(sys.argv[1:])}`. Client and server share "
            "the machine's cores (and other jobs ran beside them): treat absolute numbers as lower bounds.\n"
        )
    print(f"wrote {stem}.json and {stem}.md")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
