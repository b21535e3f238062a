"""Tokenizers: a HuggingFace ``tokenizer.json``, or none (UTF-8 bytes, one byte a token).

Queries and documents are tokenized the same way: no BOS/EOS is added, so a query
matches at token boundaries only.
"""

from __future__ import annotations

import hashlib
import os
from typing import List, Optional, Sequence

import numpy as np

from . import _anygram
from .errors import InvalidArgumentError, InvalidQueryError

# Special tokens that mark the end of a document, most common first.
_EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>", "<|eot_id|>", "[SEP]")


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def utf8_bytes(text: str) -> bytes:
    """``text`` as UTF-8; a lone surrogate (valid in JSON, not in UTF-8) is an
    :class:`InvalidQueryError` naming its position."""
    if not isinstance(text, str):
        raise InvalidQueryError(f"text must be a str, not {type(text).__name__}")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidQueryError(
            f"text has a lone surrogate U+{ord(text[e.start]):04X} at character {e.start}: "
            "it is not valid Unicode text"
        ) from None


class Tokenizer:
    """Encodes text to token ids and back. ``path=None`` is the byte tokenizer.

    A ``tokenizer.json`` goes through the core's tokenizer (:class:`anygram._anygram.Tokenizer`,
    the Rust ``tokenizers`` crate with the build's fast road for GPT-2-style byte-level
    BPE), so queries are tokenized by exactly the code and version that built the index.
    """

    def __init__(self, path: Optional[str] = None):
        self.path = path
        if path is None:
            self._native = None
            self.name = "bytes"
            self.sha256 = None
            self.token_width = 1
            # The core's defaults: every byte but 0xFF (the document separator, never in UTF-8).
            self.vocab_size, self.eos_token_id = _anygram.token_parameters(1)
            return
        if not os.path.isfile(path):
            raise InvalidArgumentError(f"tokenizer file not found: {path}")
        self._native = _anygram.Tokenizer(path)
        self.name = os.path.basename(path)
        self.sha256 = file_sha256(path)
        self.vocab_size = self._native.vocab_size
        self.eos_token_id = self._find_eos()
        try:
            self.token_width = _anygram.tokenizer_token_width(self.vocab_size)  # the core's rule
        except InvalidArgumentError as e:
            raise InvalidArgumentError(f"{path}: {e}") from None

    def __repr__(self) -> str:
        if self.path is None:
            return "Tokenizer(UTF-8 bytes: 1 byte a token, ids 0-254, 255 the document separator)"
        road = ", fast byte-level" if not getattr(self, "_closed", False) and self.is_fast else ""
        return (f"Tokenizer({self.name!r}: vocab {self.vocab_size:,}, u{8 * self.token_width} ids, "
                f"eos {self.eos_token_id}{road})")

    @property
    def native(self) -> "Optional[_anygram.Tokenizer]":
        """The core tokenizer (None for UTF-8 bytes)."""
        self._check_open()
        return self._native

    @property
    def is_fast(self) -> bool:
        """Whether encoding takes the core's fast byte-level road."""
        return self._native is not None and self._native.is_fast

    def close(self) -> None:
        """Frees the vocabulary (the build calls this before sorting, to keep its peak
        memory down); ``name``, ``path`` and ``sha256`` stay."""
        self._native = None
        self._closed = True

    def _check_open(self) -> None:
        if getattr(self, "_closed", False):
            raise InvalidArgumentError(f"tokenizer {self.name} was closed")

    def _find_eos(self) -> int:
        for token in _EOS_CANDIDATES:
            token_id = self._native.token_to_id(token)
            if token_id is not None:
                return token_id
        # No end-of-text token: report document ends as the last id.
        return self.vocab_size - 1

    def encode(self, text: str) -> List[int]:
        """Token ids of ``text``, no special tokens added (as the build encodes)."""
        self._check_open()
        if self._native is None:
            return list(utf8_bytes(text))
        return self._native.encode(text)

    def encode_query(self, text: str, verbatim: bool = False) -> List[int]:
        """Token ids of a text query as infini-gram's service makes them (the default for string
        queries in the engine, the CLI and ``POST /``): byte-level BPE tokenizers that add no
        prefix space of their own (GPT-2, OLMo, NeoX) get a leading space, as a word inside
        running text has; SentencePiece-style ones (Llama) lose a lone leading ``▁`` token.
        ``verbatim=True``: exactly :meth:`encode` (the text as it is, as the build encodes)."""
        if verbatim or self._native is None:
            return self.encode(text)
        style = self._query_style()
        if style == "space" and not text[:1].isspace():
            try:
                return self.encode(" " + text)
            except InvalidQueryError:
                self.encode(text)  # raises the same error with positions in the user's text
                raise
        ids = self.encode(text)
        if style == "metaspace" and len(ids) > 1 and ids[0] == self._native.token_to_id("\u2581"):
            return ids[1:]
        return ids

    def _query_style(self) -> str:
        """How infini-gram's service adjusts a query for this tokenizer (read once from its
        file): ``"space"``, ``"metaspace"`` or ``""``."""
        if not hasattr(self, "_style"):
            import json

            with open(self.path, "rb") as f:
                spec = json.load(f)

            def parts(node):
                if isinstance(node, dict):
                    yield node
                    for value in node.values():
                        yield from parts(value)
                elif isinstance(node, list):
                    for value in node:
                        yield from parts(value)

            nodes = list(parts(spec.get("pre_tokenizer"))) + list(parts(spec.get("normalizer")))
            if any(n.get("type") == "ByteLevel" and not n.get("add_prefix_space") for n in nodes):
                self._style = "space"
            elif any(n.get("type") == "Metaspace" or n.get("prepend") == "\u2581" for n in nodes):
                self._style = "metaspace"
            else:
                self._style = ""
        return self._style

    def encode_exact(self, text: str) -> List[int]:
        """Token ids through the ``tokenizers`` library alone, without the fast road
        (the reference the build checks the fast road against)."""
        self._check_open()
        if self._native is None:
            return list(utf8_bytes(text))
        return self._native.encode_exact(text)

    def encode_batch(self, texts: Sequence[str]) -> List[np.ndarray]:
        """Token arrays of many texts (on all cores)."""
        self._check_open()
        dtype = {1: np.uint8, 2: np.uint16, 4: np.uint32}[self.token_width]
        if self._native is None:
            return [np.frombuffer(utf8_bytes(t), dtype=np.uint8) for t in texts]
        flat, lengths = self._native.encode_batch(list(texts))
        if not len(lengths):
            return []
        return np.split(flat.astype(dtype, copy=False), np.cumsum(lengths)[:-1])

    def decode(self, ids: Sequence[int]) -> str:
        self._check_open()
        if self._native is None:
            return bytes(int(i) for i in ids).decode("utf-8", errors="replace")
        return self._native.decode(ids)

    def decode_batch(self, batch: Sequence[Sequence[int]]) -> List[str]:
        """Texts of many token-id lists (on all cores)."""
        self._check_open()
        if self._native is None:
            return [self.decode(ids) for ids in batch]
        return self._native.decode_batch(batch)

    def tokens(self, ids: Sequence[int]) -> List[str]:
        """The surface string of each token (for display)."""
        self._check_open()
        if self._native is None:
            return [bytes([int(i)]).decode("utf-8", errors="replace") for i in ids]
        return self._native.tokens(ids)

    def id_to_token(self, token_id: int) -> Optional[str]:
        """The vocabulary entry of ``token_id``, or None."""
        self._check_open()
        if self._native is None:
            return self.tokens([token_id])[0] if 0 <= token_id < 256 else None
        return self._native.id_to_token(token_id)

    def token_to_id(self, token: str) -> Optional[int]:
        """The id of a vocabulary entry, or None."""
        self._check_open()
        if self._native is None:
            data = utf8_bytes(token)
            return data[0] if len(data) == 1 else None
        return self._native.token_to_id(token)
