"""`anygram eval-lm` against direct computations on a small corpus; the model
log-probs it computes with `transformers` (sliding window) when torch is installed,
against the shared data's precomputed ones."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import anygram
from anygram import cli, evallm
from anygram.mix import fit_lambda
from conftest import Oracle, build_from_tokens, tiny_gpt2


def test_eval_lm_reports_what_a_direct_computation_gives(tmp_path, capsys):
    rng = np.random.default_rng(0)
    vocab, eos = 12, 11
    corpus = [list(rng.integers(0, 6, rng.integers(5, 40))) for _ in range(30)]
    heldout = [list(rng.integers(0, 6, rng.integers(3, 30))) for _ in range(9)]
    heldout[0] = corpus[0][:10]  # a document start the index holds
    index = build_from_tokens(str(tmp_path), corpus, 2, vocab, eos)
    tokens = np.concatenate([np.asarray(d, dtype=np.uint16) for d in heldout])
    offsets = np.cumsum([0] + [len(d) for d in heldout])
    lm = np.log(rng.uniform(0.02, 0.5, len(tokens))).astype(np.float32)
    for name, arr in [("t.npy", tokens), ("o.npy", offsets), ("lm.npy", lm)]:
        np.save(tmp_path / name, arr)
    out = tmp_path / "report.json"
    code = cli.main(["eval-lm", "--index", index, "--tokens", str(tmp_path / "t.npy"), "--offsets",
                     str(tmp_path / "o.npy"), "--lm-logprobs", str(tmp_path / "lm.npy"), "--context", "empty",
                     "--json", str(out), "--format", "table"])
    assert code == 0
    assert "mixture, one λ" in capsys.readouterr().out
    report = json.loads(out.read_text())

    engine = anygram.Engine.open(index)
    oracle = Oracle(corpus, eos)
    test_docs = list(range(1, 9, 2))
    valid_docs = list(range(0, 9, 2))
    starts = offsets[:-1]

    def per_position(docs):
        rows = []
        for d in docs:
            for i, t in enumerate(heldout[d]):
                ctx = heldout[d][:i]
                n = oracle.suffix_len(ctx)
                ntd = oracle.ntd(ctx[len(ctx) - n:])
                best = max(ntd.values())
                top = min(k for k, c in ntd.items() if c == best)
                p = engine.infgram_prob(ctx, t)["prob"]
                rows.append((float(lm[starts[d] + i]), p, top == t))
        return np.array(rows)

    valid, test = per_position(valid_docs), per_position(test_docs)
    t = report["test"]
    assert t["tokens"] == len(test)
    assert t["model_ppl"] == pytest.approx(np.exp(-test[:, 0].mean()))
    assert t["infgram_accuracy"] == pytest.approx(test[:, 2].mean())
    lam = fit_lambda(valid[:, 0], valid[:, 1])
    assert report["lambda_single"] == pytest.approx(lam)
    mixed = np.log(lam * test[:, 1] + (1 - lam) * np.exp(test[:, 0]))
    assert t["mix_single_ppl"] == pytest.approx(np.exp(-mixed.mean()))
    assert sum(b["tokens"] for b in report["test_by_bucket"].values()) == len(test)

    # Document-start context: the first held-out document is a corpus document's start.
    r = evallm.evaluate(engine, [np.asarray(d) for d in heldout], lm.astype(np.float64), context="doc-start")
    assert r["validation"]["mean_suffix_len"] > report["validation"]["mean_suffix_len"]


def test_eval_lm_errors(tmp_path):
    index = build_from_tokens(str(tmp_path), [[1, 2, 3]], 2, 10, 9)
    np.save(tmp_path / "t.npy", np.array([1, 2, 3]))
    np.save(tmp_path / "bad_offsets.npy", np.array([0, 5]))
    np.save(tmp_path / "lm.npy", np.zeros(2))
    base = ["eval-lm", "--index", index, "--tokens", str(tmp_path / "t.npy")]
    assert cli.main(base + ["--offsets", str(tmp_path / "bad_offsets.npy"), "--lm-logprobs",
                            str(tmp_path / "lm.npy")]) == 2
    np.save(tmp_path / "o.npy", np.array([0, 3]))
    assert cli.main(base + ["--offsets", str(tmp_path / "o.npy"), "--lm-logprobs", str(tmp_path / "lm.npy")]) == 2
    assert cli.main(base + ["--offsets", str(tmp_path / "o.npy")]) == 2


def test_model_logprobs_sliding_window(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    model, _ = tiny_gpt2(tmp_path)
    doc = np.random.default_rng(0).integers(0, 19, 40)
    seq = torch.tensor(np.concatenate([[19], doc]))[None]
    with torch.no_grad():
        full = torch.log_softmax(model(seq).logits[0, :-1], -1).gather(1, seq[0, 1:, None])[:, 0].numpy()
    # A window longer than the document: every token with its whole context.
    got = evallm.model_logprobs(str(tmp_path / "m"), [doc, doc[:5]], 19, window=64, stride=32, device="cpu")
    np.testing.assert_allclose(got, np.concatenate([full, full[:5]]), atol=1e-5)
    # A window of 16, stride 8: token j is scored in the window that first reaches it.
    got = evallm.model_logprobs(str(tmp_path / "m"), [doc], 19, window=16, stride=8, device="cpu")
    expected = []
    for j in range(len(doc)):
        p = j + 1  # position in seq
        begin = max(0, ((p - 16) // 8 + 1) * 8) if p >= 16 else 0
        with torch.no_grad():
            logits = model(seq[:, begin:p]).logits[0, -1]
        expected.append(float(torch.log_softmax(logits, -1)[seq[0, p]]))
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_model_logprobs_match_the_shared_data(shared_data):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    tokens = np.load(os.path.join(shared_data, "lm_eval", "heldout_tokens.npy")).astype(np.int64)
    offsets = np.load(os.path.join(shared_data, "lm_eval", "heldout_offsets.npy"))
    given = np.load(os.path.join(shared_data, "lm_eval", "heldout_lm_logprobs.npy"))
    doc = tokens[offsets[0]:offsets[1]]
    got = evallm.model_logprobs(os.path.join(shared_data, "lm"), [doc], 50256, device="cpu")
    diff = np.abs(got - given[:len(doc)])
    assert diff.mean() < 1e-3 and diff.max() < 0.05, (diff.mean(), diff.max())


def test_eval_lm_reads_jsonl_like_token_arrays(tmp_path):
    """`--jsonl` (here gzip-compressed) tokenizes with the index's tokenizer and reports
    exactly what the same documents given as token arrays report."""
    import gzip

    rng = np.random.default_rng(1)
    words = ["alpha", "beta", "gamma", "delta", "eps"]
    texts = [" ".join(rng.choice(words, rng.integers(3, 12))) for _ in range(40)]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[:30]))
    index = str(tmp_path / "index")
    anygram.build_index(str(corpus), index, progress=False)
    heldout = texts[30:]
    jsonl = tmp_path / "heldout.jsonl.gz"
    with gzip.open(jsonl, "wt") as f:
        f.write("".join(json.dumps({"text": t}) + "\n" for t in heldout))
    docs = [np.frombuffer(t.encode(), dtype=np.uint8) for t in heldout]
    np.save(tmp_path / "t.npy", np.concatenate(docs))
    np.save(tmp_path / "o.npy", np.cumsum([0] + [len(d) for d in docs]))
    np.save(tmp_path / "lm.npy", np.log(rng.uniform(0.05, 0.9, sum(len(d) for d in docs))).astype(np.float32))
    common = ["eval-lm", "--index", index, "--lm-logprobs", str(tmp_path / "lm.npy")]
    assert cli.main(common + ["--jsonl", str(jsonl), "--json", str(tmp_path / "a.json")]) == 0
    assert cli.main(common + ["--tokens", str(tmp_path / "t.npy"), "--offsets", str(tmp_path / "o.npy"),
                              "--json", str(tmp_path / "b.json")]) == 0
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    for report in (a, b):  # timings differ
        report.pop("score_tokens_per_second")
        report.pop("score_seconds")
    assert a == b and a["documents"]


def _eval_lm_case(tmp_path, docs, lm):
    index = build_from_tokens(str(tmp_path), [[1, 2, 3, 4], [2, 3, 5], [1, 2, 3, 6]], 2, 10, 9)
    np.save(tmp_path / "t.npy", np.concatenate([np.asarray(d, dtype=np.uint16) for d in docs]))
    np.save(tmp_path / "o.npy", np.cumsum([0] + [len(d) for d in docs]))
    np.save(tmp_path / "lm.npy", np.asarray(lm))
    return ["eval-lm", "--index", index, "--tokens", str(tmp_path / "t.npy"), "--offsets", str(tmp_path / "o.npy"),
            "--lm-logprobs", str(tmp_path / "lm.npy")]


def test_eval_lm_on_one_document(tmp_path, capsys):
    """One document (it raised KeyError 'model_ppl'): λ is tuned and reported on it, and
    the model's perplexity is the direct one."""
    lm = np.log([0.5, 0.25, 0.125])
    args = _eval_lm_case(tmp_path, [[1, 2, 3]], lm)
    assert cli.main(args + ["--json", str(tmp_path / "r.json"), "--format", "table"]) == 0
    printed = capsys.readouterr().out
    assert "same document" in printed
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["documents"]["same_documents"] and report["test"]["tokens"] == 3
    assert report["test"]["model_ppl"] == pytest.approx(float(np.exp(-lm.mean())))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), 0.5])
def test_eval_lm_rejects_values_that_are_not_log_probs(tmp_path, capsys, bad):
    lm = np.log([0.5, 0.25, 0.125, 0.5, 0.5])
    lm[3] = bad
    args = _eval_lm_case(tmp_path, [[1, 2], [3, 4, 5]], lm)
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "--lm-logprobs" in err and str(tmp_path / "lm.npy") in err
    assert "at token 3 (document 1, token 1)" in err
    with pytest.raises(anygram.errors.InvalidArgumentError, match="lm_logprobs: log-prob"):
        evallm.evaluate(anygram.Engine.open(args[2]), [np.array([1, 2]), np.array([3, 4, 5])], lm)
