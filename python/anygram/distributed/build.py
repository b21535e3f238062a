"""A build on a Ray cluster: slices of the input files tokenized as tasks, then a task a
shard for the suffix arrays.

The driver (:func:`anygram.build_index` with ``ray=``) has the input files read and tokenized
as Ray tasks, a contiguous slice of files each (:func:`tokenize_on_ray`; documents from
Python are tokenized on the driver), joins their streams in order and cuts the shards in its
work directory as a local build does; then every shard whose suffix array
is not in the journal yet becomes a Ray task that sorts it within ``mem`` and writes
``table.S`` beside ``tokenized.S`` (the work directory is on a filesystem every node
sees). The driver records each finished shard in the journal as it arrives, so a rerun
never sorts a finished shard again, then writes the accelerators, checksums and manifest
and publishes the index, exactly as locally: the files are byte for byte the local build's.

Into object storage (``output`` a URL): the work directory is a staging directory every
node sees (``tmp``); each task uploads its shard's files as soon as they are sorted (from
the node that sorted them, recorded in the work directory's ``uploaded/``), and the
driver's publish uploads the rest, the manifest last, skipping what the tasks recorded.

A task whose worker dies (killed, out of memory, node lost) is retried by Ray; an
external sort's finished parts (``parts.S/``) survive and are reused by the retry.
"""

from __future__ import annotations

import os
import shutil
import signal
from typing import Any, Dict, List, Optional

import numpy as np

from .. import _anygram
from ..progress import progress_bar
from .cluster import connect, get

# Test hook: the path of a marker file; the first task to find it absent creates it and
# SIGKILLs its own worker process in the middle of its sort (Ray then retries the task).
KILL_ONCE_ENV = "ANYGRAM_RAY_KILL_WORKER_ONCE"
# Retries of a shard's task after its worker died.
TASK_RETRIES = 3


def sort_shard(index_dir: str, parts_dir: str, s: int, width: int, threads: int, mem: Optional[int],
               part_tokens: Optional[int], overlap_tokens: Optional[int], kill_once: Optional[str],
               upload_to: Optional[str] = None, upload_record: Optional[str] = None) -> Dict[str, Any]:
    """Shard ``s``'s suffix array (the Ray task's body; also callable locally); with
    ``upload_to`` (an object storage URL) the shard's files are then uploaded there from
    this task, each recorded in ``upload_record`` (the driver's publish skips them)."""
    import time

    t0 = time.perf_counter()

    def report(phase: str, part: int, num_parts: int, done: int, total: int) -> None:
        if kill_once and not os.path.exists(kill_once):
            with open(kill_once, "w") as f:
                f.write(f"shard {s} pid {os.getpid()} at {phase}\n")
            os.kill(os.getpid(), signal.SIGKILL)

    result = dict(_anygram.build_suffix_array(
        os.path.join(index_dir, f"tokenized.{s}"), os.path.join(index_dir, f"table.{s}"), width, threads,
        mem_bytes=mem, work_dir=parts_dir, part_tokens=part_tokens, overlap_tokens=overlap_tokens,
        progress=report if kill_once else None,
    ))
    result["seconds"] = time.perf_counter() - t0
    if upload_to is not None:
        # (Not timed in the result: the journal's entry is the manifest's suffix-array record.)
        for kind in SHARD_FILES:
            local = os.path.join(index_dir, f"{kind}.{s}")
            if os.path.exists(local):
                _anygram.upload_index_file(local, upload_to.rstrip("/") + f"/{kind}.{s}", upload_record)
    return result


# The variables that say where object storage is and how to sign in (object_store's
# and anygram's): a task that uploads gets the driver's.
STORAGE_ENV_PREFIXES = ("AWS_", "GOOGLE_", "AZURE_", "ANYGRAM_STORAGE_")
# A shard's files that exist once its suffix array is sorted (its accelerator comes later,
# from the driver's finish step).
SHARD_FILES = ("tokenized", "offset", "metadata", "metaoff", "table")


def sort_shards_on_ray(work, shard_meta: List[Dict[str, Any]], width: int, workers: int, mem: Optional[int],
                       part_tokens: Optional[int], overlap_tokens: Optional[int], progress: bool,
                       address, upload_to: Optional[str] = None, upload_record: Optional[str] = None) -> None:
    """Sorts every shard not yet in ``work``'s journal as a Ray task; records each in the
    journal (step ``suffix_array.S``, the local build's) as it finishes. ``upload_to``:
    each task then uploads its shard's files there (see :func:`sort_shard`)."""
    ray = connect(address)
    todo = [s for s in range(len(shard_meta)) if work.done(f"suffix_array.{s}") is None]
    if not todo:
        return
    # A task's CPUs: the threads it sorts with (0: one; Ray's scheduler spreads the shards).
    options: Dict[str, Any] = {}
    if upload_to is not None:
        # The tasks reach the object store as the driver does (its credentials and
        # endpoint), whatever their nodes' environment holds.
        options["runtime_env"] = {"env_vars": {k: v for k, v in os.environ.items()
                                               if k.startswith(STORAGE_ENV_PREFIXES)}}
    task = ray.remote(sort_shard).options(num_cpus=max(1, workers), max_retries=TASK_RETRIES,
                                          retry_exceptions=False, **options)
    kill_once = os.environ.get(KILL_ONCE_ENV) or None
    pending = {
        task.remote(os.path.abspath(work.index), os.path.abspath(os.path.join(work.path, f"parts.{s}")), s, width,
                    max(0, workers), mem, part_tokens, overlap_tokens, kill_once, upload_to, upload_record): s
        for s in todo
    }
    with progress_bar(len(shard_meta), "suffix arrays on ray", " shards", progress) as bar:
        bar.update(len(shard_meta) - len(todo))
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                s = pending.pop(ready[0])
                result = get(ready[0])
                work.finish(f"suffix_array.{s}", result)
                bar.update(1)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)


def _tokenize_slice(slice_dir: str, files: List[str], tokenizer_path: Optional[str], width: int, vocab: int,
                    metadata: bool, root: str, text_field: str, text_mode: str, piece_chars: int,
                    strict: bool) -> Dict[str, Any]:
    """Reads and tokenizes ``files`` (a slice of the inputs, in order) into streams in
    ``slice_dir`` as the local build's tokenize step does (the Ray task's body)."""
    from ..builder import _file_source, _StreamWriter, _tokenize_all
    from ..corpus import SkipLog
    from ..tokenizer import Tokenizer

    os.makedirs(slice_dir, exist_ok=True)
    skips = SkipLog(strict=strict)
    tok = Tokenizer(tokenizer_path) if tokenizer_path is not None else None
    writer = _StreamWriter(slice_dir, width, vocab, metadata)
    encoder = _tokenize_all(_file_source(files, skips, text_field, text_mode), writer, tok, width, vocab, skips,
                            root, False, piece_chars)
    streams = dict(writer.finish(slice_dir))
    return {"streams": streams, "counts": list(skips.counts.items()), "examples": list(skips.examples),
            "fast": encoder.native is not None and encoder.native.is_fast,
            "fallback_reason": encoder.fallback_reason}


def _slices(files: List[str], n: int) -> List[List[str]]:
    """Contiguous groups of ``files`` of about equal bytes, at most ``n``."""
    sizes = [max(1, os.path.getsize(p)) for p in files]
    total, groups, current, done = sum(sizes), [], [], 0
    for path, size in zip(files, sizes):
        current.append(path)
        done += size
        if done >= total * (len(groups) + 1) / n and len(groups) < n - 1:
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return groups


def tokenize_on_ray(work, files: List[str], tok, width: int, vocab: int, skips, metadata: bool, root: str,
                    text_field: str, text_mode: str, piece_chars: int, progress: bool,
                    address) -> Optional[Dict[str, Any]]:
    """The build's tokenize step with slices of the input files as Ray tasks: the slices'
    streams, joined in order, are the ones the local step writes (each document is
    tokenized on its own). Returns what the local step returns (and journals it), or None
    for a single input file (the local step reads it)."""
    import time

    from ..atomic import write_atomic
    from ..errors import BuildError

    if len(files) < 2:
        return None  # one file is read by one process either way: the driver's local step
    t0 = time.perf_counter()
    ray = connect(address)
    n = max(1, min(len(files), 2 * int(ray.cluster_resources().get("CPU", 1))))
    groups = _slices(files, n)
    task = ray.remote(_tokenize_slice).options(num_cpus=1, max_retries=TASK_RETRIES, retry_exceptions=False)
    # A slice finished by an interrupted run is in the journal (under this slicing) and kept.
    steps = [f"tokenize.{len(groups)}.slice.{i}" for i in range(len(groups))]
    refs = [None if work.done(step) is not None and os.path.isdir(os.path.join(work.path, f"slice.{i}")) else
            task.remote(os.path.join(work.path, f"slice.{i}"), g, tok.path if tok is not None else None, width,
                        vocab, metadata, root, text_field, text_mode, piece_chars, skips.strict)
            for i, (g, step) in enumerate(zip(groups, steps))]
    with progress_bar(len(groups), "tokenize on ray", " slices", progress) as bar:
        results = []
        for step, ref in zip(steps, refs):
            if ref is None:
                results.append(work.done(step))
            else:
                results.append(get(ref))
                work.finish(step, results[-1])
            bar.update(1)
    # Join the slices' streams in order; start offsets shift by the bytes before them.
    doc_starts, meta_starts = [], []
    totals = {"num_documents": 0, "num_tokens": 0, "bytes": 0, "meta_bytes": 0 if metadata else None}
    with open(os.path.join(work.index, "tokenized.all"), "wb") as tokens, \
            (open(os.path.join(work.index, "metadata.all"), "wb") if metadata else open(os.devnull, "wb")) as meta:
        for i, r in enumerate(results):
            d = os.path.join(work.path, f"slice.{i}")
            s = r["streams"]
            with open(os.path.join(d, "tokenized.all"), "rb") as f:
                shutil.copyfileobj(f, tokens, 1 << 24)
            doc_starts.append(np.fromfile(os.path.join(d, "doc_starts.u64"), dtype="<u8") + np.uint64(totals["bytes"]))
            if metadata:
                with open(os.path.join(d, "metadata.all"), "rb") as f:
                    shutil.copyfileobj(f, meta, 1 << 24)
                meta_starts.append(np.fromfile(os.path.join(d, "meta_starts.u64"), dtype="<u8")
                                   + np.uint64(totals["meta_bytes"]))
                totals["meta_bytes"] += s["meta_bytes"]
            for key in ("num_documents", "num_tokens", "bytes"):
                totals[key] += s[key]
            for reason, count in r["counts"]:
                skips.counts[reason] += count
            skips.examples.extend(r["examples"][:max(0, 20 - len(skips.examples))])
        tokens.flush()
        os.fsync(tokens.fileno())
        if metadata:
            meta.flush()
            os.fsync(meta.fileno())
    write_atomic(os.path.join(work.path, "doc_starts.u64"),
                 np.concatenate(doc_starts).astype("<u8").tobytes() if doc_starts else b"")
    write_atomic(os.path.join(work.path, "meta_starts.u64"),
                 np.concatenate(meta_starts).astype("<u8").tobytes() if meta_starts else b"")
    for i in range(len(groups)):
        shutil.rmtree(os.path.join(work.path, f"slice.{i}"), ignore_errors=True)
    if totals["num_documents"] == 0:
        raise BuildError(f"no readable documents in {files} ({skips.total} skipped)")
    tokenizer_path = None
    if tok is not None:
        reasons = [r["fallback_reason"] for r in results if r["fallback_reason"]]
        fast = all(r["fast"] for r in results)
        tokenizer_path = "fast byte-level" if fast else "tokenizers library" + (f" ({reasons[0]})" if reasons else "")
    result = {**totals, "skipped": dict(skips.counts), "skipped_examples": list(skips.examples),
              "tokenizer_path": tokenizer_path, "seconds": time.perf_counter() - t0}
    work.finish("tokenize", result)
    return result
