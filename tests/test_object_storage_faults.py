"""A server that answers 500 now and then: anygram retries the GETs and answers
exactly as the local files do; one that keeps failing is a clear ``IndexIOError``.

The faults come from a small HTTP proxy on 127.0.0.1 in front of the tests'
s3s-fs (``test_object_storage.served``), which fails chosen GETs with 500 before
they reach the server (the request's signature stays valid: the proxy forwards
it unchanged, ``Host`` included).
"""

from __future__ import annotations

import http.server
import os
import shutil
import threading

import httpx
import pytest

import anygram
from anygram import _anygram
from anygram.errors import IndexIOError
from test_object_storage import BLOCK_BYTES, _queries, served  # noqa: F401  (the fixture)

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class FaultProxy:
    """Forwards to 127.0.0.1:`upstream`; `fail(n, key)` says whether the n-th GET (from
    1), of `key` (path and range), fails."""

    def __init__(self, upstream: int, fail):
        self.gets = self.failed = 0
        self.lock = threading.Lock()
        proxy = self
        client = httpx.Client(base_url=f"http://127.0.0.1:{upstream}", timeout=10)

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self, method: str) -> None:
                if method == "GET":
                    with proxy.lock:
                        proxy.gets += 1
                        failing = fail(proxy.gets, (self.path, self.headers.get("Range")))
                        proxy.failed += failing
                    if failing:
                        self.send_response(500)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                answer = client.request(method, self.path, headers=headers, content=body)
                self.send_response(answer.status_code)
                for k, v in answer.headers.items():
                    if k.lower() not in HOP_BY_HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                if method != "HEAD":
                    self.wfile.write(answer.content)

            def do_GET(self):
                self._forward("GET")

            def do_HEAD(self):
                self._forward("HEAD")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _open_through(proxy: FaultProxy, served, bucket: str, retries: int):
    """The index in a bucket of its own, whose client is made now with the proxy as endpoint."""
    shutil.copytree(served["local"], served["root"] / bucket / "idx")
    saved = os.environ["AWS_ENDPOINT_URL"]
    os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{proxy.port}"
    try:
        _anygram.configure_storage(block_bytes=BLOCK_BYTES, cache_ram_bytes=64 << 20, retries=retries)
        return anygram.Engine.open(f"s3://{bucket}/idx")
    finally:
        os.environ["AWS_ENDPOINT_URL"] = saved


def test_a_500_now_and_then_is_retried_and_every_answer_is_exact(served):  # noqa: F811
    seen = set()

    def first_try_of_every_other_request(n: int, key) -> bool:
        # The first attempt of every other distinct request fails; its retry succeeds.
        first = key not in seen
        seen.add(key)
        return first and n % 2 == 0

    proxy = FaultProxy(served["s3_port"], first_try_of_every_other_request)
    try:
        remote = _open_through(proxy, served, "flaky", retries=3)
        local = anygram.Engine.open(served["local"])
        for q in _queries(served["docs"], 3, n=25):
            assert remote.count(q) == local.count(q), q
            assert remote.ntd(q, max_support=4) == local.ntd(q, max_support=4), q
            if q:
                assert remote.infgram_prob(q[:-1], q[-1]) == local.infgram_prob(q[:-1], q[-1]), q
                assert remote.search_docs(q, maxnum=2, seed=1) == local.search_docs(q, maxnum=2, seed=1), q
        assert proxy.failed > 10  # the faults really happened, and were retried
    finally:
        proxy.close()


def test_a_server_that_keeps_failing_mid_query_is_an_index_io_error(served):  # noqa: F811
    healthy = {"gets": None}

    def fail(n: int, key) -> bool:
        return healthy["gets"] is not None and n > healthy["gets"]

    proxy = FaultProxy(served["s3_port"], fail)
    try:
        remote = _open_through(proxy, served, "failing", retries=1)
        healthy["gets"] = proxy.gets  # every GET from now on answers 500
        with pytest.raises(IndexIOError, match=r"failing/idx/.*500"):
            remote.count([1, 2])
        assert proxy.failed > 0
    finally:
        proxy.close()
