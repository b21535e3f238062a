"""Batch scans: benchmark contamination and exact-substring deduplication.

Both run in Rust on all cores with the GIL released (see ``rust/anygram/src/scan``).

**Contamination** (:func:`contamination`): for every token of an example, the
longest verbatim match with the corpus starting there (matching statistics, one
left-to-right pass); an example's *coverage* is the fraction of its tokens inside
matches of at least ``min_len`` tokens. Each chosen field is scanned on its own, so
a match never joins two fields. Memory: the examples of one batch and their
statistics (4 bytes per token); the index is read through the page cache.

**Dedup** (:func:`dedup`): every window of ``min_len`` tokens inside one document
that repeats an earlier position of the corpus (self; the first occurrence in
corpus order — shard by shard, documents in index order, then position — is kept)
or that occurs in another index (cross, ``against``), as removed ranges of token
offsets per document. Self dedup reads the suffix array once with the longest
common prefix of neighbours thresholded at ``min_len`` (several shards: merged by
their first ``min_len`` tokens). Memory: one bit per token of the index, plus the
removed ranges (16 bytes each). Cross dedup merges the suffix arrays of both indexes
by their first ``min_len`` tokens in one pass (the same memory, for this index's
tokens); between indexes of different token widths it falls back to matching
statistics of each document against the other index (one document per thread).

The command-line forms (``anygram contamination``, ``anygram dedup``) stream their
output and resume an interrupted run: see :func:`run_contamination` and
:func:`run_dedup`.
"""

from __future__ import annotations

import html
import io
import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from . import _anygram
from .corpus import check_text
from .errors import InvalidArgumentError, TokenizerMismatchError
from .paths import check_outputs, progress_file

DEFAULT_CONTAMINATION_MIN_LEN = 13
DEFAULT_THRESHOLD = 0.5
DEFAULT_DEDUP_MIN_LEN = 50
HISTOGRAM_BINS = 10
# Cross dedup works through documents in chunks of about this many tokens: the unit
# of progress checkpoints.
CROSS_CHUNK_TOKENS = 1 << 24
# Matching statistics cost about this many times more per token than the merged pass
# (measured: ~80K vs ~2.4M tokens/s on the 410M-token code corpus, 2 cores).
MATCHING_COST_RATIO = 30
# Documents fetched per batch when writing the cleaned corpus.
WRITE_BATCH_DOCS = 1024
# ... and at most about this many tokens (a document longer than that is a batch of its own).
WRITE_BATCH_TOKENS = 1 << 21


# ---------------------------------------------------------------- contamination


def _example_texts(example: Any, fields: Optional[Sequence[str]], position: int) -> List[Tuple[str, Any]]:
    """The ``(field, value)`` pairs of one example to scan."""
    if isinstance(example, dict):
        names = list(fields) if fields else (["text"] if "text" in example else None)
        if names is None:
            raise InvalidArgumentError(
                f"example {position} has no 'text' field (fields: {', '.join(map(str, example)) or 'none'}); "
                "choose fields with fields=[...] / --field"
            )
        out = []
        for name in names:
            if name not in example:
                raise InvalidArgumentError(
                    f"example {position} has no field {name!r} (fields: {', '.join(map(str, example))})"
                )
            value = example[name]
            if value is None:
                value = ""
            if not isinstance(value, (str, list)):
                raise InvalidArgumentError(
                    f"example {position}, field {name!r}: expected a string or a list of "
                    f"token ids, got {type(value).__name__}"
                )
            out.append((name, value))
        return out
    if fields:
        raise InvalidArgumentError(
            f"example {position} is a {type(example).__name__}, not an object: fields cannot be chosen"
        )
    if isinstance(example, (str, list, np.ndarray)):
        return [("text", example)]
    raise InvalidArgumentError(
        f"example {position} must be a string, a list of token ids or an object, not {type(example).__name__}"
    )


def _ids_of(engine, value: Any, where: str) -> List[int]:
    if isinstance(value, str):
        if engine.tokenizer is None:
            raise InvalidArgumentError(f"{where}: index {engine.path} has no tokenizer; give token ids")
        return engine.tokenize(check_text(value, where))
    try:
        return [int(t) for t in value]
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{where}: a list of token ids must hold integers only") from None


def _jsonable_metadata(line: str) -> Any:
    if not line:
        return None
    try:
        return json.loads(line)
    except ValueError:
        return line


def _example_result(
    engine,
    position: int,
    example: Any,
    pairs: List[Tuple[str, List[int]]],
    results: List[Dict[str, Any]],
    threshold: float,
    id_field: Optional[str],
) -> Dict[str, Any]:
    num_tokens = sum(len(ids) for _, ids in pairs)
    covered = sum(int(r["num_covered"]) for r in results)
    best = -1
    for j, r in enumerate(results):
        if best < 0 or r["longest_len"] > results[best]["longest_len"]:
            best = j
    out: Dict[str, Any] = {"index": position}
    if isinstance(example, dict) and id_field and id_field in example:
        out["id"] = example[id_field]
    coverage = covered / num_tokens if num_tokens else 0.0
    out.update(
        num_tokens=num_tokens,
        covered_tokens=covered,
        coverage=coverage,
        contaminated=bool(num_tokens) and coverage >= threshold,
    )
    longest: Dict[str, Any] = {"length": 0}
    occurrences: List[Dict[str, Any]] = []
    if best >= 0 and results[best]["longest_len"] > 0:
        r = results[best]
        name, ids = pairs[best]
        start, length = int(r["longest_start"]), int(r["longest_len"])
        span = ids[start : start + length]
        longest = {
            "field": name,
            "start": start,
            "length": length,
            "count": int(r["longest_count"]),
            "token_ids": span,
        }
        if engine.tokenizer is not None:
            longest["text"] = engine.decode(span)
        for o in r["occurrences"]:
            occurrences.append(
                {
                    "doc_ix": o["doc_ix"],
                    "offset": o["offset"],
                    "doc_len": o["doc_len"],
                    "shard": o["shard"],
                    "metadata": _jsonable_metadata(o["metadata"]),
                }
            )
    out["longest_match"] = longest
    out["occurrences"] = occurrences
    out["fields"] = {
        name: {
            "num_tokens": len(ids),
            "covered_tokens": int(r["num_covered"]),
            "covered": [list(c) for c in r["covered"]],
            "longest": int(r["longest_len"]),
        }
        for (name, ids), r in zip(pairs, results)
    }
    return out


def iter_contamination(
    engine,
    examples: Iterable[Any],
    min_len: int = DEFAULT_CONTAMINATION_MIN_LEN,
    threshold: float = DEFAULT_THRESHOLD,
    fields: Optional[Sequence[str]] = None,
    k: int = 5,
    batch_size: int = 512,
    id_field: Optional[str] = "id",
    skip: int = 0,
    on_batch: Optional[Callable[[int], None]] = None,
) -> Iterator[Dict[str, Any]]:
    """Per-example results of :func:`contamination`, in order, a batch at a time.
    ``skip`` leaves out the first examples (resuming); ``on_batch(n)`` is called
    after each batch of ``n`` examples."""
    _check_scan_args(min_len, threshold, k)
    batch: List[Tuple[int, Any, List[Tuple[str, List[int]]]]] = []

    def flush():
        texts = [ids for _, _, pairs in batch for _, ids in pairs]
        results = _anygram.contamination_batch(engine, texts, min_len, k) if texts else []
        at = 0
        for position, example, pairs in batch:
            yield _example_result(
                engine, position, example, pairs, results[at : at + len(pairs)], threshold, id_field
            )
            at += len(pairs)
        if on_batch is not None:
            on_batch(len(batch))
        batch.clear()

    for position, example in enumerate(examples):
        if position < skip:
            continue
        pairs = [
            (name, _ids_of(engine, value, f"example {position}, field {name!r}"))
            for name, value in _example_texts(example, fields, position)
        ]
        batch.append((position, example, pairs))
        if len(batch) >= batch_size:
            yield from flush()
    if batch:
        yield from flush()


def _check_scan_args(min_len: int, threshold: float, k: int) -> None:
    if not isinstance(min_len, int) or min_len < 1:
        raise InvalidArgumentError(f"min_len must be a positive number of tokens, got {min_len!r}")
    if not (0.0 <= threshold <= 1.0):
        raise InvalidArgumentError(
            f"threshold is a fraction of an example's tokens in [0, 1], got {threshold!r}"
        )
    if not isinstance(k, int) or k < 0:
        raise InvalidArgumentError(f"k (occurrences shown) must be a non-negative integer, got {k!r}")


class ContaminationSummary:
    """Accumulates per-example results into the per-set summary."""

    def __init__(self, min_len: int, threshold: float, top: int = 20):
        self.min_len, self.threshold, self.top = min_len, threshold, top
        self.num_examples = self.num_tokens = self.covered_tokens = self.num_contaminated = 0
        self.num_touched = 0
        self.histogram = [0] * HISTOGRAM_BINS
        self.longest: List[int] = []
        self.worst: List[Tuple[float, int, Dict[str, Any]]] = []

    def add(self, r: Dict[str, Any]) -> None:
        self.num_examples += 1
        self.num_tokens += r["num_tokens"]
        self.covered_tokens += r["covered_tokens"]
        self.num_contaminated += bool(r["contaminated"])
        self.num_touched += r["covered_tokens"] > 0
        self.histogram[min(int(r["coverage"] * HISTOGRAM_BINS), HISTOGRAM_BINS - 1)] += 1
        self.longest.append(r["longest_match"]["length"])
        brief = {key: r[key] for key in ("index", "coverage", "covered_tokens", "num_tokens") if key in r}
        if "id" in r:
            brief["id"] = r["id"]
        brief["longest"] = r["longest_match"].get("length", 0)
        brief["longest_text"] = r["longest_match"].get("text")
        brief["fields"] = {name: f["covered"] for name, f in r["fields"].items()}
        self.worst.append((r["coverage"], -r["index"], brief))
        if len(self.worst) > 4 * self.top:
            self.worst.sort(key=lambda t: (t[0], t[1]), reverse=True)
            del self.worst[self.top :]

    def result(self) -> Dict[str, Any]:
        longest = np.asarray(self.longest or [0])
        worst = sorted(self.worst, key=lambda t: (t[0], t[1]), reverse=True)[: self.top]
        return {
            "min_len": self.min_len,
            "threshold": self.threshold,
            "num_examples": self.num_examples,
            "num_contaminated": self.num_contaminated,
            "fraction_contaminated": self.num_contaminated / self.num_examples if self.num_examples else 0.0,
            "num_with_any_match": self.num_touched,
            "num_tokens": self.num_tokens,
            "covered_tokens": self.covered_tokens,
            "token_coverage": self.covered_tokens / self.num_tokens if self.num_tokens else 0.0,
            "histogram": {
                "edges": [i / HISTOGRAM_BINS for i in range(HISTOGRAM_BINS + 1)],
                "counts": list(self.histogram),
            },
            "longest_match": {
                "max": int(longest.max()),
                "median": float(np.median(longest)),
                "p90": float(np.percentile(longest, 90)),
            },
            "top": [b for _, _, b in worst],
        }


@dataclass
class ContaminationReport:
    """What :func:`contamination` returns: ``examples`` (one dict per example) and
    ``summary`` (the per-set figures)."""

    examples: List[Dict[str, Any]]
    summary: Dict[str, Any]


def contamination(
    engine,
    examples: Iterable[Any],
    min_len: int = DEFAULT_CONTAMINATION_MIN_LEN,
    threshold: float = DEFAULT_THRESHOLD,
    fields: Optional[Sequence[str]] = None,
    k: int = 5,
    batch_size: int = 512,
    id_field: Optional[str] = "id",
) -> ContaminationReport:
    """How much of each example occurs verbatim in the index of ``engine``.

    ``examples``: strings, token-id lists, or dicts whose ``fields`` (default
    ``["text"]``) hold strings or token ids. Per example: ``num_tokens``,
    ``covered_tokens`` and ``coverage`` (the fraction of its tokens inside a match
    of at least ``min_len`` tokens), ``contaminated`` (``coverage >= threshold``),
    ``longest_match`` (``field``, ``start``, ``length``, ``count``, ``token_ids``,
    ``text``), up to ``k`` ``occurrences`` of it (``doc_ix``, ``offset`` in the
    document, ``doc_len``, ``shard``, ``metadata``), and per field its covered
    ranges. The summary counts the examples over the threshold and gives a
    histogram of coverage in tenths.
    """
    summary = ContaminationSummary(min_len, threshold)
    out = []
    for r in iter_contamination(
        engine,
        examples,
        min_len=min_len,
        threshold=threshold,
        fields=fields,
        k=k,
        batch_size=batch_size,
        id_field=id_field,
    ):
        summary.add(r)
        out.append(r)
    return ContaminationReport(out, summary.result())


# ------------------------------------------------------------------------ dedup


@dataclass
class DedupUnit:
    """One resumable piece of a dedup scan: the whole index (self, ``shard`` -1;
    cross in one merged pass, ``shard`` -2) or a range of documents of a shard
    (cross between indexes of different token widths)."""

    shard: int
    doc_start: int
    doc_end: int
    work: int


def cross_method(engine, against, method: str = "auto") -> str:
    """How cross dedup runs: ``"merge"`` (one pass over both suffix arrays, cost
    ~ both indexes' tokens) or ``"matching"`` (matching statistics of every document
    against the other index, cost ~ this index's tokens, each about
    ``MATCHING_COST_RATIO`` times dearer). ``"auto"`` picks the cheaper one; the
    merge needs equal token widths."""
    if method not in ("auto", "merge", "matching"):
        raise InvalidArgumentError(f"method must be auto, merge or matching, not {method!r}")
    same_width = against.token_width == engine.token_width
    if method == "merge" and not same_width:
        raise InvalidArgumentError(
            f"the merged cross dedup needs equal token widths ({engine.token_width} and "
            f"{against.token_width} bytes): use method='matching'"
        )
    if method == "auto":
        cheaper = engine.num_tokens + against.num_tokens < MATCHING_COST_RATIO * engine.num_tokens
        method = "merge" if same_width and cheaper else "matching"
    return method


def _dedup_units(engine, against, method: str = "auto") -> List[DedupUnit]:
    if against is None:
        # Self dedup is one pass over the whole index (shard -1: all of them).
        return [DedupUnit(-1, 0, engine.num_documents, _anygram.dedup_self_work(engine))]
    if cross_method(engine, against, method) == "merge":
        # One merged pass over both suffix arrays (shard -2: all of them).
        return [DedupUnit(-2, 0, engine.num_documents, _anygram.dedup_against_work(engine, against))]
    # Matching statistics of every document against the other index, chunk by chunk.
    units = []
    for info in engine.shard_info():
        s, docs = info["shard"], info["num_documents"]
        # Chunks of about CROSS_CHUNK_TOKENS tokens, by the average document length.
        per_doc = max(1, info["num_tokens"] // max(docs, 1))
        step = max(1, CROSS_CHUNK_TOKENS // per_doc)
        for start in range(0, docs, step):
            end = min(docs, start + step)
            units.append(DedupUnit(s, start, end, (end - start) * per_doc))
    return units


def _check_against(engine, against) -> None:
    """Token ids must mean the same in both indexes: when both have a manifest,
    their tokenizers (by content hash; none = UTF-8 bytes or pre-tokenized ids)
    must agree."""
    if against is None or engine.manifest is None or against.manifest is None:
        return
    mine = engine.manifest.get("tokenizer") or {}
    theirs = against.manifest.get("tokenizer") or {}
    if mine.get("sha256") != theirs.get("sha256"):
        raise TokenizerMismatchError(
            f"index {engine.path} uses tokenizer {mine.get('name', 'none')} but {against.path} "
            f"uses {theirs.get('name', 'none')}: token ids would not mean the same text"
        )


def iter_dedup_units(
    engine,
    min_len: int = DEFAULT_DEDUP_MIN_LEN,
    against=None,
    skip: int = 0,
    progress: Optional[Callable[[int], None]] = None,
    method: str = "auto",
) -> Iterator[Tuple[DedupUnit, Dict[str, Any]]]:
    """Runs the dedup scan unit by unit (see :class:`DedupUnit`), yielding each unit
    and its removed ranges as flat arrays (``doc_ix``, ``doc_len``, ``num_ranges``,
    ``starts``, ``ends``). ``progress(units_done_in_this_unit)`` is called while a
    unit runs."""
    if not isinstance(min_len, int) or min_len < 1:
        raise InvalidArgumentError(f"min_len must be a positive number of tokens, got {min_len!r}")
    _check_against(engine, against)
    for j, unit in enumerate(_dedup_units(engine, against, method)):
        if j < skip:
            continue
        if against is None:
            arrays = _anygram.dedup_self(engine, min_len, progress)
        elif unit.shard == -2:
            arrays = _anygram.dedup_against_all(engine, against, min_len, progress)
        else:
            arrays = _anygram.dedup_against(
                engine, against, unit.shard, unit.doc_start, unit.doc_end, min_len, progress
            )
        yield unit, arrays


def ranges_records(arrays: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
    """The per-document records (``doc_ix``, ``doc_len``, ``removed``, ``removed_tokens``)
    of a unit's flat arrays."""
    starts, ends = arrays["starts"].tolist(), arrays["ends"].tolist()
    at = 0
    for doc_ix, doc_len, n in zip(
        arrays["doc_ix"].tolist(), arrays["doc_len"].tolist(), arrays["num_ranges"].tolist()
    ):
        removed = [[starts[i], ends[i]] for i in range(at, at + n)]
        at += n
        yield {
            "doc_ix": doc_ix,
            "doc_len": doc_len,
            "removed": removed,
            "removed_tokens": sum(e - s for s, e in removed),
        }


@dataclass
class DedupReport:
    """What :func:`dedup` returns: ``ranges`` (doc_ix → removed ``[start, end)``
    token ranges, only for affected documents) and ``summary``."""

    ranges: Dict[int, List[List[int]]]
    summary: Dict[str, Any]


def _dedup_summary(
    engine, min_len: int, against, docs_affected: int, tokens_removed: int, docs_emptied: int
) -> Dict[str, Any]:
    num_docs = engine.num_documents
    num_text_tokens = engine.num_tokens - num_docs
    return {
        "mode": "self" if against is None else "cross",
        "against": None if against is None else os.path.abspath(against.path),
        "min_len": min_len,
        "num_documents": num_docs,
        "num_tokens": num_text_tokens,
        "documents_affected": docs_affected,
        "documents_emptied": docs_emptied,
        "tokens_removed": tokens_removed,
        "fraction_tokens_removed": tokens_removed / num_text_tokens if num_text_tokens else 0.0,
    }


def dedup(
    engine,
    min_len: int = DEFAULT_DEDUP_MIN_LEN,
    against=None,
    write: Optional[str] = None,
    split: bool = False,
    token_ids: bool = False,
    method: str = "auto",
) -> DedupReport:
    """Exact-substring dedup of the index of ``engine`` (self), or against the index
    of another engine (``against``, cross): see the module docs for what is removed.
    ``write``: also write the corpus without those ranges (JSONL, ``.zst`` or ``.gz``
    compressed by its name; see :func:`write_clean`). ``method``: how cross dedup
    runs (see :func:`cross_method`)."""
    check_outputs({"write": write},
                  index_dirs={"index": engine.path, "against": against.path if against is not None else None})
    ranges: Dict[int, List[List[int]]] = {}
    removed = emptied = 0
    for _, arrays in iter_dedup_units(engine, min_len, against, method=method):
        for rec in ranges_records(arrays):
            ranges[rec["doc_ix"]] = rec["removed"]
            removed += rec["removed_tokens"]
            emptied += rec["removed_tokens"] == rec["doc_len"]
    if write is not None:
        write_clean(engine, iter(sorted(ranges.items())), write, split=split, token_ids=token_ids)
    return DedupReport(ranges, _dedup_summary(engine, min_len, against, len(ranges), removed, emptied))


def _kept_pieces(tokens: List[int], removed: List[List[int]]) -> List[List[int]]:
    pieces, at = [], 0
    for s, e in removed:
        if s > at:
            pieces.append(tokens[at:s])
        at = max(at, e)
    if at < len(tokens):
        pieces.append(tokens[at:])
    return pieces


def _output_record(doc: Dict[str, Any], extra: Dict[str, Any]) -> Dict[str, Any]:
    """A written document's fields: its metadata, then ``extra`` (text or ids follow)."""
    meta = _jsonable_metadata(doc["metadata"].strip()) if doc["metadata"] else None
    # anygram stores the other fields of a JSONL input under "metadata"; keep them as fields.
    if isinstance(meta, dict) and isinstance(meta.get("metadata"), dict):
        record = dict(meta["metadata"])
    elif meta is not None:
        record = {"metadata": meta}
    else:
        record = {}
    record.update(extra)
    return record


class _FrameWriter:
    """Appends batches of lines to a (possibly compressed) file, each batch a
    complete frame/member, so a run can stop after any batch and resume by
    truncating to the last recorded size."""

    def __init__(self, path: str, truncate_to: Optional[int]):
        self.path = path
        mode = "r+b" if truncate_to is not None and os.path.exists(path) else "wb"
        self.file = open(path, mode)
        if truncate_to is not None and mode == "r+b":
            self.file.truncate(truncate_to)
            self.file.seek(truncate_to)

    def write(self, lines: List[str]) -> int:
        data = "".join(lines).encode()
        if self.path.endswith(".zst"):
            import zstandard

            data = zstandard.ZstdCompressor(level=3).compress(data)
        elif self.path.endswith(".gz"):
            import gzip

            data = gzip.compress(data)
        self.file.write(data)
        self.file.flush()
        return self.file.tell()

    def close(self) -> None:
        self.file.close()


def _write_batches(engine, start_doc: int) -> Iterator[List[int]]:
    """Consecutive documents from ``start_doc`` on, in batches of at most
    ``WRITE_BATCH_DOCS`` documents and about ``WRITE_BATCH_TOKENS`` tokens: what the
    writer holds in memory at once (as Python lists, ~40 bytes a token)."""
    doc = start_doc
    while doc < engine.num_documents:
        ixs = list(range(doc, min(engine.num_documents, doc + WRITE_BATCH_DOCS)))
        lengths = [d["doc_len"] for d in _anygram.Engine.get_docs_by_ixs(engine, ixs, 1)]
        batch, tokens = [], 0
        for ix, length in zip(ixs, lengths):
            if batch and tokens + length > WRITE_BATCH_TOKENS:
                break
            batch.append(ix)
            tokens += length
        yield batch
        doc = batch[-1] + 1


def write_clean(
    engine,
    ranges: Iterator[Tuple[int, List[List[int]]]],
    path: str,
    split: bool = False,
    token_ids: bool = False,
    start_doc: int = 0,
    truncate_to: Optional[int] = None,
    checkpoint: Optional[Callable[[int, int], None]] = None,
    progress: Optional[Callable[[int], None]] = None,
) -> Dict[str, int]:
    """Writes every document of the index from ``start_doc`` on, without its removed
    ranges (``ranges``: ``(doc_ix, removed)`` in increasing ``doc_ix``), as JSONL:
    the document's metadata fields plus ``text`` (decoded, when the index has a
    tokenizer and ``token_ids`` is false) or ``token_ids``. Decoding a piece cut
    inside a multi-byte character or a byte-level BPE sequence cannot be exact
    (the tokenizer shows a replacement character): ``token_ids=True`` is lossless.
    By default one line per document with its kept pieces joined (as Lee et al.;
    joining can create new n-grams at the cuts);
    ``split=True`` writes each kept piece as its own line (with ``doc_ix`` and
    ``piece``), so that no repeated window can form. Documents left empty are not
    written. ``checkpoint(docs_done, file_size)`` is called after each batch."""
    check_outputs({"path": path}, index_dirs={"index": engine.path})
    out = _FrameWriter(path, truncate_to)
    counts = {"documents_written": 0, "documents_dropped": 0}
    pending = next(ranges, None)
    try:
        for ixs in _write_batches(engine, start_doc):
            # (document, extra fields, kept tokens) of every output line of the batch.
            entries: List[Tuple[Dict[str, Any], Dict[str, Any], List[int]]] = []
            for doc in _anygram.Engine.get_docs_by_ixs(engine, ixs, 1 << 40):
                removed: List[List[int]] = []
                while pending is not None and pending[0] < doc["doc_ix"]:
                    pending = next(ranges, None)
                if pending is not None and pending[0] == doc["doc_ix"]:
                    removed = pending[1]
                tokens = list(doc["token_ids"])
                pieces = _kept_pieces(tokens, removed) if removed else ([tokens] if tokens else [])
                if not pieces and removed:
                    counts["documents_dropped"] += 1
                    continue
                if split:
                    entries.extend(
                        (doc, {"doc_ix": doc["doc_ix"], "piece": j}, p) for j, p in enumerate(pieces)
                    )
                else:
                    entries.append((doc, {}, [t for p in pieces for t in p]))
                counts["documents_written"] += 1
            as_text = engine.tokenizer is not None and not token_ids
            # One parallel decode for the whole batch.
            texts = engine.tokenizer.decode_batch([e[2] for e in entries]) if as_text else None
            lines = []
            for j, (doc, extra, tokens) in enumerate(entries):
                record = _output_record(doc, extra)
                if texts is not None:
                    record["text"] = texts[j]
                else:
                    record["token_ids"] = tokens
                lines.append(json.dumps(record, ensure_ascii=False) + "\n")
            size = out.write(lines)
            if checkpoint is not None:
                checkpoint(ixs[-1] + 1, size)
            if progress is not None:
                progress(len(ixs))
    finally:
        out.close()
    return counts


# ----------------------------------------------------------- resumable CLI runs


class _Checkpoint:
    """``PATH.progress.json`` beside an output: the arguments of the run that wrote
    it and how far it got. A rerun with the same arguments continues from there."""

    def __init__(self, output: str, signature: Dict[str, Any], restart: bool):
        self.path = progress_file(output)
        self.signature = signature
        self.state: Dict[str, Any] = {}
        if restart or not os.path.exists(self.path):
            return
        with open(self.path) as f:
            saved = json.load(f)
        if saved.get("signature") != signature:
            changed = sorted(
                k
                for k in set(signature) | set(saved.get("signature", {}))
                if signature.get(k) != saved.get("signature", {}).get(k)
            )
            raise InvalidArgumentError(
                f"{output} was written by a run with other arguments ({', '.join(changed)} differ); "
                "pass --restart to start over, or give another output path"
            )
        self.state = saved.get("state", {})

    def save(self, **state: Any) -> None:
        self.state.update(state)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"signature": self.signature, "state": self.state}, f)
        os.replace(tmp, self.path)


def _index_signature(engine) -> Dict[str, Any]:
    return {
        "index": os.path.abspath(engine.path),
        "num_tokens": engine.num_tokens,
        "num_documents": engine.num_documents,
    }


def _file_signature(path: str) -> Dict[str, Any]:
    st = os.stat(path)
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _tqdm(total: Optional[int], desc: str, unit: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=True,
        disable=not enabled,
        file=sys.stderr,
        dynamic_ncols=True,
    )


def read_jsonl(path: str) -> Iterator[Any]:
    """Examples of an eval file (JSONL, plain or .gz/.zst), one JSON value a line."""
    from .corpus import _Source

    with _Source(path) as source, io.TextIOWrapper(source.stream, encoding="utf-8") as text:
        for linenum, line in enumerate(text, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except ValueError as e:
                raise InvalidArgumentError(f"{path}:{linenum}: not valid JSON ({e})") from None


def _complete_lines(path: str) -> Tuple[int, int]:
    """Lines of ``path`` that end in a newline, and the byte size they take."""
    count = size = 0
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            count += 1
            size += len(line)
    return count, size


def run_contamination(
    engine,
    eval_path: str,
    out: Optional[str] = None,
    min_len: int = DEFAULT_CONTAMINATION_MIN_LEN,
    threshold: float = DEFAULT_THRESHOLD,
    fields: Optional[Sequence[str]] = None,
    k: int = 5,
    id_field: Optional[str] = "id",
    batch_size: int = 512,
    restart: bool = False,
    progress: bool = False,
    on_result: Optional[Callable[[Dict[str, Any]], None]] = None,
) -> Dict[str, Any]:
    """The ``anygram contamination`` scan: streams one JSON line per example to
    ``out`` (resuming after the last complete line when a previous run with the
    same arguments stopped) and returns the summary of all examples."""
    if not os.path.isfile(eval_path):
        raise InvalidArgumentError(f"{eval_path}: no such eval file")
    _check_scan_args(min_len, threshold, k)
    check_outputs({"out": out, "out's progress file": out and progress_file(out)}, inputs={"eval_path": eval_path},
                  index_dirs={"index": engine.path})
    summary = ContaminationSummary(min_len, threshold)
    skip = 0
    sink = None
    if out is not None:
        signature = {
            "kind": "contamination",
            **_index_signature(engine),
            "eval": _file_signature(eval_path),
            "min_len": min_len,
            "threshold": threshold,
            "fields": list(fields or []),
            "k": k,
            "id_field": id_field,
        }
        checkpoint = _Checkpoint(out, signature, restart)
        if checkpoint.state and os.path.exists(out):
            skip, size = _complete_lines(out)
            with open(out, "rb") as f:
                for line in f.read(size).splitlines():
                    summary.add(json.loads(line))
            sink = open(out, "r+b")
            sink.truncate(size)
            sink.seek(size)
        else:
            sink = open(out, "wb")
        checkpoint.save(started=True)
    bar = _tqdm(None, "contamination", " examples", progress)
    bar.update(skip)
    try:
        for r in iter_contamination(
            engine,
            read_jsonl(eval_path),
            min_len=min_len,
            threshold=threshold,
            fields=fields,
            k=k,
            batch_size=batch_size,
            id_field=id_field,
            skip=skip,
            on_batch=bar.update,
        ):
            summary.add(r)
            if sink is not None:
                sink.write((json.dumps(r, ensure_ascii=False) + "\n").encode())
            if on_result is not None:
                on_result(r)
        if sink is not None:
            sink.flush()
            checkpoint.save(complete=True)
    finally:
        bar.close()
        if sink is not None:
            sink.close()
    return summary.result()


def run_dedup(
    engine,
    ranges_path: str,
    min_len: int = DEFAULT_DEDUP_MIN_LEN,
    against=None,
    write: Optional[str] = None,
    split: bool = False,
    token_ids: bool = False,
    restart: bool = False,
    progress: bool = False,
    method: str = "auto",
) -> Dict[str, Any]:
    """The ``anygram dedup`` scan: writes one JSON line per affected document to
    ``ranges_path`` unit by unit (the whole index for self dedup, a chunk of
    documents for cross dedup), then, with ``write``, the cleaned corpus in batches of documents.
    Each step records its progress in ``ranges_path.progress.json``; rerunning with
    the same arguments continues where it stopped. Returns the summary."""
    if not isinstance(min_len, int) or min_len < 1:
        raise InvalidArgumentError(f"min_len must be a positive number of tokens, got {min_len!r}")
    _check_against(engine, against)
    check_outputs({"ranges_path": ranges_path, "ranges_path's progress file": progress_file(ranges_path),
                   "write": write},
                  index_dirs={"index": engine.path, "against": against.path if against is not None else None})
    signature = {
        "kind": "dedup",
        **_index_signature(engine),
        "min_len": min_len,
        "against": None if against is None else _index_signature(against),
        "method": None if against is None else cross_method(engine, against, method),
    }
    checkpoint = _Checkpoint(ranges_path, signature, restart)
    state = checkpoint.state
    units = _dedup_units(engine, against, method)
    done_units = state.get("units_done", 0) if os.path.exists(ranges_path) else 0
    size = state.get("ranges_size", 0) if done_units else 0
    totals = (
        state.get("totals", {"affected": 0, "removed": 0, "emptied": 0})
        if done_units
        else {"affected": 0, "removed": 0, "emptied": 0}
    )
    with open(ranges_path, "r+b" if done_units else "wb") as sink:
        sink.truncate(size)
        sink.seek(size)
        bar = _tqdm(
            sum(u.work for u in units), "dedup" if against is None else "dedup --against", " tok", progress
        )
        bar.update(sum(u.work for u in units[:done_units]))
        base = [bar.n]

        def tick(done: int) -> None:
            bar.update(base[0] + done - bar.n)

        try:
            for j, (unit, arrays) in enumerate(
                iter_dedup_units(engine, min_len, against, skip=done_units, progress=tick, method=method),
                start=done_units,
            ):
                for rec in ranges_records(arrays):
                    sink.write((json.dumps(rec) + "\n").encode())
                    totals["affected"] += 1
                    totals["removed"] += rec["removed_tokens"]
                    totals["emptied"] += rec["removed_tokens"] == rec["doc_len"]
                sink.flush()
                os.fsync(sink.fileno())
                base[0] += unit.work
                bar.update(base[0] - bar.n)
                checkpoint.save(units_done=j + 1, ranges_size=sink.tell(), totals=totals)
        finally:
            bar.close()
    summary = _dedup_summary(
        engine, min_len, against, totals["affected"], totals["removed"], totals["emptied"]
    )
    if write is not None:
        previous = state.get("write", {})
        wstate = (
            previous
            if previous.get("path") == os.path.abspath(write)
            and previous.get("split") == split
            and previous.get("token_ids") == token_ids
            and os.path.exists(write)
            else None
        )
        start_doc = wstate["docs_done"] if wstate else 0
        bar = _tqdm(engine.num_documents, "write", " docs", progress)
        bar.update(start_doc)

        def save(docs_done: int, file_size: int) -> None:
            checkpoint.save(
                write={
                    "path": os.path.abspath(write),
                    "split": split,
                    "token_ids": token_ids,
                    "docs_done": docs_done,
                    "size": file_size,
                }
            )

        def records() -> Iterator[Tuple[int, List[List[int]]]]:
            with open(ranges_path) as f:
                for line in f:
                    rec = json.loads(line)
                    if rec["doc_ix"] >= start_doc:
                        yield rec["doc_ix"], rec["removed"]

        try:
            write_clean(
                engine,
                records(),
                write,
                split=split,
                token_ids=token_ids,
                start_doc=start_doc,
                truncate_to=wstate["size"] if wstate else None,
                checkpoint=save,
                progress=bar.update,
            )
        finally:
            bar.close()
        summary["written"] = os.path.abspath(write)
    return summary


# ----------------------------------------------------------------------- report


def contamination_table(summary: Dict[str, Any], width: int = 40) -> str:
    """A readable table of a contamination summary."""
    lines = [
        f"examples              {summary['num_examples']:,}",
        f"tokens                {summary['num_tokens']:,} ({summary['covered_tokens']:,} covered, "
        f"{100 * summary['token_coverage']:.2f}%)",
        f"min match length      {summary['min_len']} tokens",
        f"with any match        {summary['num_with_any_match']:,}",
        f"contaminated          {summary['num_contaminated']:,} "
        f"({100 * summary['fraction_contaminated']:.2f}%, coverage >= {summary['threshold']:g})",
        f"longest match         max {summary['longest_match']['max']}, median "
        f"{summary['longest_match']['median']:g}, p90 {summary['longest_match']['p90']:g} tokens",
        "",
        "coverage        examples",
    ]
    counts = summary["histogram"]["counts"]
    edges = summary["histogram"]["edges"]
    peak = max(counts) or 1
    for i, c in enumerate(counts):
        bar = "#" * math.ceil(width * c / peak) if c else ""
        close = "]" if i == len(counts) - 1 else ")"
        lines.append(f"[{edges[i]:.1f}, {edges[i + 1]:.1f}{close}  {c:>9,}  {bar}")
    if summary["top"]:
        lines += ["", "most covered examples"]
        for b in summary["top"][:10]:
            name = f" id={b['id']}" if "id" in b else ""
            text = (b.get("longest_text") or "").replace("\n", " ")
            text = text[:60] + ("…" if len(text) > 60 else "")
            lines.append(
                f"  #{b['index']}{name}  coverage {b['coverage']:.2f}  longest {b['longest']}  {text!r}"
            )
    return "\n".join(lines)


def contamination_html(
    summary: Dict[str, Any], engine, eval_path: Optional[str] = None, fields: Optional[Sequence[str]] = None
) -> str:
    """A self-contained HTML report: the figures, an SVG histogram of coverage and
    the most covered examples with their matched tokens highlighted."""
    counts = summary["histogram"]["counts"]
    peak = max(counts) or 1
    bars = []
    for i, c in enumerate(counts):
        h = 160 * c / peak
        bars.append(
            f'<rect x="{40 + i * 50}" y="{180 - h:.1f}" width="40" height="{h:.1f}" fill="#c0392b">'
            f"<title>{c}</title></rect>"
            f'<text x="{60 + i * 50}" y="{175 - h:.1f}" font-size="11" text-anchor="middle">{c}</text>'
            f'<text x="{60 + i * 50}" y="196" font-size="11" text-anchor="middle">{i / 10:.1f}</text>'
        )
    svg = (
        f'<svg width="560" height="215" role="img" aria-label="histogram of coverage">{"".join(bars)}'
        f'<text x="290" y="212" font-size="12" text-anchor="middle">coverage (fraction of tokens in matches '
        f"of ≥ {summary['min_len']} tokens)</text></svg>"
    )
    rows = []
    wanted = {b["index"]: b for b in summary["top"]}
    examples: Dict[int, Any] = {}
    if eval_path is not None and wanted:
        last = max(wanted)
        for i, ex in enumerate(read_jsonl(eval_path)):
            if i in wanted:
                examples[i] = ex
            if i >= last:
                break
    for b in summary["top"]:
        cell = ""
        ex = examples.get(b["index"])
        if ex is not None:
            parts = []
            for name, value in _example_texts(ex, fields, b["index"]):
                ids = _ids_of(engine, value, name)
                marked, at = [], 0
                for s, e in b["fields"].get(name, []):
                    marked.append(html.escape(_render(engine, ids[at:s])))
                    marked.append(f"<mark>{html.escape(_render(engine, ids[s:e]))}</mark>")
                    at = e
                marked.append(html.escape(_render(engine, ids[at:])))
                parts.append(f"<div><b>{html.escape(name)}</b>: {''.join(marked)}</div>")
            cell = "".join(parts)
        name = html.escape(str(b.get("id", "")))
        rows.append(
            f"<tr><td>{b['index']}</td><td>{name}</td><td>{b['coverage']:.3f}</td><td>{b['longest']}</td>"
            f"<td class=t>{cell}</td></tr>"
        )
    figures = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in summary.items()
        if k not in ("histogram", "top")
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>anygram contamination report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}}
mark{{background:#f5b7b1}}.t{{white-space:pre-wrap;font-family:monospace;font-size:90%}}</style></head><body>
<h1>Contamination report</h1><p>index <code>{html.escape(os.path.abspath(engine.path))}</code>
{"" if eval_path is None else f"— eval set <code>{html.escape(eval_path)}</code>"}</p>
<table>{figures}</table><h2>Coverage</h2>{svg}
<h2>Most covered examples</h2><p>Highlighted: tokens inside verbatim matches of at least {summary["min_len"]}
tokens.</p><table><tr><th>#</th><th>id</th><th>coverage</th><th>longest</th><th>text</th></tr>{"".join(rows)}</table>
</body></html>
"""


def _render(engine, ids: List[int]) -> str:
    if not ids:
        return ""
    if engine.tokenizer is not None:
        return engine.decode(ids)
    return " ".join(map(str, ids)) + " "
