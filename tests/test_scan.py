"""Scans (contamination, self and cross dedup) against brute-force oracles, planted
contamination, rebuilds of deduplicated corpora, and the CLI (including resuming)."""

from __future__ import annotations

import gzip
import json
import os
import random
import string
from typing import Dict, List, Sequence

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anygram
from anygram import scan
from anygram.cli import main
from anygram.errors import InvalidArgumentError, InvalidQueryError, TokenizerMismatchError
from conftest import SEPARATOR, build_from_tokens

SETTINGS = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


# ------------------------------------------------------------------ oracles


def occurs(docs: Sequence[Sequence[int]], needle: Sequence[int]) -> bool:
    n = len(needle)
    return any(list(d[i : i + n]) == list(needle) for d in docs for i in range(len(d) - n + 1))


def brute_ms(docs, query) -> List[int]:
    out = []
    for i in range(len(query)):
        length = 0
        while i + length < len(query) and occurs(docs, query[i : i + length + 1]):
            length += 1
        out.append(length)
    return out


def brute_covered(ms: List[int], min_len: int) -> int:
    covered = set()
    for i, m in enumerate(ms):
        if m >= min_len:
            covered.update(range(i, i + m))
    return len(covered)


def union_ranges(marked: List[bool], min_len: int) -> List[List[int]]:
    covered = [False] * len(marked)
    for a, m in enumerate(marked):
        if m:
            for p in range(a, a + min_len):
                covered[p] = True
    out, i = [], 0
    while i < len(covered):
        if covered[i]:
            j = i
            while j < len(covered) and covered[j]:
                j += 1
            out.append([i, j])
            i = j
        else:
            i += 1
    return out


def brute_dedup_self(docs, min_len) -> Dict[int, List[List[int]]]:
    """The definition: a window goes when an earlier corpus position holds the same tokens."""
    out = {}
    for d, doc in enumerate(docs):
        marked = []
        for a in range(len(doc)):
            window = doc[a : a + min_len]
            marked.append(
                a + min_len <= len(doc)
                and (occurs(docs[:d], window) or any(doc[b : b + min_len] == window for b in range(a)))
            )
        ranges = union_ranges(marked, min_len)
        if ranges:
            out[d] = ranges
    return out


def brute_dedup_against(docs, other, min_len) -> Dict[int, List[List[int]]]:
    out = {}
    for d, doc in enumerate(docs):
        marked = [a + min_len <= len(doc) and occurs(other, doc[a : a + min_len]) for a in range(len(doc))]
        ranges = union_ranges(marked, min_len)
        if ranges:
            out[d] = ranges
    return out


def repeated_windows(docs, n) -> List[tuple]:
    seen, repeats = set(), []
    for doc in docs:
        for a in range(len(doc) - n + 1):
            w = tuple(doc[a : a + n])
            if w in seen:
                repeats.append(w)
            seen.add(w)
    return repeats


# --------------------------------------------------------------- strategies


def corpus_strategy():
    """Width, documents over a tiny vocabulary (repeats everywhere, also across document
    boundaries), shard count."""
    return st.sampled_from([1, 2, 4]).flatmap(
        lambda width: st.tuples(
            st.just(width),
            st.lists(st.lists(st.integers(0, 3), max_size=14), min_size=1, max_size=7),
            st.integers(1, 2),
        )
    )


def _build(tmp_path, docs, width, shards=1, name="index"):
    # Width 1 indexes carry the UTF-8 byte tokenizer, whose vocabulary is every byte value.
    path = build_from_tokens(
        str(tmp_path / name),
        docs,
        width,
        vocab_size=255 if width == 1 else 5,
        eos_token_id=4,
        shards=min(shards, len(docs)),
    )
    return anygram.Engine.open(path)


# -------------------------------------------------------- oracle properties


@SETTINGS
@given(
    corpus=corpus_strategy(),
    queries=st.lists(st.lists(st.integers(0, 3), max_size=16), min_size=1, max_size=4),
    min_len=st.integers(1, 4),
)
def test_contamination_agrees_with_brute_force(tmp_path_factory, corpus, queries, min_len):
    width, docs, shards = corpus
    engine = _build(tmp_path_factory.mktemp("c"), docs, width, shards)
    # The end of one document followed by the start of the next: never one match.
    across = docs[0][-3:] + (docs[1][:3] if len(docs) > 1 else [])
    queries = queries + [across]
    report = anygram.contamination(engine, queries, min_len=min_len, threshold=0.5, k=2)
    assert report.summary["num_examples"] == len(queries)
    for query, r in zip(queries, report.examples):
        ms = brute_ms(docs, query)
        covered = brute_covered(ms, min_len)
        assert r["num_tokens"] == len(query)
        assert r["covered_tokens"] == covered
        assert r["contaminated"] == (bool(query) and covered / len(query) >= 0.5)
        longest = max(ms, default=0)
        assert r["longest_match"]["length"] == longest
        if longest:
            span = r["longest_match"]["token_ids"]
            assert span == query[ms.index(longest) : ms.index(longest) + longest]
            count = sum(1 for d in docs for i in range(len(d) - longest + 1) if d[i : i + longest] == span)
            assert r["longest_match"]["count"] == count
            assert len(r["occurrences"]) == min(2, count)
            for o in r["occurrences"]:
                assert docs[o["doc_ix"]][o["offset"] : o["offset"] + longest] == span


@SETTINGS
@given(corpus=corpus_strategy(), min_len=st.integers(1, 5))
def test_dedup_self_agrees_with_brute_force(tmp_path_factory, corpus, min_len):
    width, docs, shards = corpus
    engine = _build(tmp_path_factory.mktemp("d"), docs, width, shards)
    report = anygram.dedup(engine, min_len=min_len)
    assert report.ranges == brute_dedup_self(docs, min_len)
    assert report.summary["tokens_removed"] == sum(e - s for r in report.ranges.values() for s, e in r)


@SETTINGS
@given(
    corpus=corpus_strategy(),
    other=st.lists(st.lists(st.integers(0, 3), max_size=14), min_size=1, max_size=5),
    min_len=st.integers(1, 5),
)
def test_dedup_against_agrees_with_brute_force(tmp_path_factory, corpus, other, min_len):
    width, docs, shards = corpus
    tmp = tmp_path_factory.mktemp("x")
    engine = _build(tmp, docs, width, shards)
    against = _build(tmp, other, width, 1, name="other")
    expected = brute_dedup_against(docs, other, min_len)
    for method in ("merge", "matching"):
        assert anygram.dedup(engine, min_len=min_len, against=against, method=method).ranges == expected


@SETTINGS
@given(
    corpus=corpus_strategy(),
    other=st.lists(st.lists(st.integers(0, 3), max_size=14), min_size=1, max_size=5),
    min_len=st.integers(1, 5),
)
def test_dedup_against_another_width_agrees_with_brute_force(tmp_path_factory, corpus, other, min_len):
    # Different token widths: matching statistics per chunk of documents, not the merge.
    width, docs, shards = corpus
    tmp = tmp_path_factory.mktemp("xw")
    engine = _build(tmp, docs, width, shards)
    against = _build(tmp, other, 4 if width != 4 else 2, 1, name="other")
    assert [u.shard for u in scan.dedup_scan._dedup_units(engine, against)][0] >= 0
    with pytest.raises(InvalidArgumentError, match="equal token widths"):
        anygram.dedup(engine, min_len=min_len, against=against, method="merge")
    report = anygram.dedup(engine, min_len=min_len, against=against)
    assert report.ranges == brute_dedup_against(docs, other, min_len)


# ------------------------------------------------------ rebuilding cleaned corpora


def _text(path) -> str:
    with open(path) as f:
        return f.read()


def _bytes(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _read_jsonl(path):
    opener = zstandard.open if path.endswith(".zst") else (gzip.open if path.endswith(".gz") else open)
    with opener(path, "rt") as f:
        return [json.loads(line) for line in f]


@SETTINGS
@given(corpus=corpus_strategy(), min_len=st.integers(2, 5))
def test_dedup_self_cleaned_corpus_has_no_repeats(tmp_path_factory, corpus, min_len):
    width, docs, shards = corpus
    tmp = tmp_path_factory.mktemp("w")
    engine = _build(tmp, docs, width, shards)
    split = str(tmp / "split.jsonl.zst")
    joined = str(tmp / "joined.jsonl")
    report = anygram.dedup(engine, min_len=min_len, write=split, split=True, token_ids=True)
    anygram.dedup(engine, min_len=min_len, write=joined, token_ids=True)
    pieces = [r["token_ids"] for r in _read_jsonl(split)]
    assert all(pieces), "empty pieces are not written"
    # Rebuild an index from the cleaned pieces: it has nothing left to remove.
    if pieces:
        rebuilt = _build(tmp, pieces, width, 1, name="rebuilt")
        assert anygram.dedup(rebuilt, min_len=min_len).ranges == {}
    assert repeated_windows(pieces, min_len) == []
    # Joined: one line per document, its kept tokens; documents left empty are dropped.
    expected = []
    for d, doc in enumerate(docs):
        removed = {p for s, e in report.ranges.get(d, []) for p in range(s, e)}
        kept = [t for p, t in enumerate(doc) if p not in removed]
        if kept or not removed:
            expected.append(kept)
    assert [r["token_ids"] for r in _read_jsonl(joined)] == expected
    kept = sum(len(p) for p in pieces)
    assert kept == sum(len(d) for d in docs) - report.summary["tokens_removed"]


@SETTINGS
@given(
    corpus=corpus_strategy(),
    other=st.lists(st.lists(st.integers(0, 3), max_size=14), min_size=1, max_size=5),
    min_len=st.integers(2, 5),
)
def test_dedup_against_cleaned_corpus_shares_nothing(tmp_path_factory, corpus, other, min_len):
    width, docs, shards = corpus
    tmp = tmp_path_factory.mktemp("wx")
    engine = _build(tmp, docs, width, shards)
    against = _build(tmp, other, width, 1, name="other")
    out = str(tmp / "clean.jsonl")
    anygram.dedup(engine, min_len=min_len, against=against, write=out, split=True, token_ids=True)
    pieces = [r["token_ids"] for r in _read_jsonl(out)]
    for piece in pieces:
        assert not any(occurs(other, piece[a : a + min_len]) for a in range(len(piece) - min_len + 1))
    # An index rebuilt from the cleaned pieces shares no window with the other one.
    if pieces:
        rebuilt = _build(tmp, pieces, width, 1, name="rebuilt")
        assert anygram.dedup(rebuilt, min_len=min_len, against=against).ranges == {}


# ------------------------------------------------------ planted contamination


def _random_text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.ascii_lowercase + "     ") for _ in range(n))


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A UTF-8-byte corpus with eval examples planted verbatim, with one edit, and not at all."""
    rng = random.Random(7)
    tmp = tmp_path_factory.mktemp("planted")
    verbatim = [_random_text(rng, 120) for _ in range(4)]
    edited_src = [_random_text(rng, 120) for _ in range(4)]
    clean = [_random_text(rng, 120) for _ in range(4)]
    docs = []
    for i in range(40):
        text = _random_text(rng, 300)
        if i < 4:
            text = text[:100] + verbatim[i] + text[100:]
        elif i < 8:
            text = text[:50] + edited_src[i - 4] + text[50:]
        docs.append({"text": text, "source": f"doc{i}"})
    corpus = tmp / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    index = str(tmp / "index")
    anygram.build_index(str(corpus), index, progress=False)
    # Edit one character at position 30 of each edited example.
    edited = [s[:30] + "X" + s[31:] for s in edited_src]
    examples = (
        [{"id": f"v{i}", "question": s[:70], "answer": s[70:]} for i, s in enumerate(verbatim)]
        + [{"id": f"e{i}", "question": s[:70], "answer": s[70:]} for i, s in enumerate(edited)]
        + [{"id": f"c{i}", "question": s[:70], "answer": s[70:]} for i, s in enumerate(clean)]
    )
    eval_path = tmp / "eval.jsonl"
    eval_path.write_text("".join(json.dumps(e) + "\n" for e in examples))
    return {"index": index, "eval": str(eval_path), "examples": examples, "tmp": tmp}


def test_planted_examples_are_found(planted):
    engine = anygram.Engine.open(planted["index"])
    report = anygram.contamination(
        engine, planted["examples"], min_len=20, threshold=0.8, fields=["question", "answer"], k=3
    )
    by_id = {r["id"]: r for r in report.examples}
    for i in range(4):
        r = by_id[f"v{i}"]
        assert r["coverage"] == 1.0 and r["contaminated"]
        assert r["longest_match"]["length"] == 70 and r["longest_match"]["field"] == "question"
        assert r["longest_match"]["text"] == planted["examples"][i]["question"]
        assert [o["metadata"]["metadata"]["source"] for o in r["occurrences"]] == [f"doc{i}"]
        assert r["occurrences"][0]["offset"] == 100
        # Fields are scanned on their own: the answer's longest match ends at its end.
        assert r["fields"]["answer"]["covered"] == [[0, 50]]
        r = by_id[f"e{i}"]
        # One edited byte at 30 of the question: everything else is covered.
        assert r["fields"]["question"]["covered"] == [[0, 30], [31, 70]]
        assert r["covered_tokens"] == 119 and r["contaminated"]
        assert r["occurrences"][0]["metadata"]["metadata"]["source"] == f"doc{i + 4}"
        r = by_id[f"c{i}"]
        assert r["covered_tokens"] == 0 and not r["contaminated"]
    s = report.summary
    assert (s["num_examples"], s["num_contaminated"], s["num_with_any_match"]) == (12, 8, 8)
    assert s["histogram"]["counts"] == [4, 0, 0, 0, 0, 0, 0, 0, 0, 8]
    assert {b["id"] for b in s["top"][:4]} == {f"v{i}" for i in range(4)}


def test_contamination_errors(planted):
    engine = anygram.Engine.open(planted["index"])
    with pytest.raises(InvalidArgumentError, match="no field 'nope'"):
        anygram.contamination(engine, planted["examples"], fields=["nope"])
    with pytest.raises(InvalidArgumentError, match="no 'text' field"):
        anygram.contamination(engine, [{"q": "x"}])
    with pytest.raises(InvalidArgumentError, match="min_len"):
        anygram.contamination(engine, ["abc"], min_len=0)
    with pytest.raises(InvalidArgumentError, match="threshold"):
        anygram.contamination(engine, ["abc"], threshold=2.0)
    with pytest.raises(InvalidArgumentError, match="integers only"):
        anygram.contamination(engine, [{"text": [1, "two"]}])
    with pytest.raises(InvalidQueryError, match="outside the vocabulary"):
        anygram.contamination(engine, [[1, 2, 300]])
    with pytest.raises(InvalidArgumentError, match="min_len"):
        anygram.dedup(engine, min_len=0)


# ------------------------------------------------------------------------ CLI


def test_contamination_cli_and_resume(planted, capsys):
    tmp = planted["tmp"]
    out, summary, report = str(tmp / "out.jsonl"), str(tmp / "summary.json"), str(tmp / "report.html")
    args = [
        "contamination",
        "--index",
        planted["index"],
        "--eval",
        planted["eval"],
        "--field",
        "question",
        "--field",
        "answer",
        "--min-len",
        "20",
        "--threshold",
        "0.8",
        "--out",
        out,
        "--batch-size",
        "5",
    ]
    assert main(args + ["--summary", summary, "--html", report, "-q", "--format", "table"]) == 0
    table = capsys.readouterr().out
    assert "contaminated          8 (66.67%" in table
    full = _text(out).splitlines()
    assert len(full) == 12
    first = json.loads(_text(summary))
    assert first["num_contaminated"] == 8
    assert "<mark>" in _text(report) and "<svg" in _text(report)
    # An interrupted run: 7 complete lines and half of the 8th. The rerun continues.
    with open(out, "w") as f:
        f.write("\n".join(full[:7]) + "\n" + full[7][:30])
    assert main(args + ["--summary", summary, "-q"]) == 0
    assert _text(out).splitlines() == full
    assert json.loads(_text(summary)) == first
    # Other arguments on the same output: refused, unless --restart.
    assert main(args[:-4] + ["--min-len", "30", "--out", out, "-q"]) == 2
    assert "--restart" in capsys.readouterr().err
    assert main(args[:-4] + ["--min-len", "30", "--out", out, "-q", "--restart", "--json"]) == 0


def test_contamination_cli_errors(planted, capsys):
    base = ["contamination", "--index", planted["index"], "--eval", planted["eval"], "-q"]
    assert main(base + ["--field", "nope"]) == 2
    assert "no field 'nope'" in capsys.readouterr().err
    assert main(["contamination", "--index", planted["index"], "--eval", "/nonexistent.jsonl", "-q"]) == 2
    assert "no such eval file" in capsys.readouterr().err
    bad = planted["tmp"] / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{not json\n')
    assert main(["contamination", "--index", planted["index"], "--eval", str(bad), "-q"]) == 2
    assert "bad.jsonl:2: not valid JSON" in capsys.readouterr().err


def test_dedup_cli_self_cross_and_resume(tmp_path, capsys):
    rng = random.Random(3)
    shared = [_random_text(rng, 80) for _ in range(3)]
    # A letter unique to each document on both sides of its shared span stops matches there.
    docs = [
        {
            "text": _random_text(rng, 100)
            + chr(65 + i)
            + shared[i % 3]
            + chr(65 + i)
            + _random_text(rng, 50),
            "n": i,
        }
        for i in range(12)
    ]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "zz" + shared[0] + "zz"}) + "\n")
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    anygram.build_index(str(tmp_path / "a.jsonl"), a, shards=2, progress=False)
    anygram.build_index(str(tmp_path / "b.jsonl"), b, progress=False)
    ranges, clean = str(tmp_path / "ranges.jsonl"), str(tmp_path / "clean.jsonl.zst")
    args = ["dedup", "--index", a, "--min-len", "30", "--ranges", ranges, "--write", clean, "-q"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    # Documents 3..11 repeat one of the first three's shared span (80 bytes each).
    assert summary["documents_affected"] == 9 and summary["tokens_removed"] == 9 * 80
    recs = [json.loads(line) for line in _text(ranges).splitlines()]
    assert [r["doc_ix"] for r in recs] == list(range(3, 12))
    assert all(r["removed"] == [[101, 181]] for r in recs)
    written = _read_jsonl(clean)
    assert [r["n"] for r in written] == list(range(12))
    assert written[5]["text"] == docs[5]["text"][:101] + docs[5]["text"][181:]
    # Resume: a rerun with the same arguments finds everything done and writes the same.
    before = _bytes(clean)
    assert main(args) == 0
    capsys.readouterr()
    assert _bytes(clean) == before
    # Cross: only the span shared with b goes (documents 0, 3, 6, 9).
    cross = str(tmp_path / "cross.jsonl")
    assert main(["dedup", "--index", a, "--against", b, "--min-len", "30", "--ranges", cross, "-q"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["mode"] == "cross" and summary["documents_affected"] == 4
    assert [json.loads(line)["doc_ix"] for line in _text(cross).splitlines()] == [0, 3, 6, 9]
    # Errors name the problem.
    assert main(["dedup", "--index", a, "--min-len", "0", "--ranges", str(tmp_path / "r0.jsonl"), "-q"]) == 2
    assert "min_len" in capsys.readouterr().err
    # An index of another tokenizer (a tiny word-level one) cannot be the other side.
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1, "b": 2}, unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    words.save(str(tmp_path / "words.json"))
    (tmp_path / "w.jsonl").write_text(json.dumps({"text": "a b a b"}) + "\n")
    worded = str(tmp_path / "w")
    anygram.build_index(
        str(tmp_path / "w.jsonl"), worded, tokenizer=str(tmp_path / "words.json"), progress=False
    )
    with pytest.raises(TokenizerMismatchError, match="token ids would not mean the same text"):
        anygram.dedup(anygram.Engine.open(a), min_len=3, against=anygram.Engine.open(worded))


@pytest.mark.parametrize("batch_docs,batch_tokens,done_after_two", [(4, 1 << 21, 8), (4, 10, 2), (30, 20, 4)])
def test_dedup_resumes_after_interrupted_write(
    tmp_path, monkeypatch, batch_docs, batch_tokens, done_after_two
):
    docs = [[1, 2, 3, 4, 1, 2, 3, 4]] * 5 + [[i % 4, 3] for i in range(20)]
    engine = _build(tmp_path, docs, 2, 2)
    ranges, clean = str(tmp_path / "r.jsonl"), str(tmp_path / "c.jsonl.zst")
    full = scan.run_dedup(engine, ranges, min_len=3, write=clean, token_ids=True)
    expected = _read_jsonl(clean)
    monkeypatch.setattr(scan.clean_writer, "WRITE_BATCH_DOCS", batch_docs)
    monkeypatch.setattr(scan.clean_writer, "WRITE_BATCH_TOKENS", batch_tokens)
    # Stop the write after two batches: the checkpoint records their documents.
    calls = {"n": 0}
    original = scan.clean_writer._FrameWriter.write

    def failing(self, lines):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, lines)

    monkeypatch.setattr(scan.clean_writer._FrameWriter, "write", failing)
    with pytest.raises(KeyboardInterrupt):
        scan.run_dedup(engine, ranges, min_len=3, write=clean, token_ids=True, restart=True)
    state = json.loads(_text(ranges + ".progress.json"))["state"]
    assert state["write"]["docs_done"] == done_after_two
    monkeypatch.setattr(scan.clean_writer._FrameWriter, "write", original)
    again = scan.run_dedup(engine, ranges, min_len=3, write=clean, token_ids=True)
    assert _read_jsonl(clean) == expected
    assert again == full


@pytest.mark.parametrize("width", [1, 2, 4])
def test_separator_never_matches(tmp_path, width):
    # Documents [0 1] [2 3]: the query 1 2 spans the boundary in the token stream.
    engine = _build(tmp_path, [[0, 1], [2, 3], [1, 2, 3, 0]], width)
    r = anygram.contamination(engine, [[0, 1, 2]], min_len=1).examples[0]
    assert r["fields"]["text"]["covered"] == [[0, 3]]
    assert r["longest_match"]["length"] == 2
    assert SEPARATOR[width] > 4
    assert anygram.dedup(engine, min_len=2).ranges == {2: [[1, 3]]}


def test_gpt2_corpus_end_to_end(shared_data, tmp_path, capsys):
    """Real text and GPT-2 tokens: paragraphs of indexed documents are found in them;
    dedup writes decoded text without the removed spans."""
    lines = []
    with zstandard.open(os.path.join(shared_data, "docs.jsonl.zst"), "rt") as f:
        for line in f:
            lines.append(json.loads(line))
            if len(lines) == 60:
                break
    corpus = tmp_path / "docs.jsonl"
    # Documents 0..4 twice: their second copies are removed by dedup.
    corpus.write_text("".join(json.dumps(d) + "\n" for d in lines + lines[:5]))
    index = str(tmp_path / "index")
    anygram.build_index(
        str(corpus), index, tokenizer=os.path.join(shared_data, "gpt2-tokenizer.json"), progress=False
    )
    engine = anygram.Engine.open(index)
    paragraphs = [max(d["text"].split("\n\n"), key=len) for d in lines[10:20]]
    examples = [{"id": i, "text": p} for i, p in enumerate(paragraphs)]
    examples.append({"id": "new", "text": "Colorless green ideas sleep furiously beside the quantum teapot."})
    report = anygram.contamination(engine, examples, min_len=8, threshold=0.9)
    for r, d in zip(report.examples[:10], lines[10:20]):
        assert r["contaminated"], r
        assert r["longest_match"]["text"] in d["text"]
        assert {o["metadata"]["metadata"]["path"] for o in r["occurrences"]} == {d["path"]}
    assert report.examples[-1]["covered_tokens"] == 0
    clean = str(tmp_path / "clean.jsonl")
    ranges = str(tmp_path / "ranges.jsonl")
    assert (
        main(["dedup", "--index", index, "--min-len", "50", "--ranges", ranges, "--write", clean, "-q"]) == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["documents_emptied"] == 5
    written = _read_jsonl(clean)
    # The repeated copies are gone whole; the first copies are intact, metadata kept.
    assert [w["path"] for w in written[:60]] == [d["path"] for d in lines]
    assert len(written) == 60 and written[3]["text"] == lines[3]["text"]
