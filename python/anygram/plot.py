"""Plots for notebooks (matplotlib, the optional extra ``plot``: ``pip install 'anygram[plot]'``;
imported only when a plot is drawn).

>>> anygram.plot.coverage_histogram(report)                    # doctest: +SKIP
>>> anygram.plot.suffix_length_profile(engine, "some text")    # doctest: +SKIP

Each function draws on ``ax`` (a new figure's axes by default) and returns the axes.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Union

from .display import require


def _axes(ax, size=(7, 3)):
    if ax is not None:
        return ax
    pyplot = require("matplotlib.pyplot", "anygram.plot", "plot")
    _, ax = pyplot.subplots(figsize=size)
    return ax


def coverage_histogram(report: Any, ax=None):
    """The contamination histogram: examples per tenth of coverage (the fraction of an
    example's tokens inside verbatim matches of at least ``min_len`` tokens), with the
    threshold marked. ``report``: a :class:`~anygram.ContaminationReport` or its summary."""
    summary: Dict[str, Any] = getattr(report, "summary", report)
    edges, counts = summary["histogram"]["edges"], summary["histogram"]["counts"]
    ax = _axes(ax)
    width = edges[1] - edges[0]
    ax.bar(edges[:-1], counts, width=width, align="edge", color="#c0392b", edgecolor="white")
    ax.axvline(summary["threshold"], color="black", linestyle="--", linewidth=1,
               label=f"threshold {summary['threshold']:g}")
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"coverage (fraction of tokens in matches of ≥ {summary['min_len']} tokens)")
    ax.set_ylabel("examples")
    ax.set_title(f"{summary['num_contaminated']:,} of {summary['num_examples']:,} examples contaminated")
    ax.legend()
    return ax


def suffix_length_profile(engine, text: Union[str, List[int]], ax=None, doc_start: bool = False,
                          label_tokens: Optional[bool] = None):
    """The ∞-gram suffix length at every token of ``text``: how many tokens before it
    (and it) occur verbatim in the index, from :meth:`Engine.score`. Long runs are text
    the corpus holds word for word. ``label_tokens``: write the tokens under the bars
    (default: when there are at most 60)."""
    ids = engine.tokenize(text) if isinstance(text, str) else list(text)
    scored = engine.score(ids, doc_start=doc_start)
    lengths = scored["suffix_len"]
    ax = _axes(ax, size=(max(7, min(len(ids) * 0.25, 20)), 3))
    ax.bar(range(len(ids)), lengths, width=0.9, color="#2471a3")
    ax.set_xlabel("token")
    ax.set_ylabel("∞-gram suffix length")
    ax.set_title("longest suffix found in the index, per token")
    if label_tokens if label_tokens is not None else len(ids) <= 60:
        ax.set_xticks(range(len(ids)))
        names = [engine.decode([t]) for t in ids] if engine.tokenizer is not None else [str(t) for t in ids]
        ax.set_xticklabels([repr(n)[1:-1] for n in names], rotation=90, fontsize=8)
    return ax
