"""The build's tokenizer gives exactly the ids of the `tokenizers` library: its fast
byte-level road is checked on every Unicode code point in the contexts the GPT-2
pattern distinguishes, on random text, and on a byte-level BPE trained here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

import anygram
from anygram import _anygram

CONTEXTS = "a{c}b {c}1 {c}{c}x\n  {c} ' {c}s {c}'s \t{c}\u00a0{c}?!\n"


def code_points():
    return [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]


def mismatch(native: "_anygram.CorpusTokenizer", reference: Tokenizer, texts):
    got_flat, lengths = native.encode_batch(texts)
    got, start = [], 0
    for n in lengths:
        got.append(got_flat[start:start + n].tolist())
        start += n
    expected = [e.ids for e in reference.encode_batch(texts, add_special_tokens=False)]
    return [i for i, (a, b) in enumerate(zip(got, expected)) if a != b]


@pytest.fixture(scope="module")
def gpt2(shared_data):
    path = os.path.join(shared_data, "gpt2-tokenizer.json")
    native = _anygram.CorpusTokenizer(path)
    assert native.is_fast
    return native, Tokenizer.from_file(path)


def test_every_code_point_in_every_context(gpt2):
    native, reference = gpt2
    points = code_points()
    chunks = ["".join(CONTEXTS.format(c=c) for c in points[i:i + 4000]) for i in range(0, len(points), 4000)]
    bad = mismatch(native, reference, chunks)
    if bad:
        chunk = points[bad[0] * 4000:(bad[0] + 1) * 4000]
        singles = [CONTEXTS.format(c=c) for c in chunk]
        first = mismatch(native, reference, singles)
        pytest.fail(f"code points tokenized differently: {[hex(ord(chunk[i])) for i in first[:20]]}")


def test_special_tokens_and_whitespace_runs(gpt2):
    native, reference = gpt2
    texts = ["", " ", "  ", "a  b", "a   \n\n  b", "x<|endoftext|>y", "<|endoftext|><|endoftext|>",
             "end  <|endoftext|>  start", "  trailing  ", "\n\n\nx", "it's we'll they'RE 'll", "1234567 89",
             "naïve café — “quotes” …", "日本語のテキスト", "emoji 👍🏽 family 👨‍👩‍👧", "\u3000\u2003x\u00a0 y"]
    assert mismatch(native, reference, texts) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60), min_size=1, max_size=20))
def test_random_text(gpt2, texts):
    native, reference = gpt2
    assert mismatch(native, reference, texts) == []


def test_trained_byte_level_bpe(tmp_path):
    """A byte-level BPE trained here (no shared data needed), through both roads."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    corpus = [f"the {w} of {i} and {w}s, it's {i * 7}!" for i, w in enumerate(["cat", "dog", "bird", "fish"] * 50)]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=["<|end|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    path = str(tmp_path / "tokenizer.json")
    tok.save(path)
    native = _anygram.CorpusTokenizer(path)
    assert native.is_fast
    reference = Tokenizer.from_file(path)
    texts = corpus[:50] + ["a<|end|>b", "  spaced   out  ", "ünïcödé 123"]
    assert mismatch(native, reference, texts) == []


def test_other_tokenizers_use_the_library(tmp_path):
    """A tokenizer outside the fast road's kind (here: whitespace pre-tokenizer) is
    encoded by the library itself, so ids still match."""
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(["a b c ab bc abc"] * 10, trainers.BpeTrainer(vocab_size=50, special_tokens=["[UNK]"]))
    path = str(tmp_path / "ws.json")
    tok.save(path)
    native = _anygram.CorpusTokenizer(path)
    assert not native.is_fast
    assert mismatch(native, Tokenizer.from_file(path), ["a b c", "abc ab", "zz"]) == []


# --- the fast road on a tokenizer trained here, on random Unicode (no outside data) ---

PIECES = [" ", "  ", "   ", "\t", "\n", "\n\n", " \n ", "\r\n", "\u00a0", "\u3000", "\u2003",
          "0", "7", "42", "12345", " 99", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'", "it's",
          "we'll", "e\u0301", "a\u0308\u0323", "\u0301", "日本語", "中文", "한국어", "👍", "👍🏽", "👨‍👩‍👧", "🇫🇷",
          "the", " cat", "dog", "naïve", "café", "!?", "...", "—", "“", "<|endoftext|>", "Ω", "ß", "İ"]
unicode_texts = st.lists(
    st.one_of(st.sampled_from(PIECES), st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8)),
    max_size=25).map("".join)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from trained_tokenizer import train_gpt2_like

    path = train_gpt2_like(str(tmp_path_factory.mktemp("bpe") / "tokenizer.json"))
    native = _anygram.Tokenizer(path)
    assert native.is_fast  # GPT-2's kind: the fast road is taken
    return native, Tokenizer.from_file(path)


@settings(max_examples=400, deadline=None)
@given(st.lists(unicode_texts, min_size=1, max_size=8))
def test_fast_road_equals_the_library_on_random_unicode(trained, texts):
    native, python_library = trained
    for text in texts:
        fast = native.encode(text)
        assert fast == native.encode_exact(text), repr(text)  # the same crate without the fast road
        assert fast == python_library.encode(text, add_special_tokens=False).ids, repr(text)
    assert mismatch(native, python_library, texts) == []


def test_queries_and_builds_use_the_core_tokenizer_alone(tmp_path):
    """Query and build tokenization go through the core (one implementation and
    version), never through the Python ``tokenizers`` package."""
    from trained_tokenizer import train_gpt2_like

    path = train_gpt2_like(str(tmp_path / "tokenizer.json"))
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"the cat {i} 👍🏽 naïve"}) + "\n" for i in range(20)))
    script = textwrap.dedent(f"""
        import sys
        import anygram
        out = anygram.build_index({str(corpus)!r}, {str(tmp_path / "index")!r}, tokenizer={path!r},
                                  progress=False).output
        engine = anygram.Engine.open(out, verbatim=True)  # documents start with "the cat", no space
        assert engine.count("the cat") == 20
        ids = engine.tokenize(" naïve")
        assert engine.decode(ids) == " naïve"
        assert "the cat 3" in engine.search_docs(" cat 3")["documents"][0]["text"]
        assert engine.tokenizer.tokens(ids)
        assert "tokenizers" not in sys.modules, "the Python tokenizers package was used"
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    # And the ids are the Python library's too (the build's check and this one).
    tok = anygram.Tokenizer(path)
    for text in ["the cat 3 👍🏽 naïve", "  it's\n\n 42"]:
        assert tok.encode(text) == Tokenizer.from_file(path).encode(text, add_special_tokens=False).ids
