"""Tokenizers: a HuggingFace ``tokenizer.json``, or none (UTF-8 bytes, one byte a token).

Queries and documents are tokenized the same way: no BOS/EOS is added, so a query
matches at token boundaries only.
"""

from __future__ import annotations

import hashlib
import os
from typing import List, Optional, Sequence

import numpy as np

from .errors import InvalidArgumentError

# Special tokens that mark the end of a document, most common first.
_EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>", "<|eot_id|>", "[SEP]")


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Tokenizer:
    """Encodes text to token ids and back. ``path=None`` is the byte tokenizer."""

    def __init__(self, path: Optional[str] = None):
        self.path = path
        if path is None:
            self._hf = None
            self.name = "bytes"
            self.sha256 = None
            self.vocab_size = 255  # 0xFF is the document separator; it never occurs in UTF-8
            self.eos_token_id = 255
            self.token_width = 1
            return
        if not os.path.isfile(path):
            raise InvalidArgumentError(f"tokenizer file not found: {path}")
        from tokenizers import Tokenizer as HFTokenizer

        try:
            self._hf = HFTokenizer.from_file(path)
        except Exception as e:  # the library raises a bare Exception on bad files
            raise InvalidArgumentError(f"{path}: not a HuggingFace tokenizer.json ({e})") from e
        self.name = os.path.basename(path)
        self.sha256 = file_sha256(path)
        self.vocab_size = self._hf.get_vocab_size(with_added_tokens=True)
        self.eos_token_id = self._find_eos()
        if self.vocab_size < 0xFFFF:
            self.token_width = 2
        elif self.vocab_size < 0xFFFFFFFF:
            self.token_width = 4
        else:
            raise InvalidArgumentError(f"{path}: vocabulary of {self.vocab_size} tokens is too large")

    def close(self) -> None:
        """Frees the vocabulary (the build calls this before sorting, to keep its peak
        memory down); ``name``, ``path`` and ``sha256`` stay."""
        self._hf = None
        self._closed = True

    def _check_open(self) -> None:
        if getattr(self, "_closed", False):
            raise InvalidArgumentError(f"tokenizer {self.name} was closed")

    def _find_eos(self) -> int:
        for token in _EOS_CANDIDATES:
            token_id = self._hf.token_to_id(token)
            if token_id is not None:
                return token_id
        # No end-of-text token: report document ends as the last id.
        return self.vocab_size - 1

    def encode(self, text: str) -> List[int]:
        self._check_open()
        if self._hf is None:
            return list(text.encode("utf-8"))
        return self._hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> List[np.ndarray]:
        """Token arrays of many texts (in parallel for HuggingFace tokenizers)."""
        self._check_open()
        dtype = {1: np.uint8, 2: np.uint16, 4: np.uint32}[self.token_width]
        if self._hf is None:
            return [np.frombuffer(t.encode("utf-8"), dtype=np.uint8) for t in texts]
        encodings = self._hf.encode_batch_fast(list(texts), add_special_tokens=False) \
            if hasattr(self._hf, "encode_batch_fast") else \
            self._hf.encode_batch(list(texts), add_special_tokens=False)
        return [np.asarray(e.ids, dtype=dtype) for e in encodings]

    def decode(self, ids: Sequence[int]) -> str:
        if self._hf is None:
            return bytes(int(i) for i in ids).decode("utf-8", errors="replace")
        return self._hf.decode([int(i) for i in ids], skip_special_tokens=False)

    def decode_batch(self, batch: Sequence[Sequence[int]]) -> List[str]:
        """Texts of many token-id lists (in parallel for HuggingFace tokenizers)."""
        if self._hf is None:
            return [self.decode(ids) for ids in batch]
        return self._hf.decode_batch([list(map(int, ids)) for ids in batch], skip_special_tokens=False)

    def tokens(self, ids: Sequence[int]) -> List[str]:
        """The surface string of each token (for display)."""
        if self._hf is None:
            return [bytes([int(i)]).decode("utf-8", errors="replace") for i in ids]
        return [self._hf.id_to_token(int(i)) or "" for i in ids]
