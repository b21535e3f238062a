"""The cleaned-corpus writer of dedup: every document of an index without its removed
ranges, as JSONL (``.zst`` / ``.gz`` compressed by the name), in batches that a run
can stop after and resume from."""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from .. import _anygram
from ..paths import check_outputs
from .common import parse_metadata

# Documents fetched per batch when writing the cleaned corpus.
WRITE_BATCH_DOCS = 1024
# ... and at most about this many tokens (a document longer than that is a batch of its own).
WRITE_BATCH_TOKENS = 1 << 21


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
    meta = parse_metadata(doc["metadata"].strip()) if doc["metadata"] else None
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
