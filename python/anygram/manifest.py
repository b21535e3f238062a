"""``anygram.json``: the manifest written beside the shard files.

Fields (format version 1):

``format``            "anygram-index"
``format_version``    1 (the core reads versions OLDEST..CURRENT, see rust/anygram/src/manifest.rs)
``layout``            "infini-gram-v4": the shard files are infini-gram's
``token_width``       1, 2 or 4 bytes per token
``vocab_size``        token ids are in [0, vocab_size)
``eos_token_id``      reported as the continuation at a document end
``tokenizer``         null (UTF-8 bytes) or {"name", "file", "sha256"}; the file is copied into the index
``shards``            [{"num_tokens", "num_documents", "ptr_size"}] in shard order
``files``             {name: {"size", "xxh3_64"}} for every file of the index but the manifest
``build``             how it was built: anygram version, inputs, options, skipped documents, timings
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional, Tuple

MANIFEST_FILE = "anygram.json"
FORMAT_VERSION = 1


def read_manifest(index_dir: str) -> Optional[Dict[str, Any]]:
    """The manifest as a dict, or None for an index without one (built by infini-gram)."""
    path = os.path.join(index_dir, MANIFEST_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        from .errors import CorruptIndexError

        raise CorruptIndexError(f"{path}: manifest is not valid JSON ({e})") from e


def stored_tokenizer(index_dir: str, manifest: Dict[str, Any]) -> Optional[Tuple[str, str]]:
    """``(path, sha256)`` of the tokenizer stored in the index, or None (UTF-8 bytes).

    The manifest's ``tokenizer.file`` must be a plain file name of a file inside
    ``index_dir`` (no directory part, no ``..``, not a link leading out): an index must
    never make anygram read a file elsewhere. Raises :class:`CorruptIndexError`.

    NOTE: the core's ``Manifest::tokenizer_path(dir)`` (rust/anygram/src/manifest.rs,
    branch h-core) is to own this check; once the bindings expose it, call it here
    instead of checking in Python.
    """
    from .errors import CorruptIndexError

    info = manifest.get("tokenizer")
    if info is None:
        return None
    where = os.path.join(index_dir, MANIFEST_FILE)
    if not isinstance(info, dict):
        raise CorruptIndexError(f"{where}: 'tokenizer' must be null or an object, not {info!r}")
    name, sha256 = info.get("file"), info.get("sha256")
    separators = {"/", "\\", os.sep} | ({os.altsep} if os.altsep else set())
    if (not isinstance(name, str) or name in ("", ".", "..") or "\0" in name
            or any(sep in name for sep in separators)):
        raise CorruptIndexError(
            f"{where}: tokenizer file {name!r} is not a plain file name inside the index directory")
    if not isinstance(sha256, str) or len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise CorruptIndexError(f"{where}: tokenizer sha256 {sha256!r} is not 64 lowercase hex digits")
    path = os.path.join(index_dir, name)
    if os.path.realpath(os.path.dirname(os.path.realpath(path))) != os.path.realpath(index_dir):
        raise CorruptIndexError(f"{where}: tokenizer file {name!r} leads outside the index directory")
    return path, sha256


def write_manifest(index_dir: str, manifest: Dict[str, Any]) -> None:
    """Writes the manifest atomically (temporary file, fsync, rename): a reader
    sees the old one or the new one, never a part (an index that is being served
    can gain files, e.g. its search accelerators)."""
    path = os.path.join(index_dir, MANIFEST_FILE)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    fd = os.open(index_dir, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
