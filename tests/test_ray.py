"""anygram on a Ray cluster (anygram.distributed, the ``ray`` extra): a real two-node cluster
on loopback, started once for the module (``ray.cluster_utils.Cluster``), against the local
answers on the same files: builds byte for byte (also after a worker is SIGKILLed mid-sort),
every query type of the cluster engine, contamination and dedup, and ``anygram serve --ray``."""

from __future__ import annotations

import filecmp
import json
import os
import random
import re

# Every address Ray picks is 127.0.0.1 (its "no cluster" rule for the node IP), so that
# nothing leaves loopback; read when ray is imported.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

import numpy as np
import pytest
import ray
from ray.cluster_utils import Cluster

import anygram
from anygram.distributed.build import KILL_ONCE_ENV
from anygram.distributed.engine import ACTOR_RESTARTS, ClusterEngine
from anygram.errors import ShardGroupError
from byte_order_ids import BYTE_ORDER_IDS

# Ray's own deprecation warnings (pydantic fields of Serve's config) are not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")

WIDTH = 2
# Few distinct ids (so n-grams repeat) whose byte order differs from their numeric order.
ALPHABET = BYTE_ORDER_IDS[WIDTH][:5]
VOCAB = max(BYTE_ORDER_IDS[WIDTH]) + 1
SHARDS = 3
NODE = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "object_store_memory": 100 << 20}


# A node (a raylet) that misses the GCS's health checks for about a minute by default is
# taken for dead and exits, and with it this process, its driver (both raylets stopped for
# 100 s: the driver died; for 40 s: all went on); a driver that cannot reach the GCS for 60 s
# exits as well. A loaded 2-core CI machine can stall Ray's processes that long without any
# fault of the code under test, and no test here kills a node: wait minutes.
RAY_PATIENCE = {
    "RAY_health_check_failure_threshold": "100",
    "RAY_gcs_rpc_server_reconnect_timeout_s": "600",
}


@pytest.fixture(scope="module")
def cluster():
    mp = pytest.MonkeyPatch()
    for name, value in RAY_PATIENCE.items():
        mp.setenv(name, value)  # read by the processes the cluster starts, and by ray.init
    c = Cluster(initialize_head=True, head_node_args={**NODE, "include_dashboard": False})
    c.add_node(**NODE)
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False)
    try:
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
        mp.undo()


def _docs(seed: int, n: int = 240):
    rng = random.Random(seed)
    return [[rng.choice(ALPHABET) for _ in range(rng.randint(1, 120))] for _ in range(n)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("ray-corpus")
    docs = _docs(1)
    np.save(d / "corpus.npy", np.asarray([t for x in docs for t in x], dtype=np.uint16))
    np.save(d / "corpus.offsets.npy", np.cumsum([0] + [len(x) for x in docs]).astype(np.int64))
    return d, docs


def _build(corpus_dir, out, **kw):
    return anygram.build_index(str(corpus_dir / "corpus.npy"), str(out), token_width=WIDTH, vocab_size=VOCAB,
                               eos_token_id=ALPHABET[0], shards=SHARDS, progress=False, accelerator=True,
                               _part_tokens=2048, _overlap_tokens=64, **kw)


@pytest.fixture(scope="module")
def local_index(corpus):
    d, _ = corpus
    _build(d, d / "local")
    return d / "local"


def _manifest(index):
    with open(os.path.join(index, "anygram.json")) as f:
        return json.load(f)


def _assert_same_index(a, b) -> int:
    """Every file byte for byte; the manifest but for when and how long the build took and
    how many sorted parts a resumed shard found (returned: the parts ``b``'s build reused)."""
    names = sorted(os.listdir(a))
    assert names == sorted(os.listdir(b))
    assert any(n.startswith("table.") for n in names) and any(n.startswith("accel.") for n in names)
    for name in names:
        if name == "anygram.json":
            ma, mb = _manifest(a), _manifest(b)
            parts_reused = sum(r["parts_reused"] for r in mb["build"]["suffix_arrays"])
            for m in (ma, mb):
                del m["build"]["created_at"], m["build"]["seconds"]
                for r in m["build"]["suffix_arrays"]:
                    r["parts_reused"] = 0
            assert ma == mb
        else:
            assert filecmp.cmp(os.path.join(a, name), os.path.join(b, name), shallow=False), name
    return parts_reused


def test_build_on_ray_is_the_local_build(cluster, corpus, local_index):
    d, _ = corpus
    report = _build(d, d / "on-ray", ray=cluster.address)
    assert report.num_shards == SHARDS
    assert _assert_same_index(local_index, d / "on-ray") == 0
    assert not [n for n in os.listdir(d) if ".build-" in n]  # the work directory is gone


def test_build_survives_a_worker_killed_mid_sort(cluster, corpus, local_index, monkeypatch):
    d, _ = corpus
    marker = d / "killed-once"
    monkeypatch.setenv(KILL_ONCE_ENV, str(marker))
    _build(d, d / "after-kill", ray=True)
    # The hook ran (a worker died with SIGKILL in its sort, after its first part) and Ray's
    # retry finished the shard, reusing that part (and any other its threads had finished
    # by the time the kill landed).
    assert marker.exists() and "pid" in marker.read_text()
    assert _assert_same_index(local_index, d / "after-kill") >= 1


@pytest.fixture(scope="module")
def engines(cluster, local_index):
    local = anygram.Engine.open(str(local_index))
    remote = ClusterEngine(str(local_index), groups=2, ray=True)
    assert remote.info()["groups"] == [[0, 1], [2]]
    yield local, remote
    remote.close()


def _queries(docs, seed=2, n=40):
    rng = random.Random(seed)
    out = [[], [ALPHABET[1]], [ALPHABET[4], ALPHABET[3]], [VOCAB - 1], [ALPHABET[2]] * 6]
    for _ in range(n):
        doc = rng.choice(docs)
        i = rng.randrange(len(doc))
        out.append(doc[i:i + rng.randint(1, 12)])
        out.append([rng.choice(ALPHABET) for _ in range(rng.randint(1, 9))])
    return out


def test_counts_and_probabilities(engines, corpus):
    local, remote = engines
    queries = _queries(corpus[1])
    assert [remote.count(q) for q in queries] == [local.count(q) for q in queries]
    assert remote.count_batch(queries).tolist() == local.count_batch(queries).tolist()
    for q in queries:
        assert remote.find(q) == local.find(q)
    tokens = [ALPHABET[i % len(ALPHABET)] for i in range(len(queries))]
    for q, t in zip(queries, tokens):
        assert remote.prob(q, t) == local.prob(q, t)
        assert remote.prob(q, t, n=3) == local.prob(q, t, n=3)
        assert remote.infgram_prob(q, t) == local.infgram_prob(q, t)
    for got, want in [(remote.prob_batch(queries, tokens, 2), local.prob_batch(queries, tokens, 2)),
                      (remote.infgram_prob_batch(queries, tokens), local.infgram_prob_batch(queries, tokens))]:
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])
            assert got[key].dtype == want[key].dtype


@pytest.mark.parametrize("max_support", [1, 3, 7, 1000])
def test_next_token_distributions(engines, corpus, max_support):
    local, remote = engines
    queries = _queries(corpus[1], seed=max_support)
    sampled = 0
    for q in queries:
        want = local.ntd(q, max_support=max_support)
        sampled += want["approx"]
        assert remote.ntd(q, max_support=max_support) == want
        assert remote.ntd(q, n=2, max_support=max_support) == local.ntd(q, n=2, max_support=max_support)
        assert remote.infgram_ntd(q, max_support=max_support) == local.infgram_ntd(q, max_support=max_support)
    assert remote.ntd_batch(queries, 3, max_support) == local.ntd_batch(queries, 3, max_support)
    assert remote.infgram_ntd_batch(queries, max_support) == local.infgram_ntd_batch(queries, max_support)
    if max_support < 1000:
        assert sampled  # the sampled road is exercised


def _assert_same_scores(got, want):
    assert sorted(got) == sorted(want)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
        assert got[key].dtype == want[key].dtype, key


@pytest.mark.parametrize("max_support", [2, 1000])
def test_scores_and_creativity(engines, corpus, max_support):
    """score (every option; the modes of contexts several shards hold merged from their
    sampled distributions), score_batch and creativity equal the local engine's."""
    local, remote = engines
    rng = random.Random(max_support)
    texts = [[], [ALPHABET[2]], [VOCAB - 1, ALPHABET[1]]] + [
        rng.choice(corpus[1])[:40] + [rng.choice(ALPHABET) for _ in range(rng.randint(0, 30))] for _ in range(12)]
    for options in [{}, {"sparse": False}, {"top": True}, {"top": True, "sparse": False}, {"doc_start": True}]:
        args = {"max_support": max_support, **options}
        for text in texts:
            _assert_same_scores(remote.score(text, **args), local.score(text, **args))
        for got, want in zip(remote.score_batch(texts, **args), local.score_batch(texts, **args)):
            _assert_same_scores(got, want)
    scored = local.score_batch(texts, top=True, max_support=max_support)
    assert any(s["sparse"].any() for s in scored) and any((~s["sparse"]).any() for s in scored)
    assert all(s["top_approx"].any() for s in scored[3:])  # sampled modes (5 ids: every context is frequent)
    for text in texts:
        assert remote.creativity(text) == local.creativity(text)
    with pytest.raises(anygram.errors.InvalidArgumentError):
        remote.score(texts[4], top=True, doc_start=True)
    # What the cluster does not answer says so, naming the method (a 400 over HTTP).
    contexts = [[], texts[1], texts[4][:3], [VOCAB - 1]]
    for ends in ("eos", "skip"):
        got, want = remote.count_next(contexts, 600, ends), local.count_next(contexts, 600, ends)
        assert got.dtype == want.dtype and got.tolist() == want.tolist() and want.sum() > 0
    for name in ("attribute", "kneser_ney", "sample", "ntd_dense"):
        with pytest.raises(anygram.errors.InvalidArgumentError, match=name):
            getattr(remote, name)(texts[4])


def test_rounds_from_several_threads(engines, corpus):
    """Threads sharing the engine (as the Serve ingress's do) each get their own answers."""
    from concurrent.futures import ThreadPoolExecutor

    local, remote = engines
    queries = _queries(corpus[1], seed=21)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda q: (remote.count(q), remote.ntd(q, max_support=3)), queries))
    assert got == [(local.count(q), local.ntd(q, max_support=3)) for q in queries]


def test_documents_and_search(engines, corpus):
    local, remote = engines
    for ix in [0, 1, 79, 80, 81, 150, local.num_documents - 1]:
        assert remote.get_doc_by_ix(ix, 30) == local.get_doc_by_ix(ix, 30)
    assert remote.get_docs_by_ixs([5, 200, 5], 7) == local.get_docs_by_ixs([5, 200, 5], 7)
    for s in range(SHARDS):
        assert remote.get_doc_by_ptr(s, 100, 20) == local.get_doc_by_ptr(s, 100, 20)
        assert remote.get_doc_by_rank(s, 17, 20) == local.get_doc_by_rank(s, 17, 20)
    assert remote.get_docs_by_ptrs([(2, 4), (0, 8)], 9) == local.get_docs_by_ptrs([(2, 4), (0, 8)], 9)
    for q in _queries(corpus[1], seed=5, n=10):
        for maxnum, seed in [(1, 0), (4, 7), (50, 2**64 - 1), (3, 12345)]:
            assert remote.search_docs(q, maxnum, 25, seed) == local.search_docs(q, maxnum, 25, seed)
    with pytest.raises(anygram.errors.InvalidQueryError):
        remote.get_doc_by_ix(local.num_documents)
    with pytest.raises(anygram.errors.InvalidQueryError):
        remote.count([VOCAB])  # outside the vocabulary: the shard's error, unwrapped


def test_cnf(engines):
    local, remote = engines
    a, b, c, d, e = ([x] for x in ALPHABET)
    queries = [[[a + b], [c]], [[a, d], [e + e]], [[b + c + d]], [[a], [[VOCAB - 1]]], [[e + a + b], [d + d + d]]]
    for q in queries:
        for freq in (1, 5, 50000):
            assert remote.find_cnf(q, freq, 20) == local.find_cnf(q, freq, 20)
            assert remote.count_cnf(q, freq, 20) == local.count_cnf(q, freq, 20)
            for maxnum, seed in [(2, 1), (40, 3)]:
                assert remote.search_docs_cnf(q, maxnum, 10, freq, 20, seed) == \
                    local.search_docs_cnf(q, maxnum, 10, freq, 20, seed)


def _eval_file(path, docs, seed):
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(60):
            doc = rng.choice(docs)
            a = rng.randrange(len(doc))
            # Pieces of the corpus joined with random ids: partial coverage, several fields.
            text = doc[a:a + rng.randint(0, 40)] + [rng.choice(ALPHABET) for _ in range(rng.randint(1, 30))]
            f.write(json.dumps({"id": f"ex{i}", "text": text, "other": rng.sample(ALPHABET, 3)}) + "\n")
    return path


def test_contamination_on_ray_is_local(cluster, corpus, local_index, tmp_path):
    d, docs = corpus
    engine = anygram.Engine.open(str(local_index))
    eval_path = _eval_file(tmp_path / "eval.jsonl", docs, 3)
    args = dict(min_len=6, fields=["text", "other"], k=3, batch_size=7)
    want = anygram.scan.run_contamination(engine, str(eval_path), str(tmp_path / "local.jsonl"), **args)
    got = anygram.scan.run_contamination(engine, str(eval_path), str(tmp_path / "ray.jsonl"), ray=True, **args)
    assert got == want and 0 < want["num_contaminated"] < 60 and want["num_with_any_match"] > want["num_contaminated"]
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()


@pytest.fixture(scope="module")
def other_index(corpus):
    d, docs = corpus
    rng = random.Random(9)
    # Half copies of pieces of this corpus, half new text.
    others = [rng.choice(docs)[:rng.randint(1, 60)] if i % 2 else _docs(10 + i, 1)[0] for i in range(90)]
    o = d / "other"
    o.mkdir()
    np.save(o / "corpus.npy", np.asarray([t for x in others for t in x], dtype=np.uint16))
    np.save(o / "corpus.offsets.npy", np.cumsum([0] + [len(x) for x in others]).astype(np.int64))
    anygram.build_index(str(o / "corpus.npy"), str(o / "index"), token_width=WIDTH, vocab_size=VOCAB,
                        eos_token_id=ALPHABET[0], shards=2, progress=False)
    return anygram.Engine.open(str(o / "index"))


@pytest.mark.parametrize("mode", ["self", "merge", "matching"])
def test_dedup_on_ray_is_local(cluster, local_index, other_index, tmp_path, mode):
    engine = anygram.Engine.open(str(local_index))
    args = dict(min_len=7) if mode == "self" else dict(min_len=10, against=other_index, method=mode)
    want = anygram.scan.run_dedup(engine, str(tmp_path / "local.jsonl"), **args)
    got = anygram.scan.run_dedup(engine, str(tmp_path / "ray.jsonl"), ray=True, **args)
    assert got == want and want["documents_affected"] > 3
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()


@pytest.mark.parametrize("plan", ["per shard", "whole"])
@pytest.mark.parametrize("mode", ["merge", "matching"])
def test_dedup_plans_give_the_local_ranges(cluster, local_index, other_index, mode, plan):
    """Cross dedup: either plan (a task a shard, or the core's whole pass in one task cut by
    shard) gives the local scan's arrays, unit by unit and after a resume (``skip``). (Self
    dedup runs in key parts: test_self_dedup_in_key_parts_is_local.)"""
    from anygram.distributed import scans

    engine = anygram.Engine.open(str(local_index))
    args = dict(min_len=10, against=other_index, method=mode)
    local = [a for _, a in anygram.scan.iter_dedup_units(engine, **args)]
    want = {key: np.concatenate([a[key] for a in local]) for key in local[0]}
    units = list(scans.iter_dedup_units(engine, ray=True, plan=plan, **args))
    assert [u.shard for u, _ in units] == list(range(SHARDS))
    for key in want:
        assert np.concatenate([a[key] for _, a in units]).tolist() == want[key].tolist(), key
    assert len(want["doc_ix"]) > 3
    resumed = list(scans.iter_dedup_units(engine, ray=True, plan=plan, skip=2, **args))
    assert [u.shard for u, _ in resumed] == [2] and resumed[0][1]["doc_ix"].tolist() == units[2][1]["doc_ix"].tolist()


def test_dedup_plan_by_cost():
    from anygram.distributed.scans import dedup_plan

    # Self dedup: key parts whatever the shards and nodes (its work split evenly).
    assert dedup_plan([100] * 4, nodes=2) == "key parts"
    assert dedup_plan([100] * 200, nodes=100) == "key parts"
    # Cross, merged: each task reads the other index whole.
    assert dedup_plan([100] * 8, nodes=8, against_tokens=10) == "per shard"
    assert dedup_plan([100] * 8, nodes=2, against_tokens=10_000) == "whole"
    assert dedup_plan([100] * 8, nodes=1, against_tokens=10, method="matching") == "per shard"


def _without_latency(answer):
    if isinstance(answer, dict):
        return {k: _without_latency(v) for k, v in answer.items() if k != "latency"}
    if isinstance(answer, list):
        return [_without_latency(v) for v in answer]
    return answer


def test_serve_on_ray_answers_as_local_serve(cluster, corpus, local_index, tmp_path):
    from ray import serve
    from serving import Server

    index = {"c": str(local_index)}
    log = str(tmp_path / "ray-serve.log")
    other_groups = _shard_group_pids()  # of other tests' engines, still alive
    try:
        with Server(index) as local, Server(index, ["--ray", cluster.address, "--ray-groups", "2"], log_path=log,
                                               ready_timeout=240) as on_ray:
            queries = _queries(corpus[1], seed=8, n=8)
            bodies = []
            for q in queries:
                bodies += [{"query_type": t, "query_ids": q}
                           for t in ("count", "find", "infgram_prob", "infgram_ntd", "creativity")]
                if q:
                    bodies += [{"query_type": "prob", "query_ids": q}, {"query_type": "ntd", "query_ids": q,
                                                                          "max_support": 3},
                               {"query_type": "search_docs", "query_ids": q, "maxnum": 3, "seed": 5,
                                "max_disp_len": 12}]
            cnf = [[[ALPHABET[1], ALPHABET[2]]], [[ALPHABET[3]], [ALPHABET[4], ALPHABET[4]]]]
            bodies += [{"query_type": t, "query_ids": cnf, "max_clause_freq": 7, "max_diff_tokens": 15, "maxnum": 2,
                        "seed": 3} for t in ("count_cnf", "find_cnf", "search_docs_cnf")]
            bodies += [{"query_type": "get_doc_by_ix", "doc_ix": 150, "max_disp_len": 10},
                       {"query_type": "get_doc_by_rank", "s": 2, "rank": 33, "max_disp_len": 10},
                       {"query_type": "get_doc_by_ptr", "s": 1, "ptr": 96, "max_disp_len": 10},
                       {"query_type": "count", "query_ids": [VOCAB]}]  # an error, the same one
            with local.client() as a, on_ray.client() as b:
                for body in bodies:
                    want, got = a.post("/", json={"index": "c", **body}), b.post("/", json={"index": "c", **body})
                    assert got.status_code == want.status_code, (body, got.text)
                    assert _without_latency(got.json()) == _without_latency(want.json()), body
                batches = [("count", {"queries": queries}),
                           ("prob", {"contexts": queries, "tokens": [ALPHABET[2]] * len(queries), "n": 2}),
                           ("ntd", {"contexts": queries, "max_support": 5}),
                           ("search", {"query": queries[6], "maxnum": 2, "seed": 9}),
                           ("score", {"texts": [q + queries[3] for q in queries]})]
                for route, body in batches:
                    want, got = a.post(f"/v1/indexes/c/{route}", json=body), b.post(f"/v1/indexes/c/{route}", json=body)
                    assert (got.status_code, _without_latency(got.json())) == \
                        (want.status_code, _without_latency(want.json())), route
                assert b.get("/v1/indexes/c").json() == a.get("/v1/indexes/c").json()
                # A group Ray cannot bring back is unavailability (503), not a server bug (500).
                _kill_a_group_past_restarts(spare=other_groups)
                lost = b.post("/", json={"index": "c", "query_type": "count", "query_ids": queries[6]})
                assert lost.status_code == 503, lost.text
                assert lost.json()["code"] == "shard_group_unavailable"
                assert re.search(r"shard group \d", lost.json()["error"]), lost.text
        # SIGTERM (Server.stop) took the application down with it.
        assert "anygram" not in serve.status().applications
    finally:
        serve.shutdown()


def test_cli_ray_flags(cluster, corpus, local_index, tmp_path):
    """``anygram dedup --ray ADDRESS`` (a driver process of its own) gives the local output (``build
    --ray=`` in test_build_tokenized_on_ray_from_many_files); a wrong address fails at once."""
    import subprocess
    import sys

    d, _ = corpus

    def cli(*args):
        done = subprocess.run([sys.executable, "-m", "anygram.cli", *args], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done

    dedup = ["dedup", "-i", str(local_index), "--min-len", "7", "-q"]
    cli(*dedup, "-o", str(tmp_path / "local.jsonl"))
    cli(*dedup, "-o", str(tmp_path / "ray.jsonl"), "--ray", cluster.address)
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    assert (tmp_path / "local.jsonl").read_text().count("\n") > 3
    # An input taken for the address is refused with a clear message, not sent to Ray.
    wrong = subprocess.run([sys.executable, "-m", "anygram.cli", "build", "--ray", str(d / "corpus.npy"),
                            str(d / "corpus.npy"), "-o", str(tmp_path / "x")], capture_output=True, text=True,
                           timeout=120)
    assert wrong.returncode != 0 and "--ray=ADDRESS" in wrong.stderr and not (tmp_path / "x").exists()


def test_text_queries_through_the_cluster_engine(cluster, tmp_path):
    """Text is tokenized on the driver with the index's tokenizer (here UTF-8 bytes); documents
    come back with their text, as locally."""
    rng = random.Random(4)
    words = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "é", "日本"]
    with open(tmp_path / "docs.jsonl", "w") as f:
        for i in range(120):
            f.write(json.dumps({"text": " ".join(rng.choice(words) for _ in range(rng.randint(1, 30)))}) + "\n")
    anygram.build_index(str(tmp_path / "docs.jsonl"), str(tmp_path / "idx"), shards=3, progress=False)
    local = anygram.Engine.open(str(tmp_path / "idx"))
    remote = ClusterEngine(str(tmp_path / "idx"), groups=2)
    try:
        for text in ["the cat", "日本 dog", "é", " on a mat", "zebra"]:
            assert remote.count(text) == local.count(text)
            assert remote.ntd(text, max_support=4) == local.ntd(text, max_support=4)
            assert remote.prob(text, " ") == local.prob(text, " ")
            assert remote.search_docs(text, 3, 20, 1) == local.search_docs(text, 3, 20, 1)
            assert remote.count_cnf(f"{text} AND mat OR dog") == local.count_cnf(f"{text} AND mat OR dog")
        assert remote.get_doc_by_ix(100)["text"] == local.get_doc_by_ix(100)["text"]
        with pytest.raises(anygram.errors.InvalidQueryError):
            remote.prob("the", "ca")  # two tokens: not one
    finally:
        remote.close()


def _shard_group_pids() -> set:
    """The processes Ray runs shard-group actors in (Ray titles an actor's process ``ray::CLASS``)."""
    pids = set()
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                title = f.read().split(b"\0")[0]
        except (OSError, ValueError):
            continue
        if title == b"ray::ShardGroup" or title.startswith(b"ray::ShardGroup."):
            pids.add(int(entry))
    return pids


def _kill_a_group_past_restarts(spare: set) -> None:
    """SIGKILLs one shard group's process (not one of ``spare``), then each process Ray
    restarts it in, until its restarts are spent and Ray gives it up."""
    import signal
    import time

    others = _shard_group_pids()
    victim = min(others - spare)
    others.discard(victim)
    for kill in range(ACTOR_RESTARTS + 1):
        os.kill(victim, signal.SIGKILL)
        if kill == ACTOR_RESTARTS:
            return
        deadline = time.monotonic() + 120
        while not (restarted := _shard_group_pids() - others - {victim}):
            assert time.monotonic() < deadline, "Ray did not restart the killed shard group"
            time.sleep(0.1)
        victim = restarted.pop()


def _pid(actor) -> int:
    return ray.get(actor.__ray_call__.remote(lambda group: os.getpid()))


def test_cluster_engine_survives_a_killed_actor(cluster, local_index, corpus):
    """A shard group's actor process SIGKILLed (as when its node dies) is restarted by Ray and
    found again at its new port: the next queries get the local answers. A group Ray cannot
    bring back (out of restarts) is a ShardGroupError naming it, at once, not a hang."""
    import signal
    import time

    local = anygram.Engine.open(str(local_index))
    with ClusterEngine(str(local_index), groups=2, timeout=30) as remote:
        queries = _queries(corpus[1], seed=12, n=5)
        assert remote.count_batch(queries).tolist() == local.count_batch(queries).tolist()
        before = remote._channels[1].address
        os.kill(_pid(remote._actors[1]), signal.SIGKILL)
        assert remote.count_batch(queries).tolist() == local.count_batch(queries).tolist()
        assert remote._channels[1].address != before  # the restarted actor's own socket
        assert remote.ntd(queries[6], max_support=2) == local.ntd(queries[6], max_support=2)
        ray.kill(remote._actors[0], no_restart=True)
        deadline = time.monotonic() + 30
        while True:  # ray.kill returns before the actor is gone: wait until Ray says it is
            try:
                ray.get(remote._actors[0].address.remote(), timeout=30)
            except ray.exceptions.RayActorError:
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        t0 = time.monotonic()
        with pytest.raises(ShardGroupError, match=r"shard group 0 \(shards 0-1\) at 127\.0\.0\.1:\d+"):
            remote.count(queries[6])
        assert time.monotonic() - t0 < 30
        idle = [sock for channel in remote._channels for sock in channel._idle]
        assert idle
    assert all(sock.fileno() == -1 for sock in idle)  # close() closed the connections
    with pytest.raises(anygram.errors.InvalidArgumentError, match="closed"):
        remote.count(queries[6])


def test_transport_connections_after_fork():
    """A forked child never writes on its parent's connections (replies would cross): it opens
    its own, and the parent's go on answering the parent."""
    import signal

    from anygram.distributed import transport

    server = transport.QueryServer(lambda request: [request, os.getpid()], "127.0.0.1")
    try:
        channel = transport.Channel("shard group 0 (shard 0)", server.address)

        def ask(request):
            return transport.reply_values(transport.round_trip([(channel, request)], 10))

        assert ask("parent") == [["parent", os.getpid()]]
        (inherited,) = channel._idle
        pid = os.fork()
        if pid == 0:  # the child: only sockets, then out without running the parent's cleanups
            signal.alarm(20)
            ok = ask("child") == [["child", os.getppid()]]
            os._exit(0 if ok and channel._idle and channel._idle[0] is not inherited else 1)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        assert channel._idle == [inherited]
        assert ask("again") == [["again", os.getpid()]]
        channel.close()
        assert inherited.fileno() == -1
    finally:
        server.close()


def _frame_reply(address, data: bytes):
    """``data`` sent raw to a shard group's port: its decoded reply, or None when the group
    closed the connection."""
    import socket
    import struct

    from anygram.distributed import transport

    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while True:
            try:
                chunk = sock.recv(1 << 16)
            except ConnectionResetError:  # closed with our bytes unread
                return None
            if not chunk:
                return None
            received += chunk
            if len(received) >= 12 and len(received) >= 12 + struct.unpack_from("<Q", received, 4)[0]:
                return transport.decode_body(received[12:])


def test_malformed_frames_are_refused_and_the_group_goes_on(engines, corpus):
    """What reaches a shard group's port is checked: a frame that is not ours closes that
    connection, a well-framed body that is not a valid request gets an error reply (only the
    allow-listed Engine methods run, nothing is unpickled); the group still answers."""
    import struct

    from anygram.distributed.transport import HEADER, MAGIC, encode_frame

    local, remote = engines
    address = remote._channels[0].address
    assert address[0] == "127.0.0.1"  # the node's IP as Ray gives it, not every interface
    assert _frame_reply(address, b"GET / HTTP/1.1\r\n\r\n") is None
    assert _frame_reply(address, HEADER.pack(MAGIC, 1 << 40)) is None  # over the limit: nothing allocated
    body = b"\x80\x04\x95garbage"  # a pickle's opening: not msgpack
    reply = _frame_reply(address, struct.pack("<4sQ", MAGIC, len(body)) + body)
    assert reply[:2] == [1, "InvalidArgumentError"] and reply[2].startswith("malformed query frame")
    for request, error in [(["all", "verify", [[]]], "verify"), (["all", "__init__", [["x", [0]]]], "__init__"),
                           (["each", {5: [["count", [[1]]]]}], "malformed"), (["all", "count", 3], "malformed"),
                           ({"all": 1}, "malformed"), (["each", {0: [["count"]]}], "malformed")]:
        reply = _frame_reply(address, encode_frame(request))
        assert reply[:2] == [1, "InvalidArgumentError"] and error in reply[2], request
    queries = _queries(corpus[1], seed=13, n=10)
    assert remote.count_batch(queries).tolist() == local.count_batch(queries).tolist()
    assert _frame_reply(address, encode_frame(["all", "count", [[queries[6]]]])) == \
        [0, [[local.find(queries[6])["segment_by_shard"][i][1] - local.find(queries[6])["segment_by_shard"][i][0]]
             for i in (0, 1)]]


def test_transport_values_and_timeouts():
    """Values keep their types across the wire (tuples, numpy arrays and scalars, ints of any
    size, int-keyed maps); a group that never answers is a ShardGroupError after the round's
    timeout, not a hang."""
    import socket
    import time

    from anygram.distributed import transport

    values = [None, True, 2**64 - 1, -2**63, 2**70, 0.1, "é", b"\0", (1, (2, [3])), {7: {"cnt": (1, 2)}},
              np.arange(6, dtype=np.uint64).reshape(2, 3), np.array([], dtype=np.int16), np.float64(0.5), np.int32(-3)]
    back = transport.decode_body(transport.encode_frame(values)[transport.HEADER.size:])
    for a, b in zip(values, back):
        assert type(a) is type(b)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape and (a == b).all() and b.flags.writeable
        else:
            assert a == b
    with pytest.raises(TypeError, match="object"):
        transport.encode_frame(np.array([{}], dtype=object))
    for timeout in (0, -1, float("nan"), float("inf"), True, "5"):
        with pytest.raises(anygram.errors.InvalidArgumentError, match="timeout"):
            ClusterEngine("no-such-index", timeout=timeout)  # checked before anything else
    with socket.create_server(("127.0.0.1", 0)) as silent:
        channel = transport.Channel("shard group 9 (shard 9)", silent.getsockname())
        t0 = time.monotonic()
        with pytest.raises(ShardGroupError, match=r"no answer within 0\.5 s from shard group 9"):
            transport.round_trip([(channel, ["all", "count", [[[1]]]])], 0.5)
        assert 0.5 <= time.monotonic() - t0 < 5


def test_build_tokenized_on_ray_from_many_files(cluster, tmp_path):
    """Slices of the input files are read and tokenized as Ray tasks (a trained GPT-2-style
    tokenizer, metadata, unreadable lines skipped and counted), journaled one by one: the index
    is the local one, also after the driver was killed mid-way."""
    from trained_tokenizer import CORPUS, train_gpt2_like

    tokenizer = train_gpt2_like(str(tmp_path / "tokenizer.json"))
    rng = random.Random(6)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for f in range(7):
        with open(inputs / f"part-{f}.jsonl", "w") as out:
            for i in range(rng.randint(5, 40)):
                if rng.random() < 0.05:
                    out.write("{not json\n")  # skipped and counted alike
                else:
                    text = " ".join(rng.choice(CORPUS) for _ in range(rng.randint(1, 4)))
                    out.write(json.dumps({"text": text, "source": f"{f}-{i}"}) + "\n")
    args = dict(tokenizer=tokenizer, shards=3, progress=False, accelerator=True)
    local = anygram.build_index(str(inputs), str(tmp_path / "local"), **args)
    assert local.skipped

    # The 7 files in 4 slices (2 per CPU of the cluster): a driver killed after two slices were
    # journaled (it pauses there only if that slicing happened); the rerun keeps them: it would
    # stop at slice 0's journal entry if it tokenized that slice again, so finishing shows it did
    # not. The index is the local one, skipped lines and their examples included.
    import subprocess
    import sys

    from conftest import kill_when_paused

    command = ["-m", "anygram.cli", "build", str(inputs), "-o", str(tmp_path / "resumed"), "--tokenizer", tokenizer,
               "--shards", "3", "--accelerator", "-q", f"--ray={cluster.address}"]
    first = subprocess.Popen([sys.executable, *command], stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "ANYGRAM_BUILD_PAUSE_AT": "tokenize.4.slice.1"})
    kill_when_paused(first, "tokenize.4.slice.1")
    again = subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=240,
                           env={**os.environ, "ANYGRAM_BUILD_PAUSE_AT": "tokenize.4.slice.0"})
    assert again.returncode == 0, again.stderr
    assert "resum" in again.stderr.lower()
    assert _assert_same_index(tmp_path / "local", tmp_path / "resumed") == 0


def test_build_on_ray_into_s3_is_the_local_build(cluster, corpus, local_index, tmp_path):
    """Into object storage (s3s-fs on 127.0.0.1): each task uploads its shard's files from
    where it sorted them; the driver publishes the rest and the manifest last. A driver
    killed before its publish leaves the shards uploaded but no index; the rerun sorts and
    uploads nothing again, and the objects are the local build's byte for byte."""
    import subprocess
    import sys

    from conftest import CLI_ENV, kill_when_paused
    from s3_server import s3_env, start_s3

    d, _ = corpus
    bucket = tmp_path / "root" / "raybuilds"
    bucket.mkdir(parents=True)
    (tmp_path / "stage").mkdir()
    server, port = start_s3(str(tmp_path / "root"))
    # The driver in a process of its own (to be killed), building as _build does.
    script = ("import sys, anygram; anygram.build_index(sys.argv[1], 's3://raybuilds/idx', token_width=%d, "
              "vocab_size=%d, eos_token_id=%d, shards=%d, progress=False, accelerator=True, _part_tokens=2048, "
              "_overlap_tokens=64, ray=sys.argv[2], tmp=sys.argv[3])" % (WIDTH, VOCAB, ALPHABET[0], SHARDS))
    command = [sys.executable, "-c", script, str(d / "corpus.npy"), cluster.address, str(tmp_path / "stage")]
    # This process's environment (its Ray variables keep the driver on 127.0.0.1), its imports.
    env = {**os.environ, "PYTHONPATH": CLI_ENV["PYTHONPATH"], **s3_env(port)}
    try:
        first = subprocess.Popen(command, stderr=subprocess.PIPE, text=True,
                                 env={**env, "ANYGRAM_BUILD_PAUSE_AT": "publish"})
        kill_when_paused(first, "publish")
        uploaded = {n: (bucket / "idx" / n).stat().st_mtime_ns for n in os.listdir(bucket / "idx")}
        # Every shard file a sort leaves (metadata too); no accelerator, marker or manifest yet.
        assert sorted(uploaded) == sorted(f"{kind}.{s}" for kind in ("tokenized", "offset", "metadata", "metaoff",
                                                                     "table") for s in range(SHARDS))
        again = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
        assert again.returncode == 0, again.stderr
        assert "resum" in again.stderr.lower()
        assert {n: (bucket / "idx" / n).stat().st_mtime_ns for n in uploaded} == uploaded
    finally:
        server.terminate()
        server.wait(10)
    assert _assert_same_index(local_index, bucket / "idx") == 0
    assert os.listdir(tmp_path / "stage") == []


def _local_self_dedup(engine, min_len):
    (_, arrays), = anygram.scan.iter_dedup_units(engine, min_len)
    return {key: value.tolist() for key, value in arrays.items()}


@pytest.mark.parametrize("parts", [2, 5, 7])
def test_self_dedup_in_key_parts_is_local(cluster, local_index, parts):
    """Self dedup a key part a task: the parts' suffixes cover the index once, and their
    ranges united (carried by the last unit) are the local scan's, whatever the count."""
    from anygram.distributed import scans

    engine = anygram.Engine.open(str(local_index))
    for min_len in (3, 7):
        units = list(scans.iter_dedup_units(engine, min_len, ray=True, parts=parts))
        assert 2 <= len(units) <= parts and all(isinstance(u, scans.DedupPart) for u, _ in units)
        assert sum(u.work for u, _ in units) == engine.num_tokens
        assert all(len(a["doc_ix"]) == 0 for _, a in units[:-1])
        want = _local_self_dedup(engine, min_len)
        assert {key: value.tolist() for key, value in units[-1][1].items()} == want
        assert len(want["doc_ix"]) > 3


def test_self_dedup_parts_resume_from_their_files(cluster, local_index, tmp_path):
    """A rerun (``skip``) reads the finished parts from ``parts_dir`` rather than running them
    again: a part file replaced by one with no ranges is what the rerun unites."""
    from anygram import _anygram
    from anygram.distributed import scans

    engine = anygram.Engine.open(str(local_index))
    parts_dir = str(tmp_path / "parts")
    first = scans.iter_dedup_units(engine, 3, ray=True, parts=5, parts_dir=parts_dir)
    units = [next(first)[0] for _ in range(2)]
    first.close()  # stopped after two parts
    assert sorted(os.listdir(parts_dir)) == ["part-000000.npz", "part-000001.npz", "split.json"]
    with np.load(os.path.join(parts_dir, "part-000000.npz")) as saved:
        assert len(saved["doc_ix"]) > 0
    scans._save_part(parts_dir, 0, scans._no_ranges())
    resumed = list(scans.iter_dedup_units(engine, 3, ray=True, parts=5, parts_dir=parts_dir, skip=2))
    all_units = units + [u for u, _ in resumed]
    assert [(u.lo, u.hi) for u in all_units[:2]] == [(u.lo, u.hi) for u in units]
    rest = [_anygram.dedup_self_part(engine, 3, u.lo, u.hi) for u in all_units[1:]]
    want = scans._united(rest)
    got = resumed[-1][1]
    assert {k: v.tolist() for k, v in got.items()} == {k: v.tolist() for k, v in want.items()}
    assert {k: v.tolist() for k, v in got.items()} != _local_self_dedup(engine, 3)  # without part 0
    assert not os.path.exists(parts_dir)  # removed once the last part is out


def test_run_dedup_on_ray_resumes_part_by_part(cluster, local_index, tmp_path, monkeypatch):
    """``run_dedup(ray=)`` in several key parts, stopped after some: the rerun finishes with
    the local output, byte for byte, and leaves no parts directory."""
    from anygram.distributed import scans

    engine = anygram.Engine.open(str(local_index))
    anygram.scan.run_dedup(engine, str(tmp_path / "local.jsonl"), min_len=5)
    monkeypatch.setattr(scans, "_MIN_PART_TOKENS", 1)  # parts: 4 per CPU, 8 on this cluster
    save, saved = scans._save_part, []

    def stop_at_the_fourth(parts_dir, j, arrays):
        if len(saved) == 3:
            raise KeyboardInterrupt
        saved.append(j)
        save(parts_dir, j, arrays)

    monkeypatch.setattr(scans, "_save_part", stop_at_the_fourth)
    out = str(tmp_path / "ray.jsonl")
    with pytest.raises(KeyboardInterrupt):
        anygram.scan.run_dedup(engine, out, min_len=5, ray=True)
    with open(out + ".progress.json") as f:
        assert json.load(f)["state"]["units_done"] == 3
    monkeypatch.setattr(scans, "_save_part", save)
    summary = anygram.scan.run_dedup(engine, out, min_len=5, ray=True)
    assert summary["documents_affected"] > 3
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    assert not os.path.exists(out + ".parts")


def test_key_part_arguments_are_checked(local_index):
    """The bindings of the split refuse bad values with anygram's errors, naming them."""
    from anygram import _anygram

    engine = anygram.Engine.open(str(local_index))
    with pytest.raises(anygram.errors.InvalidQueryError, match="parts"):
        _anygram.dedup_self_split_keys(engine, 3, 0)
    with pytest.raises(anygram.errors.InvalidQueryError, match="lo must be bytes"):
        _anygram.dedup_self_part(engine, 3, "ab")
    with pytest.raises(anygram.errors.InvalidArgumentError, match="whole tokens"):
        _anygram.dedup_self_part(engine, 3, b"\x01")
    with pytest.raises(anygram.errors.InvalidArgumentError, match="lo must not sort after hi"):
        _anygram.dedup_self_part(engine, 3, b"\x02\x00", b"\x01\x00")
