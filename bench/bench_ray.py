#!/usr/bin/env python3
"""Ray benchmark: what going through a Ray cluster costs against one process, on one machine.

A local two-node Ray cluster on loopback (``ray.cluster_utils.Cluster``, one CPU each;
both nodes share this machine's cores, so no speed-up can show here: the figures are
Ray's overhead, not its scaling), side by side with the local forms on the same files:

1. build: ``build_index(..., shards=S)`` locally and with ``ray=`` (suffix arrays as Ray
   tasks), same arguments (the test suite checks the files are byte for byte the same);
2. scans: contamination (``run_contamination``: batches of examples as tasks) and self
   dedup (``run_dedup``: a task a key part; bench_ray_dedup.py looks at the parts closer)
   locally and with ``ray=``, outputs compared byte for byte;
3. query latency p50/p99 of ``count`` and ``infgram_prob``: the local engine, the cluster
   engine (a request per group over its direct connection), and HTTP ``POST /`` to
   ``anygram serve`` and to ``anygram serve --ray`` (Ray Serve); beside them the floors
   of what they are built on, in the same run: a bare Ray actor call (one, and two at once),
   and a bare Ray Serve app (a FastAPI ingress whose ``POST /`` returns a constant); with
   ``RAY_SERVE_ENABLE_DIRECT_INGRESS=1`` in the environment (Ray Serve's experimental flag,
   inherited by the bench's cluster) also both apps on their replica's own port, no proxy hop;
   and ``count``'s throughput with 4 client threads sharing each engine;
4. a projection for a 1.4T-token corpus on N machines from the measured per-core
   suffix-array throughput (shards >= machines; the driver's tokenization and the
   finish step are not split, and are stated apart).

The corpus is random u16 ids from a Zipf law with copies of earlier spans (so that dedup
removes something), --tokens in all.
The machine is shared (2 cores, other jobs running): ratios within one run are the ones
to compare; each figure has the 1-minute load average beside it (``load``).

Usage: python bench/bench_ray.py [--tokens 20000000] [--shards 4] [--queries 300] [--eval-examples 2000]
       [--queries-only] [--out results/...json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # every Ray address on 127.0.0.1

import numpy as np


def percentiles(seconds):
    ms = np.asarray(seconds) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 4), "p99_ms": round(float(np.percentile(ms, 99)), 4),
            "n": len(ms)}


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def load() -> float:
    return round(os.getloadavg()[0], 2)


def latencies(fn, queries):
    out = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        out.append(time.perf_counter() - t0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=20_000_000)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--dedup-min-len", type=int, default=32)
    ap.add_argument("--eval-examples", type=int, default=2000, help="contamination: examples of 100-1000 tokens")
    ap.add_argument("--queries-only", action="store_true",
                    help="build locally only and time the queries (no Ray build, scans or projection)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--out", default=None, help="write the figures here as JSON")
    args = ap.parse_args()

    import ray
    from ray.cluster_utils import Cluster

    import anygram

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))  # serving.py

    work = args.workdir or tempfile.mkdtemp(prefix="anygram-bench-ray-")
    rng = np.random.default_rng(0)
    ids = np.minimum(rng.zipf(1.3, size=args.tokens), 60000).astype(np.uint16)
    # Copies of earlier spans (~2.5% of the text), so that self dedup has something to remove:
    # random Zipf text alone repeats no window of 32 tokens.
    for _ in range(args.tokens // 20000):
        length = int(rng.integers(50, 1000))
        src, dst = sorted(int(x) for x in rng.integers(0, args.tokens - length, size=2))
        ids[dst:dst + length] = ids[src:src + length]
    doc_lengths = rng.integers(50, 4000, size=args.tokens // 500)
    starts = np.concatenate([[0], np.cumsum(doc_lengths)])
    starts = np.concatenate([starts[starts < args.tokens], [args.tokens]])
    np.save(os.path.join(work, "corpus.npy"), ids)
    np.save(os.path.join(work, "corpus.offsets.npy"), starts.astype(np.int64))
    common = dict(token_width=2, vocab_size=65535, shards=args.shards, progress=False)
    results = {"machine": f"{platform.node()}, {os.cpu_count()} cores (shared), Ray {ray.__version__}",
               "tokens": args.tokens, "shards": args.shards,
               "note": "both Ray nodes share this machine's cores: overhead only, no scaling"}

    t0 = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1",
                                                             "include_dashboard": False,
                                                             "object_store_memory": 200 << 20})
    cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1", object_store_memory=200 << 20)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    results["cluster_start_s"] = round(time.perf_counter() - t0, 2)
    try:
        local_dir, ray_dir = os.path.join(work, "local"), os.path.join(work, "on-ray")
        for d in (local_dir, ray_dir):
            shutil.rmtree(d, ignore_errors=True)
        if args.queries_only:
            anygram.build_index(os.path.join(work, "corpus.npy"), local_dir, **common)
            query_latency(args, ids, local_dir, cluster, results)
            return 0
        l0 = load()
        t_local, report_local = timed(lambda: anygram.build_index(os.path.join(work, "corpus.npy"), local_dir,
                                                                   **common))
        t_ray, report_ray = timed(lambda: anygram.build_index(os.path.join(work, "corpus.npy"), ray_dir,
                                                               ray=True, **common))
        results["build"] = {
            "local_s": round(t_local, 2), "ray_s": round(t_ray, 2), "ray_over_local": round(t_ray / t_local, 3),
            "load": [l0, load()],
            "local_steps_s": report_local.seconds, "ray_steps_s": report_ray.seconds,
            # The local build sorts with every core of this machine.
            "suffix_array_tokens_per_s_per_core_local": round(args.tokens / report_local.seconds["suffix_array"]
                                                              / (os.cpu_count() or 1)),
        }
        print("build", results["build"], flush=True)

        engine = anygram.Engine.open(local_dir)

        def same_files(a, b):
            with open(os.path.join(work, a), "rb") as fa, open(os.path.join(work, b), "rb") as fb:
                return fa.read() == fb.read()

        # Contamination: pieces of the corpus with random ids between them (partial matches).
        erng = np.random.default_rng(2)
        with open(os.path.join(work, "eval.jsonl"), "w") as f:
            for i in range(args.eval_examples):
                at = int(erng.integers(0, args.tokens - 1000))
                piece = ids[at:at + int(erng.integers(50, 500))].tolist()
                noise = erng.integers(1, 60000, size=int(erng.integers(50, 500))).tolist()
                f.write(json.dumps({"id": i, "text": piece + noise}) + "\n")
        scan_args = dict(min_len=13, restart=True)
        l0 = load()
        t_local, _ = timed(lambda: anygram.scan.run_contamination(
            engine, os.path.join(work, "eval.jsonl"), os.path.join(work, "cont-local.jsonl"), **scan_args))
        t_ray, _ = timed(lambda: anygram.scan.run_contamination(
            engine, os.path.join(work, "eval.jsonl"), os.path.join(work, "cont-ray.jsonl"), ray=True, **scan_args))
        results["contamination"] = {"examples": args.eval_examples, "local_s": round(t_local, 2),
                                    "ray_s": round(t_ray, 2), "ray_over_local": round(t_ray / t_local, 3),
                                    "identical_output": same_files("cont-local.jsonl", "cont-ray.jsonl"),
                                    "load": [l0, load()]}
        print("contamination", results["contamination"], flush=True)

        from anygram.distributed.scans import self_dedup_parts

        l0 = load()
        t_local, _ = timed(lambda: anygram.scan.run_dedup(engine, os.path.join(work, "dedup-local.jsonl"),
                                                          min_len=args.dedup_min_len, restart=True))
        t_ray, _ = timed(lambda: anygram.scan.run_dedup(engine, os.path.join(work, "dedup-ray.jsonl"),
                                                        min_len=args.dedup_min_len, restart=True, ray=True))
        with open(os.path.join(work, "dedup-local.jsonl")) as f:
            affected = sum(1 for _ in f)
        results["dedup_self"] = {"local_s": round(t_local, 2), "ray_s": round(t_ray, 2), "documents_affected": affected,
                                 "ray_over_local": round(t_ray / t_local, 3),
                                 "key_parts": len(self_dedup_parts(engine, args.dedup_min_len, ray=True)),
                                 "identical_output": same_files("dedup-local.jsonl", "dedup-ray.jsonl"),
                                 "load": [l0, load()]}
        print("dedup", results["dedup_self"], flush=True)

        query_latency(args, ids, local_dir, cluster, results)

        # Projection: suffix arrays scale with machines (a shard a task); per machine the
        # measured one-core rate times its cores; plus Ray's measured overhead per shard.
        rate = results["build"]["suffix_array_tokens_per_s_per_core_local"]
        overhead_per_shard = max(0.0, (results["build"]["ray_steps_s"].get("total", 0)
                                       - results["build"]["local_steps_s"].get("total", 0)) / args.shards)
        corpus = 1.4e12
        steps = results["build"]["local_steps_s"]
        # Not split over machines: the driver reads, tokenizes and cuts the shards (here .npy
        # ids, so no tokenizer's cost), and writes checksums and the manifest.
        serial_rate = args.tokens / (steps["tokenize"] + steps["write"] + steps["checksum"])
        projection = {"driver_serial_hours": round(corpus / serial_rate / 3600, 2)}
        for machines in (1, 8, 32, 128):
            cores = 16
            sort_h = corpus / (rate * cores * machines) / 3600
            projection[str(machines)] = {"suffix_array_hours": round(sort_h, 2),
                                         "assumes": f"{cores} cores a machine at {rate:,} tokens/s/core (measured "
                                                    f"here with all {os.cpu_count()} cores, 2-byte ids; libsais "
                                                    f"scales less than linearly with cores), shards >= machines, "
                                                    f"+{overhead_per_shard:.2f} s Ray overhead a shard"}
        results["projection_1.4T_tokens"] = projection
        print("projection", json.dumps(projection, indent=1), flush=True)
    finally:
        ray.shutdown()
        cluster.shutdown()
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
        if args.out:
            with open(args.out, "w") as f:
                json.dump(results, f, indent=2)
    return 0


def direct_ingress_url(accepts) -> str:
    """With RAY_SERVE_ENABLE_DIRECT_INGRESS=1 (Ray Serve's experimental flag: the ingress
    replica serves HTTP itself, on a port of its range, no proxy hop), the replica's URL
    whose answer ``accepts``; "" when there is none."""
    import httpx

    if os.environ.get("RAY_SERVE_ENABLE_DIRECT_INGRESS") != "1":
        return ""
    low = int(os.environ.get("RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT", "30000"))
    for port in range(low, low + 20):
        url = f"http://127.0.0.1:{port}"
        try:
            if accepts(httpx.Client(base_url=url, timeout=2)):
                return url
        except httpx.HTTPError:
            continue
    return ""


def query_latency(args, ids, local_dir, cluster, results) -> None:
    """Query latency: local engine, cluster engine, HTTP to both services, and the floors of
    Ray (an actor call) and Ray Serve (an app that does nothing) measured in the same run."""
    import httpx
    import ray
    from ray import serve

    import anygram
    from anygram.distributed.engine import ClusterEngine
    from serving import Server, free_port

    engine = anygram.Engine.open(local_dir)
    qrng = np.random.default_rng(1)
    queries = []
    for _ in range(args.queries):
        at = int(qrng.integers(0, args.tokens - 16))
        queries.append(ids[at:at + int(qrng.integers(1, 12))].tolist())
    lat = {"load_before": load()}

    @ray.remote(num_cpus=0, scheduling_strategy="SPREAD")
    class Ping:
        def ping(self):
            return None

    pings = [Ping.remote(), Ping.remote()]
    ray.get([p.ping.remote() for p in pings])
    lat["ray_actor_call"] = {"one": percentiles(latencies(lambda q: ray.get(pings[0].ping.remote()), queries)),
                             "two_at_once": percentiles(latencies(lambda q: ray.get([p.ping.remote() for p in pings]),
                                                                  queries)),
                             "load": load()}
    remote = ClusterEngine(local_dir, groups=2)
    remote.count(queries[0])  # actors up, connections open
    for name, fn in [("count", lambda e, q: e.count(q)),
                     ("infgram_prob", lambda e, q: e.infgram_prob(q[:-1], q[-1]))]:
        # Interleaved rounds, so that both see the same load.
        local_s, cluster_s = [], []
        for r in range(3):
            local_s += latencies(lambda q: fn(engine, q), queries)
            cluster_s += latencies(lambda q: fn(remote, q), queries)
        local_p, cluster_p = percentiles(local_s), percentiles(cluster_s)
        lat[name] = {"local_engine": local_p, "cluster_engine": cluster_p,
                     "cluster_added_p50_ms": round(cluster_p["p50_ms"] - local_p["p50_ms"], 4), "load": load()}
        print(name, lat[name], flush=True)
    # Throughput with 4 client threads sharing each engine (as the Serve ingress's engine threads
    # do): each thread its own connection to a group, each connection its own thread there.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        for label, e in [("local_engine", engine), ("cluster_engine", remote)]:
            elapsed, _ = timed(lambda: list(pool.map(e.count, queries * 4)))
            lat.setdefault("count_4_threads_per_s", {})[label] = round(len(queries) * 4 / elapsed)
    lat["count_4_threads_per_s"]["load"] = load()
    print("4 threads", lat["count_4_threads_per_s"], flush=True)
    remote.close()

    # Ray Serve's own floor: an app whose POST / returns a constant, on this cluster.
    from fastapi import FastAPI

    bare = FastAPI()

    @bare.post("/")
    async def constant(body: dict):  # async: no thread hop in the replica
        return {"count": 0}

    @serve.deployment(name="bare", ray_actor_options={"num_cpus": 0})
    @serve.ingress(bare)
    class Bare:
        pass

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(Bare.bind(), name="bare", route_prefix="/")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
            c.post("/", json={"query_ids": queries[0]}).raise_for_status()
            lat["http_bare_serve_app"] = percentiles(latencies(
                lambda q: c.post("/", json={"query_ids": q}).raise_for_status(), queries * 2))
            lat["http_bare_serve_app"]["load"] = load()
            direct = direct_ingress_url(lambda c: c.post("/", json={}).json() == {"count": 0})
            if direct:
                with httpx.Client(base_url=direct) as d:
                    lat["http_bare_serve_app"]["direct_ingress"] = percentiles(latencies(
                        lambda q: d.post("/", json={"query_ids": q}).raise_for_status(), queries * 2))
            # Ray's own floor again, with Serve up (its proxy and controller now share the cores).
            lat["ray_actor_call"]["one_with_serve_up"] = percentiles(latencies(
                lambda q: ray.get(pings[0].ping.remote()), queries))
    finally:
        serve.shutdown()
        for p in pings:
            ray.kill(p)
    print("bare serve app", lat["http_bare_serve_app"], flush=True)

    index = {"b": local_dir}
    with Server(index) as local_http, Server(index, ["--ray", cluster.address, "--ray-groups", "2"],
                                        ready_timeout=240) as ray_http:
        try:
            for name, body in [("count", lambda q: {"query_type": "count", "query_ids": q}),
                               ("infgram_prob", lambda q: {"query_type": "infgram_prob", "query_ids": q})]:
                with local_http.client() as a, ray_http.client() as b:
                    a.post("/", json={"index": "b", **body(queries[0])}).raise_for_status()
                    b.post("/", json={"index": "b", **body(queries[0])}).raise_for_status()
                    local_s, ray_s = [], []
                    # The engine call's own time inside each app (the answer's "latency", ms).
                    in_app = {"local": [], "ray": []}

                    def post(client, q, label):
                        response = client.post("/", json={"index": "b", **body(q)}).raise_for_status()
                        in_app[label].append(response.json()["latency"] / 1e3)

                    for r in range(2):
                        local_s += latencies(lambda q: post(a, q, "local"), queries)
                        ray_s += latencies(lambda q: post(b, q, "ray"), queries)
                lat[name]["http_local_serve"] = percentiles(local_s)
                lat[name]["http_ray_serve"] = percentiles(ray_s)
                lat[name]["http_local_serve"]["engine_call_in_app"] = percentiles(in_app["local"])
                lat[name]["http_ray_serve"]["engine_call_in_app"] = percentiles(in_app["ray"])
                direct = direct_ingress_url(lambda c: c.get("/v1/indexes/b").status_code == 200)
                if direct:
                    with httpx.Client(base_url=direct) as d:
                        lat[name]["http_ray_serve_direct_ingress"] = percentiles(latencies(
                            lambda q: d.post("/", json={"index": "b", **body(q)}).raise_for_status(), queries * 2))
                lat[name]["http_ray_serve_over_bare_serve_app_p50_ms"] = round(
                    lat[name]["http_ray_serve"]["p50_ms"] - lat["http_bare_serve_app"]["p50_ms"], 4)
                lat[name]["http_load"] = load()
            # A route of the same app that calls no shard (GET /v1/indexes/b): the app's own floor.
            with local_http.client() as a, ray_http.client() as b:
                for label, client in [("http_local_serve", a), ("http_ray_serve", b)]:
                    lat.setdefault("index_info_no_shard", {})[label] = percentiles(latencies(
                        lambda q: client.get("/v1/indexes/b").raise_for_status(), queries))
                lat["index_info_no_shard"]["load"] = load()
        finally:
            serve.shutdown()
    results["latency"] = lat
    print("latency", json.dumps(lat, indent=1), flush=True)


if __name__ == "__main__":
    sys.exit(main())
