"""Samples the sorted parts of an external build still in progress (``parts.S/part.I``, packed
little-endian byte offsets): every sampled pointer lies in its part's range on the token grid,
and each sampled adjacent pair is in infini-gram's order (``memcmp`` of the text's bytes).
Evidence on the sort past 2^32 bytes before the merge ends (``anygram verify`` checks the
whole table afterwards).

    python bench/big/check_parts.py /work/big/.tiled84.write-PID [--pairs 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

COMPARE_TOKENS = 256  # longer equal prefixes count as ordered (as verify's sample does)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workdir", help="the writer's work directory (holds index/ and parts.0/)")
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    text = np.memmap(os.path.join(args.workdir, "index", "tokenized.0"), dtype=np.uint8, mode="r")
    plan = json.load(open(os.path.join(args.workdir, "parts.0", "plan.json")))
    width = plan["token_width"]
    rng = np.random.default_rng(args.seed)
    i = 0
    while os.path.exists(path := os.path.join(args.workdir, "parts.0", f"part.{i}")):
        start = i * plan["part_tokens"]
        end = min(start + plan["part_tokens"], plan["num_tokens"])
        raw = np.memmap(path, dtype=np.uint8, mode="r")
        ptr_size = len(raw) // (end - start)
        t0 = time.perf_counter()
        ranks = np.sort(rng.integers(0, end - start - 1, size=args.pairs))

        def pointer(rank: np.ndarray) -> np.ndarray:
            at = rank[:, None] * ptr_size + np.arange(ptr_size)
            return (raw[at].astype(np.uint64) << (8 * np.arange(ptr_size, dtype=np.uint64))).sum(axis=1)

        first, second = pointer(ranks), pointer(ranks + 1)
        on_grid = all(((p % width == 0) & (p >= start * width) & (p < end * width)).all() for p in (first, second))
        ordered = 0
        for a, b in zip(first.tolist(), second.tolist()):
            x = bytes(text[a:a + COMPARE_TOKENS * width])
            y = bytes(text[b:b + COMPARE_TOKENS * width])
            ordered += x <= y and a != b
        print(json.dumps({"part": i, "ptr_size": ptr_size, "byte_range": [start * width, end * width],
                          "max_sampled_offset": int(max(first.max(), second.max())),
                          "sampled_offsets_past_2^32": int((first >= 2**32).sum()),
                          "pairs": args.pairs, "in_range_on_grid": bool(on_grid), "ordered": ordered,
                          "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
        i += 1


if __name__ == "__main__":
    main()
