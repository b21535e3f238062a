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


class Limits(BaseModel):
    """Bounds on the work one request may ask for. Each is a CLI flag of ``anygram serve``;
    breaking one is a 400 (413 for the body) whose JSON names the field and the limit."""

    max_query_chars: int = Field(10_000, ge=1, description="characters of one query string")
    max_query_tokens: int = Field(1_000, ge=1, description="tokens of one query (all terms of a CNF)")
    max_batch_size: int = Field(1_000, ge=1, description="queries in one batch request")
    max_support: int = Field(10_000, ge=1, description="largest max_support of ntd")
    max_maxnum: int = Field(100, ge=1, description="largest maxnum (documents per search)")
    max_disp_len: int = Field(10_000, ge=1, description="largest max_disp_len (tokens per document)")
    max_clause_freq: int = Field(500_000, ge=1, description="largest max_clause_freq of CNF queries")
    max_diff_tokens: int = Field(1_000, ge=1, description="largest max_diff_tokens of CNF queries")
    max_cnf_clauses: int = Field(8, ge=1, description="clauses (AND) of one CNF query")
    max_cnf_terms: int = Field(8, ge=1, description="terms (OR) of one CNF clause")
    max_body_bytes: int = Field(1 << 20, ge=1, description="bytes of a request body")
    time_budget_s: float = Field(10.0, gt=0, description="seconds one request may take (503/504 beyond)")


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
