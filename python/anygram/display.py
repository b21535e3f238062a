"""How results show in a notebook: short reprs, HTML tables and ``to_pandas()``.

The one place that imports the optional libraries of notebooks: pandas (``to_pandas()``)
and matplotlib (:mod:`anygram.plot`), each only when asked for, with a clear error
naming the extra to install when it is missing."""

from __future__ import annotations

import html
from typing import Any, Iterable, List, Sequence, Tuple


def require(module: str, purpose: str, extra: str):
    """Imports ``module`` for ``purpose``, or raises an ImportError that says what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        raise ImportError(f"{purpose} needs {package}: pip install 'anygram[{extra}]' "
                          f"(or pip install {package})") from None


def pandas():
    return require("pandas", "to_pandas()", "notebook")


def data_frame(rows: Iterable[dict], columns: Sequence[str]):
    """A pandas DataFrame of ``rows`` with ``columns`` in this order (also when empty)."""
    return pandas().DataFrame(list(rows), columns=list(columns))


def html_table(pairs: Sequence[Tuple[str, Any]], title: str = "") -> str:
    """A two-column HTML table (figure, value) with an optional caption, values escaped."""
    caption = f"<caption style='text-align:left'><b>{html.escape(title)}</b></caption>" if title else ""
    body = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
                   f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>" for k, v in pairs)
    return f"<table>{caption}{body}</table>"


def html_rows(header: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "") -> str:
    """An HTML table with a header row; cells escaped."""
    caption = f"<caption style='text-align:left'><b>{html.escape(title)}</b></caption>" if title else ""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table>{caption}<tr>{head}</tr>{body}</table>"


def percent(fraction: float) -> str:
    return f"{100 * fraction:.2f}%"


def short_list(values: List[Any], limit: int = 6) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (f", … ({len(values)} in all)" if len(values) > limit else "")
