"""Answers encoded as JSON bytes in an engine thread (see :mod:`runner`), never on the event
loop: in pieces that check the request's deadline and the response size limit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, List

from fastapi.responses import Response

from .config import Limits
from .errors import LimitExceededError
from .runner import Deadline


def json_response(body: bytes) -> Response:
    """An answer already encoded by :func:`encode_answer`."""
    return Response(content=body, media_type="application/json")


def encode_json(obj: Any) -> bytes:
    """Compact UTF-8 JSON (as Starlette's JSONResponse writes it); numpy values as lists."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_plain).encode(
        "utf-8"
    )


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_answer(answer: Any, deadline: Deadline, limits: Limits) -> bytes:
    """``answer`` as :func:`encode_json` writes it, but in pieces: the two outer levels of
    dicts and lists (or generators, which shape each item as it is needed) are walked
    here, each piece below is one short ``json.dumps``. Between pieces the deadline is
    checked (one ``json.dumps`` of a big answer would hold the GIL for seconds) and the
    bytes counted against ``max_response_bytes``."""
    out = _Pieces(deadline, limits.max_response_bytes)
    out.value(answer, depth=3)
    return b"".join(out.parts)


class _Pieces:
    def __init__(self, deadline: Deadline, max_bytes: int):
        self.deadline = deadline
        self.max_bytes = max_bytes
        self.size = 0
        self.parts: List[bytes] = []

    def add(self, piece: bytes) -> None:
        self.size += len(piece)
        if self.size > self.max_bytes:
            raise LimitExceededError(
                "response",
                self.max_bytes,
                self.size,
                what=f"the answer is over {self.max_bytes:,} bytes (ask for fewer or shorter results)",
            )
        self.parts.append(piece)

    def value(self, value: Any, depth: int) -> None:
        if depth and isinstance(value, dict) and any(map(_is_nested, value.values())):
            self.add(b"{")
            for i, (key, item) in enumerate(value.items()):
                self.add((b"," if i else b"") + encode_json(str(key)) + b":")
                self.value(item, depth - 1)
            self.add(b"}")
        elif depth and (
            isinstance(value, Iterator) or (isinstance(value, (list, tuple)) and _is_nested(value))
        ):
            self.add(b"[")
            for i, item in enumerate(value):
                if i:
                    self.add(b",")
                self.value(item, depth - 1)
            self.add(b"]")
        else:
            # Scalars, and containers of scalars (a list of counts): one piece, fast to encode
            # and slow one number at a time.
            self.deadline.check()
            self.add(encode_json(value))


def _is_nested(value: Any) -> bool:
    """Worth encoding in pieces: a dict, a generator, a list of containers."""
    if isinstance(value, (dict, Iterator)):
        return True
    return isinstance(value, (list, tuple)) and bool(value) and isinstance(value[0], (dict, list, tuple))
