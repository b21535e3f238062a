"""Contamination: how much of each example of an eval set occurs verbatim in an index
(see :mod:`anygram.scan`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .. import _anygram
from ..corpus import check_text
from ..errors import InvalidArgumentError
from .common import check_min_len, parse_metadata

DEFAULT_CONTAMINATION_MIN_LEN = 13
DEFAULT_THRESHOLD = 0.5
HISTOGRAM_BINS = 10


def _example_texts(example: Any, fields: Optional[Sequence[str]], position: int) -> List[Tuple[str, Any]]:
    """The ``(field, value)`` pairs of one example to scan."""
    if isinstance(example, dict):
        names = list(fields) if fields else (["text"] if "text" in example else None)
        if names is None:
            raise InvalidArgumentError(
                f"example {position} has no 'text' field (fields: {', '.join(map(str, example)) or 'none'}); "
                "choose fields with fields=[...] / --field"
            )
        out = []
        for name in names:
            if name not in example:
                raise InvalidArgumentError(
                    f"example {position} has no field {name!r} (fields: {', '.join(map(str, example))})"
                )
            value = example[name]
            if value is None:
                value = ""
            if not isinstance(value, (str, list)):
                raise InvalidArgumentError(
                    f"example {position}, field {name!r}: expected a string or a list of "
                    f"token ids, got {type(value).__name__}"
                )
            out.append((name, value))
        return out
    if fields:
        raise InvalidArgumentError(
            f"example {position} is a {type(example).__name__}, not an object: fields cannot be chosen"
        )
    if isinstance(example, (str, list, np.ndarray)):
        return [("text", example)]
    raise InvalidArgumentError(
        f"example {position} must be a string, a list of token ids or an object, not {type(example).__name__}"
    )


def _ids_of(engine, value: Any, where: str) -> List[int]:
    if isinstance(value, str):
        if engine.tokenizer is None:
            raise InvalidArgumentError(f"{where}: index {engine.path} has no tokenizer; give token ids")
        return engine.tokenize(check_text(value, where))
    try:
        return [int(t) for t in value]
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{where}: a list of token ids must hold integers only") from None


def _example_result(
    engine,
    position: int,
    example: Any,
    pairs: List[Tuple[str, List[int]]],
    results: List[Dict[str, Any]],
    threshold: float,
    id_field: Optional[str],
) -> Dict[str, Any]:
    num_tokens = sum(len(ids) for _, ids in pairs)
    covered = sum(int(r["num_covered"]) for r in results)
    best = -1
    for j, r in enumerate(results):
        if best < 0 or r["longest_len"] > results[best]["longest_len"]:
            best = j
    out: Dict[str, Any] = {"index": position}
    if isinstance(example, dict) and id_field and id_field in example:
        out["id"] = example[id_field]
    coverage = covered / num_tokens if num_tokens else 0.0
    out.update(
        num_tokens=num_tokens,
        covered_tokens=covered,
        coverage=coverage,
        contaminated=bool(num_tokens) and coverage >= threshold,
    )
    longest: Dict[str, Any] = {"length": 0}
    occurrences: List[Dict[str, Any]] = []
    if best >= 0 and results[best]["longest_len"] > 0:
        r = results[best]
        name, ids = pairs[best]
        start, length = int(r["longest_start"]), int(r["longest_len"])
        span = ids[start : start + length]
        longest = {
            "field": name,
            "start": start,
            "length": length,
            "count": int(r["longest_count"]),
            "token_ids": span,
        }
        if engine.tokenizer is not None:
            longest["text"] = engine.decode(span)
        for o in r["occurrences"]:
            occurrences.append(
                {
                    "doc_ix": o["doc_ix"],
                    "offset": o["offset"],
                    "doc_len": o["doc_len"],
                    "shard": o["shard"],
                    "metadata": parse_metadata(o["metadata"]),
                }
            )
    out["longest_match"] = longest
    out["occurrences"] = occurrences
    out["fields"] = {
        name: {
            "num_tokens": len(ids),
            "covered_tokens": int(r["num_covered"]),
            "covered": [list(c) for c in r["covered"]],
            "longest": int(r["longest_len"]),
        }
        for (name, ids), r in zip(pairs, results)
    }
    return out


def iter_contamination(
    engine,
    examples: Iterable[Any],
    min_len: int = DEFAULT_CONTAMINATION_MIN_LEN,
    threshold: float = DEFAULT_THRESHOLD,
    fields: Optional[Sequence[str]] = None,
    k: int = 5,
    batch_size: int = 512,
    id_field: Optional[str] = "id",
    skip: int = 0,
    on_batch: Optional[Callable[[int], None]] = None,
) -> Iterator[Dict[str, Any]]:
    """Per-example results of :func:`contamination`, in order, a batch at a time.
    ``skip`` leaves out the first examples (resuming); ``on_batch(n)`` is called
    after each batch of ``n`` examples."""
    _check_scan_args(min_len, threshold, k)
    batch: List[Tuple[int, Any, List[Tuple[str, List[int]]]]] = []

    def flush():
        texts = [ids for _, _, pairs in batch for _, ids in pairs]
        results = _anygram.contamination_batch(engine, texts, min_len, k) if texts else []
        at = 0
        for position, example, pairs in batch:
            yield _example_result(
                engine, position, example, pairs, results[at : at + len(pairs)], threshold, id_field
            )
            at += len(pairs)
        if on_batch is not None:
            on_batch(len(batch))
        batch.clear()

    for position, example in enumerate(examples):
        if position < skip:
            continue
        pairs = [
            (name, _ids_of(engine, value, f"example {position}, field {name!r}"))
            for name, value in _example_texts(example, fields, position)
        ]
        batch.append((position, example, pairs))
        if len(batch) >= batch_size:
            yield from flush()
    if batch:
        yield from flush()


def _check_scan_args(min_len: int, threshold: float, k: int) -> None:
    check_min_len(min_len)
    if not (0.0 <= threshold <= 1.0):
        raise InvalidArgumentError(
            f"threshold is a fraction of an example's tokens in [0, 1], got {threshold!r}"
        )
    if not isinstance(k, int) or k < 0:
        raise InvalidArgumentError(f"k (occurrences shown) must be a non-negative integer, got {k!r}")


class ContaminationSummary:
    """Accumulates per-example results into the per-set summary."""

    def __init__(self, min_len: int, threshold: float, top: int = 20):
        self.min_len, self.threshold, self.top = min_len, threshold, top
        self.num_examples = self.num_tokens = self.covered_tokens = self.num_contaminated = 0
        self.num_touched = 0
        self.histogram = [0] * HISTOGRAM_BINS
        self.longest: List[int] = []
        self.worst: List[Tuple[float, int, Dict[str, Any]]] = []

    def add(self, r: Dict[str, Any]) -> None:
        self.num_examples += 1
        self.num_tokens += r["num_tokens"]
        self.covered_tokens += r["covered_tokens"]
        self.num_contaminated += bool(r["contaminated"])
        self.num_touched += r["covered_tokens"] > 0
        self.histogram[min(int(r["coverage"] * HISTOGRAM_BINS), HISTOGRAM_BINS - 1)] += 1
        self.longest.append(r["longest_match"]["length"])
        brief = {key: r[key] for key in ("index", "coverage", "covered_tokens", "num_tokens") if key in r}
        if "id" in r:
            brief["id"] = r["id"]
        brief["longest"] = r["longest_match"].get("length", 0)
        brief["longest_text"] = r["longest_match"].get("text")
        brief["fields"] = {name: f["covered"] for name, f in r["fields"].items()}
        self.worst.append((r["coverage"], -r["index"], brief))
        if len(self.worst) > 4 * self.top:
            self.worst.sort(key=lambda t: (t[0], t[1]), reverse=True)
            del self.worst[self.top :]

    def result(self) -> Dict[str, Any]:
        longest = np.asarray(self.longest or [0])
        worst = sorted(self.worst, key=lambda t: (t[0], t[1]), reverse=True)[: self.top]
        return {
            "min_len": self.min_len,
            "threshold": self.threshold,
            "num_examples": self.num_examples,
            "num_contaminated": self.num_contaminated,
            "fraction_contaminated": self.num_contaminated / self.num_examples if self.num_examples else 0.0,
            "num_with_any_match": self.num_touched,
            "num_tokens": self.num_tokens,
            "covered_tokens": self.covered_tokens,
            "token_coverage": self.covered_tokens / self.num_tokens if self.num_tokens else 0.0,
            "histogram": {
                "edges": [i / HISTOGRAM_BINS for i in range(HISTOGRAM_BINS + 1)],
                "counts": list(self.histogram),
            },
            "longest_match": {
                "max": int(longest.max()),
                "median": float(np.median(longest)),
                "p90": float(np.percentile(longest, 90)),
            },
            "top": [b for _, _, b in worst],
        }


@dataclass
class ContaminationReport:
    """What :func:`contamination` returns: ``examples`` (one dict per example) and
    ``summary`` (the per-set figures)."""

    examples: List[Dict[str, Any]]
    summary: Dict[str, Any]

    def __repr__(self) -> str:
        from .reports import contamination_repr

        return contamination_repr(self.summary)

    def _repr_html_(self) -> str:
        from .reports import contamination_report_html

        return contamination_report_html(self.summary)

    def to_pandas(self):
        """One row per example: index, id, num_tokens, covered_tokens, coverage,
        contaminated, longest_match (tokens) and its text (needs pandas)."""
        from .reports import contamination_frame

        return contamination_frame(self.examples)

    def plot(self, ax=None):
        """The coverage histogram (needs matplotlib): see :func:`anygram.plot.coverage_histogram`."""
        from ..plot import coverage_histogram

        return coverage_histogram(self, ax=ax)


def contamination(
    engine,
    examples: Iterable[Any],
    min_len: int = DEFAULT_CONTAMINATION_MIN_LEN,
    threshold: float = DEFAULT_THRESHOLD,
    fields: Optional[Sequence[str]] = None,
    k: int = 5,
    batch_size: int = 512,
    id_field: Optional[str] = "id",
) -> ContaminationReport:
    """How much of each example occurs verbatim in the index of ``engine``.

    ``examples``: strings, token-id lists, or dicts whose ``fields`` (default
    ``["text"]``) hold strings or token ids. Per example: ``num_tokens``,
    ``covered_tokens`` and ``coverage`` (the fraction of its tokens inside a match
    of at least ``min_len`` tokens), ``contaminated`` (``coverage >= threshold``),
    ``longest_match`` (``field``, ``start``, ``length``, ``count``, ``token_ids``,
    ``text``), up to ``k`` ``occurrences`` of it (``doc_ix``, ``offset`` in the
    document, ``doc_len``, ``shard``, ``metadata``), and per field its covered
    ranges. The summary counts the examples over the threshold and gives a
    histogram of coverage in tenths.
    """
    summary = ContaminationSummary(min_len, threshold)
    out = []
    for r in iter_contamination(
        engine,
        examples,
        min_len=min_len,
        threshold=threshold,
        fields=fields,
        k=k,
        batch_size=batch_size,
        id_field=id_field,
    ):
        summary.add(r)
        out.append(r)
    return ContaminationReport(out, summary.result())

