"""The one progress-bar factory of builds, scans and eval-lm."""

from __future__ import annotations

import sys
from typing import Optional


def progress_bar(total: Optional[int], desc: str, unit: str, enabled: bool):
    """A ``tqdm`` bar on stderr (``total`` None: a counter without an end), or one that
    draws nothing when not ``enabled``; the callers' updates are the same either way."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, disable=not enabled,
                file=sys.stderr, dynamic_ncols=True)
