"""anygram on a Ray cluster (the ``anygram[ray]`` extra; nothing else in anygram imports ray).

Work splits by shard, since shards are independent:

- :mod:`.build`: a build's suffix arrays, one Ray task a shard (``build_index(..., ray=...)``,
  ``anygram build --ray``); the driver tokenizes and splits, then writes the manifest and
  publishes, so the index is byte for byte the local build's.
- :mod:`.scans`: contamination in batches of examples and dedup in ranges of documents, as
  Ray tasks, merged to exactly the local answer (``anygram contamination|dedup --ray``).
- :mod:`.engine`: :class:`ClusterEngine`, the query methods of :class:`anygram.Engine` over
  groups of shards held by Ray actors, merged exactly as the local engine merges its shards.

Every node must see the index (or the build's output directory) at the same path: a shared
filesystem, or a copy of each group's shard files at that path on its node.
"""

from .cluster import connect

__all__ = ["connect"]
