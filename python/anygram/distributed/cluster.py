"""Connecting to Ray, and Ray's errors turned back into anygram's."""

from __future__ import annotations

import re
from typing import Any, Union

from ..errors import AnygramError, InvalidArgumentError


_ADDRESS = re.compile(r"auto|local|(ray://)?[A-Za-z0-9.\-\[\]:]+:\d{1,5}")


def import_ray():
    try:
        import ray
    except ImportError:
        raise InvalidArgumentError("Ray is not installed: pip install 'anygram[ray]'") from None
    return ray


def check_address(address: Union[bool, str, None]) -> None:
    """Raises unless ``address`` is True/None or shaped like a cluster address."""
    if address is True or address is None:
        return
    if not (isinstance(address, str) and _ADDRESS.fullmatch(address.strip())):
        # E.g. `--ray data.jsonl`: an input taken for the address.
        raise InvalidArgumentError(f"--ray/ray= takes a cluster address (auto, HOST:PORT or ray://HOST:PORT), "
                                   f"not {address!r}: write --ray=ADDRESS, or --ray alone after the inputs")


def connect(address: Union[bool, str, None] = True):
    """The ``ray`` module, connected: to ``address`` (``ray://...``, ``HOST:PORT`` or
    ``auto``), or for ``True`` to the cluster Ray finds itself (``RAY_ADDRESS``, a local
    one it starts otherwise). An existing connection is kept."""
    check_address(address)
    ray = import_ray()
    if not ray.is_initialized():
        if address is True or address is None:
            ray.init(log_to_driver=False)
        else:
            ray.init(address=address.strip(), log_to_driver=False)
    return ray


def get(refs: Any) -> Any:
    """``ray.get``, re-raising an anygram error raised on a worker as itself (not wrapped in
    Ray's ``RayTaskError``), so callers see the same error classes as locally."""
    ray = import_ray()
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, AnygramError):
            raise cause from None
        raise
