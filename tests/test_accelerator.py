"""The search accelerator (``accel.{s}``): ``anygram index add-accelerator`` on an
index built by infini-gram and on one built by anygram (the manifest's checksums
follow), the build's default, argument checks, and a stale file that never
changes an answer. The search itself is property-tested in rust/anygram/tests/accel.rs."""

from __future__ import annotations

import json
import os
import random
import shutil
import sys

import pytest

import anygram
import anygram.accel
import anygram.manifest
from anygram import _anygram
from anygram.errors import InvalidArgumentError
from conftest import Oracle, build_from_tokens
from conftest import run_cli as cli


def read_manifest(index):
    with open(os.path.join(index, "anygram.json")) as f:
        return json.load(f)


def random_docs(seed, n=300, vocab=(0, 1, 2, 255, 256, 257, 1000)):
    rng = random.Random(seed)
    return [[rng.choice(vocab) for _ in range(rng.randint(0, 30))] for _ in range(n)]


def ngrams(docs, seed, count=200):
    """Substrings of the documents (matches, some longer than a 32-byte key) and random ones."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        doc = rng.choice(docs)
        if doc and rng.random() < 0.8:
            i = rng.randrange(len(doc))
            out.append(doc[i:i + rng.randint(1, 24)])
        else:
            out.append([rng.choice([0, 1, 2, 255, 256]) for _ in range(rng.randint(1, 4))])
    return out


def test_add_accelerator_to_an_anygram_index_updates_the_manifest(tmp_path):
    docs = random_docs(0)
    index = build_from_tokens(str(tmp_path), docs, 2, 1001, 1000)
    # build_index writes it by default; take it away to add it back with the command.
    os.remove(os.path.join(index, "accel.0"))
    manifest = read_manifest(index)
    del manifest["files"]["accel.0"]
    anygram.manifest.write_manifest(index, manifest)
    assert anygram.Engine.open(index).verify()["ok"]

    out = cli("index", "add-accelerator", "--index", index, "--rate", "8").stdout
    assert "accel.0" in out
    path = os.path.join(index, "accel.0")
    recorded = read_manifest(index)["files"]["accel.0"]
    assert recorded == {"size": os.path.getsize(path), "xxh3_64": _anygram.checksum_files([path])[0]}
    assert not [n for n in os.listdir(index) if ".tmp" in n]

    fast = anygram.Engine.open(index)
    plain = anygram.Engine.open(index, accelerator=False)
    oracle = Oracle(docs, 1000)
    assert fast.verify()["ok"]
    for query in ngrams(docs, 1):
        assert fast.count(query) == plain.count(query) == oracle.count(query), query
        reads = fast.count_reads(query)
        assert reads["count"] == oracle.count(query)
        if len(query) * 2 <= 32:
            # The root is resident; the bottom level, the pointers, the texts: 3 rounds.
            assert max(reads["rounds"].values()) <= 3, (query, reads)


def test_add_accelerator_to_an_index_built_by_infinigram(tmp_path):
    pytest.importorskip("infini_gram.engine")
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench", "peers"))
    from infinigram_build import build_with_infinigram
    from test_infinigram import assert_same_answers, peer
    from test_infinigram_built import WORDS, synthetic_corpus

    corpus = tmp_path / "corpus.jsonl"
    synthetic_corpus(corpus)
    theirs = str(tmp_path / "built-by-infinigram")
    assert build_with_infinigram(str(corpus), theirs, tokenizer_json=None, token_dtype="u8", cpus=1)["valid"]
    cli("index", "add-accelerator", "--index", theirs)
    assert os.path.exists(os.path.join(theirs, "accel.0"))
    assert not os.path.exists(os.path.join(theirs, "anygram.json"))

    engine = anygram.Engine.open(theirs, vocab_size=255, eos_token_id=0)
    plain = anygram.Engine.open(theirs, vocab_size=255, eos_token_id=0, accelerator=False)
    ig = peer(theirs, 0, 255, 1)  # infini-gram still opens the directory beside the new file
    rng = random.Random(3)
    queries = []
    for _ in range(200):
        ids = list(" ".join(rng.choice(WORDS) for _ in range(6)).encode())
        i = rng.randrange(len(ids))
        queries.append(ids[i:i + rng.randint(1, 40)])
    assert_same_answers(engine, ig, queries)
    for query in queries:
        assert engine.count(query) == plain.count(query)
        if len(query) <= 32:
            assert max(engine.count_reads(query)["rounds"].values()) <= 3, query
    assert engine.verify()["ok"]


def test_build_writes_it_only_when_asked(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["abc abd", "abc", "xyz"]))
    with_it = str(tmp_path / "with")
    without = str(tmp_path / "without")
    cli("build", str(corpus), "--output", with_it, "--quiet", "--accelerator")
    cli("build", str(corpus), "--output", without, "--quiet")
    assert "accel.0" in read_manifest(with_it)["files"]
    assert not os.path.exists(os.path.join(without, "accel.0"))
    for index in (with_it, without):
        assert json.loads(cli("count", "--index", index, "ab").stdout)["count"] == 3
        assert cli("verify", "--index", index, "--format", "table").stdout.strip().endswith("OK")


def test_a_stale_accelerator_is_ignored_with_a_warning(tmp_path):
    a = build_from_tokens(str(tmp_path / "a"), random_docs(1), 2, 1001, 1000)
    docs_b = random_docs(2)
    b = build_from_tokens(str(tmp_path / "b"), docs_b, 2, 1001, 1000)
    shutil.copyfile(os.path.join(a, "accel.0"), os.path.join(b, "accel.0"))
    query = next(d[:2] for d in docs_b if len(d) >= 2)
    out = cli("count", "--index", b, "--ids", ",".join(map(str, query)))
    assert json.loads(out.stdout)["count"] == Oracle(docs_b, 1000).count(query)
    assert "ignoring the search accelerator" in out.stderr and "stale" in out.stderr
    # verify reports it (and the manifest's checksum of accel.0 no longer matches).
    bad = cli("verify", "--index", b, check=False)
    assert bad.returncode == 1 and "accel.0" in bad.stdout


def test_arguments_are_checked(tmp_path):
    index = build_from_tokens(str(tmp_path), random_docs(0, n=5), 2, 1001, 1000)
    with pytest.raises(InvalidArgumentError, match="rate"):
        anygram.accel.add_accelerator(index, rate=0)
    with pytest.raises(InvalidArgumentError, match="key"):
        anygram.accel.add_accelerator(index, key_bytes=256)
    with pytest.raises(InvalidArgumentError, match="key_bytes"):
        anygram.accel.add_accelerator(index, key_bytes="32")
    with pytest.raises(InvalidArgumentError, match="resident_mem"):
        anygram.Engine.open(index, resident_mem=-1)
    bad = cli("index", "add-accelerator", "--index", index, "--key-bytes", "0", check=False)
    assert bad.returncode == 2 and "key_bytes" in bad.stderr
    missing = cli("index", "add-accelerator", "--index", str(tmp_path / "nope"), check=False)
    assert missing.returncode == 2 and "nope" in missing.stderr
