"""infini-gram's engine in a child process, for differential tests.

infini-gram 2.6.0's native engine crashes now and then (seen: a segfault inside
``infgram_ntd`` on a 3-shard u8 index, about one run in six, not tied to one query).
In-process, that kills the whole pytest run. Here each peer lives in its own
process: a call that kills it is retried in a fresh one, and only a crash that
repeats on the same call is reported (as :class:`PeerCrashed`), so the tests
still fail loudly on anything the peer cannot answer at all.
"""

from __future__ import annotations

import multiprocessing
import warnings
from typing import Any, Dict

_CONTEXT = multiprocessing.get_context("spawn")
_ATTEMPTS = 3


class PeerCrashed(RuntimeError):
    """infini-gram's engine died on the same call in every attempt."""


def _serve(conn, engine_kwargs: Dict[str, Any]) -> None:
    from infini_gram.engine import InfiniGramEngine

    engine = InfiniGramEngine(**engine_kwargs)
    while True:
        request = conn.recv()
        if request is None:
            return
        method, args, kwargs = request
        try:
            conn.send(("ok", getattr(engine, method)(*args, **kwargs)))
        except Exception as e:  # the peer's Python-level errors travel back as they are
            conn.send(("raised", e))


class PeerEngine:
    """``InfiniGramEngine(**engine_kwargs)`` behind a pipe; methods are called by name."""

    def __init__(self, **engine_kwargs: Any):
        self._kwargs = engine_kwargs
        self._process = None
        self._conn = None
        self.restarts = 0

    def _start(self) -> None:
        parent, child = _CONTEXT.Pipe()
        self._process = _CONTEXT.Process(target=_serve, args=(child, self._kwargs), daemon=True)
        self._process.start()
        child.close()
        self._conn = parent

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        for attempt in range(_ATTEMPTS):
            if self._process is None or not self._process.is_alive():
                if self._process is not None:
                    self.restarts += 1
                    warnings.warn(f"infini-gram's engine died (exit code {self._process.exitcode}) on "
                                  f"{method}{args!r}; retrying in a fresh process")
                self._start()
            try:
                self._conn.send((method, args, kwargs))
                status, value = self._conn.recv()
            except (EOFError, ConnectionError, BrokenPipeError):
                self._process.join(5)
                continue
            if status == "raised":
                raise value
            return value
        raise PeerCrashed(f"infini-gram crashed {_ATTEMPTS} times on {method}{args!r} {kwargs!r} "
                          f"(exit code {self._process.exitcode})")

    def __getattr__(self, method: str):
        if method.startswith("_"):
            raise AttributeError(method)
        return lambda *args, **kwargs: self._call(method, *args, **kwargs)

    def close(self) -> None:
        if self._process is not None and self._process.is_alive():
            try:
                self._conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            self._process.join(5)
            if self._process.is_alive():
                self._process.kill()
        self._process = None

    def __del__(self) -> None:
        self.close()
