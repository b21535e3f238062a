"""The limits of ``anygram serve``: each one's default and meaning, written here only.

:class:`config.Limits` (the settings model) and the flags of ``anygram serve`` are both made
from :data:`LIMITS`. This module imports nothing: ``anygram``'s CLI builds its flags from it
at every start, where importing pydantic would cost a tenth of a second.
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Union


class Limit(NamedTuple):
    default: Union[int, float]  # its type is the flag's; ints are at least 1, floats above 0
    help: str
    flag: Optional[str] = None  # default: "--" and the name with dashes


LIMITS: Dict[str, Limit] = {
    # One query.
    "max_query_chars": Limit(10_000, "characters of one query string"),
    "max_query_tokens": Limit(1_000, "tokens of one query or scored text (all terms of a CNF)"),
    "max_batch_size": Limit(1_000, "queries in one batch request"),
    "max_support": Limit(10_000, "largest max_support of ntd"),
    "max_maxnum": Limit(100, "largest maxnum (documents per search)", flag="--maxnum"),
    "max_disp_len": Limit(10_000, "largest max_disp_len (tokens per document)"),
    "max_clause_freq": Limit(500_000, "largest max_clause_freq of CNF queries"),
    "max_diff_tokens": Limit(1_000, "largest max_diff_tokens of CNF queries"),
    "max_cnf_clauses": Limit(8, "clauses (AND) of one CNF query"),
    "max_cnf_terms": Limit(8, "terms (OR) of one CNF clause"),
    # The work of a whole request: a batch of small queries can still ask for gigabytes.
    "max_total_tokens": Limit(100_000, "tokens of all the queries (or texts) of one request"),
    "max_total_support": Limit(200_000, "ntd entries one request may return: contexts x max_support"),
    "max_total_doc_tokens": Limit(
        1_000_000, "document tokens one request may return: documents x max_disp_len"
    ),
    "max_response_bytes": Limit(64 << 20, "bytes of one response body"),
    "max_body_bytes": Limit(1 << 20, "bytes of a request body"),
    "time_budget_s": Limit(
        10.0,
        "seconds one request may take: 503 when no engine thread frees up in time, "
        "504 when the query itself runs over",
        flag="--time-budget",
    ),
    # Connections: a client cannot hold the service's memory or its descriptors.
    "max_header_bytes": Limit(64 << 10, "bytes of a request's line and headers (431 beyond)"),
    "request_timeout_s": Limit(
        30.0,
        "seconds a client has to send a whole request (line, headers, body) once it connects "
        "or starts one; then 408 and the connection is closed",
        flag="--request-timeout",
    ),
    "keep_alive_s": Limit(5.0, "seconds an idle keep-alive connection stays open", flag="--keep-alive"),
    "max_connections": Limit(1_000, "open connections per process; beyond, new ones get 503 and are closed"),
}


def flag_of(name: str) -> str:
    return LIMITS[name].flag or "--" + name.replace("_", "-")
