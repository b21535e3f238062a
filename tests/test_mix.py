"""Mixing math (`anygram.mix`, `mix_token_logprobs`, `LambdaTable`) against a direct
computation; torch inputs and the `transformers` logits processor when those
optional extras are installed (`make test-all`); `import anygram` imports neither."""

from __future__ import annotations

import subprocess
import sys

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis.extra.numpy import arrays

import anygram
from anygram.mix import LambdaTable, bucket_of, fit_lambda, mix, mix_token_logprobs
from conftest import build_from_tokens


def random_case(rng, rows, vocab, zero_rows=()):
    logits = rng.normal(size=(rows, vocab)) * 3
    inf = rng.random((rows, vocab)) * (rng.random((rows, vocab)) < 0.3)
    inf[:, 0] += 1e-3  # never an all-zero row unless asked
    inf /= inf.sum(axis=1, keepdims=True)
    for r in zero_rows:
        inf[r] = 0
    return logits, inf


def direct(logits, inf, lam):
    p_lm = np.exp(logits - logits.max(axis=1, keepdims=True))
    p_lm /= p_lm.sum(axis=1, keepdims=True)
    lam = np.where(inf.sum(axis=1) > 0, lam, 0.0)[:, None]
    return np.log(lam * inf + (1 - lam) * p_lm)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 5), st.integers(1, 40), st.floats(0, 1), st.integers(0, 2**32 - 1))
def test_mix_is_the_direct_computation(rows, vocab, lam, seed):
    rng = np.random.default_rng(seed)
    logits, inf = random_case(rng, rows, vocab, zero_rows=[0] if rows > 2 else [])
    got = mix(logits, inf, lam)
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(np.exp(got), np.exp(direct(logits, inf, lam)), atol=1e-12)
    np.testing.assert_allclose(np.exp(got).sum(axis=1), 1.0, atol=1e-9)
    # [V] inputs are one row.
    np.testing.assert_allclose(mix(logits[-1], inf[-1], lam), got[-1])


def test_lambda_zero_and_one_give_the_inputs_back():
    rng = np.random.default_rng(0)
    logits, inf = random_case(rng, 4, 30)
    logprobs = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    np.testing.assert_allclose(mix(logprobs, inf, 0.0), logprobs, rtol=1e-13)
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(mix(logprobs, inf, 1.0), np.log(inf))
    # float32 in, float32 out
    assert mix(logprobs.astype(np.float32), inf, 0.3).dtype == np.float32


def test_lambda_by_suffix_length_and_sparse():
    rng = np.random.default_rng(1)
    logits, inf = random_case(rng, 4, 20)
    table = LambdaTable(np.column_stack([np.linspace(0, 0.5, 12), np.linspace(0.5, 1, 12)]))
    suffix_len = np.array([0, 3, 7, 100])
    sparse = np.array([False, True, False, True])
    expected_lam = table.values[bucket_of(suffix_len), sparse.astype(int)]
    got = mix(logits, {"probs": inf, "suffix_len": suffix_len, "sparse": sparse}, table)
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(got, direct(logits, inf, expected_lam), atol=1e-12)
    assert bucket_of([0, 1, 4, 5, 6, 63, 64, 10**6]).tolist() == [0, 1, 4, 4, 5, 10, 11, 11]
    with pytest.raises(anygram.InvalidArgumentError, match="suffix length"):
        mix(logits, inf, table)
    with pytest.raises(anygram.InvalidArgumentError, match="shape"):
        mix(logits, inf[:, :-1], 0.5)
    with pytest.raises(anygram.InvalidArgumentError, match=r"\[0, 1\]"):
        mix(logits, inf, 1.5)
    with pytest.raises(anygram.InvalidArgumentError):
        LambdaTable(np.zeros((3, 2)))
    assert LambdaTable.from_dict(table.to_dict()).values.tolist() == table.values.tolist()


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, 30, elements=st.floats(-8, 0)), arrays(np.float64, 30, elements=st.floats(0, 1)),
       st.floats(0, 1))
def test_token_mixture_and_the_fitted_lambda(lm, p_inf, lam):
    got = mix_token_logprobs(lm, p_inf, lam)
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(got, np.log(lam * p_inf + (1 - lam) * np.exp(lm)), atol=1e-12)
    best = fit_lambda(lm, p_inf)
    objective = lambda x: np.sum(np.log(x * p_inf + (1 - x) * np.exp(lm)))  # noqa: E731
    grid = np.linspace(0, 1, 201)
    with np.errstate(divide="ignore"):
        assert objective(best) >= max(objective(x) for x in grid) - 1e-6


def test_undefined_infgram_keeps_the_model():
    lm = np.log(np.array([0.5, 0.25, 0.125]))
    got = mix_token_logprobs(lm, np.array([-1.0, 0.5, -1.0]), 0.7)
    assert got[0] == lm[0] and got[2] == lm[2]
    assert got[1] == pytest.approx(np.log(0.7 * 0.5 + 0.3 * 0.25))


def test_fitted_table_beats_a_single_lambda_on_its_own_data():
    rng = np.random.default_rng(2)
    n = 4000
    suffix_len = rng.integers(0, 40, n)
    sparse = rng.random(n) < 0.3
    # The ∞-gram is good on long suffixes, useless on short ones.
    good = suffix_len > 10
    p_inf = np.where(good, rng.uniform(0.6, 1, n), rng.uniform(0, 0.05, n))
    lm = np.log(rng.uniform(0.05, 0.5, n))
    table = LambdaTable.fit(lm, p_inf, suffix_len, sparse)
    single = fit_lambda(lm, p_inf)
    mixed_table = mix_token_logprobs(lm, p_inf, table, suffix_len=suffix_len, sparse=sparse)
    assert mixed_table.mean() > mix_token_logprobs(lm, p_inf, single).mean()
    assert table(np.array([30]), np.array([False]))[0] > table(np.array([1]), np.array([False]))[0]
    # Shrinkage: without a prior a cell's λ is its own optimum; a strong prior pulls it to the single λ.
    cell = (bucket_of(suffix_len) == 10) & ~sparse
    own = fit_lambda(lm[cell], p_inf[cell])
    raw = LambdaTable.fit(lm, p_inf, suffix_len, sparse, prior_tokens=0)
    assert raw.values[10, 0] == pytest.approx(own)
    shrunk = table.values[10, 0]
    assert min(own, single) <= shrunk <= max(own, single)
    strong = LambdaTable.fit(lm, p_inf, suffix_len, sparse, prior_tokens=1e12)
    np.testing.assert_allclose(strong.values, single, atol=1e-6)


def test_import_anygram_imports_neither_torch_nor_transformers():
    code = ("import sys, anygram, anygram.mix; "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_torch_inputs_stay_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    logits, inf = random_case(rng, 3, 25)
    for dtype in (torch.float32, torch.float64):
        t = torch.tensor(logits, dtype=dtype)
        got = mix(t, inf, 0.4)
        assert isinstance(got, torch.Tensor) and got.dtype == dtype and got.shape == t.shape
        np.testing.assert_allclose(got.double().numpy(), mix(logits, inf, 0.4), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got.exp().sum(dim=-1).double().numpy(), 1.0, atol=1e-5)
    one = mix(torch.tensor(logits[0]), torch.tensor(inf[0]), 0.4)
    assert one.shape == (25,)


def test_logits_processor_on_a_tiny_random_gpt2(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from anygram.hf import InfiniGramLogitsProcessor

    vocab = 32
    # The corpus says: after 5 comes 6, after 5 6 comes 7, ... up to 12.
    docs = [list(range(5, 13)), list(range(5, 13)), [1, 2, 3, 5, 6, 7, 8, 9]]
    engine = anygram.Engine.open(build_from_tokens(str(tmp_path), docs, 2, vocab, 0))
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=vocab, n_positions=64, n_embd=16, n_layer=1, n_head=2,
                                     bos_token_id=None, eos_token_id=None)
    model = transformers.GPT2LMHeadModel(config).eval()
    prompt = torch.tensor([[31, 5, 6], [31, 1, 2]])
    processor = InfiniGramLogitsProcessor(engine, lam=1.0, ignore_tokens=[31])
    # λ = 1: generation follows the ∞-gram exactly (greedy): 5 6 → 7 8 9 …; 1 2 → 3 5 6 7
    out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=5, do_sample=False,
                         logits_processor=transformers.LogitsProcessorList([processor]), pad_token_id=0)
    assert out[0, 3:].tolist() == [7, 8, 9, 10, 11]
    assert out[1, 3:].tolist() == [3, 5, 6, 7, 8]
    # The processor's output is the mixture of the model's distribution with the ∞-gram's.
    with torch.no_grad():
        scores = model(prompt).logits[:, -1, :]
    mixed = InfiniGramLogitsProcessor(engine, lam=0.25, ignore_tokens=[31])(prompt, scores)
    ntd = engine.ntd_dense([[5, 6], [1, 2]], vocab_size=vocab)["probs"]
    expected = 0.25 * ntd + 0.75 * torch.softmax(scores, dim=-1).numpy()
    np.testing.assert_allclose(mixed.exp().numpy(), expected, atol=1e-6)
    # λ = 0: the model unchanged.
    same = InfiniGramLogitsProcessor(engine, lam=0.0)(prompt, scores)
    np.testing.assert_allclose(same.numpy(), torch.log_softmax(scores, dim=-1).numpy(), atol=1e-6)


@pytest.mark.parametrize("max_context", [0, 1, 2, 3, 5, 40])
def test_logits_processor_max_context_keeps_the_last_tokens(tmp_path, max_context):
    """``max_context`` keeps the last ``max_context`` tokens, all of them when the row is
    shorter (it used to cut ``[1, 2, 3]`` to ``[2, 3]`` for ``max_context=5``)."""
    # transformers without torch is enough: the processor takes anything with .tolist().
    from anygram.hf import InfiniGramLogitsProcessor

    vocab = 16
    docs = [[1, 2, 3, 4, 5], [2, 3, 6], [9, 1, 2, 3, 7], [3, 8]]
    engine = anygram.Engine.open(build_from_tokens(str(tmp_path), docs, 2, vocab, 0))
    prompt = np.array([[9, 1, 2, 3], [4, 2, 3, 5]])
    rows = prompt.tolist()
    direct = [row[len(row) - max_context:] if max_context < len(row) else row for row in rows]
    direct = [[] if max_context == 0 else row for row in direct]
    processor = InfiniGramLogitsProcessor(engine, lam=1.0, max_context=max_context)
    assert processor.contexts(prompt) == direct
    scores = np.zeros((2, vocab))
    expected = engine.ntd_dense(direct, vocab_size=vocab)["probs"]
    np.testing.assert_allclose(np.exp(processor(prompt, scores)), expected, atol=1e-6)


@pytest.mark.parametrize("bad", [-1, 2.5, True, "3"])
def test_logits_processor_rejects_a_bad_max_context(bad):
    from anygram.errors import InvalidArgumentError
    from anygram.hf import InfiniGramLogitsProcessor

    with pytest.raises(InvalidArgumentError, match="max_context"):
        InfiniGramLogitsProcessor(object(), max_context=bad)
