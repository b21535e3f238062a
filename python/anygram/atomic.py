"""Atomic files: a file is either absent, or complete with what the writer wrote, even
if the process is killed or the machine loses power while it is written.

Every atomic write of the package goes through :func:`atomic_file` (streamed writes)
or :func:`write_atomic` / :func:`write_json_atomic` (small files): the data goes to
``PATH.partial`` in the same directory (a rename across file systems is not atomic),
is flushed and fsynced, renamed over ``PATH``, and the directory is fsynced so that
the rename itself survives a crash.

The temporary name is fixed, not random: the writers are the one process holding a
run's lock (see :mod:`anygram.workdir`), and a file left half-written by a killed run
is overwritten by the resumed one rather than left behind under a new name.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import IO, Any, Iterator, Optional, Union

PARTIAL_SUFFIX = ".partial"


def fsync_directory(path: str) -> None:
    """Makes the entries of directory ``path`` (renames, new files) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str, mode: str = "wb", encoding: Optional[str] = None) -> Iterator[IO[Any]]:
    """Opens ``PATH.partial`` for writing (``mode`` "wb" or "w"); on a clean exit the file
    is flushed, fsynced and renamed to ``path``; on an exception it is removed and
    ``path`` is left as it was."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_file writes a new file: mode must be 'wb' or 'w', not {mode!r}")
    path = os.fspath(path)
    tmp = path + PARTIAL_SUFFIX
    f = open(tmp, mode, encoding=encoding if "b" not in mode else None)
    try:
        yield f
        f.flush()
        os.fsync(f.fileno())
    except BaseException:
        f.close()
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    f.close()
    os.replace(tmp, path)
    fsync_directory(os.path.dirname(os.path.abspath(path)))


def write_atomic(path: str, data: Union[bytes, str]) -> None:
    """Replaces ``path`` with ``data`` (text is written as UTF-8), atomically."""
    with atomic_file(path, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def write_json_atomic(path: str, value: Any, indent: Optional[int] = None) -> None:
    """Replaces ``path`` with ``value`` as JSON, atomically. Non-ASCII is escaped, so that
    a file name that is not valid UTF-8 (a surrogate escape) round-trips too."""
    write_atomic(path, json.dumps(value, indent=indent))
