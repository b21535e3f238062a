"""An S3-compatible server (``s3s-fs``) on 127.0.0.1 over a local directory, for the tests
of indexes in object storage: ``ROOT/BUCKET/KEY`` is the object ``s3://BUCKET/KEY``, so a
test reads back exactly the bytes a build uploaded. ``.ci/run`` installs s3s-fs (cargo)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from typing import Dict, Iterator

import httpx
import pytest

from serving import free_port

S3S_FS = shutil.which("s3s-fs") or os.path.expanduser("~/.cargo/bin/s3s-fs")
ACCESS_KEY, SECRET_KEY = "anygram-test", "anygram-test-secret"


def wait_for_port(port: int, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not answer on port {port}")


def start_s3(root: str) -> "tuple[subprocess.Popen, int]":
    """s3s-fs serving ``root`` (each directory in it a bucket) on a free loopback port."""
    if not os.path.exists(S3S_FS):
        pytest.skip("s3s-fs is not installed (.ci/run installs it)")
    port = free_port()
    proc = subprocess.Popen([S3S_FS, "--host", "127.0.0.1", "--port", str(port), "--access-key", ACCESS_KEY,
                             "--secret-key", SECRET_KEY, root], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, proc, "s3s-fs")
    return proc, port


def s3_env(port: int) -> Dict[str, str]:
    """The variables that point object_store's S3 client at the server on ``port``."""
    return {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}


@contextmanager
def environment(env: Dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``env`` set, restored after."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
