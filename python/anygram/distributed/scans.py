"""Contamination and dedup as Ray tasks, merged to exactly the local answers.

- Contamination: batches of examples, a task each (several in flight); a task runs the
  core's matching statistics of its batch over the whole index (opened once per worker
  from the path every node sees), so each example's coverage and longest match are the
  local ones; the driver shapes the results in order (:func:`iter_contamination`).
- Self dedup: key parts, a task each (:func:`self_dedup_parts`). The windows (the first
  ``min_len`` tokens of each suffix) are sorted in every shard's suffix array, so a key
  range of windows is a range of ranks in every shard, and a run of equal windows lies in
  one range: the core's ``dedup_self_split_keys`` cuts the key space into parts of similar
  sizes and ``dedup_self_part`` marks a part's repeats over all shards. The parts' ranges,
  united per document (:func:`_united`), are the local answer; the work is split evenly
  whatever the shards, so it scales with nodes. Finished parts are kept in a directory
  (``parts_dir``) so that a rerun resumes part by part.
- Cross dedup (``against``), one of two plans (:func:`dedup_plan`, by cost), the same
  answer either way:

  * ``"per shard"``: a task per shard S, S's documents against the other index;
  * ``"whole"``: one task runs the core's pass over both indexes (their merged suffix
    arrays) on one node's cores, and the driver cuts its ranges by shard.

All keep the local forms' resumable shape: results come in order, unit by unit.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .. import _anygram
from ..atomic import atomic_file, write_json_atomic
from ..errors import InvalidArgumentError
from ..scan.common import check_min_len
from ..scan.contamination_scan import _check_scan_args, _example_result, _example_texts, _ids_of
from ..scan.dedup_scan import MATCHING_COST_RATIO, DedupUnit, _check_against, cross_method
from .cluster import connect, get
from .views import shards_view

# Batches of a scan in flight per CPU of the cluster.
_IN_FLIGHT_PER_CPU = 2
_OPENED: Dict[str, Any] = {}  # a worker's opened indexes, by path


def _opened(path: str):
    from ..engine import Engine

    if path not in _OPENED:
        _OPENED[path] = Engine.open(path)
    return _OPENED[path]


def _one_cpu_task(ray_mod, function):
    """``function`` as a Ray task that asks for one CPU and uses one: the core's pool would
    otherwise start a thread per core of the node in every such task (N tasks of N threads
    on an N-core node). Its workers are processes of their own (a runtime environment), whose
    start costs about a second: for long tasks only (self dedup's parts: 1.18x the local wall
    time without it, 1.06x with it, bench_ray.py at 2 x 100M tokens; contamination's short
    batches went from 1.08x to 1.36x, so they keep the shared workers)."""
    return ray_mod.remote(function).options(num_cpus=1, runtime_env={"env_vars": {"RAYON_NUM_THREADS": "1"}})


def _contamination_task(path: str, texts: List[List[int]], min_len: int, k: int) -> List[Dict[str, Any]]:
    return _anygram.contamination_batch(_opened(path), texts, min_len, k)


def _in_flight(ray) -> int:
    return max(2, _IN_FLIGHT_PER_CPU * int(ray.cluster_resources().get("CPU", 1)))


@contextmanager
def _ordered(ray, jobs: Iterable[Tuple[Any, Callable[[], Any]]]) -> Iterator[Iterator[Tuple[Any, Any]]]:
    """Submits ``(key, submit)`` jobs keeping a bounded number in flight; the iterator it
    gives yields ``(key, result)`` in submission order. Leaving the ``with`` (also by an
    exception, or with results unread) cancels the jobs still in flight there and then,
    not whenever the garbage collector finalizes an abandoned generator."""
    pending: deque = deque()
    limit = _in_flight(ray)

    def oldest() -> Tuple[Any, Any]:
        key, ref = pending[0]
        result = get(ref)  # still pending (so cancelled) if this is interrupted
        pending.popleft()
        return key, result

    def results() -> Iterator[Tuple[Any, Any]]:
        for key, submit in jobs:
            pending.append((key, submit()))
            if len(pending) >= limit:
                yield oldest()
        while pending:
            yield oldest()

    try:
        yield results()
    finally:
        for _, ref in pending:
            ray.cancel(ref, force=True)


def iter_contamination(engine, examples: Iterable[Any], min_len: int, threshold: float,
                       fields: Optional[Sequence[str]] = None, k: int = 5, batch_size: int = 512,
                       id_field: Optional[str] = "id", skip: int = 0,
                       on_batch: Optional[Callable[[int], None]] = None, ray=True) -> Iterator[Dict[str, Any]]:
    """:func:`anygram.scan.iter_contamination` with the batches as Ray tasks (same results)."""
    _check_scan_args(min_len, threshold, k)
    ray_mod = connect(ray)
    task = ray_mod.remote(_contamination_task).options(num_cpus=1)
    path = os.path.abspath(engine.path)

    def batches():
        batch: List[Tuple[int, Any, List[Tuple[str, List[int]]]]] = []
        for position, example in enumerate(examples):
            if position < skip:
                continue
            pairs = [(name, _ids_of(engine, value, f"example {position}, field {name!r}"))
                     for name, value in _example_texts(example, fields, position)]
            batch.append((position, example, pairs))
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def jobs():
        for batch in batches():
            texts = [ids for _, _, pairs in batch for _, ids in pairs]
            yield batch, (lambda texts=texts: task.remote(path, texts, min_len, k))

    with _ordered(ray_mod, jobs()) as done:
        for batch, results in done:
            at = 0
            for position, example, pairs in batch:
                yield _example_result(engine, position, example, pairs, results[at:at + len(pairs)], threshold,
                                      id_field)
                at += len(pairs)
            if on_batch is not None:
                on_batch(len(batch))


# Self dedup's key parts per CPU of the cluster: several, so that parts of uneven cost even
# out over the nodes; and parts of at least this many suffixes, so that a part's fixed cost
# (opening, one bit a token of the index, the walk over every document) stays small beside it.
_PARTS_PER_CPU = 4
_MIN_PART_TOKENS = 1 << 22
_SPLIT_FILE = "split.json"


@dataclass
class DedupPart(DedupUnit):
    """One key part of self dedup on Ray: the windows whose keys lie in ``[lo, hi)``
    (``None``: unbounded); ``work`` counts its suffixes."""

    lo: Optional[bytes] = None
    hi: Optional[bytes] = None


def dedup_units(engine, min_len: Optional[int] = None, against=None, parts: Optional[int] = None,
                ray=True, parts_dir: Optional[str] = None, resume: bool = False) -> List[DedupUnit]:
    """The resumable pieces of a dedup on Ray: a shard each for cross dedup, key parts for
    self dedup (:func:`self_dedup_parts`; ``min_len`` needed)."""
    if against is not None:
        return [DedupUnit(info["shard"], 0, info["num_documents"], info["num_tokens"])
                for info in engine.shard_info()]
    if min_len is None:
        raise InvalidArgumentError("self dedup's parts depend on min_len: pass it")
    return self_dedup_parts(engine, min_len, parts, ray, parts_dir, resume)


def self_dedup_parts(engine, min_len: int, parts: Optional[int] = None, ray=True,
                     parts_dir: Optional[str] = None, resume: bool = False) -> List[DedupPart]:
    """Self dedup's key parts: ``parts`` of them (default: ``_PARTS_PER_CPU`` per CPU of the
    cluster, each of at least ``_MIN_PART_TOKENS`` suffixes), cut by the core at windows
    sampled from the suffix arrays. With ``parts_dir`` the split is kept there; ``resume``
    reads it back (the cluster may have changed size since), else a fresh split replaces
    the directory and every part it held."""
    check_min_len(min_len)
    split_file = None if parts_dir is None else os.path.join(parts_dir, _SPLIT_FILE)
    keys = None
    if resume and split_file is not None and os.path.exists(split_file):
        with open(split_file) as f:
            saved = json.load(f)
        if saved.get("min_len") == min_len and saved.get("num_tokens") == engine.num_tokens:
            keys = [bytes.fromhex(k) for k in saved["keys"]]
    if keys is None:
        if parts is None:
            cpus = int(connect(ray).cluster_resources().get("CPU", 1))
            parts = max(1, min(_PARTS_PER_CPU * cpus, engine.num_tokens // _MIN_PART_TOKENS))
        keys = _anygram.dedup_self_split_keys(engine, min_len, parts)
        if parts_dir is not None:
            shutil.rmtree(parts_dir, ignore_errors=True)
            os.makedirs(parts_dir)
            write_json_atomic(split_file, {"min_len": min_len, "num_tokens": engine.num_tokens,
                                           "keys": [k.hex() for k in keys]})
    bounds = [None, *keys, None]
    return [DedupPart(-1, 0, engine.num_documents, _anygram.dedup_self_part_work(engine, min_len, lo, hi), lo, hi)
            for lo, hi in zip(bounds, bounds[1:])]


def _no_ranges() -> Dict[str, np.ndarray]:
    return {key: np.zeros(0, dtype=np.uint64) for key in ("doc_ix", "doc_len", "num_ranges", "starts", "ends")}


def _united(parts: List[Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
    """One set of dedup arrays from several over the same documents: ranges united per
    document, overlapping or touching ones merged into one (as the core's bitmap gives)."""
    parts = [p for p in parts if len(p["doc_ix"])]
    if not parts:
        return _no_ranges()
    docs = np.concatenate([np.repeat(p["doc_ix"], p["num_ranges"].astype(np.int64)) for p in parts])
    starts = np.concatenate([p["starts"] for p in parts])
    ends = np.concatenate([p["ends"] for p in parts])
    doc_ix, first = np.unique(np.concatenate([p["doc_ix"] for p in parts]), return_index=True)
    doc_len = np.concatenate([p["doc_len"] for p in parts])[first]
    # Every document's ranges placed in one line, a gap of one between documents, so that
    # ranges of different documents never touch and one running maximum merges them all.
    base = np.concatenate([np.zeros(1, dtype=np.uint64), np.cumsum(doc_len + np.uint64(1), dtype=np.uint64)[:-1]])
    at = np.searchsorted(doc_ix, docs)
    order = np.lexsort((starts, docs))
    lo, hi, at = base[at][order] + starts[order], base[at][order] + ends[order], at[order]
    opens = np.ones(len(lo), dtype=bool)
    opens[1:] = lo[1:] > np.maximum.accumulate(hi)[:-1]
    heads = np.flatnonzero(opens)
    merged_at = at[heads]
    merged_starts = lo[heads] - base[merged_at]
    merged_ends = np.maximum.reduceat(hi, heads) - base[merged_at]
    kept, num_ranges = np.unique(merged_at, return_counts=True)
    return {"doc_ix": doc_ix[kept], "doc_len": doc_len[kept], "num_ranges": num_ranges.astype(np.uint64),
            "starts": merged_starts.astype(np.uint64), "ends": merged_ends.astype(np.uint64)}


def _against(engine, other, method: str, min_len: int) -> Dict[str, np.ndarray]:
    if cross_method(engine, other, method) == "merge":
        return _anygram.dedup_against_all(engine, other, min_len, None)
    return _anygram.dedup_against(engine, other, 0, 0, engine.num_documents, min_len, None)


def dedup_plan(shard_tokens: Sequence[int], nodes: int, against_tokens: Optional[int] = None,
               method: str = "merge") -> str:
    """How dedup runs on ``nodes`` equal nodes. Self dedup (no ``against_tokens``): always
    ``"key parts"`` (its work split evenly, whatever the shards). Cross dedup: ``"per
    shard"`` or ``"whole"``, whichever should end first: a node's work in tokens of the
    core's merged pass (the matching statistics: ``MATCHING_COST_RATIO`` a token); per
    shard, the tasks' work spread over the nodes, and at least the largest task's; whole,
    all of it on one node."""
    if against_tokens is None:
        return "key parts"
    if method != "merge":
        return "per shard"  # the same work either way, a shard a task
    costs = [n + against_tokens for n in shard_tokens]
    whole = sum(shard_tokens) + against_tokens
    per_shard = max(max(costs), sum(costs) / max(1, nodes))
    return "per shard" if per_shard < whole else "whole"


def _shard_part(arrays: Dict[str, np.ndarray], doc_lo: int, doc_hi: int) -> Dict[str, np.ndarray]:
    """The ranges of documents ``[doc_lo, doc_hi)`` (global) of a dedup's arrays."""
    docs = arrays["doc_ix"]
    a, b = np.searchsorted(docs, doc_lo), np.searchsorted(docs, doc_hi)
    bounds = np.concatenate([[0], np.cumsum(arrays["num_ranges"], dtype=np.uint64)]).astype(np.int64)
    r0, r1 = bounds[a], bounds[b]
    return {"doc_ix": docs[a:b], "doc_len": arrays["doc_len"][a:b], "num_ranges": arrays["num_ranges"][a:b],
            "starts": arrays["starts"][r0:r1], "ends": arrays["ends"][r0:r1]}


def _dedup_part_task(path: str, min_len: int, lo: Optional[bytes], hi: Optional[bytes]) -> Dict[str, np.ndarray]:
    """The core's self dedup of one key part over every shard, on this node."""
    return _anygram.dedup_self_part(_opened(path), min_len, lo, hi)


def _dedup_whole_task(path: str, min_len: int, against: str, method: str) -> Dict[str, np.ndarray]:
    """The core's cross dedup of the whole index (the local scan's units), on this node."""
    engine, other = _opened(path), _opened(against)
    if method == "merge":
        return _anygram.dedup_against_all(engine, other, min_len, None)
    parts = [_anygram.dedup_against(engine, other, info["shard"], 0, info["num_documents"], min_len, None)
             for info in engine.shard_info()]
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def _dedup_shard_task(path: str, shard: int, doc_start: int, min_len: int, against: str,
                      method: str) -> Dict[str, np.ndarray]:
    views = tempfile.mkdtemp(prefix="anygram-dedup-")
    try:
        mine = shards_view(path, [shard], os.path.join(views, "shard"))
        arrays = _against(mine, _opened(against), method, min_len)
        arrays["doc_ix"] = arrays["doc_ix"] + np.uint64(doc_start)
        return arrays
    finally:
        shutil.rmtree(views, ignore_errors=True)


def _part_file(parts_dir: str, j: int) -> str:
    return os.path.join(parts_dir, f"part-{j:06d}.npz")


def _save_part(parts_dir: str, j: int, arrays: Dict[str, np.ndarray]) -> None:
    with atomic_file(_part_file(parts_dir, j)) as f:
        np.savez(f, **arrays)


def _load_part(parts_dir: str, j: int) -> Dict[str, np.ndarray]:
    try:
        with np.load(_part_file(parts_dir, j)) as saved:
            return {key: saved[key] for key in saved.files}
    except (OSError, ValueError) as e:
        raise InvalidArgumentError(f"the finished part {j} of this dedup in {parts_dir} is unreadable ({e}): "
                                   "pass restart=True to start over") from None


def _iter_self_parts(ray_mod, engine, min_len: int, skip: int, progress, parts: Optional[int],
                     parts_dir: Optional[str], ray) -> Iterator[Tuple[DedupUnit, Dict[str, np.ndarray]]]:
    """Self dedup a key part a task: yields every part, with no ranges but the last, which
    carries the ranges of all parts united (the local answer). Finished parts are kept in
    ``parts_dir`` (without it, in memory: those before ``skip`` are run again)."""
    path = os.path.abspath(engine.path)
    units = self_dedup_parts(engine, min_len, parts, ray, parts_dir, resume=skip > 0)
    if skip >= len(units):
        if parts_dir is not None:
            shutil.rmtree(parts_dir, ignore_errors=True)
        return
    done: List[Dict[str, np.ndarray]] = []
    if parts_dir is not None:
        done = [_load_part(parts_dir, j) for j in range(skip)]
        first = skip
    else:
        first = 0
    task = _one_cpu_task(ray_mod, _dedup_part_task)
    jobs = ((j, (lambda u=units[j]: task.remote(path, min_len, u.lo, u.hi))) for j in range(first, len(units)))
    with _ordered(ray_mod, jobs) as finished:
        for j, arrays in finished:
            if parts_dir is not None:
                _save_part(parts_dir, j, arrays)
            done.append(arrays)
            if j < skip:
                continue
            if progress is not None:
                progress(units[j].work)
            last = j == len(units) - 1
            yield units[j], (_united(done) if last else _no_ranges())
    if parts_dir is not None:
        shutil.rmtree(parts_dir, ignore_errors=True)


def iter_dedup_units(engine, min_len: int, against=None, skip: int = 0,
                     progress: Optional[Callable[[int], None]] = None, method: str = "auto",
                     ray=True, plan: str = "auto", parts: Optional[int] = None,
                     parts_dir: Optional[str] = None) -> Iterator[Tuple[DedupUnit, Dict[str, np.ndarray]]]:
    """:func:`anygram.scan.iter_dedup_units` on Ray, unit by unit (:func:`dedup_units`); the
    ranges of all units together are the local answer. Self dedup: a key part a task
    (``parts`` of them; see :func:`_iter_self_parts`), the finished parts kept in
    ``parts_dir`` for a rerun. Cross dedup, a shard a unit: ``plan`` ``"auto"``
    (:func:`dedup_plan` for the cluster's nodes), ``"per shard"`` or ``"whole"``."""
    check_min_len(min_len)
    _check_against(engine, against)
    if plan not in ("auto", "per shard", "whole"):
        raise InvalidArgumentError(f"plan must be auto, 'per shard' or whole, not {plan!r}")
    ray_mod = connect(ray)
    if against is None:
        yield from _iter_self_parts(ray_mod, engine, min_len, skip, progress, parts, parts_dir, ray)
        return
    method = cross_method(engine, against, method)
    path = os.path.abspath(engine.path)
    other = os.path.abspath(against.path)
    infos = engine.shard_info()
    starts = np.cumsum([0] + [info["num_documents"] for info in infos]).tolist()
    units = dedup_units(engine, min_len, against)[skip:]
    if not units:
        return
    if plan == "auto":
        nodes = len([n for n in ray_mod.nodes() if n.get("Alive")])
        plan = dedup_plan([info["num_tokens"] for info in infos], nodes, against.num_tokens, method)
    if plan == "whole":
        arrays = get(ray_mod.remote(_dedup_whole_task).options(num_cpus=1).remote(path, min_len, other, method))
        for unit in units:
            if progress is not None:
                progress(unit.work)
            yield unit, _shard_part(arrays, starts[unit.shard], starts[unit.shard + 1])
        return
    task = ray_mod.remote(_dedup_shard_task).options(num_cpus=1)
    jobs = ((u, (lambda u=u: task.remote(path, u.shard, starts[u.shard], min_len, other, method))) for u in units)
    with _ordered(ray_mod, jobs) as done:
        for unit, arrays in done:
            if progress is not None:
                progress(unit.work)
            yield unit, arrays
