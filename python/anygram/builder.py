"""``anygram.build_index``: corpus files → an index directory.

Steps: read and tokenize documents (batches, tokenized in parallel by the
``tokenizers`` library) → write the token stream, document offsets and metadata
→ split into shards at document boundaries → sort each shard's suffix array
(libsais on all cores, in Rust) → checksums and manifest.

Everything is written into a temporary directory beside the output and renamed
into place last, so a build that dies leaves nothing that opens as an index.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

import numpy as np

from . import _anygram
from .corpus import Document, SkipLog, read_documents
from .errors import BuildError, InvalidArgumentError
from .manifest import FORMAT_VERSION, MANIFEST_FILE, write_manifest
from .tokenizer import Tokenizer

_DTYPES = {1: np.uint8, 2: np.uint16, 4: np.uint32}
_BATCH_DOCS = 2048
_BATCH_CHARS = 1 << 20  # bounds the memory of a batch of encodings


@dataclass
class BuildReport:
    """What a build did."""

    output: str
    num_documents: int
    num_tokens: int
    num_shards: int
    skipped: Dict[str, int]
    skipped_examples: List[str]
    seconds: Dict[str, float] = field(default_factory=dict)
    bytes_on_disk: int = 0

    def summary(self) -> str:
        lines = [
            f"index      {self.output}",
            f"documents  {self.num_documents:,} in {self.num_shards} shard(s)",
            f"tokens     {self.num_tokens:,} (separators included)",
            f"on disk    {self.bytes_on_disk / 1e6:,.1f} MB "
            f"({self.bytes_on_disk / max(self.num_tokens, 1):.2f} bytes/token)",
            "time       " + ", ".join(f"{k} {v:.2f}s" for k, v in self.seconds.items()),
        ]
        if self.skipped:
            lines.append(f"skipped    {sum(self.skipped.values()):,} document(s): "
                         + ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items())))
            lines.extend(f"           {e}" for e in self.skipped_examples[:5])
        return "\n".join(lines)


def _progress(total: Optional[int], desc: str, unit: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, disable=not enabled,
                file=sys.stderr, dynamic_ncols=True)


class _StreamWriter:
    """Appends documents to the one-shard stream files of the temporary directory."""

    def __init__(self, directory: str, width: int, metadata: bool):
        self.width = width
        self.separator = b"\xff" * width
        self.tokens = open(os.path.join(directory, "tokenized.all"), "wb")
        self.meta = open(os.path.join(directory, "metadata.all"), "wb") if metadata else None
        self.doc_starts: List[int] = []
        self.meta_starts: List[int] = []
        self.position = 0
        self.meta_position = 0

    def add(self, doc: Document, tokens: np.ndarray, root: str) -> None:
        self.doc_starts.append(self.position)
        data = self.separator + tokens.tobytes()
        self.tokens.write(data)
        self.position += len(data)
        if self.meta is not None:
            path = os.path.relpath(doc.path, root) if root else doc.path
            line = (json.dumps({"path": path, "linenum": doc.linenum, "metadata": doc.metadata}) + "\n").encode()
            self.meta_starts.append(self.meta_position)
            self.meta.write(line)
            self.meta_position += len(line)

    def close(self) -> None:
        for f in (self.tokens, self.meta):
            if f is not None and not f.closed:
                f.flush()
                os.fsync(f.fileno())
                f.close()


def build_index(
    inputs: Union[str, List[str]],
    output: str,
    tokenizer: Optional[str] = None,
    shards: int = 1,
    token_width: Optional[int] = None,
    vocab_size: Optional[int] = None,
    eos_token_id: Optional[int] = None,
    text_field: str = "text",
    text_mode: str = "document",
    metadata: bool = True,
    strict: bool = False,
    overwrite: bool = False,
    workers: int = 0,
    progress: Optional[bool] = None,
) -> BuildReport:
    """Builds an index of ``inputs`` (files or directories) in directory ``output``.

    ``tokenizer`` is the path of a HuggingFace ``tokenizer.json``, or None for UTF-8
    bytes (1-byte tokens). Pre-tokenized ``.npy`` inputs need no tokenizer; give
    ``vocab_size`` (and ``eos_token_id``) for them. Documents that cannot be read are
    skipped and reported (``strict=True`` fails the build instead). ``workers=0``
    uses every core. Returns a :class:`BuildReport`.
    """
    started = time.perf_counter()
    if progress is None:
        progress = sys.stderr.isatty()
    if shards < 1:
        raise InvalidArgumentError(f"shards must be at least 1, got {shards}")
    output = os.path.abspath(os.fspath(output))
    if os.path.exists(output) and not overwrite:
        raise InvalidArgumentError(f"{output} already exists: choose another path or pass overwrite=True")
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [os.fspath(inputs)]
    inputs = [os.fspath(i) for i in inputs]

    tok = Tokenizer(tokenizer) if tokenizer is not None else None
    width, vocab, eos = _token_parameters(tok, inputs, token_width, vocab_size, eos_token_id)

    parent = os.path.dirname(output)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(output)}.building-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        seconds: Dict[str, float] = {}
        skips = SkipLog(strict=strict)
        t0 = time.perf_counter()
        writer = _StreamWriter(tmp, width, metadata)
        root = os.path.commonpath([os.path.abspath(i) for i in inputs])
        if os.path.isfile(root):
            root = os.path.dirname(root)
        try:
            encoder = _tokenize_all(inputs, writer, tok, width, vocab, skips, text_field, text_mode, root, progress)
        finally:
            writer.close()
        num_docs = len(writer.doc_starts)
        if num_docs == 0:
            raise BuildError(f"no readable documents in {inputs} ({skips.total} skipped)")
        if shards > num_docs:
            raise InvalidArgumentError(f"{shards} shards for {num_docs} documents: use at most {num_docs}")
        seconds["tokenize"] = time.perf_counter() - t0
        tokenizer_path = None
        if tok is not None:
            fast = encoder.native is not None and encoder.native.is_fast
            tokenizer_path = "fast byte-level" if fast else "tokenizers library" + (
                f" ({encoder.fallback_reason})" if encoder.fallback_reason else "")
            tok.close()
        del encoder
        _release_free_memory()

        t0 = time.perf_counter()
        shard_meta = _split_shards(tmp, writer, shards, width)
        seconds["write"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        with _progress(sum(s["num_tokens"] for s in shard_meta), "suffix arrays", "tok", progress) as bar:
            for s, meta in enumerate(shard_meta):
                _anygram.build_suffix_array(
                    os.path.join(tmp, f"tokenized.{s}"), os.path.join(tmp, f"table.{s}"), width, workers
                )
                bar.update(meta["num_tokens"])
        seconds["suffix_array"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        tokenizer_info = None
        if tok is not None:
            shutil.copyfile(tok.path, os.path.join(tmp, "tokenizer.json"))
            tokenizer_info = {"name": tok.name, "file": "tokenizer.json", "sha256": tok.sha256}
        names = sorted(n for n in os.listdir(tmp) if n != MANIFEST_FILE)
        sums = _anygram.checksum_files([os.path.join(tmp, n) for n in names])
        files = {n: {"size": os.path.getsize(os.path.join(tmp, n)), "xxh3_64": c} for n, c in zip(names, sums)}
        seconds["checksum"] = time.perf_counter() - t0
        seconds["total"] = time.perf_counter() - started
        from . import __version__

        manifest: Dict[str, Any] = {
            "format": "anygram-index",
            "format_version": FORMAT_VERSION,
            "layout": "infini-gram-v4",
            "token_width": width,
            "vocab_size": vocab,
            "eos_token_id": eos,
            "tokenizer": tokenizer_info,
            "shards": shard_meta,
            "files": files,
            "build": {
                "anygram_version": __version__,
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "inputs": inputs,
                "text_field": text_field,
                "text_mode": text_mode,
                "num_documents": num_docs,
                "skipped_documents": dict(skips.counts),
                "skipped_examples": skips.examples,
                "tokenizer_path": tokenizer_path,
                "seconds": {k: round(v, 3) for k, v in seconds.items()},
            },
        }
        write_manifest(tmp, manifest)
        _fsync_dir(tmp)
        _publish(tmp, output, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return BuildReport(
        output=output,
        num_documents=num_docs,
        num_tokens=sum(s["num_tokens"] for s in shard_meta),
        num_shards=shards,
        skipped=dict(skips.counts),
        skipped_examples=list(skips.examples),
        seconds=seconds,
        bytes_on_disk=sum(f["size"] for f in files.values()),
    )


def _token_parameters(tok, inputs, token_width, vocab_size, eos_token_id):
    if tok is not None:
        width = tok.token_width
        vocab = tok.vocab_size if vocab_size is None else vocab_size
        if vocab < tok.vocab_size:
            raise InvalidArgumentError(f"vocab_size {vocab} is smaller than the tokenizer's {tok.vocab_size}")
        eos = tok.eos_token_id if eos_token_id is None else eos_token_id
    else:
        pretokenized = all(p.endswith(".npy") for p in inputs)
        width = 1 if not pretokenized else 2
        vocab = (255 if width == 1 else None) if vocab_size is None else vocab_size
        eos = eos_token_id
    if token_width is not None:
        if token_width not in (1, 2, 4):
            raise InvalidArgumentError(f"token_width must be 1, 2 or 4, not {token_width}")
        if tok is not None and token_width < width:
            raise InvalidArgumentError(f"token_width {token_width} cannot hold the tokenizer's {tok.vocab_size} ids")
        width = token_width
    separator = (1 << (8 * width)) - 1
    if vocab is None:
        vocab = separator
    if not 0 < vocab <= separator:
        raise InvalidArgumentError(
            f"vocab_size {vocab} does not fit {width}-byte tokens (at most {separator}; "
            f"{separator} is the document separator)"
        )
    if eos is None:
        eos = separator
    if not (0 <= eos < vocab or eos == separator):
        raise InvalidArgumentError(f"eos_token_id {eos} is outside the vocabulary [0, {vocab})")
    return width, vocab, eos


class _DocumentEncoder:
    """Tokenizes batches of texts for the build: the Rust tokenizer on all cores
    (with its fast byte-level road when the tokenizer allows it), checked against the
    ``tokenizers`` library on the first documents and a sample after; on any
    difference the rest of the build uses the library alone, and says so."""

    VERIFY_FIRST = 256
    VERIFY_EVERY = 512

    def __init__(self, tok: Optional[Tokenizer], dtype):
        self.tok = tok
        self.dtype = dtype
        self.native = _anygram.CorpusTokenizer(tok.path) if tok is not None and tok.path else None
        self.seen = 0
        self.fallback_reason: Optional[str] = None

    def encode(self, texts: List[str]) -> List[np.ndarray]:
        if self.tok is None:
            return [np.frombuffer(t.encode("utf-8"), dtype=np.uint8) for t in texts]
        if self.native is None:
            return self.tok.encode_batch(texts)
        flat, lengths = self.native.encode_batch(texts)
        arrays = np.split(flat.astype(self.dtype, copy=False), np.cumsum(lengths)[:-1]) if texts else []
        for i, text in enumerate(texts):
            n = self.seen + i
            if n < self.VERIFY_FIRST or n % self.VERIFY_EVERY == 0:
                expected = self.tok.encode(text)
                if arrays[i].tolist() != expected:
                    self.fallback_reason = f"document {n} tokenized differently by the fast path"
                    import warnings

                    warnings.warn(f"anygram: {self.fallback_reason}; using the tokenizers library for the rest")
                    self.native = None
                    arrays[i:] = self.tok.encode_batch(texts[i:])
                    break
        self.seen += len(texts)
        return arrays


def _tokenize_all(inputs, writer, tok, width, vocab, skips, text_field, text_mode, root, progress):
    dtype = _DTYPES[width]
    encoder = _DocumentEncoder(tok, dtype)
    batch: List[Document] = []
    chars = 0
    with _progress(None, "tokenize", "doc", progress) as bar:

        def flush() -> None:
            nonlocal batch, chars
            encoded = iter(encoder.encode([d.text for d in batch if d.tokens is None]))
            for doc in batch:
                tokens = next(encoded) if doc.tokens is None else doc.tokens
                if doc.tokens is not None:
                    if tokens.size and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab):
                        skips.skip("token id outside the vocabulary", doc.path, doc.linenum,
                                   f"ids must be in [0, {vocab})")
                        continue
                writer.add(doc, np.ascontiguousarray(tokens, dtype=dtype), root)
            bar.update(len(batch))
            batch, chars = [], 0

        for doc in read_documents(inputs, skips, text_field=text_field, text_mode=text_mode):
            batch.append(doc)
            chars += len(doc.text) if doc.text is not None else doc.tokens.size
            if len(batch) >= _BATCH_DOCS or chars >= _BATCH_CHARS:
                flush()
        if batch:
            flush()
    return encoder


def _split_shards(tmp: str, writer: _StreamWriter, shards: int, width: int) -> List[Dict[str, int]]:
    """Cuts the stream into ``shards`` pieces of about equal size at document
    boundaries and writes each shard's files; returns their counts."""
    starts = np.asarray(writer.doc_starts, dtype=np.uint64)
    total = writer.position
    num_docs = len(starts)
    # First document of each shard: the one whose start is nearest above each cut.
    cuts = [0]
    for s in range(1, shards):
        d = int(np.searchsorted(starts, total * s // shards))
        d = min(max(d, cuts[-1] + 1), num_docs - (shards - s))
        cuts.append(d)
    cuts.append(num_docs)
    meta_starts = np.asarray(writer.meta_starts, dtype=np.uint64)
    out: List[Dict[str, int]] = []
    for s in range(shards):
        first, last = cuts[s], cuts[s + 1]
        begin = int(starts[first])
        end = int(starts[last]) if last < num_docs else total
        _copy_range(os.path.join(tmp, "tokenized.all"), os.path.join(tmp, f"tokenized.{s}"), begin, end, shards == 1)
        (starts[first:last] - np.uint64(begin)).tofile(os.path.join(tmp, f"offset.{s}"))
        if writer.meta is not None:
            mbegin = int(meta_starts[first])
            mend = int(meta_starts[last]) if last < num_docs else writer.meta_position
            _copy_range(os.path.join(tmp, "metadata.all"), os.path.join(tmp, f"metadata.{s}"), mbegin, mend,
                        shards == 1)
            (meta_starts[first:last] - np.uint64(mbegin)).tofile(os.path.join(tmp, f"metaoff.{s}"))
        num_tokens = (end - begin) // width
        ptr_size = 1
        while ptr_size < 8 and (1 << (8 * ptr_size)) < end - begin:
            ptr_size += 1
        out.append({"num_tokens": num_tokens, "num_documents": last - first, "ptr_size": ptr_size})
    for name in ("tokenized.all", "metadata.all"):
        if os.path.exists(os.path.join(tmp, name)):
            os.remove(os.path.join(tmp, name))
    return out


def _copy_range(src: str, dst: str, begin: int, end: int, whole: bool) -> None:
    if whole:
        os.replace(src, dst)
        return
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        fin.seek(begin)
        remaining = end - begin
        while remaining:
            block = fin.read(min(remaining, 16 << 20))
            if not block:
                raise BuildError(f"{src} ended early while writing {dst}")
            fout.write(block)
            remaining -= len(block)


def _release_free_memory() -> None:
    """Hands memory freed by tokenization back to the OS before the suffix sort needs
    its own (glibc keeps per-thread arenas otherwise; elsewhere this does nothing)."""
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _fsync_dir(path: str) -> None:
    for name in os.listdir(path):
        with open(os.path.join(path, name), "rb") as f:
            os.fsync(f.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: str, output: str, overwrite: bool) -> None:
    """Renames the finished build into place (replacing an old index only when asked)."""
    if os.path.exists(output):
        if not overwrite:
            raise InvalidArgumentError(f"{output} appeared during the build; the new index is not published")
        old = output + f".old-{os.getpid()}"
        os.rename(output, old)
        os.rename(tmp, output)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, output)
