"""A build's suffix arrays on a Ray cluster: one task a shard.

The driver (:func:`anygram.build_index` with ``ray=``) tokenizes the inputs and cuts the
shards in its work directory as a local build does; then every shard whose suffix array
is not in the journal yet becomes a Ray task that sorts it within ``mem`` and writes
``table.S`` beside ``tokenized.S`` (the work directory is on a filesystem every node
sees). The driver records each finished shard in the journal as it arrives, so a rerun
never sorts a finished shard again, then writes the accelerators, checksums and manifest
and publishes the index, exactly as locally: the files are byte for byte the local build's.

A task whose worker dies (killed, out of memory, node lost) is retried by Ray; an
external sort's finished parts (``parts.S/``) survive and are reused by the retry.
"""

from __future__ import annotations

import os
import signal
from typing import Any, Dict, List, Optional

from .. import _anygram
from ..progress import progress_bar
from .cluster import connect, get

# Test hook: the path of a marker file; the first task to find it absent creates it and
# SIGKILLs its own worker process in the middle of its sort (Ray then retries the task).
KILL_ONCE_ENV = "ANYGRAM_RAY_KILL_WORKER_ONCE"
# Retries of a shard's task after its worker died.
TASK_RETRIES = 3


def sort_shard(index_dir: str, parts_dir: str, s: int, width: int, threads: int, mem: Optional[int],
               part_tokens: Optional[int], overlap_tokens: Optional[int], kill_once: Optional[str]) -> Dict[str, Any]:
    """Shard ``s``'s suffix array (the Ray task's body; also callable locally)."""
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
    result["node"] = os.uname().nodename
    return result


def sort_shards_on_ray(work, shard_meta: List[Dict[str, Any]], width: int, workers: int, mem: Optional[int],
                       part_tokens: Optional[int], overlap_tokens: Optional[int], progress: bool,
                       address) -> None:
    """Sorts every shard not yet in ``work``'s journal as a Ray task; records each in the
    journal (step ``suffix_array.S``, the local build's) as it finishes."""
    ray = connect(address)
    todo = [s for s in range(len(shard_meta)) if work.done(f"suffix_array.{s}") is None]
    if not todo:
        return
    # A task's CPUs: the threads it sorts with (0: one; Ray's scheduler spreads the shards).
    task = ray.remote(sort_shard).options(num_cpus=max(1, workers), max_retries=TASK_RETRIES,
                                          retry_exceptions=False)
    kill_once = os.environ.get(KILL_ONCE_ENV) or None
    pending = {
        task.remote(os.path.abspath(work.index), os.path.abspath(os.path.join(work.path, f"parts.{s}")), s, width,
                    max(0, workers), mem, part_tokens, overlap_tokens, kill_once): s
        for s in todo
    }
    with progress_bar(len(shard_meta), "suffix arrays on ray", " shards", progress) as bar:
        bar.update(len(shard_meta) - len(todo))
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                s = pending.pop(ready[0])
                result = get(ready[0])
                result.pop("node", None)
                work.finish(f"suffix_array.{s}", result)
                bar.update(1)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
