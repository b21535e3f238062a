"""Exact-substring dedup of an index, by itself (self) or against another index (cross):
the removed token ranges of each document (see :mod:`anygram.scan`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from .. import _anygram
from ..errors import InvalidArgumentError, TokenizerMismatchError
from ..paths import check_outputs
from .clean_writer import write_clean
from .common import check_min_len

DEFAULT_DEDUP_MIN_LEN = 50
# Cross dedup works through documents in chunks of about this many tokens: the unit
# of progress checkpoints.
CROSS_CHUNK_TOKENS = 1 << 24
# Matching statistics cost about this many times more per token than the merged pass
# (measured: ~80K vs ~2.4M tokens/s on the 410M-token code corpus, 2 cores).
MATCHING_COST_RATIO = 30


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
    check_min_len(min_len)
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

    def __repr__(self) -> str:
        from .reports import dedup_repr

        return dedup_repr(self.summary)

    def _repr_html_(self) -> str:
        from .reports import dedup_report_html

        return dedup_report_html(self.summary)

    def to_pandas(self):
        """One row per removed range: doc_ix, start, end, length (needs pandas)."""
        from .reports import dedup_frame

        return dedup_frame(self.ranges)


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
