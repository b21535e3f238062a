"""The indexes a service serves, opened once and shared by every request.

An :class:`anygram.Engine` is memory-mapped and immutable, so one engine object serves
all threads at once; with ``--workers N`` each process maps the same files (the page
cache holds them once).
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional

import anygram

from .config import IndexSpec
from .errors import UnknownIndexError


class ServedIndex:
    """One opened index and what the service needs to show its tokens."""

    def __init__(self, spec: IndexSpec):
        self.name = spec.name
        self.spec = spec
        self.engine = anygram.Engine.open(spec.path, tokenizer=spec.tokenizer)
        self.tokenizer = self.engine.tokenizer
        self.vocab_size = self.engine.vocab_size

    @property
    def has_tokenizer(self) -> bool:
        return self.tokenizer is not None

    def tokens(self, ids: List[int]) -> Optional[List[str]]:
        """Each token's vocabulary entry (infini-gram's ``tokens``), None without a tokenizer."""
        return None if self.tokenizer is None else self.tokenizer.tokens(ids)

    def decode(self, ids: List[int]) -> str:
        """The text of ``ids``; token ids separated by spaces without a tokenizer."""
        if self.tokenizer is None:
            return " ".join(str(i) for i in ids)
        return self.tokenizer.decode(ids)

    def describe(self) -> Dict[str, Any]:
        """What ``GET /v1/indexes`` says about the index: sizes, tokenizer, manifest."""
        info = self.engine.info()
        tokenizer = self.tokenizer
        # The name it was built with (the manifest's), not that of the copy stored in the index.
        stored = (self.engine.manifest or {}).get("tokenizer") or {}
        return {
            "name": self.name,
            "num_tokens": info["num_tokens"],
            "num_documents": info["num_documents"],
            "num_shards": info["num_shards"],
            "token_width": info["token_width"],
            "vocab_size": info["vocab_size"],
            "eos_token_id": info["eos_token_id"],
            "tokenizer": None if tokenizer is None else stored.get("name", tokenizer.name),
            "accepts_text": tokenizer is not None,
            "manifest": self.engine.manifest,
        }


class IndexRegistry:
    def __init__(self, specs: Iterable[IndexSpec]):
        self._by_name: Dict[str, ServedIndex] = {}
        for spec in specs:
            self._by_name[spec.name] = ServedIndex(spec)

    def get(self, name: str) -> ServedIndex:
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(sorted(self._by_name)) or "none"
            raise UnknownIndexError(
                f"no index named {name!r}; this service has: {known}",
                field="index",
                available=sorted(self._by_name),
            ) from None

    def names(self) -> List[str]:
        return list(self._by_name)

    def __iter__(self):
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)
