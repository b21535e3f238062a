#!/usr/bin/env python3
"""A KenLM-loadable ARPA n-gram model (default 4-gram) from the token stream of an anygram
index, for benchmarking `Engine.score` beside `kenlm.Model` on the same corpus.

KenLM's trainer (`lmplz`) is not on PyPI, so the model is estimated here with numpy:
interpolated absolute discounting (one discount per order, D = n1 / (n1 + 2 n2)), written in
ARPA's backoff form (an n-gram's probability is the interpolated one; a context's backoff
weight is its interpolation weight), which is the same model that KenLM then evaluates.
Words are the token ids written in decimal; every document is `<s> tokens </s>`, and no
n-gram crosses a document boundary. Only shard files are read (`tokenized.{s}`, the layout's
documents each behind an all-ones separator).

    python bench/kenlm_arpa.py /work/idx/docs /tmp/docs.4gram.arpa [--order 4]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

BITS = 16  # bits per word in a packed (uint64) n-gram key: 4 words of token ids, <s> and </s>


def token_stream(index_dir: str) -> tuple[np.ndarray, int, int]:
    """All documents as one uint64 array `<s> d1 </s> <s> d2 </s> ...` and the codes of <s>, </s>
    (the two values after the largest token id)."""
    with open(os.path.join(index_dir, "anygram.json")) as f:
        manifest = json.load(f)
    width = manifest["token_width"]
    if width not in (1, 2):
        raise SystemExit(f"token_width {width}: n-gram keys of this script pack ids below 2^16")
    separator = (1 << (8 * width)) - 1
    shards = [np.fromfile(os.path.join(index_dir, f"tokenized.{s}"), dtype=f"<u{width}")
              for s in range(len(manifest["shards"]))]
    largest = max(int(t[t != separator].max(initial=0)) for t in shards)
    bos, eos = largest + 1, largest + 2
    if eos >= separator:
        raise SystemExit(f"token id {largest}: no two codes left below 2^16 for <s> and </s>")
    parts = []
    for s, toks in enumerate(shards):
        if len(toks) == 0:
            continue
        toks = toks.astype(np.uint64)
        starts = np.flatnonzero(toks == separator)
        if len(starts) == 0 or starts[0] != 0:
            raise SystemExit(f"tokenized.{s} does not start with a document separator")
        # separator -> </s> of the previous document, then <s>; drop the first </s>, end the last.
        toks[starts] = eos
        toks = np.insert(toks, starts + 1, np.uint64(bos))[1:]
        parts.append(np.append(toks, eos).astype(np.uint64))
    return np.concatenate(parts), bos, eos


def ngram_counts(stream: np.ndarray, k: int, bos: int, eos: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique packed k-grams within documents (<s> only first, </s> only last) and counts."""
    n = len(stream) - k + 1
    keys = np.zeros(n, dtype=np.uint64)
    valid = np.ones(n, dtype=bool)
    for j in range(k):
        w = stream[j:j + n]
        keys = (keys << np.uint64(BITS)) | w
        if j > 0:
            valid &= w != bos
        if j < k - 1:
            valid &= w != eos
    return np.unique(keys[valid], return_counts=True)


def discount(counts: np.ndarray) -> float:
    n1, n2 = int((counts == 1).sum()), int((counts == 2).sum())
    return n1 / (n1 + 2 * n2) if n1 and n2 else 0.5


def estimate(stream: np.ndarray, order: int, bos: int, eos: int):
    """Per order: keys, log10 probabilities, log10 backoff weights (interpolated abs. discounting)."""
    keys, counts = [], []
    for k in range(1, order + 1):
        t0 = time.perf_counter()
        kk, cc = ngram_counts(stream, k, bos, eos)
        keys.append(kk)
        counts.append(cc)
        print(f"  {k}-grams: {len(kk):,} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)

    # Unigrams: discounted counts of the predicted words, the rest of the mass to <unk>.
    uni_keys, uni_counts = keys[0], counts[0].astype(np.float64)
    predicted = uni_keys != bos
    d1 = discount(counts[0][predicted])
    total = uni_counts[predicted].sum()
    prob = [np.where(predicted, (uni_counts - d1) / total, 0.0)]
    unk = d1 * predicted.sum() / total
    backoff = [np.zeros(len(k)) for k in keys]  # log10 of the interpolation weight; 0: none
    for k in range(2, order + 1):
        kk, cc = keys[k - 1], counts[k - 1].astype(np.float64)
        d = discount(counts[k - 1])
        context = kk >> np.uint64(BITS)
        first = np.flatnonzero(np.r_[True, context[1:] != context[:-1]])
        total = np.add.reduceat(cc, first)
        types = np.diff(np.r_[first, len(kk)])
        gamma = d * types / total
        lower = keys[k - 2]
        ctx_at = np.searchsorted(lower, context[first])
        assert np.array_equal(lower[ctx_at], context[first]), "a context is not a listed n-gram"
        backoff[k - 2][ctx_at] = np.log10(gamma)
        suffix = kk & np.uint64((1 << (BITS * (k - 1))) - 1)
        suf_at = np.searchsorted(lower, suffix)
        assert np.array_equal(lower[suf_at], suffix), "a suffix is not a listed n-gram"
        group = np.repeat(np.arange(len(first)), types)
        prob.append((cc - d) / total[group] + gamma[group] * prob[k - 2][suf_at])
    return keys, prob, backoff, unk


def write_arpa(path: str, keys, prob, backoff, unk: float, bos: int, eos: int) -> None:
    order = len(keys)
    words = np.array([str(i) for i in range(1 << BITS)], dtype=object)
    words[bos], words[eos] = "<s>", "</s>"
    mask = np.uint64((1 << BITS) - 1)
    tmp = path + ".partial"
    with open(tmp, "w") as f:
        f.write("\\data\\\n")
        f.write(f"ngram 1={len(keys[0]) + 1}\n")  # + <unk>
        for k in range(2, order + 1):
            f.write(f"ngram {k}={len(keys[k - 1])}\n")
        for k in range(1, order + 1):
            f.write(f"\n\\{k}-grams:\n")
            if k == 1:
                f.write(f"{np.log10(unk):.6f}\t<unk>\t0\n")
            logp = np.log10(np.maximum(prob[k - 1], 1e-99))
            if k == 1:
                logp[keys[0] == bos] = -99.0  # <s> is only ever a context
            for start in range(0, len(logp), 1 << 20):  # formatted a slice at a time: bounded memory
                part = slice(start, start + (1 << 20))
                key = keys[k - 1][part]
                text = words[key & mask]
                for j in range(1, k):  # prepend the earlier words
                    text = words[(key >> np.uint64(BITS * j)) & mask] + " " + text
                lines = np.char.mod("%.6f", logp[part]).astype(object) + "\t" + text
                if k < order:
                    lines = lines + "\t" + np.char.mod("%.6f", backoff[k - 1][part]).astype(object)
                f.write("\n".join(lines))
                f.write("\n")
        f.write("\n\\end\\\n")
    os.replace(tmp, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("index", help="an anygram index directory (token width 1 or 2)")
    p.add_argument("output", help="the ARPA file to write")
    p.add_argument("--order", type=int, default=4)
    args = p.parse_args()
    if not 1 <= args.order <= 4:
        raise SystemExit("--order: 1 to 4 (keys are packed in 64 bits)")
    t0 = time.perf_counter()
    stream, bos, eos = token_stream(args.index)
    print(f"{len(stream):,} words with <s> and </s>", file=sys.stderr, flush=True)
    keys, prob, backoff, unk = estimate(stream, args.order, bos, eos)
    del stream
    write_arpa(args.output, keys, prob, backoff, unk, bos, eos)
    counts = {k + 1: len(keys[k]) + (k == 0) for k in range(args.order)}
    print(json.dumps({"arpa": args.output, "order": args.order, "ngram_counts": counts,
                      "seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
