"""The draws of ``search_docs`` and ``search_docs_cnf`` for a seed, as the core makes them
(``rust/anygram/src/documents.rs``): rand 0.8's ``StdRng`` (ChaCha with 12 rounds, seeded
by ``seed_from_u64``'s PCG32 stream), ``gen_range(0..=j)`` on u64 (widening multiply,
rejection zone) and Floyd's algorithm. The cluster engine draws on the driver with the
total count over all shards, so a seed gives the local engine's documents."""

from __future__ import annotations

import os
import struct
from typing import List, Optional

_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF


def _rotl(x: int, n: int) -> int:
    return ((x << n) | (x >> (32 - n))) & _M32


class ChaCha12:
    """rand_chacha's ``ChaCha12Rng`` (stream 0, 64-bit block counter) as a u64 source."""

    def __init__(self, key: bytes):
        self.key = list(struct.unpack("<8I", key))
        self.counter = 0
        self.words: List[int] = []
        self.index = 0

    @classmethod
    def seed_from_u64(cls, state: int) -> "ChaCha12":
        seed = bytearray()
        for _ in range(8):  # rand_core's PCG32 fill of the 32-byte seed
            state = (state * 6364136223846793005 + 11634580027462260723) & _M64
            xorshifted = (((state >> 18) ^ state) >> 27) & _M32
            rot = state >> 59
            seed += struct.pack("<I", ((xorshifted >> rot) | (xorshifted << ((32 - rot) & 31))) & _M32)
        return cls(bytes(seed))

    def _block(self) -> List[int]:
        c = self.counter
        state = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574, *self.key, c & _M32, c >> 32, 0, 0]
        x = list(state)

        def quarter(a: int, b: int, c_: int, d: int) -> None:
            x[a] = (x[a] + x[b]) & _M32
            x[d] = _rotl(x[d] ^ x[a], 16)
            x[c_] = (x[c_] + x[d]) & _M32
            x[b] = _rotl(x[b] ^ x[c_], 12)
            x[a] = (x[a] + x[b]) & _M32
            x[d] = _rotl(x[d] ^ x[a], 8)
            x[c_] = (x[c_] + x[d]) & _M32
            x[b] = _rotl(x[b] ^ x[c_], 7)

        for _ in range(6):  # 12 rounds: column, then diagonal
            quarter(0, 4, 8, 12)
            quarter(1, 5, 9, 13)
            quarter(2, 6, 10, 14)
            quarter(3, 7, 11, 15)
            quarter(0, 5, 10, 15)
            quarter(1, 6, 11, 12)
            quarter(2, 7, 8, 13)
            quarter(3, 4, 9, 14)
        self.counter = (self.counter + 1) & _M64
        return [(a + b) & _M32 for a, b in zip(x, state)]

    def _next_u32(self) -> int:
        if self.index >= len(self.words):
            self.words = self._block()
            self.index = 0
        word = self.words[self.index]
        self.index += 1
        return word

    def next_u64(self) -> int:
        # rand_core's BlockRng reads two consecutive words, low one first, also across blocks.
        low = self._next_u32()
        return low | (self._next_u32() << 32)

    def gen_range_inclusive(self, high: int) -> int:
        """``gen_range(0..=high)`` for u64."""
        span = (high + 1) & _M64
        if span == 0:
            return self.next_u64()
        zone = ((span << (64 - span.bit_length())) & _M64) - 1
        while True:
            product = self.next_u64() * span
            if product & _M64 <= zone:
                return product >> 64


def sample_distinct(n: int, k: int, seed: Optional[int]) -> List[int]:
    """``k`` distinct numbers of ``0..n`` (``k <= n``), sorted: the core's draw for ``seed``
    (None: a fresh seed, as the core draws from entropy)."""
    rng = ChaCha12.seed_from_u64(seed if seed is not None else int.from_bytes(os.urandom(8), "little"))
    chosen = set()
    for j in range(n - k, n):
        t = rng.gen_range_inclusive(j)
        if t in chosen:
            chosen.add(j)
        else:
            chosen.add(t)
    return sorted(chosen)
