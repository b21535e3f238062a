"""Checks of request parameters against the service's limits (:class:`config.Limits`), made
before any engine work; each failure is a :class:`LimitExceededError` (400) naming the field."""

from __future__ import annotations

from typing import Optional, Sequence

from .config import Limits
from .errors import LimitExceededError


def check_work(fields: Sequence[str], factors: Sequence[int], limit: int, unit: str) -> None:
    """A :class:`LimitExceededError` (400) when the product of ``factors`` (e.g. contexts
    x max_support: the most ntd entries a request may return) is over ``limit``; checked
    before any engine work, it names every field that makes up the product."""
    total = 1
    for factor in factors:
        total *= factor
    if total > limit:
        product = " x ".join(fields)
        numbers = " x ".join(f"{f:,}" for f in factors)
        what = f"{numbers} = {total:,} {unit}" if len(factors) > 1 else f"{total:,} {unit}"
        raise LimitExceededError(product, limit, total, what=what, fields=list(fields))


def check_at_most(field: str, value: int, limit: int, unit: str = "") -> None:
    """A :class:`LimitExceededError` (400) when ``value`` is over ``limit``."""
    if value > limit:
        raise LimitExceededError(field, limit, value, unit)


def bounded(field: str, value: Optional[int], default: int, limit: int) -> int:
    """A parameter as given (checked against its limit), or its default lowered to the limit."""
    if value is None:
        return min(default, limit)
    check_at_most(field, value, limit)
    return value


def check_batch(field: str, size: int, limits: Limits) -> None:
    """A batch body holds at most ``max_batch_size`` queries."""
    check_at_most(field, size, limits.max_batch_size, "queries in one batch")
