"""Bad input gets a clear exception naming the problem: never a crash, a hang,
a wrong answer or a half-written index."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import anygram
from anygram.errors import (
    BuildError,
    CorruptIndexError,
    IndexNotFoundError,
    InvalidArgumentError,
    InvalidQueryError,
    TokenizerMismatchError,
)
from conftest import build_from_tokens, kill_when_paused


@pytest.fixture
def small_index(tmp_path):
    docs = [[1, 2, 3, 4], [2, 3], [5], []]
    return build_from_tokens(str(tmp_path / "src"), docs, 2, 100, 0)


@pytest.fixture
def text_index(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"document {i} says hello"}) + "\n" for i in range(50)))
    return anygram.build_index(str(corpus), str(tmp_path / "text-index"), progress=False).output


def test_next_token_as_text(text_index):
    engine = anygram.Engine.open(text_index)
    assert engine.prob("hell", "o") == engine.prob("hell", ord("o"))
    with pytest.raises(InvalidQueryError, match="must be exactly one"):
        engine.prob("hel", "lo")
    assert list(engine.prob_batch(["hell", "sa"], ["o", ord("y")])["cont_cnt"]) == [50, 50]


def test_token_outside_vocabulary(small_index):
    engine = anygram.Engine.open(small_index)
    with pytest.raises(InvalidQueryError, match="token id 100 at position 1 is outside the vocabulary"):
        engine.count([1, 100])
    with pytest.raises(InvalidQueryError, match="-1"):
        engine.count([-1])
    with pytest.raises(InvalidQueryError, match="outside the vocabulary"):
        engine.prob([1], 2**40)
    with pytest.raises(InvalidQueryError, match="query 1"):
        engine.count_batch([[1], [1, 2, 300]])
    with pytest.raises(ValueError):  # InvalidQueryError is a ValueError
        engine.count([65535])


def test_malformed_queries(small_index):
    engine = anygram.Engine.open(small_index)
    with pytest.raises(InvalidQueryError, match="no tokenizer"):
        engine.count("text on an index without a tokenizer")
    with pytest.raises(InvalidQueryError, match="must be a string, a list of token ids"):
        engine.count({"a": 1})
    with pytest.raises(InvalidQueryError, match="max_support"):
        engine.ntd([1], max_support=0)
    with pytest.raises(InvalidQueryError, match=r"n 0 is out of range: it must be an integer in \[1, "):
        engine.prob([1], 2, n=0)
    with pytest.raises(InvalidQueryError, match="2 contexts but 1 tokens"):
        engine.prob_batch([[1], [2]], [3])
    with pytest.raises(InvalidQueryError, match="1-D"):
        engine.count(np.zeros((2, 2), dtype=np.int64))
    # numpy arrays of any integer type are fine
    assert engine.count(np.array([2, 3], dtype=np.uint16)) == engine.count([2, 3]) == 2


def test_missing_index_and_files(small_index, tmp_path):
    with pytest.raises(IndexNotFoundError):
        anygram.Engine.open(str(tmp_path / "nope"))
    broken = str(tmp_path / "broken")
    shutil.copytree(small_index, broken)
    os.remove(os.path.join(broken, "table.0"))
    with pytest.raises(IndexNotFoundError, match="table.0"):
        anygram.Engine.open(broken)
    # infini-gram segfaults here; we raise in a subprocess too (no crash of the interpreter).
    code = f"import anygram\ntry:\n anygram.Engine.open({broken!r})\nexcept anygram.AnygramError as e:\n print('raised', type(e).__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and "raised IndexNotFoundError" in out.stdout


@pytest.mark.parametrize("victim", ["tokenized.0", "table.0", "offset.0", "metaoff.0"])
def test_truncated_files(small_index, tmp_path, victim):
    broken = str(tmp_path / "trunc")
    shutil.copytree(small_index, broken)
    path = os.path.join(broken, victim)
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:-1])
    with pytest.raises(CorruptIndexError, match=victim.replace(".", r"\.")):
        anygram.Engine.open(broken)


def test_truncated_infinigram_index_without_manifest(small_index, tmp_path):
    broken = str(tmp_path / "nomanifest")
    shutil.copytree(small_index, broken)
    for name in ("anygram.json", anygram.manifest.MARKER_FILE):  # as infini-gram would have written it
        os.remove(os.path.join(broken, name))
    table = os.path.join(broken, "table.0")
    Path(table).write_bytes(Path(table).read_bytes()[:-3])
    with pytest.raises(CorruptIndexError):
        anygram.Engine.open(broken, token_width=2)


def test_corrupt_contents_found_by_verify(small_index, tmp_path):
    broken = str(tmp_path / "flipped")
    shutil.copytree(small_index, broken)
    table = os.path.join(broken, "table.0")
    data = bytearray(Path(table).read_bytes())
    data[0], data[2] = data[2], data[0]  # swap two pointers' low bytes: same size, wrong order
    Path(table).write_bytes(bytes(data))
    report = anygram.Engine.open(broken).verify()
    assert not report["ok"]
    assert any("checksum" in p for p in report["problems"])


def test_out_of_range_pointer_is_an_error_not_a_crash(small_index, tmp_path):
    broken = str(tmp_path / "badptr")
    shutil.copytree(small_index, broken)
    for name in ("anygram.json", anygram.manifest.MARKER_FILE):  # no size/checksum guard
        os.remove(os.path.join(broken, name))
    table = os.path.join(broken, "table.0")
    data = bytearray(Path(table).read_bytes())
    data[:1] = b"\xfe"
    Path(table).write_bytes(bytes(data))
    engine = anygram.Engine.open(broken, token_width=2, vocab_size=100)
    with pytest.raises(CorruptIndexError, match="outside the token grid"):
        for q in ([1], [2], [3], [5], [1, 2], []):
            engine.ntd(q)
    assert not engine.verify()["ok"]


def test_unsupported_manifest_version(small_index, tmp_path):
    broken = str(tmp_path / "future")
    shutil.copytree(small_index, broken)
    manifest = json.loads(Path(broken, "anygram.json").read_text())
    manifest["format_version"] = 99
    Path(broken, "anygram.json").write_text(json.dumps(manifest))
    with pytest.raises(CorruptIndexError, match="format version 99 is not supported"):
        anygram.Engine.open(broken)


def test_tokenizer_mismatch(tmp_path, text_index, shared_data):
    with pytest.raises(TokenizerMismatchError, match="UTF-8 bytes"):
        anygram.Engine.open(text_index, tokenizer=os.path.join(shared_data, "gpt2-tokenizer.json"))
    corpus = tmp_path / "g.jsonl"
    corpus.write_text(json.dumps({"text": "hello world"}) + "\n")
    gpt2 = os.path.join(shared_data, "gpt2-tokenizer.json")
    path = anygram.build_index(str(corpus), str(tmp_path / "g"), tokenizer=gpt2, progress=False).output
    other = tmp_path / "other.json"
    tok = json.loads(Path(gpt2).read_text())
    tok["model"]["vocab"]["hello"] = tok["model"]["vocab"].pop("hello", 0)
    tok["added_tokens"] = tok.get("added_tokens", [])[:0]
    Path(other).write_text(json.dumps(tok))
    with pytest.raises(TokenizerMismatchError, match="is not the one"):
        anygram.Engine.open(path, tokenizer=str(other))
    # "hello world" starts the document, so it is found as the build encoded it (verbatim);
    # a query gets a leading space by default, as infini-gram's service gives it.
    assert anygram.Engine.open(path, tokenizer=gpt2, verbatim=True).count("hello world") == 1
    assert anygram.Engine.open(path, tokenizer=gpt2).count("hello world") == 0
    assert anygram.Engine.open(path, tokenizer=gpt2).count("world") == 1


def test_bad_documents_are_counted_not_lost(tmp_path):
    corpus = tmp_path / "mixed.jsonl"
    lines = [
        json.dumps({"text": "good one", "id": 1}).encode(),
        b"{not json",
        json.dumps({"title": "no text"}).encode(),
        json.dumps({"text": 42}).encode(),
        b'{"text": "bad \xff utf8"}',
        json.dumps({"text": "good two"}).encode(),
    ]
    corpus.write_bytes(b"\n".join(lines) + b"\n")
    report = anygram.build_index(str(corpus), str(tmp_path / "mixed-index"), progress=False)
    assert report.num_documents == 2
    assert report.skipped == {"bad JSON": 1, "no 'text' field": 1, "'text' is not a string": 1, "bad UTF-8": 1}
    assert any("mixed.jsonl:2" in e for e in report.skipped_examples)
    manifest = json.loads(Path(report.output, "anygram.json").read_text())
    assert manifest["build"]["skipped_documents"]["bad JSON"] == 1
    with pytest.raises(BuildError, match="mixed.jsonl:2: bad JSON"):
        anygram.build_index(str(corpus), str(tmp_path / "strict-index"), strict=True, progress=False)
    assert not os.path.exists(tmp_path / "strict-index")
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".strict-index")]


def test_failed_build_leaves_nothing(tmp_path):
    with pytest.raises(BuildError):
        anygram.build_index(str(tmp_path / "missing.jsonl"), str(tmp_path / "out"), progress=False)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(BuildError, match="no readable documents"):
        anygram.build_index(str(empty), str(tmp_path / "out"), progress=False)
    assert os.listdir(tmp_path) == ["empty.jsonl"]


@pytest.mark.parametrize("step", ["tokenize", "split", "suffix_array.0", "publish"])
def test_killed_build_leaves_nothing_that_opens(tmp_path, step):
    """SIGKILL at a named step (the builder's ANYGRAM_BUILD_PAUSE_AT hook stops there and
    waits, so the kill lands exactly there, not at a moment chosen by a timer)."""
    import signal

    corpus = tmp_path / "big.jsonl"
    with open(corpus, "w") as f:
        for i in range(2000):
            f.write(json.dumps({"text": f"line {i} " * 20}) + "\n")
    out = tmp_path / "killed-index"
    code = f"import anygram; anygram.build_index({str(corpus)!r}, {str(out)!r}, progress=False)"
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, ANYGRAM_BUILD_PAUSE_AT=step))
    kill_when_paused(proc, step)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    with pytest.raises(IndexNotFoundError):
        anygram.Engine.open(str(out))


def test_existing_output_is_not_overwritten(tmp_path, text_index):
    corpus = tmp_path / "c.jsonl"
    # An index there (a rerun) has its own class; any other path there is only an InvalidArgumentError.
    with pytest.raises(anygram.IndexExistsError, match="already holds an index.*overwrite=True"):
        anygram.build_index(str(corpus), text_index, progress=False)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InvalidArgumentError, match="already exists") as refused:
        anygram.build_index(str(corpus), str(tmp_path / "notes.txt"), progress=False)
    assert not isinstance(refused.value, anygram.IndexExistsError)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    report = anygram.build_index(str(corpus), text_index, overwrite=True, progress=False)
    assert anygram.Engine.open(report.output).num_documents == 50


def test_compressed_and_text_inputs(tmp_path):
    import zstandard

    docs = [{"text": f"doc {i} alpha beta", "source": "s"} for i in range(10)]
    raw = "".join(json.dumps(d) + "\n" for d in docs).encode()
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(raw))
    (tmp_path / "b.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(raw))
    (tmp_path / "c.txt").write_text("alpha beta\ngamma\n")
    report = anygram.build_index(
        [str(tmp_path / "a.jsonl.gz"), str(tmp_path / "b.jsonl.zst"), str(tmp_path / "c.txt")],
        str(tmp_path / "multi"), shards=2, progress=False)
    engine = anygram.Engine.open(report.output)
    assert engine.num_documents == 21 and engine.num_shards == 2
    assert engine.count("alpha beta") == 21
    lines = Path(report.output, "metadata.0").read_text().splitlines()
    first = json.loads(lines[0])
    assert first == {"path": "a.jsonl.gz", "linenum": 0, "metadata": {"source": "s"}}
    by_line = anygram.build_index(str(tmp_path / "c.txt"), str(tmp_path / "lines"), text_mode="lines",
                                  progress=False)
    assert anygram.Engine.open(by_line.output).num_documents == 2


@pytest.fixture
def tokenizer_index(tmp_path):
    from trained_tokenizer import train_gpt2_like

    tokenizer = train_gpt2_like(str(tmp_path / "tokenizer.json"))
    corpus = tmp_path / "t.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"the cat {i}"}) + "\n" for i in range(10)))
    return anygram.build_index(str(corpus), str(tmp_path / "tok-index"), tokenizer=tokenizer,
                               progress=False).output


def _edit_manifest(index, **tokenizer_fields):
    path = os.path.join(index, "anygram.json")
    with open(path) as f:
        manifest = json.load(f)
    manifest["tokenizer"].update(tokenizer_fields)
    with open(path, "w") as f:
        json.dump(manifest, f)
    return manifest


def test_stored_tokenizer_hash_is_checked(tokenizer_index):
    engine = anygram.Engine.open(tokenizer_index)
    assert engine.tokenize_query("the cat", verbatim=True) == engine.tokenize("the cat")
    assert engine.count(engine.tokenize("the cat")) == 10
    stored = os.path.join(tokenizer_index, "tokenizer.json")
    recorded = engine.manifest["tokenizer"]["sha256"]
    with open(stored, "a") as f:
        f.write(" ")  # still a valid tokenizer.json, no longer the one the index was built with
    actual = anygram.tokenizer.file_sha256(stored)
    with pytest.raises(CorruptIndexError, match=f"sha256 {actual}.*records {recorded}"):
        anygram.Engine.open(tokenizer_index)
    os.remove(stored)
    with pytest.raises(CorruptIndexError, match="tokenizer file is missing"):
        anygram.Engine.open(tokenizer_index)


def test_tokenizer_file_never_leads_outside_the_index(tokenizer_index, tmp_path):
    """A manifest naming a file elsewhere (even one whose hash it records) is corrupt:
    opening an index must not read files outside its directory."""
    outside = tmp_path / "outside.json"
    shutil.copyfile(os.path.join(tokenizer_index, "tokenizer.json"), outside)
    for name in ["../outside.json", str(outside), "sub/tokenizer.json", "..", "", 7]:
        _edit_manifest(tokenizer_index, file=name)
        with pytest.raises(CorruptIndexError, match="not a plain file name"):
            anygram.Engine.open(tokenizer_index)
    # A link inside the index that leads out.
    os.symlink(outside, os.path.join(tokenizer_index, "link.json"))
    _edit_manifest(tokenizer_index, file="link.json")
    with pytest.raises(CorruptIndexError, match="leads outside the index directory"):
        anygram.Engine.open(tokenizer_index)
    _edit_manifest(tokenizer_index, file="tokenizer.json", sha256="not-a-hash")
    with pytest.raises(CorruptIndexError, match="sha256"):
        anygram.Engine.open(tokenizer_index)
