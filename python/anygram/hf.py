"""A ``transformers`` logits processor that mixes the ∞-gram LM into generation.

Needs torch and transformers (optional extras); ``import anygram`` never imports
this module. Use::

    from anygram.hf import InfiniGramLogitsProcessor
    processor = InfiniGramLogitsProcessor(engine, lam=0.3)
    model.generate(ids, logits_processor=LogitsProcessorList([processor]), ...)

At every step the ∞-gram next-token distribution after each sequence's tokens
(the longest suffix that occurs in the index) is mixed with the model's; the
scores it returns are the mixed log-probabilities, so greedy search, sampling and
beam search all see the mixture. Put temperature / top-k / top-p warpers after it.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from transformers import LogitsProcessor

from .errors import InvalidArgumentError
from .mix import Lambda, mix


class InfiniGramLogitsProcessor(LogitsProcessor):
    """Mixes ``engine``'s ∞-gram distribution into the scores, with ``lam`` a float
    or a callable ``(suffix_len, sparse) -> λ`` (e.g. a fitted
    :class:`anygram.mix.LambdaTable`).

    ``ignore_tokens``: ids dropped from the context before the ∞-gram lookup, e.g.
    a BOS/``<|endoftext|>`` the model is prompted with but the index does not hold
    (document starts are not stored as tokens). Context ids outside the index's
    vocabulary (padding) raise :class:`anygram.InvalidQueryError`.
    """

    def __init__(self, engine: Any, lam: Lambda = 0.5, max_support: int = 1000,
                 ignore_tokens: Optional[Sequence[int]] = None, max_context: Optional[int] = None):
        if max_context is not None and (not isinstance(max_context, int) or isinstance(max_context, bool)
                                        or max_context < 0):
            raise InvalidArgumentError(f"max_context must be a non-negative integer or None, got {max_context!r}")
        self.engine = engine
        self.lam = lam
        self.max_support = max_support
        self.ignore = set(int(t) for t in (ignore_tokens or ()))
        self.max_context = max_context

    def contexts(self, input_ids: Any) -> list:
        out = []
        for row in input_ids.tolist():
            row = [t for t in row if t not in self.ignore]
            if self.max_context is not None:
                # The last max_context tokens: all of them when the row is shorter.
                row = row[max(0, len(row) - self.max_context):]
            out.append(row)
        return out

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        ntd = self.engine.ntd_dense(self.contexts(input_ids), max_support=self.max_support,
                                    vocab_size=int(scores.shape[-1]))
        return mix(scores, ntd, self.lam)
