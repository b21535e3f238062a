"""The command-line forms of the scans (``anygram contamination``, ``anygram dedup``):
output streamed to a file and a run that stops resumes where it stopped, through an
:class:`anygram.workdir.OutputCheckpoint` beside the output."""

from __future__ import annotations

import contextlib
import functools
import json
import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from ..corpus import read_jsonl
from ..errors import InvalidArgumentError
from ..paths import check_outputs, progress_file
from ..progress import progress_bar
from ..workdir import output_checkpoint
from .clean_writer import write_clean
from .common import check_min_len
from .contamination_scan import (
    DEFAULT_CONTAMINATION_MIN_LEN,
    DEFAULT_THRESHOLD,
    ContaminationSummary,
    _check_scan_args,
    iter_contamination,
)
from .dedup_scan import (
    DEFAULT_DEDUP_MIN_LEN,
    _check_against,
    _dedup_summary,
    _dedup_units,
    cross_method,
    iter_dedup_units,
    ranges_records,
)


def _index_signature(engine) -> Dict[str, Any]:
    return {
        "index": os.path.abspath(engine.path),
        "num_tokens": engine.num_tokens,
        "num_documents": engine.num_documents,
    }


def _file_signature(path: str) -> Dict[str, Any]:
    st = os.stat(path)
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


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
    ray: Any = None,
) -> Dict[str, Any]:
    """The ``anygram contamination`` scan: streams one JSON line per example to
    ``out`` (resuming after the last complete line when a previous run with the
    same arguments stopped) and returns the summary of all examples. ``ray``: True or a
    cluster address runs the batches as Ray tasks (:mod:`anygram.distributed.scans`)."""
    if not os.path.isfile(eval_path):
        raise InvalidArgumentError(f"{eval_path}: no such eval file")
    _check_scan_args(min_len, threshold, k)
    check_outputs({"out": out, "out's progress file": out and progress_file(out)}, inputs={"eval_path": eval_path},
                  index_dirs={"index": engine.path})
    summary = ContaminationSummary(min_len, threshold)
    skip = 0
    with contextlib.ExitStack() as held:
        sink = checkpoint = None
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
            checkpoint = held.enter_context(output_checkpoint(out, signature, restart))
            if checkpoint.state:
                skip, size = _complete_lines(out)
                with open(out, "rb") as f:
                    for line in f.read(size).splitlines():
                        summary.add(json.loads(line))
                sink = held.enter_context(open(out, "r+b"))
                sink.truncate(size)
                sink.seek(size)
            else:
                sink = held.enter_context(open(out, "wb"))
            checkpoint.save(started=True)
        bar = held.enter_context(progress_bar(None, "contamination", " examples", progress))
        bar.update(skip)
        scan = iter_contamination
        if ray:
            from ..distributed.scans import iter_contamination as on_ray

            scan = functools.partial(on_ray, ray=ray)
        for r in scan(
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
    ray: Any = None,
) -> Dict[str, Any]:
    """The ``anygram dedup`` scan: writes one JSON line per affected document to
    ``ranges_path`` unit by unit (the whole index for self dedup, a chunk of
    documents for cross dedup), then, with ``write``, the cleaned corpus in batches of documents.
    Each step records its progress in ``ranges_path.progress.json``; rerunning with
    the same arguments continues where it stopped. ``ray``: True or a cluster address
    runs the units as Ray tasks (:mod:`anygram.distributed.scans`: self dedup a key part a
    task, the finished parts kept in ``ranges_path.parts`` until the end; cross dedup a
    shard a task). Returns the summary."""
    check_min_len(min_len)
    _check_against(engine, against)
    check_outputs({"ranges_path": ranges_path, "ranges_path's progress file": progress_file(ranges_path),
                   "write": write},
                  index_dirs={"index": engine.path, "against": against.path if against is not None else None},
                  output_dirs={"ranges_path's parts directory": ranges_path + ".parts" if ray else None})
    signature = {
        "kind": "dedup",
        **_index_signature(engine),
        "min_len": min_len,
        "against": None if against is None else _index_signature(against),
        "method": None if against is None else cross_method(engine, against, method),
    }
    iterate = iter_dedup_units
    if ray:
        from ..distributed import scans as on_ray

        # Other units (key parts of self dedup, whose finished results are kept beside the
        # output; a shard each of cross dedup): a run resumes only in the same form.
        signature["units"] = "ray: key parts" if against is None else "ray: a shard each"
        parts_dir = ranges_path + ".parts"

        def units_of(engine, against, method, resume):
            return on_ray.dedup_units(engine, min_len, against, ray=ray, parts_dir=parts_dir, resume=resume)

        iterate = functools.partial(on_ray.iter_dedup_units, ray=ray, parts_dir=parts_dir)
    else:
        def units_of(engine, against, method, resume):
            return _dedup_units(engine, against, method)
    with output_checkpoint(ranges_path, signature, restart) as checkpoint:
        state = checkpoint.state
        done_units = state.get("units_done", 0)
        units = units_of(engine, against, method, done_units > 0)
        size = state.get("ranges_size", 0) if done_units else 0
        totals = (
            state.get("totals", {"affected": 0, "removed": 0, "emptied": 0})
            if done_units
            else {"affected": 0, "removed": 0, "emptied": 0}
        )
        with open(ranges_path, "r+b" if done_units else "wb") as sink:
            sink.truncate(size)
            sink.seek(size)
            bar = progress_bar(
                sum(u.work for u in units), "dedup" if against is None else "dedup --against", " tok", progress
            )
            bar.update(sum(u.work for u in units[:done_units]))
            base = [bar.n]

            def tick(done: int) -> None:
                bar.update(base[0] + done - bar.n)

            try:
                for j, (unit, arrays) in enumerate(
                    iterate(engine, min_len, against, skip=done_units, progress=tick, method=method),
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
            bar = progress_bar(engine.num_documents, "write", " docs", progress)
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
