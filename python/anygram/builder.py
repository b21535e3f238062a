"""``anygram.build_index``: corpus files → an index directory, within a memory budget,
resumable after a crash.

Steps (each one finished is recorded in a journal, so a build that is killed resumes
from the last finished step):

1. ``tokenize``: read documents (streaming; see :mod:`anygram.corpus`), tokenize them in
   batches on all cores (the Rust ``CorpusTokenizer``), append them to one token stream
   and one metadata stream.
2. ``split``: cut the streams into shards at document boundaries; write each shard's
   ``tokenized``, ``offset``, ``metadata`` and ``metaoff`` files.

The files are written by the core's index writer (``rust/anygram/src/build/writer.rs``):
this module reads and tokenizes the inputs, accounts for skipped documents and runs the
steps in a resumable work directory; the core writes the streams, the shards, the
checksums and the typed manifest.
3. ``suffix_array.S`` for every shard S: the suffix array, in memory when it fits the
   memory budget, otherwise in parts merged on disk (``rust/anygram/src/build/``);
   finished parts of a shard survive a crash too.
4. checksums and the manifest, then publish: one rename puts the index in place (for an
   object storage URL: every file uploaded, the manifest last, each upload recorded in the
   work directory's ``uploaded/`` so that a rerun uploads only what is missing).

All of it happens in a work directory beside the output, ``.NAME.build-HASH``, where HASH
is a digest of everything that determines the index (input files with their sizes and
modification times, tokenizer, token parameters, shards, ...). Running the same build
again after a crash finds the directory and resumes; a build with other arguments uses
another directory and discards unfinished ones of the same output that nobody is running
(saying so). Nothing opens as an index at the output path until the final rename.

Memory (``mem``): a hard budget on the process's resident set during the suffix-array
steps, which are the ones that grow with the corpus. What the process already holds
counts against it; see ARCHITECTURE.md for the model.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Union

import numpy as np

from . import _anygram
from .corpus import PYTHON_INPUT, Document, SkipLog, input_paths, is_document_iterable, read_documents, read_records
from .errors import AnygramError, BuildError, IndexExistsError, InvalidArgumentError
from .paths import check_outputs, check_replaceable_index
from .progress import progress_bar
from .tokenizer import Tokenizer
from .workdir import WorkDir

_DTYPES = {1: np.uint8, 2: np.uint16, 4: np.uint32}
_BATCH_DOCS = 2048
# 2: the streams' start offsets are the core writer's files (doc_starts.u64).
_JOURNAL_VERSION = 2
_PAUSE_ENV = "ANYGRAM_BUILD_PAUSE_AT"  # test hook: stop at a named checkpoint and wait


def parse_size(value: Union[None, int, str]) -> Optional[int]:
    """Bytes from ``4G``, ``512M``, ``1.5GiB``, ``800000`` (binary units: K = 1024); None stays None."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise InvalidArgumentError(f"a memory size must be positive, got {value}")
        return value
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", str(value), re.IGNORECASE)
    if not m or float(m.group(1)) <= 0:
        raise InvalidArgumentError(f"cannot read {value!r} as a memory size: write e.g. 4G, 512M or 800000")
    scale = 1024 ** " KMGT".index(m.group(2).upper() or " ")
    return int(float(m.group(1)) * scale)


# How build errors name the arguments: Python's parameters (the CLI passes its flags).
PYTHON_WORDS = {"output": "output", "input": "input", "overwrite": "overwrite=True"}


def check_output(output: str, inputs: List[str], overwrite: bool, words: Dict[str, str] = PYTHON_WORDS) -> None:
    """Raises unless a build may write its index at ``output``: the path is free, or
    ``overwrite`` is set and it holds an index (and nothing else); and it is neither an
    input nor a directory holding one. An object storage URL is listed now (a bucket that
    does not exist or credentials that do not allow it fail here, before any work).
    ``words``: how the caller names the arguments."""
    from .engine import is_url

    if isinstance(output, str) and is_url(output):
        try:
            _anygram.check_index_destination(output, overwrite)
        except IndexExistsError:
            raise IndexExistsError(f"{words['output']} {output} already holds an index: choose another "
                                   f"URL or pass {words['overwrite']} to replace it") from None
        return
    output = os.path.abspath(os.fspath(output))
    labels = {(words["input"] if len(inputs) == 1 else f"{words['input']} {i + 1}"): p for i, p in enumerate(inputs)}
    check_outputs({}, inputs=labels, output_dirs={words["output"]: output})
    if os.path.lexists(output):
        if not overwrite:
            # An index there is the common case (a rerun), with its own class to catch.
            holds_index = os.path.isfile(os.path.join(output, _anygram.MANIFEST_FILE))
            raise (IndexExistsError if holds_index else InvalidArgumentError)(
                f"{words['output']} {output} already {'holds an index' if holds_index else 'exists'}: choose "
                f"another path or pass {words['overwrite']} to replace an index there")
        check_replaceable_index(output, words["output"], words["overwrite"])


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
    peak_rss: int = 0
    mem: Optional[int] = None
    suffix_arrays: List[Dict[str, Any]] = field(default_factory=list)
    resumed_steps: List[str] = field(default_factory=list)
    tokenizer_path: Optional[str] = None

    def __repr__(self) -> str:
        skipped = sum(self.skipped.values())
        return (f"BuildReport({self.output!r}: {self.num_documents:,} documents, {self.num_tokens:,} tokens in "
                f"{self.num_shards} shard(s), {self.bytes_on_disk / 1e6:,.1f} MB, "
                f"{self.seconds.get('total', 0.0):.1f} s" + (f", {skipped:,} skipped" if skipped else "") + ")")

    def _repr_html_(self) -> str:
        from .display import html_table

        return html_table([tuple(line.split(None, 1)) if " " in line.strip() else (line, "")
                           for line in self.summary().splitlines() if line.strip()], "Build report")

    def summary(self) -> str:
        lines = [
            f"index      {self.output}",
            f"documents  {self.num_documents:,} in {self.num_shards} shard(s)",
            f"tokens     {self.num_tokens:,} (separators included)",
            f"on disk    {self.bytes_on_disk / 1e6:,.1f} MB "
            f"({self.bytes_on_disk / max(self.num_tokens, 1):.2f} bytes/token)",
            "time       " + ", ".join(f"{k} {v:.2f}s" for k, v in self.seconds.items()),
            f"memory     peak RSS {self.peak_rss / 2**20:,.0f} MiB"
            + (f" (budget {self.mem / 2**20:,.0f} MiB)" if self.mem else ""),
        ]
        external = [s for s in self.suffix_arrays if s.get("external")]
        if external:
            lines.append(f"suffix arrays {len(external)} of {len(self.suffix_arrays)} built in parts: "
                         + ", ".join(f"{s['num_parts']} parts" for s in external))
        if self.resumed_steps:
            lines.append(f"resumed    after {', '.join(self.resumed_steps)}")
        if self.skipped:
            lines.append(f"skipped    {sum(self.skipped.values()):,} document(s): "
                         + ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items())))
            lines.extend(f"           {e}" for e in self.skipped_examples[:5])
        return "\n".join(lines)


def _say(message: str) -> None:
    print(f"anygram build: {message}", file=sys.stderr, flush=True)


def _checkpoint(name: str) -> None:
    """Test hook: with ANYGRAM_BUILD_PAUSE_AT=name the build stops here and waits to be killed."""
    if os.environ.get(_PAUSE_ENV) == name:
        print(f"anygram build: paused at {name}", file=sys.stderr, flush=True)
        time.sleep(3600)


def _peak_rss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class _WorkDir(WorkDir):
    """The build's work directory (see :class:`anygram.workdir.WorkDir`): ``index/`` (the
    future index), ``journal.json`` (the finished steps and what they produced),
    ``parts.S/`` (external sort parts) and a lock held while a build runs in it."""

    def __init__(self, output: str, key: Dict[str, Any], resume: bool):
        super().__init__(output, key, resume, kind="build", error=BuildError, say=_say, version=_JOURNAL_VERSION)
        self.index = os.path.join(self.path, "index")
        os.makedirs(self.index, exist_ok=True)

    def finish(self, step: str, result: Dict[str, Any]) -> None:
        super().finish(step, result)
        _checkpoint(step)


class _StreamWriter:
    """Appends documents to the one-shard streams (``tokenized.all``, ``metadata.all``)
    through the core's writer; this side only makes each document's metadata line."""

    def __init__(self, directory: str, width: int, vocab: int, metadata: bool):
        self.native = _anygram.StreamWriter(directory, width, vocab, metadata)
        self.metadata = metadata

    @property
    def num_documents(self) -> int:
        return self.native.num_documents

    @property
    def num_tokens(self) -> int:
        return self.native.num_tokens

    def add(self, doc: Document, tokens: np.ndarray, root: str) -> None:
        line = None
        if self.metadata:
            path = os.path.relpath(doc.path, root) if root else doc.path
            line = (json.dumps({"path": path, "linenum": doc.linenum, "metadata": doc.metadata},
                               default=str) + "\n").encode()
        self.native.add(tokens, line)

    def finish(self, starts_dir: str) -> Dict[str, Any]:
        """Syncs the streams; returns ``{num_documents, num_tokens, bytes, meta_bytes}``."""
        return self.native.finish(starts_dir)


def build_index(
    inputs: Union[str, List[str]],
    output: str,
    tokenizer: Optional[str] = None,
    shards: Union[int, str] = 1,
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
    mem: Union[None, int, str] = None,
    resume: bool = True,
    accelerator: bool = False,
    ray: Union[None, bool, str] = None,
    tmp: Optional[str] = None,
    _part_tokens: Optional[int] = None,
    _overlap_tokens: Optional[int] = None,
    _piece_chars: Optional[int] = None,
) -> BuildReport:
    """Builds an index of ``inputs`` in directory ``output``.

    ``inputs``: a file or directory, a list of them, or documents from Python: any other
    iterable of strings or of dicts with a ``text_field`` (a generator, a HuggingFace
    ``datasets`` dataset, streaming or not), read once as it comes (such a build does not
    resume). A list of strings is a list of paths: pass texts as a generator or ``iter(texts)``.
    Bad documents are skipped and counted alike from files and from Python.

    ``tokenizer`` is the path of a HuggingFace ``tokenizer.json``, a ``tokenizers.Tokenizer``
    object (stored in the index as its ``to_str()``), or None for UTF-8 bytes (1-byte tokens). Pre-tokenized ``.npy`` inputs need no tokenizer; give
    ``vocab_size`` (and ``eos_token_id``) for them. Documents that cannot be read are
    skipped and reported (``strict=True`` fails the build instead). ``workers=0``
    uses every core.

    ``mem`` (bytes, or a string such as ``"4G"``) bounds the process's resident memory
    while suffix arrays are built: a shard whose array does not fit is built in parts
    merged on disk. ``shards="auto"`` picks the fewest shards that sort in memory within
    ``mem`` (default: 3/4 of the physical memory). Documents are tokenized in pieces
    whose size follows ``mem`` (with ids identical to tokenizing them whole; for
    tokenizers where no cut is known to be safe, long documents are tokenized whole,
    with a warning). A killed build resumes when run again
    with the same arguments (``resume=False`` starts afresh). ``accelerator=True`` writes each
    shard's search accelerator (``accel.{s}``, see :mod:`anygram.accel`): a few dependent reads a
    search for an index on disk or in object storage that does not fit in RAM; on an index in the
    page cache, searches are faster without it. ``ray=True`` (or a cluster address) reads and
    tokenizes slices of the input files and sorts the shards' suffix arrays as Ray tasks, on a
    cluster whose nodes all see the inputs and the output's directory (:mod:`anygram.distributed.build`; the ``anygram[ray]`` extra):
    the index is byte for byte the local one.

    ``output`` may be an object storage URL (``s3://bucket/prefix``, ``gs://``, ``az://``;
    credentials from the environment, as for queries): the index is built in a local
    staging directory under ``tmp`` (default: the system's temporary directory; with ``ray``
    one every node sees) and uploaded, the manifest last, so that a cut-off build is never
    opened as an index; a rerun resumes, uploading only what is not there yet. With ``ray``
    each shard's files are uploaded by the task that sorted them. Returns a :class:`BuildReport`.
    """
    started = time.perf_counter()
    if progress is None:
        progress = sys.stderr.isatty()
    if ray:
        from .distributed.cluster import check_address

        check_address(ray)  # before any work: a wrong address fails now, not after tokenizing
    from .engine import is_url

    # An index in object storage is built in a local staging directory (``tmp``) and
    # uploaded by the publish step; ``target`` is where it goes, ``output`` where it is built.
    remote = isinstance(output, str) and is_url(output)
    target = output
    mem_bytes = parse_size(mem)
    if mem_bytes is not None:
        _anygram.check_build_budget(mem_bytes, _anygram.resident_bytes() or 0)
    if shards != "auto" and (not isinstance(shards, int) or isinstance(shards, bool) or shards < 1):
        raise InvalidArgumentError(f"shards must be a positive integer or 'auto', got {shards!r}")
    output = _staging_path(target, tmp) if remote else os.path.abspath(os.fspath(output))
    if not remote:
        target = output
    input_skips = SkipLog(strict=strict)
    from_python = is_document_iterable(inputs)
    if from_python:
        # Documents from Python are read once, as they come: nothing to compare with a
        # rerun, so such a build never resumes (a fresh key each time).
        records, files, inputs = inputs, [], [f"{PYTHON_INPUT} {type(inputs).__name__}"]
        check_output(target, [], overwrite)
        input_key: Any = ["python", os.urandom(8).hex()]
    else:
        if isinstance(inputs, (str, os.PathLike)):
            inputs = [os.fspath(inputs)]
        inputs = [os.path.abspath(os.fspath(i)) for i in inputs]
        check_output(target, inputs, overwrite)
        # Directory entries skipped while listing the inputs are counted with the documents.
        files = input_paths(inputs, input_skips)
        input_key = [[p, os.path.getsize(p), os.stat(p).st_mtime_ns] for p in files]

    tok = _open_tokenizer(tokenizer)
    pretokenized = not from_python and all(p.endswith(".npy") for p in inputs)
    width, vocab, eos = _token_parameters(tok, pretokenized, token_width, vocab_size, eos_token_id)
    key = {
        "inputs": input_key,
        "tokenizer": tok.sha256 if tok is not None else None,
        "token_width": width, "vocab_size": vocab, "eos_token_id": eos,
        "text_field": text_field, "text_mode": text_mode, "metadata": metadata, "strict": strict,
        # Automatic shard sizes depend on the budget; fixed ones do not (nor does the index).
        "shards": shards if shards != "auto" else ["auto", mem_bytes],
        "part_tokens": _part_tokens, "overlap_tokens": _overlap_tokens,
    }
    parent = os.path.dirname(output)
    os.makedirs(parent, exist_ok=True)
    work = _WorkDir(output, key, resume)
    idx = work.index
    try:
        seconds: Dict[str, float] = {}
        root = "" if from_python else os.path.commonpath(inputs)
        if os.path.isfile(root):
            root = os.path.dirname(root)

        t0 = time.perf_counter()
        tokenized = work.done("tokenize")
        if tokenized is None and ray and not from_python and getattr(tok, "json_directory", None) is None:
            from .distributed.build import tokenize_on_ray

            tokenized = tokenize_on_ray(work, files, tok, width, vocab, input_skips, metadata, root, text_field,
                                        text_mode, _piece_chars or piece_chars_for(mem_bytes), progress, ray)
        if tokenized is None:
            source = _python_source(records, input_skips, text_field) if from_python else \
                _file_source(files, input_skips, text_field, text_mode)
            tokenized = _tokenize_step(work, source, tok, width, vocab, input_skips, metadata, root, progress,
                                       _piece_chars or piece_chars_for(mem_bytes))
        if tok is not None:
            tok.close()  # its file stays until the index stores it (finish_index)
        _release_free_memory()
        seconds["tokenize"] = tokenized["seconds"]
        num_docs = tokenized["num_documents"]

        split = work.done("split")
        if split is None:
            t0 = time.perf_counter()
            num_shards = _choose_shards(shards, tokenized["num_tokens"], num_docs, width, mem_bytes)
            streams = {k: tokenized[k] for k in ("num_documents", "num_tokens", "bytes", "meta_bytes")}
            shard_meta = _anygram.split_shards(idx, work.path, streams, num_shards, width)
            split = {"shards": shard_meta, "seconds": time.perf_counter() - t0}
            work.finish("split", split)
        _anygram.remove_streams(idx, work.path)
        shard_meta = split["shards"]
        seconds["write"] = split["seconds"]

        sa_reports = []
        if ray:
            from .distributed.build import sort_shards_on_ray

            # Each task uploads its shard's files to object storage as soon as they are
            # sorted; not over an index being replaced (its readers would see them change
            # under its manifest): the publish deletes that manifest first.
            upload_to = target if remote and not (overwrite and _holds_index(target)) else None
            sort_shards_on_ray(work, shard_meta, width, workers, mem_bytes, _part_tokens, _overlap_tokens,
                               progress, ray, upload_to=upload_to, upload_record=_upload_record(work))
        for s, meta in enumerate(shard_meta):
            step = f"suffix_array.{s}"
            done = work.done(step)
            if done is None:
                _release_free_memory()
                done = _suffix_array_step(work, s, meta["num_tokens"], len(shard_meta), width, workers, mem_bytes,
                                          _part_tokens, _overlap_tokens, progress)
                work.finish(step, done)
            sa_reports.append(done)
        seconds["suffix_array"] = sum(r["seconds"] for r in sa_reports)

        from . import __version__

        build_record: Dict[str, Any] = {
            "anygram_version": __version__,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "inputs": inputs,
            "text_field": text_field,
            "text_mode": text_mode,
            "num_documents": num_docs,
            "skipped_documents": tokenized["skipped"],
            "skipped_examples": tokenized["skipped_examples"],
            "tokenizer_path": tokenized["tokenizer_path"],
            "mem": mem_bytes,
            "suffix_arrays": [{k: v for k, v in r.items() if k != "seconds"} for r in sa_reports],
            # The core adds its own step ("checksum") and its time to the total.
            "seconds": {k: round(v, 3) for k, v in {**seconds, "total": time.perf_counter() - started}.items()},
        }
        tokenizer_source = None if tok is None else {"path": tok.path, "name": tok.name, "sha256": tok.sha256}
        t0 = time.perf_counter()
        # Accelerators, the stored tokenizer, the marker file, checksums and the manifest.
        manifest = _anygram.finish_index(idx, width, vocab, eos, shard_meta, tokenizer_source, build_record,
                                         accelerator)
        files_meta = manifest["files"]
        seconds["checksum"] = time.perf_counter() - t0
        seconds["total"] = time.perf_counter() - started
        _release_tokenizer_file(tok)
        _checkpoint("publish")
        _publish(idx, target, overwrite, _upload_record(work) if remote else None)
        work.remove()
    except AnygramError:
        if work.done("tokenize") is None:
            # Bad input: running again would fail the same way.
            work.remove()
        else:
            # E.g. a budget too small for the suffix sort: a rerun (same inputs, another
            # --mem) resumes after the tokenization.
            _say(f"the finished steps are kept in {work.path}; fix the cause and run the build again to resume")
            work.release()
        raise
    except BaseException:
        if not work.steps:
            # Nothing finished, so nothing to resume from: leave no work directory behind.
            work.remove()
        else:
            # Interrupted, out of disk...: what is finished stays for a resumed build.
            work.release()
        raise
    return BuildReport(
        output=target,
        num_documents=num_docs,
        num_tokens=sum(s["num_tokens"] for s in shard_meta),
        num_shards=len(shard_meta),
        skipped=dict(tokenized["skipped"]),
        skipped_examples=list(tokenized["skipped_examples"]),
        seconds=seconds,
        bytes_on_disk=sum(f["size"] for f in files_meta.values()),
        peak_rss=_peak_rss(),
        mem=mem_bytes,
        suffix_arrays=sa_reports,
        resumed_steps=work.resumed,
        tokenizer_path=tokenized["tokenizer_path"],
    )


@dataclass
class _DocumentSource:
    """What the tokenize step reads: the documents, what they are (for messages) and the
    progress bar's total and unit (bytes of files, or records of a sized Python input)."""

    documents: Iterator[Document]
    name: str
    total: Optional[int]
    unit: str


def _file_source(files: List[str], skips: SkipLog, text_field: str, text_mode: str) -> _DocumentSource:
    return _DocumentSource(read_documents(files, skips, text_field=text_field, text_mode=text_mode), str(files),
                           sum(os.path.getsize(p) for p in files), "B")


def _python_source(records: Any, skips: SkipLog, text_field: str) -> _DocumentSource:
    try:
        total: Optional[int] = len(records)
    except TypeError:  # a generator, a streaming dataset
        total = None
    return _DocumentSource(read_records(records, skips, text_field), f"the {type(records).__name__} given",
                           total, " docs")


def _open_tokenizer(tokenizer: Any) -> Optional[Tokenizer]:
    """The build's tokenizer from a ``tokenizer.json`` path, or from a ``tokenizers.Tokenizer``
    object: its JSON (``to_str()``) goes through a temporary file like any other (the build's
    tokenizer reads files) and is what the index stores."""
    if tokenizer is None:
        return None
    if isinstance(tokenizer, (str, os.PathLike)):
        return Tokenizer(os.fspath(tokenizer))
    if not callable(getattr(tokenizer, "to_str", None)):
        raise InvalidArgumentError(f"tokenizer must be a tokenizer.json path or a tokenizers.Tokenizer, "
                                   f"not {type(tokenizer).__name__}")
    text = tokenizer.to_str()
    # Removed by _release_tokenizer_file, or when the Tokenizer is collected (a failed build).
    directory = tempfile.TemporaryDirectory(prefix="anygram-tokenizer-")
    path = os.path.join(directory.name, "tokenizer.json")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    opened = Tokenizer(path)
    opened.json_text, opened.json_directory = text, directory
    return opened


def _release_tokenizer_file(tok: Optional[Tokenizer]) -> None:
    directory = getattr(tok, "json_directory", None)
    if directory is not None:
        directory.cleanup()


def _tokenize_step(work, source: "_DocumentSource", tok, width, vocab, skips, metadata, root, progress,
                   piece_chars):
    t0 = time.perf_counter()
    writer = _StreamWriter(work.index, width, vocab, metadata)
    encoder = _tokenize_all(source, writer, tok, width, vocab, skips, root, progress, piece_chars)
    streams = writer.finish(work.path)
    num_docs = streams["num_documents"]
    if num_docs == 0:
        raise BuildError(f"no readable documents in {source.name} ({skips.total} skipped)")
    tokenizer_path = None
    if tok is not None:
        fast = encoder.native is not None and encoder.native.is_fast
        tokenizer_path = "fast byte-level" if fast else "tokenizers library" + (
            f" ({encoder.fallback_reason})" if encoder.fallback_reason else "")
    result = {
        **streams,
        "skipped": dict(skips.counts),
        "skipped_examples": list(skips.examples),
        "tokenizer_path": tokenizer_path,
        "seconds": time.perf_counter() - t0,
    }
    work.finish("tokenize", result)
    return result


def _choose_shards(shards, num_tokens: int, num_docs: int, width: int, mem: Optional[int],
                   held: Optional[int] = None) -> int:
    """The number of shards: ``shards``, or for "auto" the fewest whose suffix arrays sort in
    memory within the budget when the process holds ``held`` bytes (default: now)."""
    if shards == "auto":
        budget = mem if mem is not None else _physical_memory() * 3 // 4
        held = (_anygram.resident_bytes() or 0) if held is None else held
        return min(_anygram.shards_for_budget(num_tokens, width, budget, held), num_docs)
    if shards > num_docs:
        raise InvalidArgumentError(f"{shards} shards for {num_docs} documents: use at most {num_docs}")
    return shards


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def _suffix_array_step(work, s, num_tokens, num_shards, width, workers, mem, part_tokens, overlap_tokens, progress):
    t0 = time.perf_counter()
    label = f"suffix array {s + 1}/{num_shards}"
    with progress_bar(num_tokens, label, "tok", progress) as bar:
        phase_seen = [None]

        def report(phase: str, part: int, num_parts: int, done: int, total: int) -> None:
            if phase != phase_seen[0]:
                phase_seen[0] = phase
                bar.reset(total=total)
            bar.set_description(f"{label} {phase}" + (f" {part}/{num_parts}" if phase == "sort part" else ""),
                                refresh=False)
            bar.update(done - bar.n)
            if phase == "sort part":
                _checkpoint(f"suffix_array.{s}.part.{part}")

        result = _anygram.build_suffix_array(
            os.path.join(work.index, f"tokenized.{s}"), os.path.join(work.index, f"table.{s}"), width, workers,
            mem_bytes=mem, work_dir=os.path.join(work.path, f"parts.{s}"), part_tokens=part_tokens,
            overlap_tokens=overlap_tokens, progress=report,
        )
    result = dict(result)
    result["seconds"] = time.perf_counter() - t0
    return result


def _token_parameters(tok, pretokenized: bool, token_width, vocab_size, eos_token_id):
    if tok is not None:
        width = tok.token_width
        vocab = tok.vocab_size if vocab_size is None else vocab_size
        if vocab < tok.vocab_size:
            raise InvalidArgumentError(f"vocab_size {vocab} is smaller than the tokenizer's {tok.vocab_size}")
        eos = tok.eos_token_id if eos_token_id is None else eos_token_id
    else:
        width = 1 if not pretokenized else 2
        vocab = vocab_size  # None: the core's default for the width
        eos = eos_token_id
    if token_width is not None:
        if token_width not in (1, 2, 4):
            raise InvalidArgumentError(f"token_width must be 1, 2 or 4, not {token_width}")
        if tok is not None and token_width < width:
            raise InvalidArgumentError(f"token_width {token_width} cannot hold the tokenizer's {tok.vocab_size} ids")
        width = token_width
    # The core's rules (defaults: every id but the separator; the separator as eos).
    vocab, eos = _anygram.token_parameters(width, vocab, eos)
    return width, vocab, eos


# Long documents are tokenized in pieces of at most this many characters where a safe
# cut exists (see cut_points); batches of documents are bounded by the same size.
_PIECE_CHARS_MAX = 1 << 20
_PIECE_CHARS_MIN = 1 << 14
# What the tokenizers library holds per character while it encodes a text (its
# offsets, alignments and token strings; measured ~190 on English text), with room.
_LIBRARY_BYTES_PER_CHAR = 256
_CUT_WINDOW = 1 << 16
# A space between two ASCII letters or digits: every pre-tokenizer anygram cuts for
# ends a piece before it and starts one at it (see cut_points).
_SAFE_CUT = re.compile(r"(?<=[A-Za-z0-9]) (?=[A-Za-z0-9])")
_CUTTABLE_PRE_TOKENIZERS = {"ByteLevel", "Whitespace", "WhitespaceSplit", "BertPreTokenizer", "Metaspace"}
_CUTTABLE_MODELS = {"BPE", "WordPiece", "WordLevel", "Unigram"}


def piece_chars_for(mem: Optional[int]) -> int:
    """Characters tokenized at once (a long document's piece, a batch): the tokenizer
    library's working memory for them stays within a quarter of the budget ``mem``."""
    if mem is None:
        return _PIECE_CHARS_MAX
    return max(_PIECE_CHARS_MIN, min(_PIECE_CHARS_MAX, mem // (4 * _LIBRARY_BYTES_PER_CHAR)))


def uncuttable_reason(tokenizer_path: Optional[str]) -> Optional[str]:
    """Why a document cannot be tokenized in pieces with ids identical to the whole, or
    None when it can: cut_points' cuts (a space between ASCII letters or digits) are
    pre-token boundaries for the pre-tokenizers listed here, the models encode each
    pre-token on its own, and nothing acts across pre-tokens (no normalizer, no
    truncation or padding, no added token that holds whitespace or strips it)."""
    if tokenizer_path is None:
        return None  # UTF-8 bytes: any character boundary is a token boundary
    with open(tokenizer_path, encoding="utf-8") as f:
        config = json.load(f)
    pre = config.get("pre_tokenizer") or {}
    model = config.get("model") or {}
    if config.get("normalizer") is not None:
        return f"its normalizer ({config['normalizer'].get('type')}) may act across a cut"
    if config.get("truncation") is not None or config.get("padding") is not None:
        return "it truncates or pads"
    if pre.get("type") not in _CUTTABLE_PRE_TOKENIZERS:
        return f"its pre-tokenizer ({pre.get('type')}) is not one whose splits are known"
    if pre.get("type") == "ByteLevel" and (pre.get("add_prefix_space") or pre.get("use_regex") is False):
        return "its ByteLevel pre-tokenizer adds a prefix space or does not split"
    if pre.get("type") == "Metaspace" and pre.get("split") is False:
        return "its Metaspace pre-tokenizer does not split"
    if model.get("type") not in _CUTTABLE_MODELS or model.get("dropout"):
        return f"its model ({model.get('type')}{' with dropout' if model.get('dropout') else ''}) is not cut safely"
    for token in config.get("added_tokens") or []:
        content = token.get("content", "")
        if token.get("lstrip") or token.get("rstrip") or token.get("single_word") or any(c.isspace() for c in content):
            return f"its added token {content!r} holds or strips whitespace"
    return None


def cut_points(text: str, piece_chars: int, anywhere: bool = False) -> List[int]:
    """Where to cut ``text`` so that no piece is longer than ``piece_chars`` characters
    (where cuts can be found). ``anywhere``: every position is safe (UTF-8 bytes).
    Otherwise each cut is at a space between two ASCII letters or digits ("a b"): for
    the pre-tokenizers of :func:`uncuttable_reason` the piece before the space ends at
    the letter (no pre-token joins a non-space to a following space) and the one after
    starts at the space, and their splits need no text beyond one character on either
    side, so the pieces split as the whole does. A stretch with no such space is kept
    whole (a longer piece)."""
    cuts: List[int] = []
    start, n = 0, len(text)
    while n - start > piece_chars:
        target = start + piece_chars
        if anywhere:
            cuts.append(target)
            start = target
            continue
        at = -1
        hi = target
        while hi > start and at < 0:  # the last safe space at or before target
            lo = max(start + 1, hi - _CUT_WINDOW)
            for m in _SAFE_CUT.finditer(text, lo, hi + 2):
                if m.start() <= target:
                    at = m.start()
            hi = lo - 1
        if at < 0:  # none before: the first one after
            m = _SAFE_CUT.search(text, target)
            if m is None:
                break
            at = m.start()
        cuts.append(at)
        start = at
    return cuts


class _DocumentEncoder:
    """Tokenizes batches of texts for the build: the Rust tokenizer on all cores
    (with its fast byte-level road when the tokenizer allows it), checked against the
    ``tokenizers`` library on the first pieces and a sample after; on any
    difference the rest of the build uses the library alone, and says so.

    A text longer than ``piece_chars`` is tokenized in pieces cut where the ids come
    out identical to tokenizing it whole (:func:`cut_points`), so that the memory of
    tokenizing follows the budget, not the longest document; for tokenizers where no
    cut is known to be safe (:func:`uncuttable_reason`) long texts are tokenized whole,
    with a warning."""

    VERIFY_FIRST = 256
    VERIFY_EVERY = 512
    # The library is several times slower than the fast road: the first pieces are
    # checked only up to this many characters.
    VERIFY_FIRST_CHARS = 1 << 21

    def __init__(self, tok: Optional[Tokenizer], dtype, piece_chars: int = _PIECE_CHARS_MAX):
        self.tok = tok
        self.dtype = dtype
        self.native = _anygram.CorpusTokenizer(tok.path) if tok is not None and tok.path else None
        self.seen = 0
        self.verified_chars = 0
        self.fallback_reason: Optional[str] = None
        self.piece_chars = piece_chars
        self.uncuttable = uncuttable_reason(tok.path if tok is not None else None)
        self.warned_whole = False

    def piece_bounds(self, text: str) -> List[int]:
        """Where ``text``'s pieces start and end: ``[0, cut, ..., len(text)]``."""
        if len(text) <= self.piece_chars:
            return [0, len(text)]
        if self.uncuttable is not None:
            if not self.warned_whole:
                self.warned_whole = True
                import warnings

                warnings.warn(f"anygram: documents longer than {self.piece_chars:,} characters are tokenized whole "
                              f"(about {_LIBRARY_BYTES_PER_CHAR} bytes of memory a character): tokenizer "
                              f"{self.tok.name} cannot be cut safely ({self.uncuttable})")
            return [0, len(text)]
        return [0, *cut_points(text, self.piece_chars, anywhere=self.tok is None), len(text)]

    def encode(self, texts: List[str]) -> List[np.ndarray]:
        """Token arrays of ``texts``: pieces encoded a group of at most ``piece_chars``
        characters at a time (each piece copied out of its text only then), joined per text."""
        owner: List[int] = []
        group: List[str] = []
        parts: List[List[np.ndarray]] = [[] for _ in texts]
        chars = 0
        for i, text in enumerate(texts):
            bounds = self.piece_bounds(text)
            for a, b in zip(bounds, bounds[1:]):
                if group and chars + (b - a) > self.piece_chars:
                    for o, arr in zip(owner, self._encode_group(group)):
                        parts[o].append(arr)
                    owner, group, chars = [], [], 0
                owner.append(i)
                group.append(text if b - a == len(text) else text[a:b])
                chars += b - a
        if group:
            for o, arr in zip(owner, self._encode_group(group)):
                parts[o].append(arr)
        return [p[0] if len(p) == 1 else np.concatenate(p) for p in parts]

    def _encode_group(self, texts: List[str]) -> List[np.ndarray]:
        if self.tok is None:
            return [np.frombuffer(t.encode("utf-8"), dtype=np.uint8) for t in texts]
        if self.native is None:
            return self._exact(texts)
        flat, lengths = self.native.encode_batch(texts)
        arrays = np.split(flat.astype(self.dtype, copy=False), np.cumsum(lengths)[:-1]) if texts else []
        for i, text in enumerate(texts):
            n = self.seen + i
            if (n < self.VERIFY_FIRST and self.verified_chars < self.VERIFY_FIRST_CHARS) or n % self.VERIFY_EVERY == 0:
                self.verified_chars += len(text)
                expected = self.tok.encode_exact(text)
                if arrays[i].tolist() != expected:
                    self.fallback_reason = f"text {n} tokenized differently by the fast path"
                    import warnings

                    warnings.warn(f"anygram: {self.fallback_reason}; using the tokenizers library for the rest")
                    self.native = None
                    arrays[i:] = self._exact(texts[i:])
                    break
        self.seen += len(texts)
        return arrays

    def _exact(self, texts: List[str]) -> List[np.ndarray]:
        # The library alone (Tokenizer.encode takes the fast road, like the build).
        return [np.asarray(self.tok.encode_exact(t), dtype=self.dtype) for t in texts]


def _tokenize_all(source: "_DocumentSource", writer, tok, width, vocab, skips, root, progress,
                  piece_chars=_PIECE_CHARS_MAX):
    dtype = _DTYPES[width]
    encoder = _DocumentEncoder(tok, dtype, piece_chars)
    batch: List[Document] = []
    chars = 0
    started = time.perf_counter()
    with progress_bar(source.total, "tokenize", source.unit, progress) as bar:

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
            if progress:
                rate = writer.num_tokens / max(time.perf_counter() - started, 1e-9)
                bar.set_postfix_str(f"{writer.num_documents:,} docs, {rate / 1e6:.2f}M tok/s", refresh=False)
                bar.update(batch[-1].input_done - bar.n)
            batch, chars = [], 0

        for doc in source.documents:
            batch.append(doc)
            chars += len(doc.text) if doc.text is not None else doc.tokens.size
            if len(batch) >= _BATCH_DOCS or chars >= piece_chars:
                flush()
        if batch:
            flush()
    return encoder


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


def _publish(tmp: str, output: str, overwrite: bool, upload_record: Optional[str] = None) -> None:
    """Renames the finished build into place (the core's ``publish_index``). An old index
    is checked again first (it may have changed during the build); the core renames it
    aside and removes it once the new one is in place. For an object storage URL the core
    uploads every file, the manifest last, recording each upload in ``upload_record`` (a
    rerun skips what is recorded and unchanged), and checks the destination again itself."""
    if overwrite and not upload_record and os.path.lexists(output):
        check_replaceable_index(output)
    _anygram.publish_index(tmp, output, overwrite, upload_record)


def _staging_path(url: str, tmp: Optional[str]) -> str:
    """Where a build into object storage is built (its work directory beside it): a local
    path under ``tmp`` (default: the system's temporary directory) named after ``url``, so
    that a rerun of the same build finds its work and resumes."""
    base = os.path.abspath(os.fspath(tmp)) if tmp is not None else tempfile.gettempdir()
    if not os.path.isdir(base):
        raise InvalidArgumentError(f"tmp {base}: not a directory (a build into object storage stages its files there)")
    return os.path.join(base, "anygram-" + re.sub(r"[^A-Za-z0-9._-]+", "_", url.rstrip("/")))


def _upload_record(work) -> str:
    """The directory where a build records the files it uploaded (one small file each)."""
    return os.path.join(work.path, "uploaded")


def _holds_index(url: str) -> bool:
    try:
        _anygram.check_index_destination(url, False)
    except IndexExistsError:
        return True
    return False
