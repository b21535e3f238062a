"""Builds into object storage: ``anygram build -o s3://...`` against a real S3-compatible
server (``s3s-fs`` on 127.0.0.1, whose backing directory holds exactly the uploaded
bytes). The uploaded index is byte for byte the one a build into a directory writes,
verifies and answers as it does; an index there is replaced only when asked; a publish
cut off midway leaves no manifest (no index) and a rerun completes it, uploading only
what is missing; a bad bucket or credentials fail before any work, naming the URL."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest

import anygram
from anygram import _anygram
from anygram.errors import AnygramError, CorruptIndexError, IndexIOError, IndexNotFoundError, InvalidArgumentError
from byte_order_ids import BYTE_ORDER_IDS
from conftest import CLI_ENV, run_cli
from s3_server import environment, s3_env, start_s3

WIDTH = 2
# Few distinct ids (so n-grams repeat) whose byte order differs from their numeric order.
ALPHABET = BYTE_ORDER_IDS[WIDTH][:6]
VOCAB = max(BYTE_ORDER_IDS[WIDTH]) + 1


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """s3s-fs over ``root`` with an empty bucket ``builds`` (a name of its own: clients are made once per bucket and process); the process's S3 variables
    point at it (few retries, so that a failure fails within seconds)."""
    root = tmp_path_factory.mktemp("s3-root")
    (root / "builds").mkdir()
    proc, port = start_s3(str(root))
    env = {**s3_env(port), "ANYGRAM_STORAGE_RETRIES": "1"}
    with environment(env):
        _anygram.configure_storage(cache_ram_bytes=64 << 20, retries=1)
        try:
            yield {"root": root, "bucket": root / "builds", "env": env, "port": port}
        finally:
            proc.terminate()
            proc.wait(10)
            _anygram.configure_storage()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("s3-build-corpus")
    rng = random.Random(16)
    docs = [[rng.choice(ALPHABET) for _ in range(rng.randint(1, 90))] for _ in range(300)]
    np.save(d / "corpus.npy", np.asarray([t for x in docs for t in x], dtype=np.uint16))
    np.save(d / "corpus.offsets.npy", np.cumsum([0] + [len(x) for x in docs]).astype(np.int64))
    return d, docs


def _build(corpus_dir, out, shards=3, **kw):
    return anygram.build_index(str(corpus_dir / "corpus.npy"), str(out), token_width=WIDTH, vocab_size=VOCAB,
                               eos_token_id=ALPHABET[0], shards=shards, progress=False, accelerator=True, **kw)


@pytest.fixture(scope="module")
def local_index(corpus):
    d, _ = corpus
    _build(d, d / "local")
    return d / "local"


def _cli(s3, *args, **env) -> subprocess.CompletedProcess:
    """``anygram ARGS`` in a subprocess that reaches the S3 server (``env`` on top)."""
    return subprocess.run([sys.executable, "-m", "anygram.cli", *map(str, args)], capture_output=True, text=True,
                          env={**CLI_ENV, **s3["env"], **env}, timeout=300)


def _manifest_without_times(path):
    with open(os.path.join(path, "anygram.json")) as f:
        manifest = json.load(f)
    del manifest["build"]["created_at"], manifest["build"]["seconds"]
    return manifest


def assert_same_files(local, uploaded):
    """Every file of the index ``local`` is the object under ``uploaded`` (s3s-fs's backing
    directory) byte for byte, and nothing else is there; the manifests differ only in when
    and how long the build took."""
    names = sorted(os.listdir(local))
    assert sorted(os.listdir(uploaded)) == names
    assert any(n.startswith("table.") for n in names) and any(n.startswith("accel.") for n in names)
    for name in names:
        if name != "anygram.json":
            with open(os.path.join(local, name), "rb") as a, open(os.path.join(uploaded, name), "rb") as b:
                assert a.read() == b.read(), name
    assert _manifest_without_times(local) == _manifest_without_times(uploaded)


def _same_answers(remote, local, docs, seed=3):
    rng = random.Random(seed)
    for _ in range(40):
        doc = rng.choice(docs)
        i = rng.randrange(len(doc))
        q = doc[i:i + rng.randint(1, 4)]
        assert remote.count(q) == local.count(q), q
        assert remote.find(q) == local.find(q), q
        assert remote.ntd(q[:-1]) == local.ntd(q[:-1]), q
        assert remote.infgram_prob(q[:-1], q[-1]) == local.infgram_prob(q[:-1], q[-1]), q
        assert remote.search_docs(q, maxnum=2, seed=4) == local.search_docs(q, maxnum=2, seed=4), q
    assert remote.count([ALPHABET[-1]] * 50) == local.count([ALPHABET[-1]] * 50)


def _fresh_reads():
    """An empty block cache: what the next reads see comes from the server."""
    _anygram.configure_storage(cache_ram_bytes=64 << 20, retries=1)


def test_a_build_into_s3_is_the_local_build(s3, corpus, local_index, tmp_path):
    d, docs = corpus
    report = _build(d, "s3://builds/idx", tmp=str(tmp_path))
    assert report.output == "s3://builds/idx" and report.num_shards == 3
    assert_same_files(local_index, s3["bucket"] / "idx")
    # The staging work directory is gone once the index is published.
    assert os.listdir(tmp_path) == []
    # The uploaded bytes verify as an index (s3s-fs stores each object as a plain file).
    run_cli("verify", "--index", s3["bucket"] / "idx")
    _fresh_reads()
    _same_answers(anygram.Engine.open("s3://builds/idx"), anygram.Engine.open(str(local_index)), docs)


def test_publish_refuses_to_overwrite_an_index_unless_asked(s3, corpus, local_index, tmp_path):
    d, docs = corpus
    _build(d, "s3://builds/twice", tmp=str(tmp_path))
    before = {n: (s3["bucket"] / "twice" / n).stat().st_mtime_ns for n in os.listdir(s3["bucket"] / "twice")}
    cli = ["build", d / "corpus.npy", "-o", "s3://builds/twice", "--token-width", WIDTH, "--vocab-size", VOCAB,
           "--eos-token-id", ALPHABET[0], "--shards", 2, "--accelerator", "--tmp", tmp_path, "-q"]
    refused = _cli(s3, *cli)
    assert refused.returncode != 0
    assert "s3://builds/twice" in refused.stderr and "--overwrite" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    with pytest.raises(anygram.IndexExistsError, match="s3://builds/twice.* already holds an index"):
        _build(d, "s3://builds/twice", tmp=str(tmp_path))
    # Nothing was touched, and no work directory was made.
    assert {n: (s3["bucket"] / "twice" / n).stat().st_mtime_ns for n in os.listdir(s3["bucket"] / "twice")} == before
    assert os.listdir(tmp_path) == []
    # Replaced by a 2-shard index: the third shard's objects are gone, the rest is new.
    replaced = _cli(s3, *cli, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    _build(d, tmp_path / "local-2", shards=2)
    assert_same_files(tmp_path / "local-2", s3["bucket"] / "twice")
    _fresh_reads()
    engine = anygram.Engine.open("s3://builds/twice")
    assert len(_manifest_without_times(s3["bucket"] / "twice")["shards"]) == 2
    _same_answers(engine, anygram.Engine.open(str(tmp_path / "local-2")), docs, seed=5)


def test_a_publish_cut_off_midway_leaves_no_index_and_a_rerun_completes_it(s3, corpus, local_index, tmp_path):
    d, docs = corpus
    dest = s3["bucket"] / "cut"
    # A directory where the object table.1 would go: s3s-fs cannot write it, so the
    # publish fails after the files before it (in name order) are up.
    (dest / "table.1").mkdir(parents=True)
    with pytest.raises(IndexIOError, match="table.1"):
        _build(d, "s3://builds/cut", tmp=str(tmp_path))
    uploaded = {n: (dest / n).stat().st_mtime_ns for n in os.listdir(dest) if n != "table.1"}
    assert "table.0" in uploaded and "tokenized.0" not in uploaded
    assert "anygram.json" not in uploaded
    # Without its manifest the index never opens (its marker file says what is missing).
    _fresh_reads()
    with pytest.raises((CorruptIndexError, IndexNotFoundError), match="anygram.json"):
        anygram.Engine.open("s3://builds/cut")
    # The work directory stays, with the finished steps and what was uploaded.
    (work,) = os.listdir(tmp_path)
    assert sorted(os.listdir(tmp_path / work / "uploaded")) == sorted(f"{n}.json" for n in uploaded)

    (dest / "table.1").rmdir()
    _build(d, "s3://builds/cut", tmp=str(tmp_path))
    # The rerun uploaded only what was missing (the manifest is rewritten: it is last).
    assert {n: (dest / n).stat().st_mtime_ns for n in uploaded} == uploaded
    assert_same_files(local_index, dest)
    assert os.listdir(tmp_path) == []
    _fresh_reads()
    _same_answers(anygram.Engine.open("s3://builds/cut"), anygram.Engine.open(str(local_index)), docs, seed=7)


def test_a_changed_object_is_uploaded_again(s3, tmp_path):
    """A recorded upload is skipped only while its object is unchanged (size and entity tag):
    here a file a part and one byte long (a multipart upload of two parts)."""
    part = 32 << 20
    local = tmp_path / "table.0"
    rng = np.random.default_rng(1)
    local.write_bytes(rng.integers(0, 256, part + 1, dtype=np.uint8).tobytes())
    record = tmp_path / "record"
    url = "s3://builds/single/table.0"
    assert _anygram.upload_index_file(str(local), url, str(record)) is True
    assert (s3["bucket"] / "single" / "table.0").read_bytes() == local.read_bytes()
    assert _anygram.upload_index_file(str(local), url, str(record)) is False
    (s3["bucket"] / "single" / "table.0").write_bytes(b"changed")
    assert _anygram.upload_index_file(str(local), url, str(record)) is True
    assert (s3["bucket"] / "single" / "table.0").read_bytes() == local.read_bytes()


def test_bad_destinations_fail_before_any_work_naming_the_url(s3, corpus, tmp_path):
    d, _ = corpus
    with pytest.raises(AnygramError, match="s3://no-such-bucket/idx.*bucket does not exist"):
        _build(d, "s3://no-such-bucket/idx", tmp=str(tmp_path))
    # A fresh client (endpoints are made once per bucket and process): a subprocess.
    out = _cli(s3, "build", d / "corpus.npy", "-o", "s3://builds/denied", "--token-width", WIDTH,
               "--vocab-size", VOCAB, "--tmp", tmp_path, "-q", AWS_SECRET_ACCESS_KEY="wrong")
    assert out.returncode != 0 and "s3://builds/denied" in out.stderr and "credentials were refused" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    # No credentials at all: the client's last resort (instance metadata) gives none.
    out = _cli(s3, "build", d / "corpus.npy", "-o", "s3://builds/anonymous", "--token-width", WIDTH,
               "--vocab-size", VOCAB, "--tmp", tmp_path, "-q", AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="")
    assert out.returncode != 0 and "s3://builds/anonymous" in out.stderr and "credentials" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    # A prefix holding other objects is never written into.
    (s3["bucket"] / "data").mkdir()
    (s3["bucket"] / "data" / "notes.txt").write_text("mine")
    with pytest.raises(InvalidArgumentError, match="notes.txt"):
        _build(d, "s3://builds/data", tmp=str(tmp_path), overwrite=True)
    with pytest.raises(InvalidArgumentError, match="tmp"):
        _build(d, "s3://builds/x", tmp=str(tmp_path / "missing"))
    assert os.listdir(tmp_path) == []
    assert not os.path.exists("s3:")
