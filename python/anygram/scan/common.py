"""What the scans share: the check of ``min_len`` and how a document's stored metadata
line reads back."""

from __future__ import annotations

import json
from typing import Any

from ..errors import InvalidArgumentError


def check_min_len(min_len: Any) -> None:
    """``min_len`` (tokens a match or a removed window must have) is a positive integer."""
    if not isinstance(min_len, int) or isinstance(min_len, bool) or min_len < 1:
        raise InvalidArgumentError(f"min_len must be a positive number of tokens, got {min_len!r}")


def parse_metadata(line: str) -> Any:
    """A document's metadata line as JSON (as stored when it is not JSON; None when empty)."""
    if not line:
        return None
    try:
        return json.loads(line)
    except ValueError:
        return line
