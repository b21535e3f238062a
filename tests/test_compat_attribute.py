"""attribute and creativity outside Python: `anygram attribute` / `anygram creativity` (a real
subprocess) and the `POST /` query types of `anygram serve` (a real server on 127.0.0.1) answer
as Engine.attribute / Engine.creativity, which the differential test checks against infini-gram."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import anygram
from conftest import build_from_tokens
from serving import Server

DOCS = [[1, 2, 3, 4, 5, 1, 2, 3], [2, 3, 4, 9], [7, 7, 8, 1, 2]]


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return build_from_tokens(str(tmp_path_factory.mktemp("attr")), DOCS, 2, 20, 0)


def cli(*args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-m", "anygram.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120)
    return done.returncode, done.stdout, done.stderr


def test_cli_commands_answer_as_the_engine(index):
    engine = anygram.Engine.open(index)
    text = [1, 2, 3, 4, 9, 9, 7, 8]
    rc, out, err = cli("creativity", "--index", index, "--ids", " ".join(map(str, text)), "--format", "json")
    assert rc == 0, err
    answer = json.loads(out)
    assert answer["rs"] == engine.creativity(text)["rs"] == [4, 5, 5, 5, 5, 6, 8, 8]
    assert answer["token_ids"] == text and answer["longest"] == 4
    rc, out, err = cli("attribute", "--index", index, "--ids", " ".join(map(str, text)), "--min-len", "2",
                       "--max-cnt", "5", "--delim-ids", "9", "--format", "json")
    assert rc == 0, err
    spans = json.loads(out)["spans"]
    assert spans == engine.attribute(text, [9], 2, 5)["spans"]
    assert [(s["l"], s["r"]) for s in spans] == [(0, 4), (1, 5), (6, 8)]
    # Bad arguments: a clear message and the usage exit status, no traceback.
    rc, out, err = cli("attribute", "--index", index, "--ids", "1 2", "--max-cnt", "0")
    assert rc == 2 and "max_cnt" in err and "Traceback" not in err
    rc, out, err = cli("creativity", "--index", index, "--ids", "1 25")
    assert rc != 0 and "vocabulary" in err and "Traceback" not in err


def test_post_query_types(index):
    engine = anygram.Engine.open(index)
    text = [7, 8, 1, 2, 3, 4, 5]
    with Server({"t": index}) as server, server.client() as client:
        answer = client.post("/", json={"index": "t", "query_type": "creativity", "query_ids": text}).json()
        assert answer["rs"] == engine.creativity(text)["rs"] and answer["token_ids"] == text
        body = {"index": "t", "query_type": "attribute", "query_ids": text, "min_len": 2, "max_cnt": 3,
                "delim_ids": [3]}
        answer = client.post("/", json=body).json()
        assert answer["spans"] == engine.attribute(text, [3], 2, 3)["spans"]
        assert [(s["l"], s["r"]) for s in answer["spans"]] == [(0, 4), (2, 5), (5, 7)]
        for bad in ({"max_cnt": 0}, {"min_len": -1}, {"delim_ids": [99]}, {"max_cnt": 10**12}):
            response = client.post("/", json={**body, **bad})
            assert response.status_code in (400, 422), (bad, response.text)
            assert "error" in response.json()
