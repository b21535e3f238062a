"""Builds one big u16 shard (past 2^32 bytes of text, 5-byte pointers) by tiling a small
tokenized corpus, each copy under its own random permutation of the vocabulary.

The source is an index built from the docs corpus with the GPT-2 tokenizer (its token stream
``tokenized.0`` and document offsets ``offset.0`` are read memory-mapped). Copy ``c`` maps
every id through ``permutation(c)``: a bijection of ``0..vocab_size`` that keeps the eos id
in place (copy 0 is the identity, so copy 0 is the source itself); the document separator
(0xFFFF) is not a vocabulary id and is written by the core's writer, so the format's
separator and eos semantics are untouched. Copies are so unlikely to share an n-gram of a
few tokens that counts of long n-grams stay small, as on a real corpus.

Only one copy (~60 MB) is held in RAM at a time: documents go one by one to
``anygram._anygram.IndexWriter``, which streams them to disk and builds the suffix array
within ``--mem`` (external sort when it does not fit).

    python bench/big/make_index.py --source /work/big/docs-src --copies 84 \
        --output /work/big/tiled84 --mem 9.5G --seed 14

``permutation`` and ``copy_tokens`` are imported by ``check.py`` to rebuild any position's
tokens without reading the big index.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import numpy as np

from anygram import _anygram
from anygram.builder import parse_size

SEPARATOR = 0xFFFF


def source_arrays(source: str):
    """(tokens, doc_starts, manifest) of shard 0 of the source index, tokens memory-mapped."""
    manifest = json.load(open(os.path.join(source, "anygram.json")))
    if manifest["token_width"] != 2 or len(manifest["shards"]) != 1:
        raise SystemExit(f"{source}: need a one-shard u16 index")
    tokens = np.memmap(os.path.join(source, "tokenized.0"), dtype="<u2", mode="r")
    starts = (np.fromfile(os.path.join(source, "offset.0"), dtype="<u8") // 2).astype(np.int64)
    if len(starts) == 0 or starts[0] != 0 or np.any(tokens[starts] != SEPARATOR):
        raise SystemExit(f"{source}: offsets do not point at document separators")
    return tokens, starts, manifest


def permutation(copy: int, vocab_size: int, eos: int, seed: int) -> np.ndarray:
    """The id map of copy ``copy`` (u16 array of length 0x10000): a random bijection of
    ``0..vocab_size`` fixing ``eos``, identity for copy 0 and outside the vocabulary (so the
    separator 0xFFFF maps to itself)."""
    table = np.arange(1 << 16, dtype=np.uint16)
    if copy == 0:
        return table
    movable = np.array([i for i in range(vocab_size) if i != eos], dtype=np.uint16)
    rng = np.random.default_rng([seed, copy])
    table[movable] = movable[rng.permutation(len(movable))]
    return table


def copy_tokens(tokens: np.ndarray, copy: int, vocab_size: int, eos: int, seed: int) -> np.ndarray:
    """The token stream of copy ``copy`` (separators included), as in the big index."""
    return permutation(copy, vocab_size, eos, seed)[tokens]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", required=True, help="one-shard u16 index to tile")
    ap.add_argument("--copies", type=int, required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--mem", default="9.5G", help="the writer's memory budget (suffix sort)")
    ap.add_argument("--seed", type=int, default=14)
    args = ap.parse_args()

    tokens, starts, manifest = source_arrays(args.source)
    vocab, eos = manifest["vocab_size"], manifest["eos_token_id"]
    ends = np.append(starts[1:], np.int64(len(tokens)))
    total = args.copies * len(tokens)
    print(f"{args.copies} copies of {len(tokens):,} tokens ({len(starts):,} documents): {total:,} tokens, "
          f"{2 * total / 2**30:.2f} GiB of text", flush=True)

    started = time.time()
    writer = _anygram.IndexWriter(args.output, 2, vocab_size=vocab, eos_token_id=eos, shards=1,
                                  metadata=True, mem_bytes=parse_size(args.mem), accelerator=False)
    for copy in range(args.copies):
        mapped = copy_tokens(np.asarray(tokens), copy, vocab, eos, args.seed)
        for doc, (s, e) in enumerate(zip(starts.tolist(), ends.tolist())):
            line = json.dumps({"copy": copy, "doc": doc}).encode() + b"\n"
            writer.add(mapped[s + 1:e], line)  # the writer puts the separator in front
        print(f"copy {copy + 1}/{args.copies} streamed, {time.time() - started:.0f} s", flush=True)
    stream_s = time.time() - started
    manifest_out = writer.finish()
    total_s = time.time() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    report = {"copies": args.copies, "seed": args.seed, "source": os.path.abspath(args.source),
              "num_tokens": manifest_out["shards"][0]["num_tokens"],
              "ptr_size": manifest_out["shards"][0]["ptr_size"],
              "stream_seconds": round(stream_s, 1), "sort_and_finish_seconds": round(total_s - stream_s, 1),
              "total_seconds": round(total_s, 1), "peak_rss_bytes": peak, "mem": args.mem}
    print(json.dumps(report, indent=2), flush=True)
    with open(args.output.rstrip("/") + ".build.json", "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
