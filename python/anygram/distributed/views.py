"""Some shards of an index opened as an index of their own, on the node that holds them."""

from __future__ import annotations

import os
from typing import Sequence

# A shard's files, by infini-gram's names (the accelerator when there is one).
SHARD_FILES = ("tokenized", "table", "offset", "metadata", "metaoff", "accel")


def shards_view(index: str, shards: Sequence[int], into: str):
    """An engine over shards ``shards`` of ``index`` (numbered 0, 1, ... in that order):
    a directory ``into`` of links to their files (no copies), opened with the index's
    token parameters from its manifest."""
    from ..engine import Engine
    from ..manifest import read_manifest

    manifest = read_manifest(index)
    os.makedirs(into)
    for i, s in enumerate(shards):
        for name in SHARD_FILES:
            source = os.path.join(index, f"{name}.{s}")
            if os.path.exists(source):
                os.symlink(source, os.path.join(into, f"{name}.{i}"))
    return Engine(into, manifest["token_width"], manifest["vocab_size"], manifest["eos_token_id"], None)
