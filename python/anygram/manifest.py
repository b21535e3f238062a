"""``anygram.json``: the manifest written beside the shard files.

The core owns the format (``rust/anygram/src/manifest.rs``: a typed manifest that
refuses fields it does not know, the format-version range, the tokenizer file's
checks); this module only hands its reads and writes to the bindings. Fields
(format version 1):

``format``            "anygram-index"
``format_version``    1 (the core reads versions OLDEST..CURRENT)
``layout``            "infini-gram-v4": the shard files are infini-gram's
``token_width``       1, 2 or 4 bytes per token
``vocab_size``        token ids are in [0, vocab_size)
``eos_token_id``      reported as the continuation at a document end
``tokenizer``         null (UTF-8 bytes) or {"name", "file", "sha256"}; the file is copied into the index
``shards``            [{"num_tokens", "num_documents", "ptr_size"}] in shard order
``files``             {name: {"size", "xxh3_64"}} for every file of the index but the manifest
``build``             how it was built: anygram version, inputs, options, skipped documents, timings

Every build also writes ``anygram.format`` (:data:`MARKER_FILE`) beside the shards, so
that an index that lost its manifest is refused rather than opened as infini-gram's.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple

from . import _anygram

MANIFEST_FILE: str = _anygram.MANIFEST_FILE
MARKER_FILE: str = _anygram.MARKER_FILE
FORMAT_VERSION: int = _anygram.FORMAT_VERSION


def read_manifest(index_dir: str) -> Optional[Dict[str, Any]]:
    """The manifest as a dict (checked by the core), or None for an index without one
    (built by infini-gram). Raises :class:`CorruptIndexError`."""
    return _anygram.read_manifest(os.fspath(index_dir))


def stored_tokenizer(index_dir: str, manifest: Optional[Dict[str, Any]] = None) -> Optional[Tuple[str, str]]:
    """``(path, sha256)`` of the tokenizer stored in the index, or None (UTF-8 bytes).

    The core checks that the file is a plain name inside ``index_dir`` and that no link
    leads out of it (``Manifest::stored_tokenizer``). Raises :class:`CorruptIndexError`.
    ``manifest`` is accepted for callers that already read it; the core reads its own."""
    from .errors import CorruptIndexError

    stored = _anygram.stored_tokenizer(os.fspath(index_dir))
    if stored is None:
        return None
    path, sha256 = stored
    if sha256 is None:
        raise CorruptIndexError(f"{os.path.join(index_dir, MANIFEST_FILE)}: the tokenizer's sha256 is not recorded")
    return os.fspath(path), sha256


def write_manifest(index_dir: str, manifest: Dict[str, Any]) -> None:
    """Writes the manifest atomically (temporary file, fsync, rename): a reader sees the
    old one or the new one, never a part. A field the core's type does not know is an
    :class:`InvalidArgumentError`."""
    _anygram.write_manifest(os.fspath(index_dir), manifest)
