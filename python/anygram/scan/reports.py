"""Reports of the scans: text tables, a self-contained HTML page, and the notebook forms
(short reprs, HTML tables, pandas frames) of :class:`ContaminationReport` and :class:`DedupReport`."""

from __future__ import annotations

import html
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..corpus import read_jsonl
from ..display import data_frame, html_rows, html_table, percent
from .contamination_scan import _example_texts, _ids_of


def contamination_table(summary: Dict[str, Any], width: int = 40) -> str:
    """A readable table of a contamination summary."""
    lines = [
        f"examples              {summary['num_examples']:,}",
        f"tokens                {summary['num_tokens']:,} ({summary['covered_tokens']:,} covered, "
        f"{100 * summary['token_coverage']:.2f}%)",
        f"min match length      {summary['min_len']} tokens",
        f"with any match        {summary['num_with_any_match']:,}",
        f"contaminated          {summary['num_contaminated']:,} "
        f"({100 * summary['fraction_contaminated']:.2f}%, coverage >= {summary['threshold']:g})",
        f"longest match         max {summary['longest_match']['max']}, median "
        f"{summary['longest_match']['median']:g}, p90 {summary['longest_match']['p90']:g} tokens",
        "",
        "coverage        examples",
    ]
    counts = summary["histogram"]["counts"]
    edges = summary["histogram"]["edges"]
    peak = max(counts) or 1
    for i, c in enumerate(counts):
        bar = "#" * math.ceil(width * c / peak) if c else ""
        close = "]" if i == len(counts) - 1 else ")"
        lines.append(f"[{edges[i]:.1f}, {edges[i + 1]:.1f}{close}  {c:>9,}  {bar}")
    if summary["top"]:
        lines += ["", "most covered examples"]
        for b in summary["top"][:10]:
            name = f" id={b['id']}" if "id" in b else ""
            text = (b.get("longest_text") or "").replace("\n", " ")
            text = text[:60] + ("…" if len(text) > 60 else "")
            lines.append(
                f"  #{b['index']}{name}  coverage {b['coverage']:.2f}  longest {b['longest']}  {text!r}"
            )
    return "\n".join(lines)


def contamination_html(
    summary: Dict[str, Any], engine, eval_path: Optional[str] = None, fields: Optional[Sequence[str]] = None
) -> str:
    """A self-contained HTML report: the figures, an SVG histogram of coverage and
    the most covered examples with their matched tokens highlighted."""
    counts = summary["histogram"]["counts"]
    peak = max(counts) or 1
    bars = []
    for i, c in enumerate(counts):
        h = 160 * c / peak
        bars.append(
            f'<rect x="{40 + i * 50}" y="{180 - h:.1f}" width="40" height="{h:.1f}" fill="#c0392b">'
            f"<title>{c}</title></rect>"
            f'<text x="{60 + i * 50}" y="{175 - h:.1f}" font-size="11" text-anchor="middle">{c}</text>'
            f'<text x="{60 + i * 50}" y="196" font-size="11" text-anchor="middle">{i / 10:.1f}</text>'
        )
    svg = (
        f'<svg width="560" height="215" role="img" aria-label="histogram of coverage">{"".join(bars)}'
        f'<text x="290" y="212" font-size="12" text-anchor="middle">coverage (fraction of tokens in matches '
        f"of ≥ {summary['min_len']} tokens)</text></svg>"
    )
    rows = []
    wanted = {b["index"]: b for b in summary["top"]}
    examples: Dict[int, Any] = {}
    if eval_path is not None and wanted:
        last = max(wanted)
        for i, ex in enumerate(read_jsonl(eval_path)):
            if i in wanted:
                examples[i] = ex
            if i >= last:
                break
    for b in summary["top"]:
        cell = ""
        ex = examples.get(b["index"])
        if ex is not None:
            parts = []
            for name, value in _example_texts(ex, fields, b["index"]):
                ids = _ids_of(engine, value, name)
                marked, at = [], 0
                for s, e in b["fields"].get(name, []):
                    marked.append(html.escape(_render(engine, ids[at:s])))
                    marked.append(f"<mark>{html.escape(_render(engine, ids[s:e]))}</mark>")
                    at = e
                marked.append(html.escape(_render(engine, ids[at:])))
                parts.append(f"<div><b>{html.escape(name)}</b>: {''.join(marked)}</div>")
            cell = "".join(parts)
        name = html.escape(str(b.get("id", "")))
        rows.append(
            f"<tr><td>{b['index']}</td><td>{name}</td><td>{b['coverage']:.3f}</td><td>{b['longest']}</td>"
            f"<td class=t>{cell}</td></tr>"
        )
    figures = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in summary.items()
        if k not in ("histogram", "top")
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>anygram contamination report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}}
mark{{background:#f5b7b1}}.t{{white-space:pre-wrap;font-family:monospace;font-size:90%}}</style></head><body>
<h1>Contamination report</h1><p>index <code>{html.escape(os.path.abspath(engine.path))}</code>
{"" if eval_path is None else f"— eval set <code>{html.escape(eval_path)}</code>"}</p>
<table>{figures}</table><h2>Coverage</h2>{svg}
<h2>Most covered examples</h2><p>Highlighted: tokens inside verbatim matches of at least {summary["min_len"]}
tokens.</p><table><tr><th>#</th><th>id</th><th>coverage</th><th>longest</th><th>text</th></tr>{"".join(rows)}</table>
</body></html>
"""


def _render(engine, ids: List[int]) -> str:
    if not ids:
        return ""
    if engine.tokenizer is not None:
        return engine.decode(ids)
    return " ".join(map(str, ids)) + " "


def dedup_table(summary: Dict[str, Any]) -> str:
    """A readable table of a dedup summary."""
    mode = "self" if summary["mode"] == "self" else f"cross, against {summary['against']}"
    return "\n".join([
        f"mode                  {mode}",
        f"min span length       {summary['min_len']} tokens",
        f"documents             {summary['num_documents']:,} ({summary['documents_affected']:,} affected, "
        f"{summary['documents_emptied']:,} emptied)",
        f"tokens                {summary['num_tokens']:,}",
        f"removed               {summary['tokens_removed']:,} tokens "
        f"({100 * summary['fraction_tokens_removed']:.2f}%)",
    ])


# Notebook forms of the reports (the classes' __repr__, _repr_html_ and to_pandas call these).

CONTAMINATION_COLUMNS = ["index", "id", "num_tokens", "covered_tokens", "coverage", "contaminated",
                         "longest_match", "longest_match_text"]
DEDUP_COLUMNS = ["doc_ix", "start", "end", "length"]


def contamination_repr(summary: Dict[str, Any]) -> str:
    return (f"ContaminationReport({summary['num_examples']:,} examples: {summary['num_contaminated']:,} "
            f"contaminated ({percent(summary['fraction_contaminated'])}) at coverage >= {summary['threshold']:g}, "
            f"min_len {summary['min_len']}, {percent(summary['token_coverage'])} of tokens covered; "
            f"longest match {summary['longest_match']['max']} tokens)")


def contamination_figures(summary: Dict[str, Any]) -> List[Tuple[str, Any]]:
    return [
        ("examples", f"{summary['num_examples']:,}"),
        ("contaminated", f"{summary['num_contaminated']:,} ({percent(summary['fraction_contaminated'])}, "
                         f"coverage ≥ {summary['threshold']:g})"),
        ("with any match", f"{summary['num_with_any_match']:,}"),
        ("tokens covered", f"{summary['covered_tokens']:,} of {summary['num_tokens']:,} "
                           f"({percent(summary['token_coverage'])})"),
        ("min match length", f"{summary['min_len']} tokens"),
        ("longest match", f"max {summary['longest_match']['max']}, median {summary['longest_match']['median']:g}, "
                          f"p90 {summary['longest_match']['p90']:g} tokens"),
    ]


def contamination_report_html(summary: Dict[str, Any], top: int = 5) -> str:
    edges, counts = summary["histogram"]["edges"], summary["histogram"]["counts"]
    histogram = html_rows(["coverage", "examples"],
                          [[f"[{edges[i]:.1f}, {edges[i + 1]:.1f})", f"{c:,}"] for i, c in enumerate(counts)])
    worst = html_rows(["#", "id", "coverage", "longest", "longest match"],
                      [[b["index"], b.get("id", ""), f"{b['coverage']:.3f}", b["longest"],
                        (b.get("longest_text") or "")[:80]] for b in summary["top"][:top]])
    return (f"<div>{html_table(contamination_figures(summary), 'Contamination report')}"
            f"<details><summary>coverage histogram</summary>{histogram}</details>"
            f"<details><summary>most covered examples</summary>{worst}</details></div>")


def contamination_frame(examples: List[Dict[str, Any]]):
    return data_frame(({"index": r.get("index"), "id": r.get("id"), "num_tokens": r["num_tokens"],
                        "covered_tokens": r["covered_tokens"], "coverage": r["coverage"],
                        "contaminated": bool(r["contaminated"]),
                        "longest_match": r["longest_match"].get("length", 0),
                        "longest_match_text": r["longest_match"].get("text")} for r in examples),
                      CONTAMINATION_COLUMNS)


def dedup_repr(summary: Dict[str, Any]) -> str:
    mode = "self" if summary["mode"] == "self" else "cross"
    return (f"DedupReport({mode}, min_len {summary['min_len']}: {summary['documents_affected']:,} of "
            f"{summary['num_documents']:,} documents affected ({summary['documents_emptied']:,} emptied), "
            f"{summary['tokens_removed']:,} of {summary['num_tokens']:,} tokens removed "
            f"({percent(summary['fraction_tokens_removed'])}))")


def dedup_report_html(summary: Dict[str, Any]) -> str:
    pairs = [("mode", summary["mode"] if summary["against"] is None else f"cross, against {summary['against']}"),
             ("min span length", f"{summary['min_len']} tokens"),
             ("documents", f"{summary['num_documents']:,}"),
             ("affected", f"{summary['documents_affected']:,} ({summary['documents_emptied']:,} emptied)"),
             ("tokens removed", f"{summary['tokens_removed']:,} of {summary['num_tokens']:,} "
                                f"({percent(summary['fraction_tokens_removed'])})")]
    return html_table(pairs, "Dedup report")


def dedup_frame(ranges: Dict[int, List[List[int]]]):
    return data_frame(({"doc_ix": doc, "start": s, "end": e, "length": e - s}
                       for doc, spans in sorted(ranges.items()) for s, e in spans), DEDUP_COLUMNS)
