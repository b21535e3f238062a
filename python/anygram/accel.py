"""Search accelerators: the optional ``accel.{s}`` file beside each shard.

An accelerator is a static search tree over sampled suffix keys (see
``rust/anygram/src/accel.rs``): with it, a count, find or document search costs
at most 3 dependent reads per shard after the tree's resident levels, and
opening the index reads no more than those levels (no pass over the suffix
array). ``anygram build --accelerator`` writes one; :func:`add_accelerator` (the
command ``anygram index add-accelerator``) adds it to an existing index,
infini-gram's included.
"""

from __future__ import annotations

import os
from typing import List, Optional

from . import _anygram
from .errors import InvalidArgumentError

# The core's defaults (one owner: rust/anygram/src/accel.rs).
DEFAULT_RATE = _anygram.ACCEL_DEFAULT_RATE
DEFAULT_KEY_BYTES = _anygram.ACCEL_DEFAULT_KEY_BYTES


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidArgumentError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def add_accelerator(
    index_dir: str,
    rate: int = DEFAULT_RATE,
    key_bytes: int = DEFAULT_KEY_BYTES,
    token_width: Optional[int] = None,
) -> List[str]:
    """Writes the accelerator of every shard of the index in ``index_dir``
    (each atomically: temporary file, fsync, rename), replacing old ones, and
    records their sizes and checksums in the manifest when the index has one.

    ``rate``: one key per this many suffix-array ranks (the bucket a search reads
    whole); ``key_bytes`` (1..255): bytes of each suffix kept in a key; patterns up
    to this length never tie. ``token_width`` is for indexes without a manifest
    (inferred from the file sizes when None). Returns the files written.
    """
    _check_int("rate", rate, 1)
    _check_int("key_bytes", key_bytes, 1)
    if token_width is not None:
        _check_int("token_width", token_width, 1)
    index_dir = os.fspath(index_dir)
    paths = [os.fspath(p) for p in _anygram.write_accelerators(index_dir, token_width, rate, key_bytes)]
    # The core records them in the manifest (sizes, checksums), when the index has one.
    _anygram.record_files(index_dir, [os.path.basename(p) for p in paths])
    return paths
