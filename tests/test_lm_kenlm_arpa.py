"""bench/kenlm_arpa.py (the KenLM model that bench_hot.py scores beside `Engine.score`)
writes a valid ARPA file: the header's n-gram counts are the sections' sizes, every
listed n-gram's context and suffix are listed one order below (what KenLM requires to
load it), the unigram counts are the corpus's, and every context's distribution over the
vocabulary (backing off as ARPA does) sums to one. Checked on ids whose byte order
differs from their numeric order, over two shards."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from collections import Counter

from byte_order_ids import BYTE_ORDER_IDS
from conftest import build_from_tokens

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IDS = BYTE_ORDER_IDS[2][:-1]  # <s> and </s> take the two codes after the largest id


def read_arpa(path):
    header, sections, order = {}, {}, 0
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("ngram "):
                k, n = line[len("ngram "):].split("=")
                header[int(k)] = int(n)
            elif line.startswith("\\") and line.endswith("-grams:"):
                order = int(line[1:line.index("-")])
                sections[order] = {}
            elif line and order and not line.startswith("\\"):
                fields = line.split("\t")
                words = tuple(fields[1].split(" "))
                assert len(words) == order, line
                sections[order][words] = (float(fields[0]), float(fields[2]) if len(fields) > 2 else 0.0)
    return header, sections


def test_arpa_is_valid_and_normalized(tmp_path):
    rng = random.Random(5)
    docs = [[rng.choice(IDS[:4]) for _ in range(rng.randint(0, 30))] for _ in range(40)]
    index = build_from_tokens(str(tmp_path), docs, 2, 0xFFFF, IDS[-1], shards=2, accelerator=False)
    arpa = str(tmp_path / "model.arpa")
    out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "kenlm_arpa.py"), index, arpa],
                         capture_output=True, text=True, check=True)
    header, sections = read_arpa(arpa)
    assert {int(k): v for k, v in json.loads(out.stdout)["ngram_counts"].items()} == header
    assert header == {k: len(v) for k, v in sections.items()} and max(header) == 4

    # Unigrams: the corpus's tokens, </s> once a document, <s> and <unk>.
    words = Counter(str(t) for d in docs for t in d)
    assert set(sections[1]) == {(w,) for w in words} | {("<s>",), ("</s>",), ("<unk>",)}
    for k in range(2, 5):
        for gram in sections[k]:
            assert gram[:-1] in sections[k - 1] and gram[1:] in sections[k - 1], gram

    def logprob(context, word):
        """log10 P(word | context) as KenLM reads the file (ARPA backoff)."""
        for start in range(len(context) + 1):
            gram = tuple(context[start:]) + (word,)
            if gram in sections[len(gram)]:
                weight = sum(sections[len(context[s:])][tuple(context[s:])][1]
                             for s in range(start) if tuple(context[s:]) in sections[len(context[s:])])
                return sections[len(gram)][gram][0] + weight
        raise AssertionError(word)

    vocab = [w for (w,) in sections[1] if w != "<s>"]
    for k in range(1, 4):
        for context in sections[k]:
            if context[-1] == "</s>":
                continue  # no n-gram continues past a document's end
            total = sum(10 ** logprob(list(context), w) for w in vocab)
            assert math.isclose(total, 1.0, rel_tol=1e-4), (context, total)
