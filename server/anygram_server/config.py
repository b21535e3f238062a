"""Settings of a running service: which indexes it serves, its limits, keys and CORS.

``anygram serve`` fills a :class:`Settings` from its flags. Worker processes (``--workers``)
receive it through the environment variable :data:`SETTINGS_ENV` as JSON, so one process or
many serve exactly the same configuration.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional

from pydantic import BaseModel, Field, create_model

from .limits import LIMITS, Limit

SETTINGS_ENV = "ANYGRAM_SERVER_SETTINGS"


class IndexSpec(BaseModel):
    """One served index: the name clients use, its directory, and a tokenizer for an index
    built by infini-gram (anygram's own indexes carry theirs)."""

    name: str
    path: str
    tokenizer: Optional[str] = None


def _field(limit: Limit):
    bound = {"gt": 0} if isinstance(limit.default, float) else {"ge": 1}
    return (type(limit.default), Field(limit.default, description=limit.help, **bound))


# Made from the table in limits.py, the one place each limit's default is written.
Limits = create_model(
    "Limits", **{name: _field(limit) for name, limit in LIMITS.items()}  # type: ignore[call-overload]
)
Limits.__doc__ = """Bounds on the work one request (and one connection) may ask for. Each is a
flag of ``anygram serve`` (see :mod:`limits`); breaking one is a 400 (413 for the body, 431
for the headers, 408 for a request not sent in time) whose JSON names the field and the limit."""


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
