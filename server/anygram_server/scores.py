"""Per-token ∞-gram scores of texts, and the longest span of a text that occurs."""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from .registry import ServedIndex


SCORE_FIELDS = ("prob", "suffix_len", "prompt_cnt", "cont_cnt")


def score_many(index: ServedIndex, texts: List[List[int]]) -> List[Dict[str, List[Any]]]:
    """For every position i of each text: the ∞-gram probability of token i given tokens[:i],
    the suffix length used and the counts. One native call when the engine has
    ``score_batch`` (a left-to-right pass per text, texts on all cores), else one
    ``infgram_prob_batch`` call per text over all its prefixes (same answers, more work)."""
    engine = index.engine
    if hasattr(engine, "score_batch"):
        results = engine.score_batch(texts)
    elif hasattr(engine, "score"):
        results = [engine.score(ids) for ids in texts]
    else:
        results = [
            engine.infgram_prob_batch([ids[:i] for i in range(len(ids))], ids) if ids else {}
            for ids in texts
        ]
    out = []
    for ids, result in zip(texts, results):
        if not ids:
            out.append({key: [] for key in SCORE_FIELDS})
            continue
        out.append({key: _as_list(result[key]) for key in SCORE_FIELDS})
    return out


def _as_list(values: Any) -> List[Any]:
    return values.tolist() if hasattr(values, "tolist") else list(values)


def longest_occurring_span(index: ServedIndex, ids: List[int]) -> Tuple[int, int]:
    """``(start, end)``: the longest ``ids[start:end]`` that occurs in the corpus (the
    leftmost of the longest); ``(0, 0)`` when no token of ``ids`` occurs.

    The longest occurring substring ending at ``e`` is the ∞-gram's suffix length of the
    context ``ids[:e]``: one scoring pass gives it for every ``e < len(ids)``, and one
    ∞-gram lookup (the next token is any, it does not change the suffix) for the whole."""
    if not ids:
        return 0, 0
    suffix_len = score_many(index, [ids])[0]["suffix_len"]
    suffix_len.append(int(index.engine.prob(ids, 0)["suffix_len"]))
    end = max(range(len(suffix_len)), key=lambda e: (suffix_len[e], -e))
    return end - suffix_len[end], end
