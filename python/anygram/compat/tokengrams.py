"""tokengrams 0.3.3's index classes over anygram's engine: change the import, keep the calls.

``InMemoryIndex``, ``MemmapIndex`` and ``ShardedMemmapIndex`` have tokengrams' constructors and
methods (``count``, ``contains``, ``positions``, ``count_next``, ``batch_count_next``,
``get_smoothed_probs``, ``batch_get_smoothed_probs``, ``sample_smoothed``, ``sample_unsmoothed``,
``estimate_deltas``, ``build``, ``is_sorted``) and answer as tokengrams does; the work is done by
:class:`anygram.Engine` (Kneser-Ney and sampling in ``anygram::smoothing``, in Rust, on all cores).

Files. tokengrams keeps a raw little-endian token file (uint16, or uint32 when ``vocab`` exceeds
2**16) and a table of uint64 positions sorted by numeric token order. anygram's suffix arrays sort
by the tokens' little-endian bytes (infini-gram's order) and separate documents, so a tokengrams
pair cannot be searched as it is: it is converted once into an anygram index beside the table, in
the directory ``INDEX_PATH.anygram`` (one document per token file), and reopened from there on
later runs. ``build`` writes that directory instead of a tokengrams table (``index_path`` names
where; the same calls then open it). Either class also opens an anygram index directory directly
(``MemmapIndex(path_of_anygram_index)``), where each document is a separate token stream.

Differences (see the README): query ids outside ``[0, vocab)`` raise
:class:`anygram.errors.InvalidQueryError` (tokengrams counts them as absent); a sampler that
cannot continue raises :class:`~anygram.errors.InvalidQueryError` (tokengrams: ``RuntimeError``);
samplers take an optional ``seed`` (tokengrams' are never repeatable); a
``ShardedMemmapIndex`` estimates discounts over all shards at once (tokengrams sums the per-shard
frequency tables of n-gram counts, counting an n-gram seen once in each of two shards as two
singletons).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import weakref
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .. import _anygram
from ..engine import Engine
from ..errors import CorruptIndexError, IndexNotFoundError, InvalidArgumentError

__all__ = ["InMemoryIndex", "MemmapIndex", "ShardedMemmapIndex", "ShardedInMemoryIndex"]

#: tokengrams' default vocabulary (uint16 tokens).
DEFAULT_VOCAB = 2**16
#: Where a match ends its token stream there is no next token (tokengrams' view).
_ENDS = "skip"
_CONVERTED_SUFFIX = ".anygram"
#: The methods answered by ``_anygram.TokengramsIndex`` straight from Rust.
_NATIVE_METHODS = ("count", "contains", "positions", "count_next", "batch_count_next",
                   "get_smoothed_probs", "batch_get_smoothed_probs")


def _dtype(vocab: int) -> np.dtype:
    """tokengrams' token type: uint16 up to 2**16 ids, else uint32."""
    if isinstance(vocab, bool) or not isinstance(vocab, int) or not 1 <= vocab <= 2**32:
        raise InvalidArgumentError(f"vocab must be an integer in [1, 2**32], not {vocab!r}")
    return np.dtype("<u2") if vocab <= 2**16 else np.dtype("<u4")


def _anygram_width_and_vocab(vocab: int) -> Tuple[int, int]:
    """anygram's token width for tokengrams' ``vocab`` and the ids it holds: the largest value of
    a width is anygram's document separator, so tokengrams' default 2**16 takes 4 bytes a token
    (its distributions are ``vocab`` long and their smoothing depends on ``vocab``)."""
    width = 2 if vocab < 2**16 else 4
    return width, min(vocab, 2 ** (8 * width) - 1)


def _is_anygram_index(path: str) -> bool:
    return os.path.isdir(path) and (
        os.path.exists(os.path.join(path, "anygram.json")) or os.path.exists(os.path.join(path, "tokenized.0"))
    )


def _token_array(token_path: str, vocab: int, limit: Optional[int] = None) -> np.ndarray:
    if not os.path.isfile(token_path):
        raise IndexNotFoundError(f"token file {token_path} does not exist")
    dtype = _dtype(vocab)
    size = os.path.getsize(token_path)
    if size % dtype.itemsize:
        raise CorruptIndexError(
            f"token file {token_path} holds {size} bytes, not a whole number of {dtype.itemsize}-byte tokens"
        )
    tokens = np.memmap(token_path, dtype=dtype, mode="r") if size else np.zeros(0, dtype)
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise InvalidArgumentError(f"token_limit must be a non-negative integer, not {limit!r}")
        tokens = tokens[:limit]
    return tokens


def _build(streams: Sequence[np.ndarray], out: str, vocab: int, verbose: bool = False) -> str:
    """An anygram index at ``out`` with one document per token stream (written beside, then
    renamed into place by the builder)."""
    from ..builder import build_index

    width, ids = _anygram_width_and_vocab(vocab)
    for stream in streams:
        if len(stream) and int(stream.max()) >= ids:
            raise InvalidArgumentError(
                f"a token file holds id {int(stream.max())}, outside the vocabulary [0, {ids}): pass the right vocab"
            )
    parent = os.path.dirname(os.path.abspath(out)) or "."
    work = tempfile.mkdtemp(prefix=".anygram-convert-", dir=parent)
    try:
        flat = np.concatenate([np.asarray(s, dtype=np.uint16 if width == 2 else np.uint32) for s in streams]) \
            if streams else np.zeros(0, np.uint16)
        starts = np.cumsum([0] + [len(s) for s in streams]).astype(np.int64)
        np.save(os.path.join(work, "tokens.npy"), flat)
        np.save(os.path.join(work, "tokens.offsets.npy"), starts)
        build_index(os.path.join(work, "tokens.npy"), out, token_width=width, vocab_size=ids,
                    eos_token_id=0, progress=verbose, overwrite=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def _check_table(table_path: str, tokens: int) -> None:
    """A tokengrams table is one uint64 position per token."""
    if not os.path.isfile(table_path):
        raise IndexNotFoundError(f"suffix table {table_path} does not exist")
    if os.path.getsize(table_path) != 8 * tokens:
        raise CorruptIndexError(
            f"suffix table {table_path} holds {os.path.getsize(table_path)} bytes; a table of the "
            f"{tokens} tokens of its token file holds {8 * tokens}"
        )


def _open_converted(pairs: Sequence[Tuple[str, str]], vocab: int, out: str) -> Engine:
    """The anygram index converted from tokengrams pairs at ``out``, made on first use."""
    streams = [_token_array(token_path, vocab) for token_path, _ in pairs]
    for (_, table_path), stream in zip(pairs, streams):
        if not _is_anygram_index(table_path):
            _check_table(table_path, len(stream))
    if _is_anygram_index(out):
        engine = Engine.open(out)
        expected = sum(len(s) for s in streams)
        if engine.num_tokens - engine.num_documents == expected and engine.num_documents == len(streams):
            return engine
    return Engine.open(_build(streams, out, vocab))


class _Index:
    """The methods every tokengrams index class shares."""

    _engine: Engine
    _vocab: int

    def _setup(self, engine: Engine, vocab: int) -> None:
        _dtype(vocab)
        self._engine, self._vocab = engine, vocab
        # Frequent contexts' next-token counts, kept with the index (it never changes).
        self._next_counts = _anygram.NextTokenMemo(engine)
        # The per-query methods are the native index's own, set on the instance (they shadow
        # the class's documented stand-ins below): a Python frame costs more than a search.
        native = _anygram.TokengramsIndex(engine, self._next_counts, vocab)
        for name in _NATIVE_METHODS:
            if hasattr(type(self), name):  # positions: only where tokengrams' class has it
                setattr(self, name, getattr(native, name))

    @property
    def engine(self) -> Engine:
        """The anygram engine underneath (every anygram query works on it)."""
        return self._engine

    def is_sorted(self) -> bool:
        """Whether the suffix arrays are in order: anygram's full check (``verify``)."""
        return bool(self._engine.verify()["ok"])

    # What follows documents the native methods that _setup puts in their place.
    def contains(self, query: Sequence[int]) -> bool:
        """Whether ``query`` occurs (the empty query occurs nowhere, as tokengrams counts it 0)."""
        raise NotImplementedError  # replaced by the native method in _setup

    def count(self, query: Sequence[int]) -> int:
        """How often ``query`` occurs (0 for the empty query, as tokengrams)."""
        raise NotImplementedError

    def count_next(self, query: Sequence[int]) -> List[int]:
        """How often each token follows ``query``: ``vocab`` ints."""
        raise NotImplementedError

    def batch_count_next(self, queries: Sequence[Sequence[int]]) -> List[List[int]]:
        """:meth:`count_next` of each query (counted on all cores)."""
        raise NotImplementedError

    def get_smoothed_probs(self, query: Sequence[int]) -> List[float]:
        """The interpolated Kneser-Ney distribution of the token after ``query``: ``vocab`` floats."""
        raise NotImplementedError

    def batch_get_smoothed_probs(self, queries: Sequence[Sequence[int]]) -> List[List[float]]:
        """:meth:`get_smoothed_probs` of each query (on all cores)."""
        raise NotImplementedError

    def estimate_deltas(self, n: int) -> None:
        self._engine.estimate_deltas(n, document_ends=_ENDS)

    def _sample(self, method: str, query: Sequence[int], n: int, k: int, num_samples: int,
                seed: Optional[int]) -> List[List[int]]:
        if seed is None:
            seed = secrets.randbits(64)
        if method == "ngram":
            # Through the index's memo: a frequent context is counted once, not per call.
            drawn = _anygram.tokengrams_sample_unsmoothed(self._next_counts, [query], n, k, num_samples, seed)
        else:
            drawn = self._engine.sample(query, k, method=method, n=n, num_samples=num_samples, seed=seed,
                                        document_ends=_ENDS)
        prefix = list(query)
        return [prefix + row for row in drawn.tolist()]

    def sample_smoothed(self, query: Sequence[int], n: int, k: int, num_samples: int,
                        seed: Optional[int] = None) -> List[List[int]]:
        """``num_samples`` sequences: ``query`` then ``k`` tokens drawn from the Kneser-Ney
        distributions after the last ``n - 1`` tokens (``seed`` makes them repeatable)."""
        return self._sample("kneser_ney", query, n, k, num_samples, seed)

    def sample_unsmoothed(self, query: Sequence[int], n: int, k: int, num_samples: int,
                          seed: Optional[int] = None) -> List[List[int]]:
        """As :meth:`sample_smoothed` from the unsmoothed n-gram counts."""
        return self._sample("ngram", query, n, k, num_samples, seed)


class _Positions:
    def positions(self, query: Sequence[int]) -> List[int]:
        """Where ``query`` starts in the token stream (unordered, as tokengrams)."""
        raise NotImplementedError  # replaced by the native method in _Index._setup


class MemmapIndex(_Positions, _Index):
    """tokengrams' ``MemmapIndex``: a token file and its suffix table (converted once into an
    anygram index at ``INDEX_PATH.anygram``), or an anygram index directory."""

    def __init__(self, token_path: str, index_path: Optional[str] = None, vocab: int = DEFAULT_VOCAB) -> None:
        _dtype(vocab)
        if _is_anygram_index(token_path):
            engine = Engine.open(token_path)
        elif index_path is not None and _is_anygram_index(index_path):
            engine = Engine.open(index_path)
        else:
            if index_path is None:
                raise InvalidArgumentError("index_path is required with a token file")
            engine = _open_converted([(token_path, index_path)], vocab, index_path + _CONVERTED_SUFFIX)
        self._setup(engine, vocab)

    @staticmethod
    def build(token_path: str, index_path: str, vocab: int = DEFAULT_VOCAB, verbose: bool = False) -> "MemmapIndex":
        """Indexes a token file: writes an anygram index directory at ``index_path`` (instead of
        tokengrams' table), which ``MemmapIndex(token_path, index_path)`` opens."""
        _build([_token_array(token_path, vocab)], index_path, vocab, verbose)
        return MemmapIndex(token_path, index_path, vocab)


class ShardedMemmapIndex(_Index):
    """tokengrams' ``ShardedMemmapIndex``: several (token file, table) pairs answered as one
    index (one anygram index with a document per pair, converted once beside the first table),
    or anygram index directories in place of pairs."""

    def __init__(self, paths: Sequence[Tuple[str, str]], vocab: int = DEFAULT_VOCAB) -> None:
        _dtype(vocab)
        paths = [tuple(p) if not isinstance(p, str) else p for p in paths]
        if not paths:
            raise InvalidArgumentError("paths must name at least one (token file, table) pair")
        if len(paths) == 1 and isinstance(paths[0], str) and _is_anygram_index(paths[0]):
            engine = Engine.open(paths[0])
        else:
            if any(isinstance(p, str) or len(p) != 2 for p in paths):
                raise InvalidArgumentError("paths must be (token file, table) pairs, or one anygram index directory")
            if len(paths) == 1 and _is_anygram_index(paths[0][1]):
                engine = Engine.open(paths[0][1])
            else:
                engine = _open_converted(paths, vocab, paths[0][1] + f".shards{len(paths)}" + _CONVERTED_SUFFIX)
        self._setup(engine, vocab)

    @staticmethod
    def build(paths: Sequence[Tuple[str, str]], vocab: int = DEFAULT_VOCAB, verbose: bool = False) -> "ShardedMemmapIndex":
        for token_path, index_path in paths:
            _build([_token_array(token_path, vocab)], index_path, vocab, verbose)
        return ShardedMemmapIndex(paths, vocab)


class InMemoryIndex(_Positions, _Index):
    """tokengrams' ``InMemoryIndex``: tokens from Python or a token file, indexed into a
    temporary anygram index (removed with the object)."""

    def __init__(self, tokens: Sequence[int], vocab: int = DEFAULT_VOCAB, verbose: bool = False) -> None:
        dtype = _dtype(vocab)
        array = np.asarray(tokens)
        if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
            raise InvalidArgumentError("tokens must be a flat sequence of integer token ids")
        if array.size and (int(array.min()) < 0 or int(array.max()) >= vocab):
            raise InvalidArgumentError(f"tokens must be ids in [0, {vocab})")
        self._from_stream(array.astype(dtype), vocab, verbose)

    def _from_stream(self, stream: np.ndarray, vocab: int, verbose: bool) -> None:
        scratch = tempfile.mkdtemp(prefix="anygram-inmemory-")
        # Removed with the object (mapped files may go: Linux keeps them while mapped).
        self._cleanup = weakref.finalize(self, shutil.rmtree, scratch, True)
        self._tokens = np.array(stream, copy=True)
        engine = Engine.open(_build([self._tokens], os.path.join(scratch, "index"), vocab, verbose))
        self._setup(engine, vocab)

    @staticmethod
    def from_token_file(path: str, token_limit: Optional[int] = None, vocab: int = DEFAULT_VOCAB,
                        verbose: bool = False) -> "InMemoryIndex":
        index = InMemoryIndex.__new__(InMemoryIndex)
        index._from_stream(_token_array(path, vocab, token_limit), vocab, verbose)
        return index

    @staticmethod
    def from_disk(token_path: str, index_path: str, vocab: int = DEFAULT_VOCAB) -> "InMemoryIndex":
        tokens = _token_array(token_path, vocab)
        if not _is_anygram_index(index_path):
            _check_table(index_path, len(tokens))
        return InMemoryIndex.from_token_file(token_path, vocab=vocab)

    def save_tokens(self, path: str) -> None:
        self._tokens.tofile(path)

    def save_index(self, path: str) -> None:
        """Writes the index as an anygram index directory at ``path`` (not tokengrams' table);
        ``from_disk(tokens, path)`` and ``MemmapIndex(tokens, path)`` open it."""
        shutil.copytree(self._engine.path, path)


class ShardedInMemoryIndex(ShardedMemmapIndex):
    """tokengrams' ``ShardedInMemoryIndex``: the same answers as :class:`ShardedMemmapIndex`."""
