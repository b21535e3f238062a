"""``anygram serve --ray``: the same HTTP service, on a Ray cluster through Ray Serve.

The ingress deployment runs this package's FastAPI app (every route, limit and error of
``anygram serve``) over a :class:`~anygram.distributed.engine.ClusterEngine` per index.
Each served index is cut into groups of shards; each group is a Ray actor
(:class:`anygram.distributed.engine.ShardGroup`, the group's shards opened on its node)
that the ingress replica starts and owns. Queries go from the replica straight to the
groups' sockets over the cluster engine's direct transport (:mod:`anygram.distributed.transport`:
a request per group, sent together; a batch request one per group and round), merged
exactly as one machine's engine merges its shards; Ray only places and restarts the groups.
Not Serve deployments of their own: a call through a Serve handle (its router, its asyncio
hops) cost ~5 ms more per request on the benchmark's cluster than a plain actor call, and a
plain actor call ~1 ms more than the direct transport (bench/bench_ray.py). What remains
beside ``anygram serve`` is Serve's own HTTP proxy hop to the replica. A group's actor that
dies is restarted by Ray and found again; one whose ingress replica dies goes with it, and
Serve's new replica starts its own.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Any, List

from anygram.distributed.cluster import connect
from anygram.distributed.engine import DEFAULT_TIMEOUT_S, ClusterEngine, shard_groups
from anygram.manifest import read_manifest

from .config import IndexSpec, Settings
from .registry import IndexRegistry, ServedIndex

APP_NAME = "anygram"


class _ClusterIndex(ServedIndex):
    """A served index whose engine is a cluster engine (the registry's fields, set directly)."""

    def __init__(self, spec: IndexSpec, engine: ClusterEngine):
        self.name = spec.name
        self.spec = spec
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self.vocab_size = engine.vocab_size


class _ClusterRegistry(IndexRegistry):
    def __init__(self, indexes: List[_ClusterIndex]):
        self._by_name = {index.name: index for index in indexes}


class Gateway:
    """The ingress deployment: the service's app over cluster engines, ``groups_per_index``
    shard groups (actors this replica owns) each."""

    def __init__(self, settings_json: str, groups_per_index: int):
        self.settings = Settings.model_validate_json(settings_json)
        indexes = []
        for spec in self.settings.indexes:
            # Never shorter than the time budget (which answers 504 first); a stalled group then
            # frees its engine thread with an error rather than holding it for good.
            timeout = max(DEFAULT_TIMEOUT_S, self.settings.limits.time_budget_s)
            engine = ClusterEngine(spec.path, groups=groups_per_index, tokenizer=spec.tokenizer, timeout=timeout)
            indexes.append(_ClusterIndex(spec, engine))
        self.registry = _ClusterRegistry(indexes)

    def __serve_build_asgi_app__(self):
        from .main import create_app

        return create_app(self.settings, self.registry)


def application(settings: Settings, groups_per_index: int, ray_address: Any = True):
    """The Ray Serve application of ``settings``' indexes, ``groups_per_index`` shard
    groups each (connects to the cluster first; the indexes are checked here, so that a
    wrong one fails before anything is deployed)."""
    from ray import serve

    connect(ray_address)
    for spec in settings.indexes:
        if read_manifest(spec.path) is None:
            raise SystemExit(f"anygram serve --ray: error: {spec.path} has no manifest (an index built by anygram "
                             "is needed)")
    shard_groups(1, groups_per_index)  # the number checked before deploying
    gateway = serve.deployment(serve.ingress()(Gateway), name="gateway", ray_actor_options={"num_cpus": 0})
    return gateway.bind(settings.model_dump_json(), groups_per_index)


def run(args, settings: Settings) -> int:
    """Deploys the service on the cluster (HTTP on ``--host``/``--port`` of the head node)
    and waits; Ctrl-C or SIGTERM takes it down."""
    from ray import serve

    connect(args.ray)
    serve.start(http_options={"host": args.host, "port": args.port})
    serve.run(application(settings, args.ray_groups, args.ray), name=APP_NAME, route_prefix="/")
    names = ", ".join(spec.name for spec in settings.indexes)
    print(f"anygram serve --ray: http://{args.host}:{args.port}/  indexes: {names}  "
          f"({args.ray_groups} group(s) of shards each)", flush=True)
    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # as Ctrl-C: the application is taken down, not left running
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("anygram serve --ray: shutting down", file=sys.stderr, flush=True)
        serve.delete(APP_NAME)
    return 0
