"""Builds that scale (issue 4): the external suffix sort against the in-memory one, the
memory budget measured on a real process, resuming builds killed with SIGKILL at every
step, automatic shards, streaming and Parquet input."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time

import numpy as np
import pytest

import anygram
from anygram.builder import parse_size
from anygram.corpus import SkipLog, read_documents
from anygram.errors import BuildError, InvalidArgumentError

from conftest import DTYPE, SEPARATOR, kill_when_paused

SHARD_FILES = ("tokenized", "table", "offset", "metadata", "metaoff")


def index_files(path):
    """Every file of an index but the manifest, and the manifest without its build record."""
    out = {}
    for name in sorted(os.listdir(path)):
        with open(os.path.join(path, name), "rb") as f:
            data = f.read()
        if name == "anygram.json":
            manifest = json.loads(data)
            build = manifest.pop("build")
            manifest["num_documents"] = build["num_documents"]
            data = json.dumps(manifest, sort_keys=True).encode()
        out[name] = data
    return out


def assert_same_index(a, b):
    fa, fb = index_files(a), index_files(b)
    assert sorted(fa) == sorted(fb)
    for name in fa:
        assert fa[name] == fb[name], name


def repetitive_docs(rng, num_docs, vocab, width):
    """Documents over a few tokens, many of them repeated whole or in long stretches, with
    the byte-order-sensitive token values of the width."""
    tricky = {1: [0, 1, 0x7F, 0xFE], 2: [0, 1, 0xFF, 0x100, 0xFF00, 0xFFFE],
              4: [0, 1, 0xFF, 0x100, 0x10000, 0x1000000, 0xFFFFFFFE]}[width]
    tokens = [t for t in tricky if t < vocab]
    base = [rng.choice(tokens) for _ in range(400)]
    docs = []
    for _ in range(num_docs):
        kind = rng.random()
        if kind < 0.3:
            start = rng.randrange(300)
            docs.append(base[start:start + rng.randrange(1, 100)])
        elif kind < 0.4:
            docs.append([tokens[0]] * rng.randrange(0, 60))
        else:
            docs.append([rng.choice(tokens[:2]) for _ in range(rng.randrange(0, 50))])
    return docs


def write_npy_corpus(directory, docs, width):
    os.makedirs(directory, exist_ok=True)
    flat = np.asarray([t for d in docs for t in d], dtype=DTYPE[width])
    np.save(os.path.join(directory, "corpus.npy"), flat)
    np.save(os.path.join(directory, "corpus.offsets.npy"), np.cumsum([0] + [len(d) for d in docs]).astype(np.int64))
    return os.path.join(directory, "corpus.npy")


@pytest.mark.parametrize("width", [1, 2, 4])
def test_external_build_is_byte_identical_to_in_memory(tmp_path, width):
    rng = random.Random(width)
    vocab = SEPARATOR[width]
    corpus = write_npy_corpus(str(tmp_path / "corpus"), repetitive_docs(rng, 300, vocab, width), width)
    common = dict(token_width=width, vocab_size=vocab, progress=False, shards=2)
    in_memory = anygram.build_index(corpus, str(tmp_path / "in-memory"), **common)
    external = anygram.build_index(corpus, str(tmp_path / "external"), _part_tokens=257, _overlap_tokens=3, **common)
    assert all(r["external"] and r["num_parts"] > 3 for r in external.suffix_arrays), external.suffix_arrays
    assert sum(r["runs_resorted"] for r in external.suffix_arrays) > 0
    assert not any(r["external"] for r in in_memory.suffix_arrays)
    assert_same_index(in_memory.output, external.output)
    assert anygram.Engine.open(external.output).verify()["ok"]


def _write_text_corpus(path, num_docs, seed=0):
    rng = random.Random(seed)
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    with open(path, "w") as f:
        for i in range(num_docs):
            text = " ".join(rng.choice(words) for _ in range(rng.randrange(50, 400)))
            if i % 7 == 0:  # repeated documents: long equal stretches
                text = "repeated " * 50 + text[:200]
            f.write(json.dumps({"text": text, "i": i}) + "\n")


def _run_build(args, env_extra=None, wait=True):
    code = "import sys, json, anygram; anygram.build_index(*json.loads(sys.argv[1]), **json.loads(sys.argv[2]))"
    env = dict(os.environ, **(env_extra or {}))
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(args[0]), json.dumps(args[1])],
                            stderr=subprocess.PIPE, text=True, env=env)
    if wait:
        proc.wait()
    return proc


def test_memory_budget_holds_for_a_real_process(tmp_path):
    """A corpus whose suffix array does not fit the budget builds externally with the peak
    resident set of the whole process (measured by the kernel) under the budget."""
    corpus = tmp_path / "c.jsonl"
    _write_text_corpus(corpus, 10000)  # ~12 MB of text: 12M one-byte tokens, ~95 MB to sort in memory
    reference = anygram.build_index(str(corpus), str(tmp_path / "ref"), progress=False)
    # The budget covers the whole process (~50 MiB of Python, numpy and anygram before sorting)
    # and a reserve, so it must leave less than the in-memory sort needs but room for parts.
    budget = 160 << 20
    code = ("import sys, anygram, json; r = anygram.build_index(sys.argv[1], sys.argv[2], mem=int(sys.argv[3]), "
            "progress=False); print(json.dumps(r.suffix_arrays))")
    timed = ["/usr/bin/time", "-v"] if os.path.exists("/usr/bin/time") else []
    proc = subprocess.run(timed + [sys.executable, "-c", code, str(corpus), str(tmp_path / "budget"), str(budget)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report[0]["external"] and report[0]["num_parts"] >= 2, report
    assert_same_index(reference.output, str(tmp_path / "budget"))
    if timed:
        peak_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
        assert peak_kib * 1024 < budget, (peak_kib, proc.stderr)


def test_too_small_a_budget_is_a_clear_error(tmp_path):
    corpus = tmp_path / "c.jsonl"
    _write_text_corpus(corpus, 200)
    with pytest.raises(InvalidArgumentError, match="raise the memory budget"):
        anygram.build_index(str(corpus), str(tmp_path / "out"), mem="40M", progress=False)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["c.jsonl"]


def test_the_command_line_names_the_flag_that_sets_the_budget(tmp_path):
    """The core and the Python API name the value (the memory budget), the command line adds
    its flag; neither says the other's words."""
    corpus = tmp_path / "c.jsonl"
    _write_text_corpus(corpus, 20)
    with pytest.raises(InvalidArgumentError) as raised:
        anygram.build_index(str(corpus), str(tmp_path / "out"), mem="40M", progress=False)
    assert "--" not in str(raised.value)
    proc = subprocess.run([sys.executable, "-m", "anygram.cli", "build", str(corpus), "-o", str(tmp_path / "out"),
                           "--mem", "40M", "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "raise the memory budget (--mem)" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value,expected", [("4G", 4 << 30), ("512M", 512 << 20), ("1.5GiB", 3 << 29),
                                            ("800000", 800000), (1234, 1234), ("2k", 2048), (None, None)])
def test_parse_size(value, expected):
    assert parse_size(value) == expected


@pytest.mark.parametrize("value", ["", "4X", "-1G", "0", "G", 0])
def test_parse_size_rejects(value):
    with pytest.raises(InvalidArgumentError, match="memory size"):
        parse_size(value)


# Checkpoints of a build with two shards, each sorted in several parts.
CHECKPOINTS = ["tokenize", "split", "suffix_array.0.part.2", "suffix_array.0", "suffix_array.1.part.1",
               "suffix_array.1", "publish"]


def test_killed_builds_resume_to_the_same_index(tmp_path):
    corpus = tmp_path / "c.jsonl"
    _write_text_corpus(corpus, 300)
    kwargs = dict(shards=2, progress=False, _part_tokens=20000, _overlap_tokens=16)
    reference = anygram.build_index(str(corpus), str(tmp_path / "reference"), **kwargs)
    assert reference.suffix_arrays[0]["num_parts"] >= 3
    out = tmp_path / "out"
    resumed_from = []
    for checkpoint in CHECKPOINTS:
        proc = _run_build(([str(corpus), str(out)], kwargs), {"ANYGRAM_BUILD_PAUSE_AT": checkpoint}, wait=False)
        # Wait for the build to reach the checkpoint, then kill it without warning.
        said = kill_when_paused(proc, checkpoint)
        assert ("resuming" in said) == (checkpoint != CHECKPOINTS[0]), said
        assert not out.exists(), checkpoint
        work = [p for p in tmp_path.iterdir() if p.name.startswith(".out.build-")]
        assert len(work) == 1
        steps = json.loads((work[0] / "journal.json").read_text())["steps"] if (work[0] / "journal.json").exists() \
            else {}
        resumed_from.append(sorted(steps))
    # The last kill was just before publishing: the resumed run has every step done.
    report = anygram.build_index(str(corpus), str(out), **kwargs)
    assert report.resumed_steps == ["tokenize", "split", "suffix_array.0", "suffix_array.1"]
    assert_same_index(reference.output, str(out))
    assert not [p for p in tmp_path.iterdir() if ".build-" in p.name]
    # Each run resumed where the one before stopped and finished one more step.
    assert resumed_from[0] == ["tokenize"] and resumed_from[-1] == sorted(report.resumed_steps)


@pytest.mark.parametrize("checkpoint", ["tokenize", "suffix_array.0.part.2", "suffix_array.1.part.1"])
def test_resume_from_each_kind_of_step(tmp_path, checkpoint):
    corpus = tmp_path / "c.jsonl"
    _write_text_corpus(corpus, 200, seed=3)
    kwargs = dict(shards=2, progress=False, _part_tokens=15000, _overlap_tokens=4)
    reference = anygram.build_index(str(corpus), str(tmp_path / "reference"), **kwargs)
    out = tmp_path / "out"
    proc = _run_build(([str(corpus), str(out)], kwargs), {"ANYGRAM_BUILD_PAUSE_AT": checkpoint}, wait=False)
    kill_when_paused(proc, checkpoint)
    report = anygram.build_index(str(corpus), str(out), **kwargs)
    assert report.resumed_steps
    assert_same_index(reference.output, str(out))


def test_kills_at_random_moments_never_publish_a_partial_index(tmp_path):
    corpus = tmp_path / "c.jsonl"
    _write_text_corpus(corpus, 1500, seed=5)
    kwargs = dict(shards=3, progress=False, _part_tokens=60000, _overlap_tokens=8)
    reference = anygram.build_index(str(corpus), str(tmp_path / "reference"), **kwargs)
    out = tmp_path / "out"
    rng = random.Random(0)
    for _ in range(4):
        proc = _run_build(([str(corpus), str(out)], kwargs), wait=False)
        time.sleep(rng.uniform(0.3, 2.0))
        proc.kill()
        proc.wait()
        proc.stderr.close()
        if out.exists():  # it finished before the kill: then it is whole
            break
    report = anygram.build_index(str(corpus), str(out), overwrite=out.exists(), **kwargs)
    assert_same_index(reference.output, report.output)


def test_other_arguments_do_not_reuse_an_unfinished_build(tmp_path, capfd):
    corpus = tmp_path / "c.jsonl"
    _write_text_corpus(corpus, 100)
    out = tmp_path / "out"
    proc = _run_build(([str(corpus), str(out)], dict(progress=False, shards=2)),
                      {"ANYGRAM_BUILD_PAUSE_AT": "split"}, wait=False)
    kill_when_paused(proc, "split")
    report = anygram.build_index(str(corpus), str(out), progress=False, shards=1)
    assert report.resumed_steps == [] and report.num_shards == 1
    assert "different arguments" in capfd.readouterr().err
    assert not [p for p in tmp_path.iterdir() if ".build-" in p.name]


def test_auto_shards_are_the_fewest_that_sort_in_memory():
    from anygram.builder import _choose_shards

    mib = 1 << 20
    held = 100 * mib
    for width in (1, 2, 4):
        for mem in (512 * mib, 1024 * mib, 4096 * mib):
            available = mem - held - max(48 * mib, mem // 16)
            per_shard = anygram._anygram.max_in_memory_tokens(available, width)
            for num_tokens in (1000, per_shard // 2, per_shard, 3 * per_shard + 17, 10 * per_shard):
                shards = _choose_shards("auto", num_tokens, 10**9, width, mem, held=held)
                # Each shard (cut at document starts: 10% slack) sorts in memory...
                assert anygram._anygram.in_memory_sort_bytes(num_tokens // shards, width) <= available * 0.91
                # ...and with one shard fewer they would not, within the slack.
                if shards > 1:
                    assert num_tokens / (shards - 1) > per_shard * 0.9 - 1
    assert _choose_shards("auto", 10**9, 3, 2, 1024 * mib, held=held) == 3  # never more shards than documents
    with pytest.raises(InvalidArgumentError, match="raise the memory budget"):
        _choose_shards("auto", 10**9, 10**6, 2, 150 * mib, held=held)


def test_auto_shards_end_to_end(tmp_path):
    corpus = tmp_path / "c.jsonl"
    _write_text_corpus(corpus, 6000, seed=1)
    single = anygram.build_index(str(corpus), str(tmp_path / "one"), progress=False)
    # In a fresh process: room to sort a few million one-byte tokens in memory, so the
    # 7M-token corpus needs several shards.
    code = ("import sys, json, anygram; from anygram import _anygram\n"
            "mem = _anygram.resident_bytes() + (48 << 20) + _anygram.in_memory_sort_bytes(2_500_000, 1) + (16 << 20)\n"
            "r = anygram.build_index(sys.argv[1], sys.argv[2], shards='auto', mem=mem, progress=False)\n"
            "print(json.dumps(r.num_shards))")
    proc = subprocess.run([sys.executable, "-c", code, str(corpus), str(tmp_path / "auto")], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert 2 <= json.loads(proc.stdout) <= 8
    one, auto = anygram.Engine.open(single.output), anygram.Engine.open(str(tmp_path / "auto"))
    assert auto.num_documents == 6000 and len(auto.info()["shards"]) >= 2
    for query in ["alpha beta", "repeated repeated", "mu", "gamma delta epsilon", "zeta zeta zeta"]:
        assert one.count(query) == auto.count(query)
    with pytest.raises(InvalidArgumentError, match="shards"):
        anygram.build_index(str(corpus), str(tmp_path / "bad"), shards="many", progress=False)


def test_compressed_input_streams(tmp_path):
    import gzip

    import zstandard

    rng = random.Random(4)
    lines = [json.dumps({"text": f"document {i} " + "%x" % rng.getrandbits(4000)}) + "\n" for i in range(3000)]
    raw = "".join(lines).encode()
    (tmp_path / "a.jsonl.zst").write_bytes(zstandard.ZstdCompressor(level=1).compress(raw))
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(raw, compresslevel=1))
    for name in ("a.jsonl.zst", "b.jsonl.gz"):
        path = str(tmp_path / name)
        docs = read_documents(path, SkipLog())
        first = next(docs)
        # The first document arrives after reading a small part of the file, not all of it.
        assert first.text.startswith("document 0") and first.input_done < os.path.getsize(path) / 2
        count, last_done = 1, first.input_done
        for doc in docs:
            assert doc.input_done >= last_done
            last_done = doc.input_done
            count += 1
        assert count == 3000 and last_done == os.path.getsize(path)


def test_parquet_input_matches_jsonl(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rng = random.Random(2)
    texts = [" ".join(rng.choice(["a", "bc", "déf", "g"]) for _ in range(rng.randrange(1, 30))) for _ in range(500)]
    texts[7] = None
    table = pa.table({"text": texts, "id": list(range(500)), "score": [i / 3 for i in range(500)]})
    pq.write_table(table, tmp_path / "c.parquet", row_group_size=128)
    with open(tmp_path / "c.jsonl", "w") as f:
        for i, t in enumerate(texts):
            if t is not None:
                f.write(json.dumps({"text": t, "id": i}) + "\n")
    from_parquet = anygram.build_index(str(tmp_path / "c.parquet"), str(tmp_path / "pq"), progress=False)
    from_jsonl = anygram.build_index(str(tmp_path / "c.jsonl"), str(tmp_path / "js"), progress=False)
    assert from_parquet.num_documents == 499 and from_parquet.skipped == {"'text' is null": 1}
    for name in ("tokenized.0", "table.0", "offset.0"):
        assert (tmp_path / "pq" / name).read_bytes() == (tmp_path / "js" / name).read_bytes()
    first = json.loads((tmp_path / "pq" / "metadata.0").read_text().splitlines()[8])
    assert first["metadata"] == {"id": 9, "score": 3.0} and first["linenum"] == 9
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "other.parquet")
    with pytest.raises(BuildError, match="no 'text' column"):
        anygram.build_index(str(tmp_path / "other.parquet"), str(tmp_path / "o"), progress=False)
    assert anygram.build_index(str(tmp_path / "other.parquet"), str(tmp_path / "o"), text_field="body",
                               progress=False).num_documents == 1
