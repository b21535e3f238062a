"""``anygram serve --ray``: the same HTTP service, on a Ray cluster through Ray Serve.

Each served index is cut into groups of shards; each group is a Ray Serve deployment
(:class:`anygram.distributed.engine.ShardGroup`: the group's shards opened on its node).
The ingress deployment runs this package's FastAPI app (every route, limit and error of
``anygram serve``) over a :class:`~anygram.distributed.engine.ClusterEngine` per index
that fans each query out to the groups' deployments and merges the answers exactly as one
machine's engine does; a batch request is one call per group and round.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Any, Dict, List

from anygram.distributed.cluster import connect
from anygram.distributed.engine import ClusterEngine, ShardGroup, shard_groups
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
    """The ingress deployment: the service's app over cluster engines. ``groups`` and
    ``handles``: for each index, its groups of shards and their deployments' handles."""

    def __init__(self, settings_json: str, groups: Dict[str, List[List[int]]], *handles: Any):
        self.settings = Settings.model_validate_json(settings_json)
        handles_left = list(handles)
        indexes = []
        for spec in self.settings.indexes:
            mine = [handles_left.pop(0) for _ in groups[spec.name]]
            engine = ClusterEngine(spec.path, groups=groups[spec.name], tokenizer=spec.tokenizer, handles=mine)
            indexes.append(_ClusterIndex(spec, engine))
        self.registry = _ClusterRegistry(indexes)

    def __serve_build_asgi_app__(self):
        from .main import create_app

        return create_app(self.settings, self.registry)


def application(settings: Settings, groups_per_index: int, ray_address: Any = True):
    """The Ray Serve application of ``settings``' indexes, ``groups_per_index`` deployments
    of shard groups each (connects to the cluster first)."""
    from ray import serve

    connect(ray_address)
    groups: Dict[str, List[List[int]]] = {}
    bound = []
    for spec in settings.indexes:
        manifest = read_manifest(spec.path)
        if manifest is None:
            raise SystemExit(f"anygram serve --ray: error: {spec.path} has no manifest (an index built by anygram "
                             "is needed)")
        groups[spec.name] = shard_groups(len(manifest["shards"]), groups_per_index)
        for g in groups[spec.name]:
            name = f"{spec.name}-shards-{g[0]}-{g[-1]}"
            deployment = serve.deployment(ShardGroup, name=name, ray_actor_options={"num_cpus": 0})
            bound.append(deployment.bind(spec.path, g))
    gateway = serve.deployment(serve.ingress()(Gateway), name="gateway", ray_actor_options={"num_cpus": 0})
    return gateway.bind(settings.model_dump_json(), groups, *bound)


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
