"""The one parser of CNF query text, shared by :meth:`anygram.Engine.cnf` and the server.

`` AND `` separates clauses and `` OR `` separates the n-grams of a clause; OR binds
tighter, as in infini-gram: ``"a OR b AND c"`` is ``(a OR b) AND c``. The separators
include their spaces, so words such as ``ANDROID`` or ``ORDER`` are never split.
"""

from __future__ import annotations

from typing import List

AND = " AND "
OR = " OR "


def is_cnf_text(text: str) -> bool:
    """Whether ``text`` is a CNF query (has a separator) rather than one n-gram."""
    return AND in text or OR in text


def parse(text: str) -> List[List[str]]:
    """Clauses, each a list of the n-grams' texts (not yet tokenized)."""
    return [clause.split(OR) for clause in text.split(AND)]
