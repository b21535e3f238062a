"""What a notebook shows: short reprs, HTML tables, pandas frames and plots of results."""

from __future__ import annotations

import subprocess
import sys

import matplotlib
import numpy as np
import pandas as pd
import pytest

import anygram
from anygram.mix import DEFAULT_BUCKETS

matplotlib.use("Agg")

CORPUS = [f"document {i}: the quick brown fox jumps over the lazy dog {i % 3}" for i in range(40)]
EXAMPLES = [{"id": f"e{i}", "text": t} for i, t in enumerate(
    ["the quick brown fox jumps over the lazy dog", "nothing like the corpus at all here", "brown fox jumps"])]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    out = tmp_path_factory.mktemp("nb") / "index"
    anygram.build_index(iter(CORPUS), str(out), progress=False)
    return anygram.Engine.open(str(out))


def is_short(text: str) -> bool:
    return len(text.splitlines()) <= 3 and len(text) < 400


def test_contamination_report(engine):
    report = anygram.contamination(engine, EXAMPLES, min_len=10, threshold=0.5)
    shown = repr(report)
    assert is_short(shown) and "3 examples" in shown and f"{report.summary['num_contaminated']} contaminated" in shown
    page = report._repr_html_()
    assert page.startswith("<div><table>") and "Contamination report" in page
    frame = report.to_pandas()
    assert isinstance(frame, pd.DataFrame) and list(frame["id"]) == ["e0", "e1", "e2"]
    assert list(frame["coverage"]) == [r["coverage"] for r in report.examples]
    assert list(frame["contaminated"]) == [r["coverage"] >= 0.5 for r in report.examples]
    ax = report.plot()
    assert [p.get_height() for p in ax.patches] == report.summary["histogram"]["counts"]


def test_dedup_report(engine):
    report = anygram.dedup(engine, min_len=10)
    assert is_short(repr(report)) and f"{report.summary['tokens_removed']:,} of" in repr(report)
    assert "Dedup report" in report._repr_html_()
    frame = report.to_pandas()
    assert list(frame.columns) == ["doc_ix", "start", "end", "length"]
    assert int(frame["length"].sum()) == report.summary["tokens_removed"]
    assert sorted(set(frame["doc_ix"])) == sorted(report.ranges)


def test_build_report_lambda_table_and_tokenizer(tmp_path):
    report = anygram.build_index(iter(["abc", "abd"]), str(tmp_path / "i"), progress=False)
    assert is_short(repr(report)) and "2 documents" in repr(report)
    assert "<table>" in report._repr_html_() and "documents" in report._repr_html_()
    table = anygram.LambdaTable(np.full((len(DEFAULT_BUCKETS), 2), 0.25))
    assert repr(table).startswith("LambdaTable(") and "0.250" in repr(table)
    assert "λ sparse" in table._repr_html_()
    assert "UTF-8 bytes" in repr(anygram.Tokenizer(None))


def test_suffix_length_profile_draws_the_scores(engine):
    text = "the quick brown cat"
    ax = anygram.plot.suffix_length_profile(engine, text)
    heights = [p.get_height() for p in ax.patches]
    assert heights == list(engine.score(text)["suffix_len"])
    assert [t.get_text() for t in ax.get_xticklabels()][:3] == ["t", "h", "e"]


def test_missing_pandas_is_a_clear_error(engine, monkeypatch):
    report = anygram.dedup(engine, min_len=10)
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now fails
    with pytest.raises(ImportError, match=r"to_pandas\(\) needs pandas: pip install 'anygram\[notebook\]'"):
        report.to_pandas()


def test_import_anygram_imports_neither_pandas_nor_matplotlib():
    probe = "import sys, anygram, anygram.plot; print('pandas' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
