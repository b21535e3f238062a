"""Indexes in object storage: the same index served by a real S3-compatible server
(``s3s-fs``) and by nginx (HTTP range requests), both on 127.0.0.1, answers every
query type exactly as the local copy does; a count costs few round trips; a server
that dies or answers 500 mid-query is a clear ``IndexIOError``, never a wrong answer.

``.ci/run`` installs ``s3s-fs`` (cargo) and nginx (Debian); without them these tests
fail under ``ANYGRAM_NO_SKIP`` (conftest), as a broken set-up should.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest

import anygram
from anygram import _anygram
from anygram.errors import CorruptIndexError, IndexIOError, IndexNotFoundError, InvalidArgumentError
from conftest import build_from_tokens
from s3_server import s3_env, start_s3, wait_for_port
from serving import free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SHARDS = 3
# Small blocks, so that a search over this small index really reads through GETs.
BLOCK_BYTES = 64

@pytest.fixture(scope="session")
def served(tmp_path_factory):
    """A several-shard index with accelerators, its local copy, and the same files
    in an S3 bucket (s3s-fs) and under nginx, which answers 500 to every GET of
    one file of a second copy (``broken/``)."""
    base = tmp_path_factory.mktemp("object-storage")
    rng = random.Random(14)
    docs = [[rng.choice([0, 1, 2, 3, 5, 8, 13, 21, 300]) for _ in range(rng.randint(1, 60))] for _ in range(400)]
    local = build_from_tokens(str(base / "build"), docs, 2, 1001, 1000, shards=SHARDS)
    assert all(os.path.exists(os.path.join(local, f"accel.{s}")) for s in range(SHARDS))
    root = base / "root"
    shutil.copytree(local, root / "bucket" / "idx")
    shutil.copytree(local, root / "bucket" / "broken")

    s3, s3_port = start_s3(str(root))
    if not os.path.exists(NGINX):
        pytest.skip("nginx is not installed (.ci/run installs it)")
    http_port = free_port()
    conf = base / "nginx.conf"
    temp = base / "nginx-temp"
    temp.mkdir()
    # As root, nginx's workers would run as nobody, who cannot read pytest's private tmp_path.
    user = "user root root;" if os.geteuid() == 0 else ""
    conf.write_text(f"""
{user}
daemon off;
pid {base}/nginx.pid;
error_log {base}/nginx-error.log;
events {{ worker_connections 512; }}
http {{
  access_log off;
  client_body_temp_path {temp}/body; proxy_temp_path {temp}/proxy; fastcgi_temp_path {temp}/fcgi;
  uwsgi_temp_path {temp}/uwsgi; scgi_temp_path {temp}/scgi;
  server {{
    listen 127.0.0.1:{http_port};
    root {root};
    # HEAD answers (the file opens); every GET of its bytes fails.
    location = /bucket/broken/table.1 {{ if ($request_method = GET) {{ return 500; }} }}
  }}
}}
""")
    nginx = subprocess.Popen([NGINX, "-c", str(conf), "-e", str(base / "nginx-error.log")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(http_port, nginx, "nginx")

    env = s3_env(s3_port)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    # Few retries with a short backoff: a dead server must fail within seconds.
    _anygram.configure_storage(block_bytes=BLOCK_BYTES, cache_ram_bytes=64 << 20, retries=1)
    try:
        yield {"docs": docs, "local": local, "root": root, "s3_port": s3_port, "s3": s3,
               "http": f"http://127.0.0.1:{http_port}/bucket", "env": env}
    finally:
        for proc in (s3, nginx):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _anygram.configure_storage()


def _queries(docs, seed, n=40):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        doc = rng.choice(docs)
        i = rng.randrange(len(doc))
        out.append(doc[i:i + rng.randint(1, 4)])
    out += [[7], [300, 300, 300, 300, 300, 300], [1000], []]
    return out


def _same_answers(remote, local, docs):
    queries = _queries(docs, 1)
    for q in queries:
        assert remote.count(q) == local.count(q), q
        assert remote.find(q) == local.find(q), q
        if q:
            assert remote.prob(q[:-1], q[-1]) == local.prob(q[:-1], q[-1]), q
            assert remote.infgram_prob(q[:-1], q[-1]) == local.infgram_prob(q[:-1], q[-1]), q
        assert remote.ntd(q[:-1]) == local.ntd(q[:-1]), q
        assert remote.infgram_ntd(q) == local.infgram_ntd(q), q
        if q:
            assert remote.search_docs(q, maxnum=3, seed=5) == local.search_docs(q, maxnum=3, seed=5), q
    assert list(remote.count_batch(queries)) == list(local.count_batch(queries))
    assert remote.get_docs_by_ixs([0, 7, 399], max_disp_len=20) == local.get_docs_by_ixs([0, 7, 399], max_disp_len=20)
    cnf = [[[1, 2]], [[3], [5, 8]]]
    assert remote.count_cnf(cnf, max_diff_tokens=10) == local.count_cnf(cnf, max_diff_tokens=10)
    assert remote.find_cnf(cnf, max_diff_tokens=10) == local.find_cnf(cnf, max_diff_tokens=10)
    text = [t for d in docs[:5] for t in d]
    remote_scores, local_scores = remote.score(text), local.score(text)
    assert remote_scores.keys() == local_scores.keys()
    for key, value in local_scores.items():
        assert np.array_equal(remote_scores[key], value), key


def test_every_query_over_s3_equals_the_local_index(served):
    local = anygram.Engine.open(served["local"])
    remote = anygram.Engine.open("s3://bucket/idx")
    _same_answers(remote, local, served["docs"])


def test_every_query_over_http_range_requests_equals_the_local_index(served):
    local = anygram.Engine.open(served["local"])
    remote = anygram.Engine.open(served["http"] + "/idx")
    _same_answers(remote, local, served["docs"])


def test_an_open_costs_two_round_trips_and_a_count_at_most_four(served):
    # A copy never opened in this process, and a fresh, empty cache: every read
    # of this test goes to the server.
    shutil.copytree(served["local"], served["root"] / "bucket" / "fresh")
    _anygram.configure_storage(block_bytes=BLOCK_BYTES, cache_ram_bytes=64 << 20, retries=1)
    # The open runs on the pool: count every batch the process sends meanwhile.
    before = _anygram.storage_batch_count()
    remote = anygram.Engine.open("s3://bucket/fresh")
    opened = _anygram.storage_batch_count() - before
    # The manifest, then every shard's open reads (and accelerator levels) together.
    assert opened == 2, opened
    local = anygram.Engine.open(served["local"])
    worst = {"count": 0, "ntd": 0, "infgram_prob": 0}
    for q in _queries(served["docs"], 2, n=30):
        if not q:
            continue
        if len(q) > 1:  # first: the count below would cache this query's blocks
            trips = _anygram.storage_round_trips()
            assert remote.infgram_prob(q[:-1], q[-1]) == local.infgram_prob(q[:-1], q[-1])
            worst["infgram_prob"] = max(worst["infgram_prob"], _anygram.storage_round_trips() - trips)
        trips = _anygram.storage_round_trips()
        assert remote.count(q) == local.count(q)
        worst["count"] = max(worst["count"], _anygram.storage_round_trips() - trips)
        trips = _anygram.storage_round_trips()
        assert remote.ntd(q, max_support=4) == local.ntd(q, max_support=4)
        worst["ntd"] = max(worst["ntd"], _anygram.storage_round_trips() - trips)
    print(f"open: {opened} round trips for {SHARDS} shards; worst: {worst}")
    # The shards are searched concurrently: a count costs one shard's rounds.
    assert 0 < worst["count"] <= 4, worst
    # ntd: the count, then two rounds per three levels of halving (reading ahead the ranks
    # the next levels could need; max_support=4: at most 9 levels here).
    assert worst["ntd"] <= 4 + 2 * 3, worst
    # ∞-gram prob: one batch of every short suffix length with its continuation settles
    # these contexts (at most 16 tokens): a count's rounds.
    assert worst["infgram_prob"] <= 4, worst


def _cli_env(served, **extra):
    return dict(os.environ, **served["env"], **extra, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(anygram.__path__[0])] + os.environ.get("PYTHONPATH", "").split(os.pathsep)))


def test_cli_count_accepts_an_s3_url_and_caches_blocks_on_disk(served, tmp_path):
    cache = tmp_path / "cache"
    env = _cli_env(served, ANYGRAM_CACHE_DIR=str(cache), ANYGRAM_CACHE_DISK_BYTES=str(1 << 20),
                   ANYGRAM_STORAGE_BLOCK_BYTES="4096")
    local = anygram.Engine.open(served["local"])
    out = subprocess.run([os.sys.executable, "-m", "anygram.cli", "count", "--index", "s3://bucket/idx",
                          "--ids", "1,2"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f'"count": {local.count([1, 2])}' in out.stdout.replace(" ", "").replace('":', '": ')
    blocks = list(cache.iterdir())
    assert blocks and all(f.stat().st_size <= 4096 for f in blocks)
    assert sum(f.stat().st_size for f in blocks) <= 1 << 20


def test_a_bad_cache_variable_is_a_clear_error(served):
    env = _cli_env(served, ANYGRAM_CACHE_RAM_BYTES="lots")
    out = subprocess.run([os.sys.executable, "-m", "anygram.cli", "count", "--index", "s3://bucket/idx",
                          "--ids", "1"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "ANYGRAM_CACHE_RAM_BYTES" in out.stderr and "Traceback" not in out.stderr


def test_missing_index_and_bad_scheme_are_clear_errors(served):
    with pytest.raises(IndexNotFoundError):
        anygram.Engine.open("s3://bucket/no-such-index")
    with pytest.raises((InvalidArgumentError, IndexNotFoundError)):
        anygram.Engine.open("ftp://127.0.0.1/idx")


def test_a_500_mid_query_is_an_index_io_error_never_a_wrong_answer(served):
    engine = anygram.Engine.open(served["http"] + "/broken")
    # Shard 1's suffix array cannot be read: a count must fail, not answer from the other shards.
    with pytest.raises(IndexIOError, match="table.1"):
        engine.count([1, 2])


def test_an_object_that_differs_from_the_manifest_is_a_corrupt_index_never_a_wrong_answer(served):
    # The manifest records every file's size, so an open reads no listing; the
    # size the server reports with each ranged GET must still be that size.
    copy = served["root"] / "bucket" / "replaced"
    shutil.copytree(served["local"], copy)
    with open(copy / "table.1", "ab") as f:
        f.write(b"\0" * 8)  # replaced after the build: the manifest is stale
    engine = anygram.Engine.open("s3://bucket/replaced")  # the open does not read table.1
    with pytest.raises(CorruptIndexError, match=r"table\.1.*replaced or truncated"):
        engine.count([1, 2])
    with open(copy / "tokenized.2", "r+b") as f:
        f.truncate(os.path.getsize(copy / "tokenized.2") - 2)
    # An empty cache (blocks read before the change would still be served).
    _anygram.configure_storage(block_bytes=BLOCK_BYTES, cache_ram_bytes=64 << 20, retries=1)
    with pytest.raises(CorruptIndexError, match=r"tokenized\.2"):
        anygram.Engine.open("s3://bucket/replaced")


def test_a_server_that_dies_mid_session_is_an_index_io_error(served, tmp_path):
    # A server of its own, so the others keep serving.
    root = tmp_path / "root"
    shutil.copytree(served["local"], root / "solo" / "idx")
    proc, port = start_s3(str(root))
    os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"
    try:
        engine = anygram.Engine.open("s3://solo/idx")
        local = anygram.Engine.open(served["local"])
        assert engine.count([1]) == local.count([1])
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        # Queries that need bytes not yet cached fail clearly (after the retries).
        failures = 0
        for q in _queries(served["docs"], 3, n=40):
            try:
                assert engine.count(q) == local.count(q)
            except IndexIOError:
                failures += 1
        assert failures > 0
    finally:
        os.environ["AWS_ENDPOINT_URL"] = served["env"]["AWS_ENDPOINT_URL"]
        if proc.poll() is None:
            proc.kill()


def test_a_forked_child_reads_through_its_own_client(served):
    """A runtime and HTTP client made in the parent have no threads in a forked
    child: the backend makes new ones there (as the pool does), so the child's
    queries neither hang nor fail."""
    _anygram.configure_storage(block_bytes=BLOCK_BYTES, cache_ram_bytes=64 << 20, retries=1)
    engine = anygram.Engine.open("s3://bucket/idx")
    local = anygram.Engine.open(served["local"])
    assert engine.count([1]) == local.count([1])
    queries = [q for q in _queries(served["docs"], 4, n=20) if q]
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answers through the pipe, never returns into pytest
        try:
            answers = ",".join(str(engine.count(q)) for q in queries)
            os.write(write_end, answers.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and os.waitpid(pid, os.WNOHANG) == (0, 0):
        time.sleep(0.05)
    else:
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as pipe:
        got = pipe.read().decode()
    assert got == ",".join(str(local.count(q)) for q in queries)


def test_serve_takes_an_index_in_s3(served):
    from serving import Server

    local = anygram.Engine.open(served["local"])
    queries = [q for q in _queries(served["docs"], 5, n=10) if q]
    with Server({"web": "s3://bucket/idx"}, env=served["env"]) as server, server.client() as client:
        for ids in queries:
            response = client.post("/", json={"index": "web", "query_type": "count", "query_ids": ids})
            assert response.status_code == 200, response.text
            assert response.json()["count"] == local.count(ids)


def test_writing_to_an_index_in_object_storage_is_refused_clearly(served):
    with pytest.raises(InvalidArgumentError, match="local disk"):
        _anygram.write_accelerators("s3://bucket/idx", 2)
    assert not os.path.exists("s3:")  # nothing written under a path that looks like the URL
