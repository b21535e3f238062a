"""Settings of a running service: which indexes it serves, its limits, keys and CORS.

``anygram serve`` fills a :class:`Settings` from its flags. Worker processes (``--workers``)
receive it through the environment variable :data:`SETTINGS_ENV` as JSON, so one process or
many serve exactly the same configuration.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional

from pydantic import BaseModel, Field

SETTINGS_ENV = "ANYGRAM_SERVER_SETTINGS"


class IndexSpec(BaseModel):
    """One served index: the name clients use, its directory, and a tokenizer for an index
    built by infini-gram (anygram's own indexes carry theirs)."""

    name: str
    path: str
    tokenizer: Optional[str] = None


def _limit(default, description: str, flag: Optional[str] = None, **bounds):
    """A field of :class:`Limits`; ``anygram serve`` makes it the flag ``flag`` (by default
    ``--`` and the field's name with dashes), with this default and help."""
    extra = {"flag": flag} if flag else None
    if not bounds:
        bounds = {"ge": 1}
    return Field(default, description=description, json_schema_extra=extra, **bounds)


class Limits(BaseModel):
    """Bounds on the work one request (and one connection) may ask for. Each is a CLI flag of
    ``anygram serve`` with the default written here, and only here; breaking one is a 400
    (413 for the body, 431 for the headers, 408 for a request that does not arrive in time)
    whose JSON names the field and the limit."""

    max_query_chars: int = _limit(10_000, "characters of one query string")
    max_query_tokens: int = _limit(1_000, "tokens of one query or scored text (all terms of a CNF)")
    max_batch_size: int = _limit(1_000, "queries in one batch request")
    max_support: int = _limit(10_000, "largest max_support of ntd")
    max_maxnum: int = _limit(100, "largest maxnum (documents per search)", flag="--maxnum")
    max_disp_len: int = _limit(10_000, "largest max_disp_len (tokens per document)")
    max_clause_freq: int = _limit(500_000, "largest max_clause_freq of CNF queries")
    max_diff_tokens: int = _limit(1_000, "largest max_diff_tokens of CNF queries")
    max_cnf_clauses: int = _limit(8, "clauses (AND) of one CNF query")
    max_cnf_terms: int = _limit(8, "terms (OR) of one CNF clause")
    # The work of a whole request: a batch of small queries can still ask for gigabytes.
    max_total_tokens: int = _limit(100_000, "tokens of all the queries (or texts) of one request")
    max_total_support: int = _limit(
        200_000, "ntd entries one request may return: contexts x max_support, summed"
    )
    max_total_doc_tokens: int = _limit(
        1_000_000, "document tokens one request may return: documents x max_disp_len"
    )
    max_response_bytes: int = _limit(64 << 20, "bytes of one response body")
    max_body_bytes: int = _limit(1 << 20, "bytes of a request body")
    time_budget_s: float = _limit(
        10.0,
        "seconds one request may take: 503 when no engine thread frees up in time, "
        "504 when the query itself runs over",
        flag="--time-budget",
        gt=0,
    )
    # Connections: a client cannot hold the service's memory or its descriptors.
    max_header_bytes: int = _limit(64 << 10, "bytes of a request's line and headers (431 beyond)")
    request_timeout_s: float = _limit(
        30.0,
        "seconds a client has to send a whole request (line, headers, body) once it starts one "
        "or connects; then 408 and the connection is closed",
        flag="--request-timeout",
        gt=0,
    )
    keep_alive_s: float = _limit(
        5.0, "seconds an idle keep-alive connection stays open", flag="--keep-alive", gt=0
    )
    max_connections: int = _limit(
        1_000, "open connections per process; beyond, new ones get 503 and are closed"
    )

    @classmethod
    def flag_of(cls, name: str) -> str:
        extra = cls.model_fields[name].json_schema_extra or {}
        return extra.get("flag") or "--" + name.replace("_", "-")  # type: ignore[union-attr]


class Settings(BaseModel):
    indexes: List[IndexSpec]
    limits: Limits = Limits()
    # Threads that run engine calls; the native code releases the GIL, so they use all cores.
    engine_threads: int = Field(default_factory=lambda: max(4, 2 * (os.cpu_count() or 1)), ge=1)
    api_keys_file: Optional[str] = None
    cors_origins: List[str] = []

    def api_keys(self) -> List[str]:
        """The keys of ``api_keys_file``: one a line; blank lines and ``#`` comments skipped."""
        if self.api_keys_file is None:
            return []
        with open(self.api_keys_file, encoding="utf-8") as f:
            keys = [line.strip() for line in f]
        return [k for k in keys if k and not k.startswith("#")]

    def to_env(self) -> Dict[str, str]:
        return {SETTINGS_ENV: self.model_dump_json()}

    @classmethod
    def from_env(cls) -> "Settings":
        raw = os.environ.get(SETTINGS_ENV)
        if raw is None:
            raise RuntimeError(f"{SETTINGS_ENV} is not set: start the service with `anygram serve`")
        return cls.model_validate_json(raw)
