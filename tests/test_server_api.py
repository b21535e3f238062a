"""`anygram serve` over real HTTP (uvicorn on loopback, httpx): every query type of both APIs
answers what the Python API answers for the same query, and every bad request gets the
documented status and JSON error."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time

import httpx
import pytest
from serving import Server
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

import anygram
from conftest import Oracle, brute_longest_span, build_from_tokens

WORDS = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "ñu", "über", "to", "it"]
IDS_VOCAB, IDS_EOS = 12, 11


def make_texts(seed: int, n: int):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 25))) for _ in range(n)]


def write_corpus(path, texts):
    path.write_text("".join(json.dumps({"text": t, "n": i}) + "\n" for i, t in enumerate(texts)))
    return str(path)


def train_bpe(path, texts):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tok.save(str(path))
    return str(path)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """Three small indexes: token ids in two shards, UTF-8 bytes, and a BPE tokenizer."""
    tmp = tmp_path_factory.mktemp("server-indexes")
    rng = random.Random(5)
    id_docs = [[rng.randrange(IDS_EOS) for _ in range(rng.randint(1, 40))] for _ in range(30)]
    ids_path = build_from_tokens(
        str(tmp / "ids"), id_docs, width=2, vocab_size=IDS_VOCAB, eos_token_id=IDS_EOS, shards=2
    )
    texts = make_texts(1, 40)
    text_path = anygram.build_index(
        write_corpus(tmp / "text.jsonl", texts), str(tmp / "text"), progress=False
    ).output
    tokenizer = train_bpe(tmp / "bpe.json", texts)
    bpe_path = anygram.build_index(
        write_corpus(tmp / "bpe.jsonl", texts), str(tmp / "bpe"), tokenizer=tokenizer, progress=False
    ).output
    return {"ids": ids_path, "text": text_path, "bpe": bpe_path, "id_docs": id_docs, "texts": texts}


@pytest.fixture(scope="module")
def engines(corpora):
    return {name: anygram.Engine.open(corpora[name]) for name in ("ids", "text", "bpe")}


@pytest.fixture(scope="module")
def server(corpora, tmp_path_factory):
    log = str(tmp_path_factory.mktemp("server-log") / "serve.log")
    with Server({name: corpora[name] for name in ("ids", "text", "bpe")}, log_path=log) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    with server.client() as c:
        yield c


def plain(value):
    """As JSON sees it (numpy arrays as lists, int keys as strings, tuples as lists)."""
    return json.loads(json.dumps(value, default=lambda o: o.tolist()))


def assert_contains(answer, expected):
    """Every field of the Python API's answer is in the HTTP answer, equal."""
    for key, value in plain(expected).items():
        assert answer[key] == value, (key, answer[key], value)


def post(client, body, status=200):
    response = client.post("/", json=body)
    assert response.status_code == status, response.text
    return response.json()


def queries_of(docs, rng, n):
    """Sub-sequences of the documents (they occur) and random sequences (they may not)."""
    out = []
    for _ in range(n):
        doc = rng.choice(docs)
        if rng.random() < 0.7 and doc:
            i = rng.randrange(len(doc))
            out.append(list(doc[i : i + rng.randint(1, 6)]))
        else:
            out.append([rng.randrange(IDS_EOS) for _ in range(rng.randint(1, 6))])
    return out


# --- infini-gram's API (POST /) ----------------------------------------------------------------


def test_infinigram_api_answers_as_the_python_api(client, engines, corpora):
    engine = engines["ids"]
    oracle = Oracle(corpora["id_docs"], IDS_EOS)
    rng = random.Random(11)
    for ids in queries_of(corpora["id_docs"], rng, 25):
        base = {"index": "ids", "query_ids": ids}
        count = post(client, {**base, "query_type": "count"})
        assert count["count"] == engine.count(ids) == oracle.count(ids)
        assert count["approx"] is False and count["token_ids"] == ids and count["tokens"] is None
        assert count["latency"] >= 0

        prob = post(client, {**base, "query_type": "prob"})
        assert_contains(prob, engine.prob(ids[:-1], ids[-1], n=len(ids)))
        assert (prob["prompt_cnt"], prob["cont_cnt"], prob["prob"]) == oracle.prob(ids[:-1], ids[-1])

        ntd = post(client, {**base, "query_type": "ntd", "max_support": 7})
        expected = engine.ntd(ids, n=len(ids) + 1, max_support=7)
        assert {k: v["cont_cnt"] for k, v in ntd["result_by_token_id"].items()} == {
            str(k): v["cont_cnt"] for k, v in expected["result_by_token_id"].items()
        }
        for token, entry in ntd["result_by_token_id"].items():
            assert entry["token"] == token  # no tokenizer: the id itself
        assert (ntd["prompt_cnt"], ntd["approx"]) == (expected["prompt_cnt"], expected["approx"])

        infgram = post(client, {**base, "query_type": "infgram_prob"})
        assert_contains(infgram, engine.prob(ids[:-1], ids[-1]))
        suffix = ids[:-1][len(ids) - 1 - infgram["suffix_len"] :] if infgram["suffix_len"] else []
        assert infgram["longest_suffix"] == " ".join(map(str, suffix))

        infgram_ntd = post(client, {**base, "query_type": "infgram_ntd"})
        expected = engine.ntd(ids)
        assert infgram_ntd["suffix_len"] == expected["suffix_len"] == oracle.suffix_len(ids)
        assert {k: (v["cont_cnt"], v["prob"]) for k, v in infgram_ntd["result_by_token_id"].items()} == {
            str(k): (v["cont_cnt"], v["prob"]) for k, v in expected["result_by_token_id"].items()
        }

        find = post(client, {**base, "query_type": "find"})
        assert_contains(find, engine.find(ids))

        search = post(
            client, {**base, "query_type": "search_docs", "maxnum": 3, "max_disp_len": 9, "seed": 4}
        )
        expected = engine.search_docs(ids, maxnum=3, max_disp_len=9, seed=4)
        assert (search["cnt"], search["idxs"]) == (expected["cnt"], expected["idxs"])
        for got, want in zip(search["documents"], expected["documents"], strict=True):
            assert_contains(got, want)
            marked = [text for text, label in got["spans"] if label == "0"]
            assert " ".join(map(str, ids)) in marked  # the match itself is marked
        assert search["message"].startswith(f"{expected['cnt']} occurrences" if expected["cnt"] else "0 occ")


def test_infinigram_api_fields_are_infinigram_engine_answers(client, corpora):
    """Every field infini-gram's own engine answers is in the HTTP answer with its value
    (same index files), so infini-gram's clients read what they expect."""
    pytest.importorskip("infini_gram.engine")
    from peer import PeerEngine

    peer = PeerEngine(
        index_dir=corpora["ids"], eos_token_id=IDS_EOS, vocab_size=IDS_VOCAB, token_dtype="u16"
    )
    for ids in queries_of(corpora["id_docs"], random.Random(21), 20):
        base = {"index": "ids", "query_ids": ids}
        context, token = ids[:-1], ids[-1]
        for query_type, theirs in (
            ("count", peer.count(ids)),
            ("find", peer.find(ids)),
            ("prob", peer.prob(context, token)),
            ("infgram_prob", peer.infgram_prob(context, token)),
        ):
            assert_contains(post(client, {**base, "query_type": query_type}), theirs)


def test_cnf_queries_as_the_python_api(client, engines, corpora):
    engine = engines["ids"]
    rng = random.Random(3)
    for _ in range(10):
        cnf = [queries_of(corpora["id_docs"], rng, rng.randint(1, 2)) for _ in range(rng.randint(1, 3))]
        body = {"index": "ids", "query_ids": cnf, "max_diff_tokens": 20, "max_clause_freq": 1000}
        count = post(client, {**body, "query_type": "count"})  # a nested query is CNF: count_cnf
        assert_contains(count, engine.count_cnf(cnf, max_clause_freq=1000, max_diff_tokens=20))
        assert count["token_ids"] == cnf
        assert post(client, {**body, "query_type": "count_cnf"})["count"] == count["count"]
        assert_contains(
            post(client, {**body, "query_type": "find"}),
            engine.find_cnf(cnf, max_clause_freq=1000, max_diff_tokens=20),
        )
        search = post(client, {**body, "query_type": "search_docs", "maxnum": 2, "seed": 1})
        expected = engine.search_docs_cnf(cnf, maxnum=2, max_clause_freq=1000, max_diff_tokens=20, seed=1)
        assert (search["cnt"], search["approx"], search["idxs"]) == (
            expected["cnt"],
            expected["approx"],
            expected["idxs"],
        )
        for got, want in zip(search["documents"], expected["documents"], strict=True):
            assert_contains(got, want)


def test_text_queries_are_tokenized_as_the_python_api(client, engines):
    for name, texts in (
        ("text", ["the cat", "über", "ñu ran to", "zebra"]),
        ("bpe", ["the cat", "über", "ñu ran to", " mat"]),
    ):
        engine = engines[name]
        for text in texts:
            ids = engine.tokenize_query(text)  # as infini-gram's service: a leading space for BPE
            count = post(client, {"index": name, "query_type": "count", "query": text})
            assert (count["count"], count["token_ids"]) == (engine.count(text), ids)
            assert count["tokens"] == engine.tokenizer.tokens(ids)
            infgram = post(client, {"index": name, "query_type": "infgram_prob", "query": text})
            assert_contains(infgram, engine.prob(ids[:-1], ids[-1]))
            context = ids[:-1]
            assert infgram["longest_suffix"] == engine.decode(context[len(context) - infgram["suffix_len"] :])
            ntd = post(client, {"index": name, "query_type": "ntd", "query": text})
            for token, entry in ntd["result_by_token_id"].items():
                assert entry["token"] == engine.decode([int(token)])
        # AND / OR make a CNF query; infini-gram's older field name `corpus` still works.
        cnf = post(client, {"corpus": name, "query_type": "count", "query": "the cat AND a dog OR ran"})
        assert_contains(cnf, engine.count_cnf("the cat AND a dog OR ran"))
        assert cnf["token_ids"] == engine.cnf("the cat AND a dog OR ran")
        search = post(client, {"index": name, "query_type": "search_docs", "query": "sat on", "maxnum": 50})
        expected = engine.search_docs("sat on", maxnum=50)
        assert search["cnt"] == expected["cnt"] == len(search["documents"]) > 0
        for doc in search["documents"]:
            assert "".join(text for text, _ in doc["spans"]) == doc["text"]
            assert "sat on" in [text.strip() for text, label in doc["spans"] if label == "0"]


def test_documents_by_index_rank_and_pointer(client, engines):
    engine = engines["text"]
    doc = post(
        client,
        {"index": "text", "query_type": "get_doc_by_ix", "doc_ix": 7, "max_disp_len": 50, "query": "the"},
    )
    assert_contains(doc, engine.get_doc_by_ix(7, 50))
    assert "".join(t for t, _ in doc["spans"]) == doc["text"]
    assert all(t == "the" for t, label in doc["spans"] if label == "0")
    found = engine.find("cat")
    lo, _ = found["segment_by_shard"][0]
    assert_contains(
        post(client, {"index": "text", "query_type": "get_doc_by_rank", "s": 0, "rank": lo}),
        engine.get_doc_by_rank(0, lo),
    )
    ptr = engine.search_docs("cat", maxnum=1, seed=0)["documents"][0]["ptr"]
    assert_contains(
        post(client, {"index": "text", "query_type": "get_doc_by_ptr", "s": 0, "ptr": ptr}),
        engine.get_doc_by_ptr(0, ptr),
    )


# --- the resource API (/v1) --------------------------------------------------------------------


def test_v1_batches_answer_as_the_python_api(client, engines, corpora):
    engine = engines["ids"]
    rng = random.Random(8)
    batch = queries_of(corpora["id_docs"], rng, 40) + [[]]
    counts = client.post("/v1/indexes/ids/count", json={"queries": batch}).json()
    assert counts["counts"] == [engine.count(q) for q in batch]

    contexts = [q[:-1] for q in batch if q]
    tokens = [q[-1] for q in batch if q]
    for n in (None, 2):
        probs = client.post(
            "/v1/indexes/ids/prob", json={"contexts": contexts, "tokens": tokens, "n": n}
        ).json()
        assert probs["results"] == [plain(engine.prob(c, t, n=n)) for c, t in zip(contexts, tokens)]

    ntds = client.post("/v1/indexes/ids/ntd", json={"contexts": batch, "max_support": 5}).json()
    for got, context in zip(ntds["results"], batch, strict=True):
        want = plain(engine.ntd(context, max_support=5))
        for entry in got["result_by_token_id"].values():
            del entry["token"]
        assert got == want

    text_engine = engines["text"]
    mixed = client.post(
        "/v1/indexes/text/prob", json={"contexts": ["the c", [116, 104]], "tokens": ["a", 101]}
    )
    assert mixed.json()["results"] == [
        plain(text_engine.prob("the c", "a")),
        plain(text_engine.prob([116, 104], 101)),
    ]


@pytest.mark.parametrize(
    "name, text",
    [
        ("text", "the cat sat on a mat über"),
        ("bpe", "the cat sat on a mat über"),
        ("bpe", "zebra ñu"),
        ("text", "ñu"),
    ],
)
def test_score_is_the_infgram_prob_of_every_token(client, engines, name, text):
    engine = engines[name]
    result = client.post(f"/v1/indexes/{name}/score", json={"texts": [text]}).json()["results"][0]
    ids = engine.tokenize(text)  # a scored text is taken as it is
    assert result["token_ids"] == ids and result["tokens"] == engine.tokenizer.tokens(ids)
    for i, token in enumerate(ids):
        expected = engine.prob(ids[:i], token)
        assert [result[k][i] for k in ("prob", "suffix_len", "prompt_cnt", "cont_cnt")] == [
            expected[k] for k in ("prob", "suffix_len", "prompt_cnt", "cont_cnt")
        ]
    assert "".join(result["pieces"]) == text


def test_score_batches_texts_and_falls_back_without_engine_score(client, engines):
    """A batch of texts (the empty one too) in one request; and the server's fallback for an
    engine without `score` (one infgram_prob_batch over the prefixes) answers the same."""
    from types import SimpleNamespace

    from anygram_server.scores import score_many

    engine = engines["text"]
    texts = ["the cat", "", "über a mat", "zzz"]
    results = client.post("/v1/indexes/text/score", json={"texts": texts}).json()["results"]
    assert [r["token_ids"] for r in results] == [engine.tokenize(t) for t in texts]
    assert results[1] == {
        "token_ids": [],
        "tokens": [],
        "pieces": [],
        "prob": [],
        "suffix_len": [],
        "prompt_cnt": [],
        "cont_cnt": [],
    }
    only_batch_prob = SimpleNamespace(infgram_prob_batch=engine.infgram_prob_batch)
    fallback = score_many(SimpleNamespace(engine=only_batch_prob), [r["token_ids"] for r in results])
    for got, want in zip(results, fallback, strict=True):
        assert {k: got[k] for k in want} == want


def test_v1_search_and_documents(client, engines):
    engine = engines["text"]
    search = client.post("/v1/indexes/text/search", json={"query": "a mat", "maxnum": 3, "seed": 2}).json()
    expected = engine.search_docs("a mat", maxnum=3, max_disp_len=200, seed=2)
    assert (search["cnt"], search["idxs"]) == (expected["cnt"], expected["idxs"])
    for got, want in zip(search["documents"], expected["documents"], strict=True):
        assert_contains(got, want)
    assert search["token_ids"] == engine.tokenize("a mat")
    assert_contains(
        client.get("/v1/indexes/text/docs/3", params={"max_disp_len": 10}).json(), engine.get_doc_by_ix(3, 10)
    )
    many = client.post("/v1/indexes/text/docs", json={"doc_ixs": [0, 5, 39], "max_disp_len": 20}).json()
    for got, want in zip(many["documents"], engine.get_docs_by_ixs([0, 5, 39], 20), strict=True):
        assert_contains(got, want)


def test_listing_health_docs_and_the_page(client, engines, server):
    listing = client.get("/v1/indexes").json()["indexes"]
    assert [i["name"] for i in listing] == ["ids", "text", "bpe"]
    for info in listing:
        engine = engines[info["name"]]
        assert (info["num_tokens"], info["num_documents"], info["vocab_size"]) == (
            engine.num_tokens,
            engine.num_documents,
            engine.vocab_size,
        )
        assert info["manifest"] == plain(engine.manifest)
    assert client.get("/v1/indexes/bpe").json()["tokenizer"] == "bpe.json"
    as_json = client.get("/", headers={"Accept": "application/json"})
    assert as_json.headers["content-type"] == "application/json" and "count" in as_json.json()["query_types"]
    page = client.get("/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert page.headers["content-type"].startswith("text/html") and "/static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/healthz").json() == {"status": "ok", "indexes": ["ids", "text", "bpe"]}
    assert "swagger" in client.get("/docs").text.lower()
    spec = client.get("/openapi.json").json()
    for path in (
        "/",
        "/v1/indexes",
        "/v1/indexes/{name}/count",
        "/v1/indexes/{name}/prob",
        "/v1/indexes/{name}/ntd",
        "/v1/indexes/{name}/score",
        "/v1/indexes/{name}/search",
        "/v1/indexes/{name}/docs/{doc_ix}",
        "/healthz",
        "/metrics",
    ):
        assert path in spec["paths"], path
    assert spec["components"]["schemas"]["CountRequest"]["examples"]


def test_concurrent_requests_all_answered(server, engines, corpora):
    engine = engines["ids"]
    batch = queries_of(corpora["id_docs"], random.Random(2), 200)

    async def main():
        async with httpx.AsyncClient(
            base_url=server.url, timeout=30.0, limits=httpx.Limits(max_connections=64)
        ) as c:
            return await asyncio.gather(
                *[c.post("/", json={"index": "ids", "query_type": "count", "query_ids": q}) for q in batch]
            )

    responses = asyncio.run(main())
    assert [r.status_code for r in responses] == [200] * len(batch)
    assert [r.json()["count"] for r in responses] == [engine.count(q) for q in batch]


def metric_samples(text):
    """{(sample name, frozenset of labels): value} of a Prometheus exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_requests_and_errors(client):
    def sample(name, **labels):
        return metric_samples(client.get("/metrics").text).get((name, frozenset(labels.items())), 0.0)

    route = "/v1/indexes/{name}/count"
    before = sample("anygram_requests_total", method="POST", route=route, status="200")
    errors_before = sample("anygram_errors_total", code="unknown_index")
    client.post("/v1/indexes/ids/count", json={"queries": [[1]]})
    client.post("/v1/indexes/nope/count", json={"queries": [[1]]})
    assert sample("anygram_requests_total", method="POST", route=route, status="200") == before + 1
    assert sample("anygram_requests_total", method="POST", route=route, status="404") >= 1
    assert sample("anygram_errors_total", code="unknown_index") == errors_before + 1
    assert sample("anygram_request_duration_seconds_count", route=route) >= before + 2
    assert sample("anygram_request_duration_seconds_bucket", route=route, le="+Inf") >= before + 2
    assert sample("anygram_engine_duration_seconds_count", query_type="count") >= 1


# --- errors ------------------------------------------------------------------------------------

ERROR_CASES = [
    # (method, path, body, status, code, field)
    ("POST", "/", {"index": "nope", "query_type": "count", "query": "a"}, 404, "unknown_index", "index"),
    ("POST", "/v1/indexes/nope/count", {"queries": ["a"]}, 404, "unknown_index", "index"),
    ("POST", "/", {"index": "ids", "query_type": "count", "query_ids": [1, 99]}, 422, "invalid_query", None),
    # no token id is negative or wider than 4 bytes, whatever the index
    (
        "POST",
        "/",
        {"index": "ids", "query_type": "count", "query_ids": [-1]},
        422,
        "invalid_request",
        "query_ids[0]",
    ),
    ("POST", "/v1/indexes/ids/count", {"queries": [[1, 2**40]]}, 422, "invalid_request", "queries[0][1]"),
    ("POST", "/v1/indexes/ids/count", {"queries": [[1, 2**32 - 1]]}, 422, "invalid_query", None),
    ("POST", "/", {"index": "ids", "query_type": "count", "query_ids": ["1"]}, 422, "invalid_request", None),
    ("POST", "/", {"index": "ids", "query_type": "count", "query_ids": [1.5]}, 422, "invalid_request", None),
    (
        "POST",
        "/",
        {"index": "ids", "query_type": "count", "query": "a", "query_ids": [1]},
        422,
        "invalid_request",
        "query",
    ),
    ("POST", "/", {"index": "ids", "query_type": "count"}, 422, "invalid_request", "query"),
    (
        "POST",
        "/",
        {"index": "ids", "query_type": "translate", "query": "a"},
        422,
        "invalid_request",
        "query_type",
    ),
    ("POST", "/", {"query_type": "count", "query": "a"}, 422, "invalid_request", "index"),
    ("POST", "/", {"index": "text", "query_type": "prob", "query": ""}, 422, "invalid_request", "query"),
    (
        "POST",
        "/",
        {"index": "text", "query_type": "prob", "query": "a AND b"},
        422,
        "invalid_request",
        "query_type",
    ),
    (
        "POST",
        "/",
        {"index": "text", "query_type": "count", "query": "a AND  AND b"},
        422,
        "invalid_query",
        None,
    ),
    ("POST", "/", {"index": "ids", "query_type": "count", "query": "text"}, 422, "invalid_argument", None),
    # JSON may escape a lone surrogate, which is no text: refused with the field, in every text field
    (
        "POST",
        "/",
        b'{"index": "text", "query_type": "count", "query": "a\\ud800"}',
        422,
        "invalid_request",
        "query",
    ),
    (
        "POST",
        "/",
        b'{"index": "bpe", "query_type": "count", "query": "\\udfff"}',
        422,
        "invalid_request",
        "query",
    ),
    (
        "POST",
        "/v1/indexes/text/count",
        b'{"queries": ["ok", "\\ud800"]}',
        422,
        "invalid_request",
        "queries[1]",
    ),
    (
        "POST",
        "/v1/indexes/text/prob",
        b'{"contexts": ["a"], "tokens": ["\\ud800"]}',
        422,
        "invalid_request",
        "tokens[0]",
    ),
    ("POST", "/v1/indexes/text/score", b'{"texts": ["\\udc00 x"]}', 422, "invalid_request", "texts[0]"),
    ("POST", "/v1/indexes/text/search", b'{"query": "\\ud800"}', 422, "invalid_request", "query"),
    (
        "POST",
        "/",
        {"index": "text", "query_type": "search_docs", "query": "a", "maxnum": 0},
        422,
        "invalid_request",
        "maxnum",
    ),
    (
        "POST",
        "/",
        {"index": "text", "query_type": "get_doc_by_ix", "doc_ix": 40},
        404,
        "unknown_document",
        "doc_ix",
    ),
    ("POST", "/", {"index": "text", "query_type": "get_doc_by_rank", "s": 0}, 422, "invalid_request", "rank"),
    (
        "POST",
        "/v1/indexes/text/prob",
        {"contexts": ["a", "b"], "tokens": ["c"]},
        422,
        "invalid_request",
        "tokens",
    ),
    ("POST", "/v1/indexes/text/prob", {"contexts": ["a"], "tokens": ["cat"]}, 422, "invalid_query", None),
    ("POST", "/v1/indexes/text/count", {"query": "a"}, 422, "invalid_request", "queries"),
    ("GET", "/v1/indexes/text/docs/40", None, 404, "unknown_document", "doc_ix"),
    ("POST", "/v1/indexes/text/docs", {"doc_ixs": [1, 40]}, 404, "unknown_document", "doc_ixs[1]"),
    ("POST", "/v1/indexes/text/docs", {"doc_ixs": [1, -2]}, 422, "invalid_request", "doc_ixs[1]"),
    # every integer is bounded before it reaches the engine (u64/i64 there): 2**64 and negatives
    *[
        ("POST", "/", {"index": "text", "query_type": qt, "query": "a", "s": 0, "rank": 0, "ptr": 0, f: v},
         422, "invalid_request", f)
        for qt, f in [("search_docs", "seed"), ("get_doc_by_rank", "rank"), ("get_doc_by_ptr", "ptr"),
                      ("get_doc_by_ix", "doc_ix"), ("get_doc_by_rank", "s"), ("search_docs", "maxnum"),
                      ("ntd", "max_support")]
        for v in (2**64, -1)
    ],
    (
        "POST",
        "/v1/indexes/text/prob",
        {"contexts": ["a"], "tokens": ["b"], "n": 2**64},
        422,
        "invalid_request",
        "n",
    ),
    ("POST", "/v1/indexes/text/ntd", {"contexts": ["a"], "n": 2**64}, 422, "invalid_request", "n"),
    ("POST", "/v1/indexes/text/ntd", {"contexts": ["a"], "n": 0}, 422, "invalid_request", "n"),
    ("POST", "/v1/indexes/text/search", {"query": "a", "seed": 2**64}, 422, "invalid_request", "seed"),
    ("POST", "/v1/indexes/text/search", {"query": "a", "seed": -1}, 422, "invalid_request", "seed"),
    ("POST", "/v1/indexes/text/docs", {"doc_ixs": [0, 2**64]}, 422, "invalid_request", "doc_ixs[1]"),
    ("GET", f"/v1/indexes/text/docs/{2**64}", None, 422, "invalid_request", "doc_ix"),
    ("GET", "/v1/indexes/text/docs/0?max_disp_len=-5", None, 422, "invalid_request", "max_disp_len"),
    ("GET", "/v1/indexes/text/count", None, 405, "method_not_allowed", None),
    ("GET", "/no/such/path", None, 404, "not_found", None),
]


@pytest.mark.parametrize("method, path, body, status, code, field", ERROR_CASES)
def test_bad_requests_get_a_json_error(client, method, path, body, status, code, field):
    if isinstance(body, bytes):
        response = client.request(method, path, content=body, headers={"Content-Type": "application/json"})
    else:
        response = client.request(method, path, json=body)
    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["code"] == code and answer["error"], answer
    if field is not None:
        assert answer["field"] == field, answer


def test_malformed_json_is_422(client):
    response = client.post(
        "/", content=b'{"index": "text", "query_type": ', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request" and "not valid JSON" in response.json()["error"]
    assert response.json()["field"] == "body"


def test_limits_are_enforced_and_named(corpora, tmp_path):
    flags = [
        "--max-query-chars",
        "30",
        "--max-query-tokens",
        "6",
        "--max-batch-size",
        "3",
        "--max-support",
        "10",
        "--maxnum",
        "2",
        "--max-disp-len",
        "50",
        "--max-clause-freq",
        "100",
        "--max-diff-tokens",
        "10",
        "--max-cnf-clauses",
        "2",
        "--max-cnf-terms",
        "2",
        "--max-body-bytes",
        "2000",
    ]
    cases = [
        ("/", {"index": "text", "query_type": "count", "query": "x" * 31}, "query", 30),
        ("/", {"index": "text", "query_type": "count", "query": "abcdefg"}, "query", 6),
        ("/", {"index": "ids", "query_type": "count", "query_ids": [1] * 7}, "query_ids", 6),
        ("/", {"index": "text", "query_type": "ntd", "query": "a", "max_support": 11}, "max_support", 10),
        ("/", {"index": "text", "query_type": "search_docs", "query": "a", "maxnum": 3}, "maxnum", 2),
        (
            "/",
            {"index": "text", "query_type": "search_docs", "query": "a", "max_disp_len": 51},
            "max_disp_len",
            50,
        ),
        (
            "/",
            {"index": "text", "query_type": "count", "query": "a AND b", "max_clause_freq": 101},
            "max_clause_freq",
            100,
        ),
        (
            "/",
            {"index": "text", "query_type": "count", "query": "a AND b", "max_diff_tokens": 11},
            "max_diff_tokens",
            10,
        ),
        ("/", {"index": "text", "query_type": "count", "query": "a AND b AND c"}, "query", 2),
        ("/", {"index": "text", "query_type": "count", "query": "a OR b OR c AND d"}, "query[0]", 2),
        ("/v1/indexes/text/count", {"queries": ["a"] * 4}, "queries", 3),
        ("/v1/indexes/text/score", {"texts": ["abcdefg"]}, "texts[0]", 6),
        ("/v1/indexes/text/ntd", {"contexts": ["a"], "max_support": 11}, "max_support", 10),
        ("/v1/indexes/text/search", {"query": "a", "maxnum": 3}, "maxnum", 2),
        ("/v1/indexes/text/docs", {"doc_ixs": [1, 2, 3, 4]}, "doc_ixs", 3),
    ]
    with Server({"text": corpora["text"], "ids": corpora["ids"]}, flags) as s, s.client() as c:
        for path, body, field, limit in cases:
            response = c.post(path, json=body)
            assert response.status_code == 400, (body, response.text)
            answer = response.json()
            assert (answer["code"], answer["field"], answer["limit"]) == ("limit_exceeded", field, limit), (
                answer
            )
            assert f"the limit is {limit}" in answer["error"]
        big = c.post("/v1/indexes/text/count", json={"queries": ["a" * 2100]})
        assert (
            big.status_code == 413 and big.json()["code"] == "body_too_large" and big.json()["limit"] == 2000
        )

        def chunks():  # no Content-Length: counted while it streams in
            yield b'{"queries": ["'
            for _ in range(30):
                yield b"a" * 100
            yield b'"]}'

        streamed = c.post(
            "/v1/indexes/text/count", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert streamed.status_code == 413 and streamed.json()["code"] == "body_too_large"
        assert c.post("/v1/indexes/text/count", json={"queries": ["a"]}).status_code == 200


def test_time_budget_answers_504_and_the_server_lives_on(corpora):
    with Server({"text": corpora["text"]}, ["--time-budget", "1e-9"]) as s, s.client() as c:
        response = c.post("/", json={"index": "text", "query_type": "count", "query": "the"})
        assert response.status_code == 504
        assert response.json()["code"] == "timeout" and response.json()["limit"] == 1e-9
        assert c.get("/healthz").status_code == 200


def test_runner_frees_a_thread_only_when_its_call_ends():
    """A query over budget is answered 504 at once; its thread stays taken until the native
    call returns, so further requests wait for a thread and get 503 if none frees up."""
    from anygram_server.errors import OverloadedError, TimeoutExceededError
    from anygram_server.runner import EngineRunner

    async def main():
        runner = EngineRunner(threads=1, budget_s=0.2)
        t0 = time.perf_counter()
        with pytest.raises(TimeoutExceededError):
            await runner.run("slow", lambda deadline: time.sleep(1.0))
        assert time.perf_counter() - t0 < 0.8
        with pytest.raises(OverloadedError):
            await runner.run("fast", lambda deadline: 1)
        await asyncio.sleep(1.0)  # the slow call ends and frees its thread
        assert await runner.run("fast", lambda deadline: 2) == 2
        runner.shutdown()

    asyncio.run(main())


def test_api_keys(corpora, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("# service keys\nsecret-one\n\nsecret-two\n")
    with Server({"text": corpora["text"]}, ["--api-key-file", str(keys)]) as s, s.client() as c:
        body = {"index": "text", "query_type": "count", "query": "the"}
        missing = c.post("/", json=body)
        assert missing.status_code == 401 and missing.json()["code"] == "unauthorized"
        assert missing.headers["www-authenticate"] == "Bearer"
        assert c.post("/", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert c.post("/", json=body, headers={"Authorization": "Bearer secret-two"}).status_code == 200
        assert c.get("/v1/indexes", headers={"X-API-Key": "secret-one"}).status_code == 200
        assert c.get("/v1/indexes").status_code == 401
        assert c.get("/", headers={"Accept": "application/json"}).status_code == 401
        assert c.get("/", headers={"Accept": "text/html"}).status_code == 200  # the page asks for a key
        assert c.get("/healthz").status_code == 200


def test_cors_only_for_the_origins_given(corpora):
    preflight = {
        "Origin": "https://example.org",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    with Server({"text": corpora["text"]}, ["--cors-origin", "https://example.org"]) as s, s.client() as c:
        response = c.options("/v1/indexes/text/count", headers=preflight)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://example.org"
        other = c.options("/v1/indexes/text/count", headers={**preflight, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
    with Server({"text": corpora["text"]}) as s, s.client() as c:
        plain_get = c.get("/v1/indexes", headers={"Origin": "https://example.org"})
        assert "access-control-allow-origin" not in plain_get.headers


def test_several_worker_processes(corpora, engines):
    with Server({"text": corpora["text"]}, ["--workers", "2"]) as s, s.client() as c:
        for text in ["the", "cat sat", "über"]:
            assert c.post("/", json={"index": "text", "query_type": "count", "query": text}).json()[
                "count"
            ] == engines["text"].count(text)
        metrics = metric_samples(c.get("/metrics").text)  # summed over the workers' files
        assert (
            metrics[
                (
                    "anygram_requests_total",
                    frozenset({"method": "POST", "route": "/", "status": "200"}.items()),
                )
            ]
            == 3
        )


def test_an_index_without_manifest_takes_its_tokenizer_from_the_command_line(corpora, engines, tmp_path):
    """An index built by infini-gram has no anygram.json: `--tokenizer NAME=FILE` gives it one."""
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(corpora["bpe"], bare)
    for extra in ("anygram.json", "tokenizer.json", "anygram.format"):
        (bare / extra).unlink()
    tokenizer = str(tmp_path / "bpe.json")
    shutil.copy(os.path.join(corpora["bpe"], "tokenizer.json"), tokenizer)
    with Server({"bare": str(bare)}, ["--tokenizer", f"bare={tokenizer}"]) as s, s.client() as c:
        document = corpora["texts"][3]  # a whole document tokenizes as it was indexed
        answer = c.post("/", json={"index": "bare", "query_type": "count", "query": document,
                                   "verbatim": True}).json()
        assert answer["count"] == engines["bpe"].count(engines["bpe"].tokenize(document)) > 0
        assert answer["token_ids"] == engines["bpe"].tokenize(document)
        assert c.get("/v1/indexes/bare").json()["manifest"] is None


def test_serve_reports_a_bad_index_path(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "anygram.cli", "serve", "--index", f"x={tmp_path / 'nope'}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "no such index directory" in proc.stderr


def test_serve_without_the_server_package_says_how_to_install_it(monkeypatch, capsys):
    from anygram import cli

    # No installed package registers `serve` (the server's entry point is absent).
    monkeypatch.setattr(cli, "command_entry_points", lambda: {})
    assert cli.main(["serve", "--index", "x=y"]) == 2
    assert "pip install ./server" in capsys.readouterr().err


# --- what the web page needs: longest matching span, query parsing, offline docs ----------------


def test_longest_match_is_the_longest_occurring_span(client, engines, corpora):
    engine = engines["ids"]
    rng = random.Random(11)
    queries = [[rng.randrange(IDS_EOS) for _ in range(rng.randint(1, 12))] for _ in range(25)]
    # a document's own text with a foreign token inside: the longest span is one side of it
    doc = max(corpora["id_docs"], key=len)
    queries.append(doc[:9] + [IDS_EOS] + doc[9:13])
    for query in queries:
        got = client.post(
            "/v1/indexes/ids/longest-match", json={"query": query, "maxnum": 3, "max_disp_len": 30, "seed": 4}
        )
        assert got.status_code == 200, got.text
        answer = got.json()
        start, end = brute_longest_span(engine, query)
        assert (answer["start"], answer["end"]) == (start, end), query
        assert answer["token_ids"] == query[start:end] and answer["query_token_ids"] == query
        assert answer["text"] == " ".join(map(str, query[start:end]))
        expected = engine.search_docs(query[start:end], maxnum=3, max_disp_len=30, seed=4)
        assert (answer["cnt"], answer["idxs"]) == (expected["cnt"], expected["idxs"])
        for got_doc, want in zip(answer["documents"], expected["documents"], strict=True):
            assert_contains(got_doc, want)
            assert any(label == "0" for _, label in got_doc["spans"])


def test_longest_match_of_text_with_no_occurring_token(client, engines):
    # "Q" and "Z" are bytes no text of the corpus has: nothing occurs, no documents
    assert engines["text"].count("Q") == engines["text"].count("Z") == 0
    answer = client.post("/v1/indexes/text/longest-match", json={"query": "QZQ"}).json()
    assert (answer["start"], answer["end"], answer["cnt"], answer["documents"]) == (0, 0, 0, [])
    # a text that occurs whole is its own longest span
    answer = client.post("/v1/indexes/text/longest-match", json={"query": "the cat"}).json()
    ids = engines["text"].tokenize("the cat")
    assert (answer["start"], answer["end"], answer["cnt"]) == (0, len(ids), engines["text"].count(ids))


def test_longest_match_limits(client):
    response = client.post("/v1/indexes/text/longest-match", json={"query": "a", "maxnum": 10**9})
    assert response.status_code == 400 and response.json()["field"] == "maxnum"


def test_parse_reads_a_query_as_post_root_does(client, engines):
    text = "the cat AND a mat OR ran to"
    parsed = client.post("/v1/indexes/text/parse", json={"query": text}).json()
    assert parsed["token_ids"] is None and parsed["cnf"] == engines["text"].cnf(text)
    assert parsed["text"] == [["the cat"], ["a mat", "ran to"]]
    counted = post(client, {"index": "text", "query_type": "count", "query": text})
    assert post(client, {"index": "text", "query_type": "count", "query_ids": parsed["cnf"]})["count"] == (
        counted["count"]
    ) > 0
    plain_ids = client.post("/v1/indexes/bpe/parse", json={"query": "the cat"}).json()
    assert plain_ids["token_ids"] == engines["bpe"].tokenize_query("the cat") and plain_ids["cnf"] is None
    assert plain_ids["tokens"] == engines["bpe"].tokenizer.tokens(plain_ids["token_ids"])


@pytest.mark.parametrize(
    "query, expected",
    [
        ("1 2 3", {"token_ids": [1, 2, 3], "cnf": None}),
        (" [4, 5,6] ", {"token_ids": [4, 5, 6], "cnf": None}),
        (
            "1 2 AND 3 OR 4 5",
            {"token_ids": None, "cnf": [[[1, 2]], [[3], [4, 5]]], "text": [["1 2"], ["3", "4 5"]]},
        ),
    ],
)
def test_parse_reads_token_ids_typed_as_numbers(client, query, expected):
    answer = client.post("/v1/indexes/ids/parse", json={"query": query, "ids": True}).json()
    assert {key: answer[key] for key in expected} == expected and answer["tokens"] is None


@pytest.mark.parametrize(
    "query, field, words",
    [
        ("1 x 3", "query[1]", "'x' is not a token id"),
        ("1 -2", "query[1]", "'-2' is not a token id"),
        ("1 99999999999999999999", "query[1]", "is not a token id"),
        ("1 12", "query[1]", "outside the vocabulary [0, 12)"),
        ("1 AND 2 OR 3 x", "query[1][1][1]", "'x' is not a token id"),
    ],
)
def test_parse_refuses_bad_token_ids_naming_them(client, query, field, words):
    response = client.post("/v1/indexes/ids/parse", json={"query": query, "ids": True})
    assert response.status_code == 422, response.text
    assert field in response.json()["error"] and words in response.json()["error"]


def test_parse_of_text_on_an_index_without_tokenizer_says_to_pass_ids(client):
    response = client.post("/v1/indexes/ids/parse", json={"query": "the cat"})
    assert response.status_code == 422 and "has no tokenizer" in response.json()["error"]


def test_api_docs_are_served_without_a_cdn(client):
    import re

    for path, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        page = client.get(path)
        assert page.status_code == 200, path
        sources = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", page.text)
        assert sources and all(s.startswith("/") for s in sources), (path, sources)
        script = next(s for s in sources if s.endswith(asset))
        served = client.get(script)
        assert served.status_code == 200 and len(served.content) > 100_000, script


def test_spans_of_an_index_without_tokenizer_keep_the_ids_apart(client, engines):
    # the page shows a document of ids as its spans joined: "8 1 2 3 4", not "81 2 34"
    search = client.post("/v1/indexes/ids/search", json={"query": [1, 2], "maxnum": 5}).json()
    assert search["documents"]
    for doc in search["documents"]:
        assert "".join(text for text, _ in doc["spans"]) == " ".join(map(str, doc["token_ids"]))
        assert "1 2" in [text for text, label in doc["spans"] if label == "0"]


def test_a_taken_port_is_an_error_before_any_url_is_announced(corpora):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "anygram.cli", "serve", "--index", f"text={corpora['text']}",
             "--host", "127.0.0.1", "--port", str(port)],
            capture_output=True, text=True, timeout=120,
        )
    assert proc.returncode != 0
    assert f"--port {port}" in proc.stderr and "in use" in proc.stderr
    assert "http://" not in proc.stdout
