"""Contamination and dedup as Ray tasks, merged to exactly the local answers.

- Contamination: batches of examples, a task each (several in flight); a task runs the
  core's matching statistics of its batch over the whole index (opened once per worker
  from the path every node sees), so each example's coverage and longest match are the
  local ones; the driver shapes the results in order (:func:`iter_contamination`).
- Dedup, one of two plans (:func:`dedup_plan`, by cost), the same answer either way:

  * ``"per shard"``: a task per shard S. Cross dedup (``against``): S's documents against
    the other index. Self dedup keeps the first occurrence in corpus order (shard by shard,
    then position), so S loses the windows repeated inside S (the core's self dedup of S
    alone) and those occurring in shards 0..S-1 (the core's cross dedup of S against them);
    their ranges, united per document, are the local answer.
  * ``"whole"``: one task runs the core's pass over the whole index (its merged suffix
    arrays) on one node's cores, and the driver cuts its ranges by shard.

  Per shard costs more work in all: shard S's check against the shards before it reads
  them too (or searches them, ~``MATCHING_COST_RATIO`` times dearer a token), so the last
  shard's task alone is about the whole pass; it pays only with many nodes and a cheap
  cross check. The core's merged pass split by key range, a task a range, would make it
  linear (not exposed by the core yet).

Both keep the local forms' resumable shape: results come in order, unit by unit.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import deque
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .. import _anygram
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


def _contamination_task(path: str, texts: List[List[int]], min_len: int, k: int) -> List[Dict[str, Any]]:
    return _anygram.contamination_batch(_opened(path), texts, min_len, k)


def _in_flight(ray) -> int:
    return max(2, _IN_FLIGHT_PER_CPU * int(ray.cluster_resources().get("CPU", 1)))


def _ordered(ray, jobs: Iterable[Tuple[Any, Callable[[], Any]]]) -> Iterator[Tuple[Any, Any]]:
    """Submits ``(key, submit)`` jobs keeping a bounded number in flight; yields
    ``(key, result)`` in submission order."""
    pending: deque = deque()
    limit = _in_flight(ray)
    try:
        for key, submit in jobs:
            pending.append((key, submit()))
            while len(pending) >= limit:
                key0, ref = pending.popleft()
                yield key0, get(ref)
        while pending:
            key0, ref = pending.popleft()
            yield key0, get(ref)
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

    for batch, results in _ordered(ray_mod, jobs()):
        at = 0
        for position, example, pairs in batch:
            yield _example_result(engine, position, example, pairs, results[at:at + len(pairs)], threshold, id_field)
            at += len(pairs)
        if on_batch is not None:
            on_batch(len(batch))


def dedup_units(engine) -> List[DedupUnit]:
    """A unit per shard (the resumable pieces of a dedup on Ray)."""
    return [DedupUnit(info["shard"], 0, info["num_documents"], info["num_tokens"]) for info in engine.shard_info()]


def _united(parts: List[Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
    """One set of dedup arrays from several over the same documents: ranges united per document."""
    ranges: Dict[int, List[Tuple[int, int]]] = {}
    lengths: Dict[int, int] = {}
    for arrays in parts:
        starts, ends = arrays["starts"].tolist(), arrays["ends"].tolist()
        at = 0
        for doc, length, n in zip(arrays["doc_ix"].tolist(), arrays["doc_len"].tolist(),
                                  arrays["num_ranges"].tolist()):
            ranges.setdefault(doc, []).extend(zip(starts[at:at + n], ends[at:at + n]))
            lengths[doc] = length
            at += n
    out: Dict[str, List[int]] = {"doc_ix": [], "doc_len": [], "num_ranges": [], "starts": [], "ends": []}
    for doc in sorted(ranges):
        merged: List[List[int]] = []
        for a, b in sorted(ranges[doc]):
            if merged and a <= merged[-1][1]:  # overlapping or touching: one range, as the core's bitmap gives
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        out["doc_ix"].append(doc)
        out["doc_len"].append(lengths[doc])
        out["num_ranges"].append(len(merged))
        out["starts"].extend(a for a, _ in merged)
        out["ends"].extend(b for _, b in merged)
    return {key: np.asarray(value, dtype=np.uint64) for key, value in out.items()}


def _against(engine, other, method: str, min_len: int) -> Dict[str, np.ndarray]:
    if cross_method(engine, other, method) == "merge":
        return _anygram.dedup_against_all(engine, other, min_len, None)
    return _anygram.dedup_against(engine, other, 0, 0, engine.num_documents, min_len, None)


def dedup_plan(shard_tokens: Sequence[int], nodes: int, against_tokens: Optional[int] = None,
               method: str = "merge") -> str:
    """``"per shard"`` or ``"whole"``, whichever should end first on ``nodes`` equal nodes:
    a node's work in tokens of the core's merged pass (the matching statistics:
    ``MATCHING_COST_RATIO`` a token). Per shard: the tasks' work spread over the nodes, and
    at least the largest task's; whole: all of it on one node."""
    if against_tokens is None:
        before, costs = 0, []
        for n in shard_tokens:
            costs.append(n + (min(n + before, MATCHING_COST_RATIO * n) if before else 0))
            before += n
        whole = sum(shard_tokens)
    elif method == "merge":
        costs = [n + against_tokens for n in shard_tokens]
        whole = sum(shard_tokens) + against_tokens
    else:
        return "per shard"  # the same work either way, a shard a task
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


def _dedup_whole_task(path: str, min_len: int, against: Optional[str], method: str) -> Dict[str, np.ndarray]:
    """The core's dedup of the whole index (the local scan's one unit), on this node."""
    engine, other = _opened(path), None if against is None else _opened(against)
    if other is None:
        return _anygram.dedup_self(engine, min_len, None)
    if method == "merge":
        return _anygram.dedup_against_all(engine, other, min_len, None)
    parts = [_anygram.dedup_against(engine, other, info["shard"], 0, info["num_documents"], min_len, None)
             for info in engine.shard_info()]
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def _dedup_shard_task(path: str, shard: int, doc_start: int, min_len: int, against: Optional[str],
                      method: str) -> Dict[str, np.ndarray]:
    views = tempfile.mkdtemp(prefix="anygram-dedup-")
    try:
        mine = shards_view(path, [shard], os.path.join(views, "shard"))
        if against is not None:
            arrays = _against(mine, _opened(against), method, min_len)
        else:
            parts = [_anygram.dedup_self(mine, min_len, None)]
            if shard > 0:
                before = shards_view(path, list(range(shard)), os.path.join(views, "before"))
                parts.append(_against(mine, before, "auto", min_len))
            arrays = _united(parts)
        arrays["doc_ix"] = arrays["doc_ix"] + np.uint64(doc_start)
        return arrays
    finally:
        shutil.rmtree(views, ignore_errors=True)


def iter_dedup_units(engine, min_len: int, against=None, skip: int = 0,
                     progress: Optional[Callable[[int], None]] = None, method: str = "auto",
                     ray=True, plan: str = "auto") -> Iterator[Tuple[DedupUnit, Dict[str, np.ndarray]]]:
    """:func:`anygram.scan.iter_dedup_units` on Ray, unit by unit (:func:`dedup_units`: a
    shard each, whatever the plan); the ranges of all units together are the local answer.
    ``plan``: ``"auto"`` (:func:`dedup_plan` for the cluster's nodes), ``"per shard"`` or
    ``"whole"``."""
    check_min_len(min_len)
    _check_against(engine, against)
    if plan not in ("auto", "per shard", "whole"):
        raise InvalidArgumentError(f"plan must be auto, 'per shard' or whole, not {plan!r}")
    if against is not None:
        method = cross_method(engine, against, method)
    ray_mod = connect(ray)
    path = os.path.abspath(engine.path)
    other = None if against is None else os.path.abspath(against.path)
    infos = engine.shard_info()
    starts = np.cumsum([0] + [info["num_documents"] for info in infos]).tolist()
    units = dedup_units(engine)[skip:]
    if not units:
        return
    if plan == "auto":
        nodes = len([n for n in ray_mod.nodes() if n.get("Alive")])
        plan = dedup_plan([info["num_tokens"] for info in infos], nodes,
                          None if against is None else against.num_tokens, method)
    if plan == "whole":
        arrays = get(ray_mod.remote(_dedup_whole_task).options(num_cpus=1).remote(path, min_len, other, method))
        for unit in units:
            if progress is not None:
                progress(unit.work)
            yield unit, _shard_part(arrays, starts[unit.shard], starts[unit.shard + 1])
        return
    task = ray_mod.remote(_dedup_shard_task).options(num_cpus=1)
    jobs = ((u, (lambda u=u: task.remote(path, u.shard, starts[u.shard], min_len, other, method))) for u in units)
    for unit, arrays in _ordered(ray_mod, jobs):
        if progress is not None:
            progress(unit.work)
        yield unit, arrays
