"""`anygram serve` at its edges, over real sockets on 127.0.0.1: the work and the answer of one
request are bounded, a client cannot hold the service with huge headers or half a request,
and anything unexpected (a Rust panic included) is a JSON 500 that the metrics count."""

from __future__ import annotations

import json
import random
import socket

import pytest
from serving import Server

import anygram

WORDS = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran"]


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("limits")
    rng = random.Random(3)
    corpus = tmp / "corpus.jsonl"
    corpus.write_text(
        "".join(
            json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(40))}) + "\n" for _ in range(50)
        )
    )
    return anygram.build_index(str(corpus), str(tmp / "index"), progress=False).output


def assert_limit(response, field, limit):
    assert response.status_code == 400, response.text
    answer = response.json()
    assert (answer["code"], answer["field"], answer["limit"]) == ("limit_exceeded", field, limit), answer
    assert f"the limit is {limit:,}" in answer["error"]
    return answer


# --- 1. the work and the answer of one request --------------------------------------------------


def test_default_limits_refuse_a_batch_that_would_return_millions_of_entries(index):
    """The issue's request: 1,000 empty contexts with max_support 10,000 (each within its own
    limit) asks for 10 million ntd entries; it is refused up front, naming both fields."""
    with Server({"x": index}) as s, s.client() as c:
        answer = assert_limit(
            c.post("/v1/indexes/x/ntd", json={"contexts": [""] * 1000, "max_support": 10_000}),
            "contexts x max_support",
            200_000,
        )
        assert answer["fields"] == ["contexts", "max_support"] and answer["got"] == 10_000_000
        within = {"contexts": [""] * 20, "max_support": 10_000}
        assert c.post("/v1/indexes/x/ntd", json=within).status_code == 200
        # and by default a header of a megabyte is not read whole (64 KiB is the limit)
        with connect(s) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")
            assert status_of(read_until_closed(sock)) == 431


def test_work_budgets_of_every_endpoint(index):
    flags = ["--max-total-support", "50", "--max-total-doc-tokens", "100", "--max-total-tokens", "5"]
    with Server({"x": index}, flags) as s, s.client() as c:
        assert_limit(c.post("/v1/indexes/x/ntd", json={"contexts": ["a", "b"], "max_support": 30}),
                     "contexts x max_support", 50)
        assert c.post("/v1/indexes/x/ntd", json={"contexts": ["a"], "max_support": 30}).status_code == 200
        assert_limit(c.post("/", json={"index": "x", "query_type": "ntd", "query": "a", "max_support": 51}),
                     "max_support", 50)
        assert_limit(c.post("/", json={"index": "x", "query_type": "infgram_ntd", "query": "a"}),
                     "max_support", 50)  # infini-gram's default 1000 is over the budget too
        assert_limit(c.post("/v1/indexes/x/search", json={"query": "the", "maxnum": 3, "max_disp_len": 40}),
                     "maxnum x max_disp_len", 100)
        assert_limit(c.post("/", json={"index": "x", "query_type": "search_docs", "query": "the",
                                       "maxnum": 2, "max_disp_len": 51}), "maxnum x max_disp_len", 100)
        assert_limit(c.post("/v1/indexes/x/docs", json={"doc_ixs": [0, 1, 2], "max_disp_len": 34}),
                     "doc_ixs x max_disp_len", 100)
        # tokens of a whole batch: each query is within --max-query-tokens, their sum is not
        assert_limit(c.post("/v1/indexes/x/count", json={"queries": ["ab", "cd", "ef"]}), "queries", 5)
        assert_limit(c.post("/v1/indexes/x/score", json={"texts": ["abc", "def"]}), "texts", 5)
        assert_limit(c.post("/v1/indexes/x/prob", json={"contexts": ["abc", "def"], "tokens": ["a", "b"]}),
                     "contexts", 5)
        assert c.post("/v1/indexes/x/count", json={"queries": ["ab", "cd"]}).status_code == 200


def test_response_bytes_are_capped(index):
    with Server({"x": index}, ["--max-response-bytes", "600"]) as s, s.client() as c:
        small = c.post("/v1/indexes/x/docs", json={"doc_ixs": [0], "max_disp_len": 5})
        assert small.status_code == 200 and len(small.content) <= 600
        assert_limit(c.post("/v1/indexes/x/docs", json={"doc_ixs": [0, 1, 2, 3], "max_disp_len": 40}),
                     "response", 600)
        assert_limit(c.post("/", json={"index": "x", "query_type": "get_doc_by_ix", "doc_ix": 0}),
                     "response", 600)
        assert c.get("/healthz").status_code == 200


def test_answers_are_encoded_in_pieces_that_stop_at_the_deadline():
    """The shaping and encoding of an answer run in the worker and stop once the request's
    budget is spent (one json.dumps would hold the GIL to the end), freeing the thread."""
    import time

    from anygram_server.config import Limits
    from anygram_server.errors import TimeoutExceededError
    from anygram_server.encoding import encode_answer, encode_json
    from anygram_server.runner import Deadline

    answer = {"results": [{"a": [1, 2.5, None], "b": "ü"}] * 3, "latency": 1.0}
    pieces = encode_answer(answer, Deadline(time.perf_counter(), 60.0), Limits())
    assert json.loads(pieces) == answer and pieces == encode_json(answer)

    shaped = []

    def results():  # shapes each result when it is needed, as the ntd endpoint does
        for i in range(1000):
            shaped.append(i)
            yield {"i": i}

    with pytest.raises(TimeoutExceededError):
        encode_answer({"results": results()}, Deadline(time.perf_counter() - 1.0, 0.5), Limits())
    assert len(shaped) == 1  # stopped at the first piece, not after shaping all 1000


# --- 2. connections: header size, stalled clients, connection count -------------------------------


def read_until_closed(sock: socket.socket) -> bytes:
    sock.settimeout(20)  # far beyond the timeouts under test; only a hang would reach it
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


@pytest.fixture(scope="module")
def guarded(index):
    flags = ["--max-header-bytes", "4096", "--request-timeout", "1.5"]
    with Server({"x": index}, flags) as s:
        yield s


def connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=20)


def test_oversized_headers_get_431_and_the_connection_closed(guarded):
    with connect(guarded) as sock:  # in one piece
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
        raw = read_until_closed(sock)
    assert status_of(raw) == 431 and json.loads(raw.split(b"\r\n\r\n", 1)[1])["code"] == "header_too_large"
    with connect(guarded) as sock:  # a header that never ends: refused once past the limit
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        for _ in range(4):
            sock.sendall(b"a" * 2048)
        raw = read_until_closed(sock)
    assert status_of(raw) == 431
    with connect(guarded) as sock:  # headers within the limit are served
        fine = b"X-Fine: " + b"a" * 3000 + b"\r\nConnection: close\r\n\r\n"
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + fine)
        assert status_of(read_until_closed(sock)) == 200


def test_stalled_clients_are_closed_while_others_are_served(guarded):
    half_headers = connect(guarded)
    half_headers.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    half_body = connect(guarded)
    half_body.sendall(
        b"POST /v1/indexes/x/count HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{\"queries\": "
    )
    silent = connect(guarded)
    with guarded.client() as c:  # the service answers others meanwhile
        assert c.post("/v1/indexes/x/count", json={"queries": ["the"]}).status_code == 200
    for sock in (half_headers, half_body, silent):
        with sock:
            raw = read_until_closed(sock)
            assert status_of(raw) == 408, raw
            assert json.loads(raw.split(b"\r\n\r\n", 1)[1])["code"] == "request_timeout"
    with guarded.client() as c:
        assert c.get("/healthz").status_code == 200


def test_connections_beyond_the_limit_get_503(index):
    with Server({"x": index}, ["--max-connections", "2"]) as s:
        held = [connect(s), connect(s)]
        with connect(s) as extra:
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            raw = read_until_closed(extra)
        assert status_of(raw) == 503 and b"too_many_connections" in raw
        for sock in held:
            sock.close()


# --- 4. anything unexpected ------------------------------------------------------------------------

PANIC = """
import anygram

class PanicException(BaseException):  # as PyO3's: a BaseException, not an Exception
    pass

def count(self, *args, **kwargs):
    raise PanicException("called `Option::unwrap()` on a `None` value")

anygram.Engine.count = count
"""


def test_a_panic_is_a_json_500_logged_and_counted(index, tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    def internal_errors(c):
        for family in text_string_to_metric_families(c.get("/metrics").text):
            for sample in family.samples:
                if sample.name == "anygram_errors_total" and sample.labels.get("code") == "internal":
                    return sample.value
        return 0.0

    log = str(tmp_path / "serve.log")
    with Server({"x": index}, log_path=log, preload=PANIC) as s, s.client() as c:
        before = internal_errors(c)
        response = c.post("/", json={"index": "x", "query_type": "count", "query": "the"})
        assert response.status_code == 500, response.text
        assert response.json()["code"] == "internal" and "PanicException" in response.json()["error"]
        assert internal_errors(c) == before + 1
        # the same connection still serves (the server did not drop it)
        assert c.post("/v1/indexes/x/count", json={"queries": ["the"]}).status_code == 200
        assert "Option::unwrap()" in s.log()  # the traceback is in the log
