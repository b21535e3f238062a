"""String queries are tokenized as infini-gram's service tokenizes them (a leading space for
GPT-2-style byte-level BPE, as a word inside running text has), in Python, the CLI and POST /,
CNF terms included, with an opt-out (verbatim); Llama-style tokenizers lose a lone leading ▁."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from tokenizers import Tokenizer as HfTokenizer, models, pre_tokenizers

import anygram
from anygram.tokenizer import Tokenizer
from serving import Server
from trained_tokenizer import train_gpt2_like

TEXTS = [f"we saw the {w} and the {w} saw the cat, {i}" for i, w in enumerate(["cat", "dog", "bird"] * 20)]


@pytest.fixture(scope="module")
def gpt2_like(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lead")
    tokenizer = train_gpt2_like(str(tmp / "tokenizer.json"))
    corpus = tmp / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    path = anygram.build_index(str(corpus), str(tmp / "index"), tokenizer=tokenizer, progress=False).output
    return path, Tokenizer(tokenizer)


def test_engine_adds_the_leading_space_and_verbatim_opts_out(gpt2_like):
    path, tok = gpt2_like
    spaced, bare = tok.encode(" the cat"), tok.encode("the cat")
    assert spaced != bare
    engine = anygram.Engine.open(path)
    # "the cat" inside running text is " the cat": the default finds it there.
    assert engine.count("the cat") == engine.count(spaced) == sum(t.count(" the cat") for t in TEXTS)
    assert engine.tokenize_query("the cat") == spaced and engine.tokenize("the cat") == bare
    assert engine.count("the cat") > engine.count(bare)
    verbatim = anygram.Engine.open(path, verbatim=True)
    assert verbatim.count("the cat") == verbatim.count(bare)
    assert engine.tokenize_query("the cat", verbatim=True) == bare
    # A text that starts with whitespace keeps it as it is; CNF terms get the space too.
    assert engine.tokenize_query(" the cat") == spaced
    assert engine.cnf("the cat AND dog") == [[spaced], [tok.encode(" dog")]]
    with pytest.raises(anygram.errors.InvalidArgumentError, match="verbatim"):
        anygram.Engine.open(path, verbatim="yes")


def test_cli_and_http_tokenize_alike(gpt2_like):
    path, tok = gpt2_like
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for flags, expected in (([], tok.encode(" the cat")), (["--verbatim"], tok.encode("the cat"))):
        done = subprocess.run([sys.executable, "-m", "anygram.cli", "count", "--index", path, "the cat", "--format",
                               "json", *flags], capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["token_ids"] == expected
    with Server({"t": path}) as server, server.client() as client:
        answer = client.post("/", json={"index": "t", "query_type": "count", "query": "the cat"}).json()
        assert answer["token_ids"] == tok.encode(" the cat")
        assert answer["count"] == sum(t.count(" the cat") for t in TEXTS)
        answer = client.post("/", json={"index": "t", "query_type": "count", "query": "the cat", "verbatim": True}).json()
        assert answer["token_ids"] == tok.encode("the cat")
        answer = client.post("/", json={"index": "t", "query_type": "count", "query": "the cat AND dog"}).json()
        assert answer["token_ids"] == [[tok.encode(" the cat")], [tok.encode(" dog")]]


def test_llama_style_tokenizer_drops_a_lone_leading_metaspace(tmp_path):
    vocab = {"<unk>": 0, "\u2581": 1, "h": 2, "i": 3, "(": 4, "\u2581h": 5, "\u2581hi": 6}
    hf = HfTokenizer(models.BPE(vocab, [("\u2581", "h"), ("\u2581h", "i")], unk_token="<unk>"))
    hf.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    hf.save(str(tmp_path / "tok.json"))
    tok = Tokenizer(str(tmp_path / "tok.json"))
    assert tok.encode("(")[0] == 1  # the lone ▁ the service drops
    assert tok.encode_query("(") == tok.encode("(")[1:]
    assert tok.encode_query("hi") == tok.encode("hi") == [6]
    assert tok.encode_query("(", verbatim=True) == tok.encode("(")
    # Byte tokenizers (no tokenizer file) are never changed.
    assert Tokenizer().encode_query("the cat") == list(b"the cat")
