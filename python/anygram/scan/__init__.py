"""Batch scans: benchmark contamination and exact-substring deduplication.

Both run in Rust on all cores with the GIL released (see ``rust/anygram/src/scan``).

**Contamination** (:func:`contamination`): for every token of an example, the
longest verbatim match with the corpus starting there (matching statistics, one
left-to-right pass); an example's *coverage* is the fraction of its tokens inside
matches of at least ``min_len`` tokens. Each chosen field is scanned on its own, so
a match never joins two fields. Memory: the examples of one batch and their
statistics (4 bytes per token); the index is read through the page cache.

**Dedup** (:func:`dedup`): every window of ``min_len`` tokens inside one document
that repeats an earlier position of the corpus (self; the first occurrence in
corpus order — shard by shard, documents in index order, then position — is kept)
or that occurs in another index (cross, ``against``), as removed ranges of token
offsets per document. Self dedup reads the suffix array once with the longest
common prefix of neighbours thresholded at ``min_len`` (several shards: merged by
their first ``min_len`` tokens). Memory: one bit per token of the index, plus the
removed ranges (16 bytes each). Cross dedup merges the suffix arrays of both indexes
by their first ``min_len`` tokens in one pass (the same memory, for this index's
tokens); between indexes of different token widths it falls back to matching
statistics of each document against the other index (one document per thread).

The command-line forms (``anygram contamination``, ``anygram dedup``) stream their
output and resume an interrupted run: see :func:`run_contamination` and
:func:`run_dedup`.

The package, one module per concern: :mod:`.contamination_scan`, :mod:`.dedup_scan`,
:mod:`.clean_writer` (the cleaned corpus), :mod:`.reports` (text table, HTML) and
:mod:`.runs` (the command-line forms, resumable through :mod:`anygram.workdir`).
"""

from ..corpus import read_jsonl
from .clean_writer import WRITE_BATCH_DOCS, WRITE_BATCH_TOKENS, write_clean
from .contamination_scan import (
    DEFAULT_CONTAMINATION_MIN_LEN,
    DEFAULT_THRESHOLD,
    HISTOGRAM_BINS,
    ContaminationReport,
    ContaminationSummary,
    contamination,
    iter_contamination,
)
from .dedup_scan import (
    CROSS_CHUNK_TOKENS,
    DEFAULT_DEDUP_MIN_LEN,
    MATCHING_COST_RATIO,
    DedupReport,
    DedupUnit,
    cross_method,
    dedup,
    iter_dedup_units,
    ranges_records,
)
from .reports import contamination_html, contamination_table, dedup_table
from .runs import run_contamination, run_dedup

__all__ = [
    "CROSS_CHUNK_TOKENS",
    "DEFAULT_CONTAMINATION_MIN_LEN",
    "DEFAULT_DEDUP_MIN_LEN",
    "DEFAULT_THRESHOLD",
    "HISTOGRAM_BINS",
    "MATCHING_COST_RATIO",
    "WRITE_BATCH_DOCS",
    "WRITE_BATCH_TOKENS",
    "ContaminationReport",
    "ContaminationSummary",
    "DedupReport",
    "DedupUnit",
    "contamination",
    "contamination_html",
    "contamination_table",
    "cross_method",
    "dedup",
    "dedup_table",
    "iter_contamination",
    "iter_dedup_units",
    "ranges_records",
    "read_jsonl",
    "run_contamination",
    "run_dedup",
    "write_clean",
]
