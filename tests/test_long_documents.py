"""Long documents are tokenized in pieces whose size follows the memory budget, with
ids identical to tokenizing them whole (the tokenizers library on the whole text is
the oracle), for UTF-8 bytes and for tokenizers of three kinds trained here; a real
build of a ~20 MB document keeps its peak resident memory bounded."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import anygram
from anygram.builder import _DocumentEncoder, cut_points, piece_chars_for, uncuttable_reason
from anygram.tokenizer import Tokenizer

WORDS = ("the quick brown fox jumps over a lazy dog 1234 x9 naïve café — (ok) don't it's "
         "'s re-entry 3.14 ünïcödé 東京 tab\there").split(" ")
SEPARATORS = [" ", " ", " ", "  ", "\n", ", ", ". ", "\n\n", " \n ", "\t"]


def random_text(rng: random.Random, chars: int) -> str:
    out, size = [], 0
    while size < chars:
        word, sep = rng.choice(WORDS), rng.choice(SEPARATORS)
        out += [word, sep]
        size += len(word) + len(sep)
    return "".join(out)


def train(kind: str, path: str) -> str:
    from tokenizers import Tokenizer as HF
    from tokenizers import models, normalizers, pre_tokenizers, trainers

    corpus = [random_text(random.Random(i), 2000) for i in range(20)]
    if kind == "byte-level-bpe":  # GPT-2 style: the build's fast road
        tok = HF(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      special_tokens=["<|endoftext|>"])
    elif kind == "wordpiece":  # BERT style, through the library
        tok = HF(models.WordPiece(unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.WordPieceTrainer(vocab_size=300, special_tokens=["[UNK]"])
    elif kind == "unigram":  # SentencePiece style
        tok = HF(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=200, special_tokens=["<unk>"], unk_token="<unk>")
    elif kind == "normalized":  # a normalizer may act across cuts: tokenized whole
        tok = HF(models.BPE())
        tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    tok.save(path)
    return path


@pytest.fixture(scope="module")
def tokenizers_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tokenizers")
    return {kind: train(kind, str(directory / f"{kind}.json"))
            for kind in ("byte-level-bpe", "wordpiece", "unigram", "normalized")}


def whole_ids(tok: Tokenizer, text: str) -> list:
    return tok.encode(text)


@pytest.mark.parametrize("kind", [None, "byte-level-bpe", "wordpiece", "unigram"])
def test_pieces_give_the_ids_of_the_whole_document(tokenizers_dir, kind):
    tok = Tokenizer(tokenizers_dir[kind] if kind else None)
    text = random_text(random.Random(7), 200_000)
    encoder = _DocumentEncoder(tok, np.uint32 if kind else np.uint8, piece_chars=4096)
    bounds = encoder.piece_bounds(text)
    assert len(bounds) > 40 and max(b - a for a, b in zip(bounds, bounds[1:])) <= 4096  # really in pieces
    [ids] = encoder.encode([text])
    assert ids.tolist() == whole_ids(tok, text)
    # Short documents beside a long one, in one batch.
    short = ["don't  stop", "", "x"]
    got = encoder.encode(short[:1] + [text] + short[1:])
    assert [g.tolist() for g in got] == [whole_ids(tok, t) for t in short[:1] + [text] + short[1:]]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(WORDS + SEPARATORS + ["a", "b", "1", " a", "a ", "!!", "   "]), max_size=120),
       st.integers(4, 40))
def test_any_cut_points_give_the_whole_ids_for_byte_level_bpe(tokenizers_dir, parts, piece_chars):
    tok = Tokenizer(tokenizers_dir["byte-level-bpe"])
    text = "".join(parts)
    cuts = cut_points(text, piece_chars)
    assert cuts == sorted(set(cuts)) and all(0 < c < len(text) and text[c] == " " for c in cuts)
    bounds = [0, *cuts, len(text)]
    pieces = [tok.encode(text[a:b]) for a, b in zip(bounds, bounds[1:])]
    assert [t for p in pieces for t in p] == whole_ids(tok, text)


def test_a_tokenizer_without_safe_cuts_is_tokenized_whole_and_says_so(tokenizers_dir):
    path = tokenizers_dir["normalized"]
    assert "normalizer" in uncuttable_reason(path)
    assert uncuttable_reason(tokenizers_dir["byte-level-bpe"]) is None
    tok = Tokenizer(path)
    text = random_text(random.Random(3), 20_000).upper()
    encoder = _DocumentEncoder(tok, np.uint32, piece_chars=1000)
    with pytest.warns(UserWarning, match="tokenized whole"):
        [ids] = encoder.encode([text])
    assert ids.tolist() == whole_ids(tok, text)


def test_piece_size_follows_the_budget():
    assert piece_chars_for(None) == 1 << 20
    assert piece_chars_for(256 << 20) == (256 << 20) // 1024
    assert piece_chars_for(1 << 20) == 1 << 14  # the floor
    assert piece_chars_for(1 << 40) == 1 << 20  # the ceiling


def test_a_build_with_pieces_stores_the_whole_document_ids(tmp_path, tokenizers_dir):
    path = tokenizers_dir["byte-level-bpe"]
    texts = [random_text(random.Random(1), 60_000), "a short one", random_text(random.Random(2), 30_000)]
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    report = anygram.build_index(str(corpus), str(tmp_path / "index"), tokenizer=path, progress=False,
                                 _piece_chars=2048)
    engine = anygram.Engine.open(report.output)
    tok = Tokenizer(path)
    for i, text in enumerate(texts):
        assert engine.get_doc_by_ix(i, max_disp_len=10**9)["token_ids"] == whole_ids(tok, text)


def test_a_20_mb_document_builds_in_bounded_memory(tmp_path, tokenizers_dir):
    """Whole, this document took 4.2 GB (the library holds ~190 bytes a character);
    in pieces the whole process stays under 700 MB (measured: ~380 MB)."""
    corpus = tmp_path / "big.jsonl"
    rng = random.Random(5)
    chunk = random_text(rng, 1 << 20)
    with open(corpus, "w") as f:
        f.write(json.dumps({"text": "".join(chunk[i:] + chunk[:i] for i in range(0, 20 * 997, 997))}) + "\n")
    assert corpus.stat().st_size > 20_000_000
    out = tmp_path / "index"
    # The child reports its own high-water mark (VmHWM is per address space, so it starts afresh
    # at exec): rusage of a child forked from this large pytest process would count our pages too.
    run_and_report_peak = (
        "import sys, anygram.cli\n"
        "code = anygram.cli.main(sys.argv[1:])\n"
        "print([l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1])\n"
        "sys.exit(code)\n"
    )
    proc = subprocess.run([sys.executable, "-c", run_and_report_peak, "build", str(corpus), "--output", str(out),
                           "--tokenizer", tokenizers_dir["byte-level-bpe"], "--mem", "1G", "--quiet"],
                          capture_output=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert proc.returncode == 0, proc.stderr.decode()
    peak = int(proc.stdout.decode().split()[-1]) * 1024
    assert peak < 700 << 20, f"peak RSS {peak >> 20} MiB"
    assert anygram.Engine.open(str(out)).num_documents == 1
