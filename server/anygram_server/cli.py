"""The flags of ``anygram serve`` and the code that starts the service.

``anygram``'s CLI (python/anygram/cli.py) calls :func:`add_arguments` to build the
``serve`` subcommand and :func:`run` to start it. Importing this module is cheap: FastAPI
and uvicorn are imported by :func:`run` only; the limits' flags come from :mod:`limits`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import List


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--index",
        "-i",
        action="append",
        required=True,
        metavar="NAME=PATH",
        help="an index to serve under NAME (repeat for several; a bare PATH is named after its directory)",
    )
    p.add_argument(
        "--tokenizer",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="tokenizer.json for index NAME when it has no manifest (built by infini-gram)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port to listen on")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes (each maps the same index files); one process already uses every core",
    )
    p.add_argument(
        "--engine-threads",
        type=int,
        default=None,
        help="threads running engine calls per process (default: 2 x cores, at least 4)",
    )
    p.add_argument(
        "--api-key-file", help="require one of the keys in this file (one a line) on every API call"
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow browser calls from ORIGIN (repeat; '*' for any)",
    )
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn's log level")
    p.add_argument("--no-access-log", action="store_true", help="do not log every request")
    p.add_argument("--ray", nargs="?", const=True, default=None, metavar="ADDRESS",
                   help="serve on a Ray cluster with Ray Serve (the anygram[ray] extra): ADDRESS (auto, HOST:PORT) "
                        "or, alone, the one Ray finds or starts; every node must see the index paths")
    p.add_argument("--ray-groups", type=int, default=2, help="with --ray: groups of shards per index (a Ray actor each)")

    # The limits' flags, defaults and help: the table that config.Limits is made from.
    from .limits import LIMITS, flag_of

    limits = p.add_argument_group(
        "limits (a request over one gets a 4xx naming the field and the limit)"
    )
    for name, limit in LIMITS.items():
        limits.add_argument(
            flag_of(name),
            dest=name,
            metavar="N",
            type=type(limit.default),
            default=limit.default,
            help=f"{limit.help} (default: {limit.default:,})",
        )


def _pairs(values: List[str], flag: str) -> List[tuple]:
    out = []
    for value in values:
        name, sep, path = value.partition("=")
        if not sep:
            name, path = os.path.basename(os.path.normpath(value)), value
        if not name or not path:
            raise SystemExit(f"anygram serve: error: {flag} {value!r}: expected NAME=PATH")
        out.append((name, path))
    return out


def settings_from_args(args: argparse.Namespace):
    from .config import IndexSpec, Limits, Settings

    tokenizers = dict(_pairs(args.tokenizer, "--tokenizer"))
    specs = []
    for name, path in _pairs(args.index, "--index"):
        if any(s.name == name for s in specs):
            raise SystemExit(f"anygram serve: error: two indexes named {name!r}")
        specs.append(IndexSpec(name=name, path=path, tokenizer=tokenizers.pop(name, None)))
    if tokenizers:
        raise SystemExit(f"anygram serve: error: --tokenizer for unknown index(es): {', '.join(tokenizers)}")
    limits = Limits(**{name: getattr(args, name) for name in Limits.model_fields})
    extra = {} if args.engine_threads is None else {"engine_threads": args.engine_threads}
    return Settings(
        indexes=specs, limits=limits, api_keys_file=args.api_key_file, cors_origins=args.cors_origin, **extra
    )


def _check_can_listen(host: str, port: int) -> None:
    """Fails before the URL is announced when the address is taken (uvicorn would say so only
    after the banner). Binds as uvicorn does (SO_REUSEADDR), then lets go."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as e:
        raise SystemExit(f"anygram serve: error: cannot listen on --host {host} --port {port}: "
                         f"{e.strerror or e}") from None


def run(args: argparse.Namespace) -> int:
    import uvicorn
    from pydantic import ValidationError

    from .registry import IndexRegistry

    try:
        settings = settings_from_args(args)
    except ValidationError as e:
        raise SystemExit(f"anygram serve: error: {e}") from None
    if settings.api_keys_file is not None:
        try:
            if not settings.api_keys():
                raise SystemExit(f"anygram serve: error: {settings.api_keys_file} holds no API key")
        except OSError as e:
            raise SystemExit(f"anygram serve: error: --api-key-file: {e}") from None
    if args.ray:
        from . import ray_serve

        return ray_serve.run(args, settings)
    # Open every index now, so a wrong path fails here with anygram's message, not in a worker.
    registry = IndexRegistry(settings.indexes)
    names = ", ".join(f"{index.name} ({index.engine.num_tokens:,} tokens)" for index in registry)
    shown_host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    _check_can_listen(args.host, args.port)
    print(f"anygram serve: http://{shown_host}:{args.port}/  indexes: {names}  (API docs: /docs)", flush=True)

    from .protocol import configure, uvicorn_options

    common = dict(
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=not args.no_access_log,
        **uvicorn_options(settings.limits),
    )
    if args.workers <= 1:
        from .main import create_app

        configure(settings.limits)  # worker processes: app_from_env does it

        uvicorn.run(create_app(settings, registry), **common)
        return 0
    del registry  # each worker opens its own
    os.environ.update(settings.to_env())
    with tempfile.TemporaryDirectory(prefix="anygram-metrics-") as metrics_dir:
        # Set before the workers import prometheus_client, so /metrics adds up all of them.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        uvicorn.run("anygram_server.main:app_from_env", factory=True, workers=args.workers, **common)
    return 0


def main(argv=None) -> int:
    """``python -m anygram_server.cli``: the same as ``anygram serve``."""
    p = argparse.ArgumentParser(prog="anygram serve", description="Serve anygram indexes over HTTP.")
    add_arguments(p)
    args = p.parse_args(argv)
    from anygram.errors import AnygramError

    try:
        return run(args)
    except AnygramError as e:  # from opening an index
        print(f"anygram serve: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
