"""Engine calls off the event loop, within a time budget.

Every request's engine work (tokenizing, the native call, shaping and JSON-encoding the
answer) runs in a thread of one pool, as ``work(deadline)``. The native code releases the GIL, so the threads
use every core while the event loop keeps accepting requests.

A native call cannot be interrupted, so the budget is enforced from outside:

* a request that finds every thread busy waits for one at most its budget, then gets
  503 ``overloaded``;
* a request whose work outlasts its budget gets 504 ``timeout`` at once; its thread
  finishes the call in the background and only then frees its slot, so slow queries
  cannot pile up beyond the pool's size;
* the Python part of the work (shaping and encoding the answer, which holds the GIL and
  so slows the event loop too) runs in pieces, calling ``deadline.check()`` between them:
  a request over its budget stops there and frees its thread.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional, TypeVar

from .errors import OverloadedError, TimeoutExceededError
from .metrics import ENGINE_LATENCY

T = TypeVar("T")


class Deadline:
    """The end of one request's time budget, checked by its work between pieces."""

    def __init__(self, start: float, budget_s: float):
        self.budget_s = budget_s
        self.at = start + budget_s

    def check(self) -> None:
        """Raises :class:`TimeoutExceededError` once the budget is spent."""
        if time.perf_counter() > self.at:
            raise TimeoutExceededError(
                f"the query took longer than the time budget of {self.budget_s:g} s", limit=self.budget_s
            )


class EngineRunner:
    def __init__(self, threads: int, budget_s: float):
        self.threads = threads
        self.budget_s = budget_s
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="anygram-engine")
        self._slots: Optional[asyncio.Semaphore] = None

    async def run(
        self, query_type: str, work: Callable[[Deadline], T], budget_s: Optional[float] = None
    ) -> T:
        """``work(deadline)`` in a pool thread; raises :class:`OverloadedError` (503) or
        :class:`TimeoutExceededError` (504) past the budget."""
        budget = self.budget_s if budget_s is None else budget_s
        start = time.perf_counter()
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.threads)
        slots = self._slots
        if slots.locked():
            try:
                await asyncio.wait_for(slots.acquire(), budget)
            except asyncio.TimeoutError:
                raise OverloadedError(
                    f"all {self.threads} engine threads stayed busy for the whole time budget "
                    f"of {budget:g} s; retry later",
                    limit=budget,
                ) from None
        else:
            await slots.acquire()
        remaining = budget - (time.perf_counter() - start)
        if remaining <= 0:
            slots.release()
            raise TimeoutExceededError(
                f"the time budget of {budget:g} s was spent waiting for an engine thread", limit=budget
            )
        loop = asyncio.get_running_loop()
        answer = loop.create_future()

        def finish(job) -> None:  # on the event loop, once the thread is done
            # The slot is freed when the thread is done, not when the request gives up on it.
            slots.release()
            if answer.done():  # timed out (or the client went away) meanwhile
                return
            error = job.exception()
            if error is not None:
                answer.set_exception(error)
            else:
                answer.set_result(job.result())

        def expire() -> None:
            if not answer.done():
                answer.set_exception(
                    TimeoutExceededError(
                        f"the query took longer than the time budget of {budget:g} s", limit=budget
                    )
                )

        try:
            job = self._executor.submit(work, Deadline(start, budget))
        except BaseException:
            slots.release()
            raise
        job.add_done_callback(lambda job: loop.call_soon_threadsafe(finish, job))
        # A timer and a plain future: cheaper than wait_for + shield + wrap_future (tens of µs).
        timer = loop.call_later(remaining, expire)
        try:
            result = await answer
        finally:
            timer.cancel()
        ENGINE_LATENCY.labels(query_type).observe(time.perf_counter() - start)
        return result

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
