"""The index format has one owner, the core, and old indexes keep opening.

* ``tests/fixtures/``: tiny indexes of every format this build reads, committed once and
  never regenerated: ``anygram-v1-bytes`` (anygram's format version 1, built by
  ``anygram.build_index`` from ``corpus.jsonl``) and ``infinigram-2.6.0-bytes`` (the same
  corpus through infini-gram 2.6.0's own indexer, ``bench/peers/infinigram_build.py``).
  They open and answer the counts recorded here (and a brute-force count) forever.
  A new format version adds a fixture beside them; none is ever removed.
* Every key path of a manifest a build writes is a field of the core's type (the type
  refuses unknown fields, so a round trip through it keeps every one).
* An index that lost its manifest is refused, with or without a tokenizer.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import anygram
from anygram import _anygram
from anygram.errors import CorruptIndexError, InvalidArgumentError

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
CORPUS = os.path.join(FIXTURES, "corpus.jsonl")
SHARD_FILES = ("tokenized.0", "table.0", "offset.0", "metadata.0", "metaoff.0")
# Counts in corpus.jsonl, recorded when the fixtures were made.
KNOWN_COUNTS = {b"the": 3, b"cat": 8, b"or or": 1, b"dog on": 1, b" a ": 1, b"zebra": 0, b"e": 18}


def corpus_texts():
    with open(CORPUS, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def brute_count(texts, pattern: bytes) -> int:
    return sum(
        sum(1 for i in range(len(t) - len(pattern) + 1) if t[i:i + len(pattern)] == pattern)
        for t in (t.encode() for t in texts)
    )


@pytest.mark.parametrize("fixture, has_manifest", [("anygram-v1-bytes", True), ("infinigram-2.6.0-bytes", False)])
def test_committed_fixtures_open_and_answer_forever(fixture, has_manifest):
    texts = corpus_texts()
    engine = anygram.Engine.open(os.path.join(FIXTURES, fixture))
    assert (engine.manifest is not None) == has_manifest
    assert engine.token_width == 1 and engine.num_documents == len(texts) == 24
    for pattern, known in KNOWN_COUNTS.items():
        assert engine.count(list(pattern)) == known == brute_count(texts, pattern), pattern
    for i in (0, 7, 23):
        doc = engine.get_doc_by_ix(i, max_disp_len=10**6)
        assert doc["token_ids"] == list(texts[i].encode())
        assert json.loads(doc["metadata"])["metadata"] == {"id": i}
    assert engine.verify()["ok"]


def test_fixture_shard_files_are_infinigrams_and_todays_builder_writes_them(tmp_path):
    ours, theirs = (os.path.join(FIXTURES, f) for f in ("anygram-v1-bytes", "infinigram-2.6.0-bytes"))
    shutil.copy(CORPUS, tmp_path / "corpus.jsonl")  # metadata records the path relative to the inputs
    today = anygram.build_index(str(tmp_path / "corpus.jsonl"), str(tmp_path / "today"), progress=False,
                                accelerator=True).output
    for name in SHARD_FILES:
        committed = Path(ours, name).read_bytes()
        assert committed == Path(theirs, name).read_bytes(), name
        assert committed == Path(today, name).read_bytes(), name


def key_paths(value, prefix=()):
    """Every key path of a JSON value; lists are walked with "[]" for their items, and
    the ``files`` map's keys (file names, not fields) with "*"."""
    if isinstance(value, dict):
        for key, item in value.items():
            step = "*" if prefix == ("files",) else key
            yield prefix + (step,)
            yield from key_paths(item, prefix + (step,))
    elif isinstance(value, list):
        for item in value:
            yield from key_paths(item, prefix + ("[]",))


def test_every_manifest_field_python_writes_is_a_field_of_the_core_type(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"doc {i} " * i, "n": i}) + "\n" for i in range(30)))
    # External suffix arrays and two shards: the build record's optional fields are there too.
    output = anygram.build_index(str(corpus), str(tmp_path / "idx"), shards=2, progress=False,
                                 _part_tokens=64).output
    with open(os.path.join(output, "anygram.json"), encoding="utf-8") as f:
        written = json.load(f)
    assert any("part_tokens" in r for r in written["build"]["suffix_arrays"])
    through_the_type = _anygram.check_manifest(written)
    assert set(key_paths(written)) == set(key_paths(through_the_type))
    assert through_the_type == written
    # A field the type does not know is refused, on write and on read.
    for where in (written, written["shards"][0], written["build"], written["build"]["suffix_arrays"][0]):
        where["surprise"] = 1
        with pytest.raises(InvalidArgumentError, match="surprise"):
            anygram.manifest.write_manifest(output, written)
        with open(os.path.join(output, "anygram.json"), "w", encoding="utf-8") as f:
            json.dump(written, f)
        with pytest.raises(CorruptIndexError, match="surprise"):
            anygram.Engine.open(output)
        del where["surprise"]


def test_a_lost_manifest_is_refused_for_an_index_of_bytes(tmp_path):
    index = tmp_path / "idx"
    shutil.copytree(os.path.join(FIXTURES, "anygram-v1-bytes"), index)
    os.remove(index / "anygram.json")
    with pytest.raises(CorruptIndexError, match="anygram.format.*without its manifest"):
        anygram.Engine.open(str(index))


def test_format_constants_come_from_the_core():
    assert anygram.manifest.FORMAT_VERSION == _anygram.FORMAT_VERSION
    assert anygram.manifest.MARKER_FILE in _anygram.ANYGRAM_ONLY_FILES
    # infini-gram's pointer size: ceil(log2(bytes) / 8), at least 1.
    assert [_anygram.ptr_size_for(n) for n in (1, 256, 257, 65536, 65537, 1 << 24, (1 << 24) + 1)] == \
        [1, 1, 2, 2, 3, 3, 4]
    assert _anygram.token_parameters(2) == (0xFFFF, 0xFFFF)
    with pytest.raises(InvalidArgumentError, match="does not fit 1-byte tokens"):
        _anygram.token_parameters(1, 256)
    with pytest.raises(InvalidArgumentError, match="outside the vocabulary"):
        _anygram.token_parameters(2, 100, 100)
    assert _anygram.tokenizer_token_width(50257) == 2 and _anygram.tokenizer_token_width(0xFFFF) == 4


def test_token_arrays_through_the_core_writer_make_the_same_index(tmp_path):
    """A Ray task or a script with its own tokenizer hands token arrays (and metadata
    lines) to the core's writer: the shard files are the builder's, byte for byte."""
    import numpy as np

    fixture = os.path.join(FIXTURES, "anygram-v1-bytes")
    lines = Path(fixture, "metadata.0").read_bytes().splitlines(keepends=True)
    output = tmp_path / "written"
    writer = _anygram.IndexWriter(str(output), 1, metadata=True)
    for text, line in zip(corpus_texts(), lines):
        writer.add(np.frombuffer(text.encode(), dtype=np.uint8), line)
    assert not output.exists()  # published only by finish
    manifest = writer.finish()
    assert manifest == anygram.manifest.read_manifest(str(output))
    for name in SHARD_FILES + ("accel.0",):
        assert Path(output, name).read_bytes() == Path(fixture, name).read_bytes(), name
    assert anygram.Engine.open(str(output)).count(list(b"cat")) == KNOWN_COUNTS[b"cat"]
    with pytest.raises(anygram.errors.InvalidArgumentError, match="outside the vocabulary"):
        _anygram.IndexWriter(str(tmp_path / "other"), 1, vocab_size=100).add([1, 200])
