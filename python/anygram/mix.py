"""Interpolating a neural LM with the ∞-gram LM (Liu et al., 2024, "Infini-gram").

    P(x | context) = λ · P∞(x | context) + (1 − λ) · P_neural(x | context)

where λ may depend on the ∞-gram estimate: on the length of the context suffix it
used and on whether it is *sparse* (exactly one token follows that suffix in the
corpus), as in the paper. Only numpy is required; torch tensors are handled with
torch (imported only when one is given) so that the result stays on their device.

* :func:`mix`: full distributions, ``[V]`` or ``[B, V]`` (decoding, logits processors).
* :func:`mix_token_logprobs`: only the observed tokens' log-probs (perplexity).
* :class:`LambdaTable`: λ per (suffix-length bucket, sparse), and :meth:`LambdaTable.fit`
  to tune it on held-out text by maximum likelihood.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import InvalidArgumentError

#: Default suffix-length bucket edges: bucket k holds lengths in [edges[k], edges[k+1]).
DEFAULT_BUCKETS: Tuple[int, ...] = (0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)

Lambda = Union[float, Callable[[np.ndarray, np.ndarray], Any], "LambdaTable", np.ndarray]


def _is_torch(x: Any) -> bool:
    # Checked by module name so that numpy-only callers never import torch.
    return type(x).__module__.split(".")[0] == "torch"


def bucket_of(suffix_len: Any, edges: Sequence[int] = DEFAULT_BUCKETS) -> np.ndarray:
    """The bucket index of each suffix length (the last bucket is open-ended)."""
    lengths = np.asarray(suffix_len, dtype=np.int64)
    return np.searchsorted(np.asarray(edges[1:], dtype=np.int64), lengths, side="right")


def bucket_names(edges: Sequence[int] = DEFAULT_BUCKETS) -> list:
    """Human-readable bucket labels: ``"0"``, ``"4-5"``, ``"64+"``."""
    names = []
    for k, lo in enumerate(edges):
        hi = edges[k + 1] - 1 if k + 1 < len(edges) else None
        names.append(f"{lo}+" if hi is None else (str(lo) if hi == lo else f"{lo}-{hi}"))
    return names


class LambdaTable:
    """λ per suffix-length bucket and sparse flag: ``values[bucket, sparse]``.

    Call it with arrays of suffix lengths and sparse flags to get λ per position.
    """

    def __init__(self, values: Any, edges: Sequence[int] = DEFAULT_BUCKETS):
        values = np.asarray(values, dtype=np.float64)
        edges = tuple(int(e) for e in edges)
        if len(edges) == 0 or edges[0] != 0 or any(b <= a for a, b in zip(edges, edges[1:])):
            raise InvalidArgumentError(f"bucket edges must start at 0 and increase, got {list(edges)}")
        if values.shape != (len(edges), 2):
            raise InvalidArgumentError(
                f"a λ table needs shape ({len(edges)}, 2) (bucket × sparse), got {values.shape}")
        if not np.all((values >= 0) & (values <= 1)):
            raise InvalidArgumentError("every λ must be in [0, 1]")
        self.values = values
        self.edges = edges

    def __repr__(self) -> str:
        names = bucket_names(self.edges)
        width = max(len(n) for n in names)
        rows = [f"  {n:>{width}}  {d:.3f}  {s:.3f}" for n, (d, s) in zip(names, self.values)]
        return "\n".join([f"LambdaTable(λ by suffix length; {len(names)} buckets)",
                          f"  {'n':>{width}}  dense  sparse", *rows])

    def _repr_html_(self) -> str:
        from .display import html_rows

        return html_rows(["suffix length", "λ dense", "λ sparse"],
                         [[n, f"{d:.3f}", f"{s:.3f}"] for n, (d, s) in zip(bucket_names(self.edges), self.values)],
                         "LambdaTable")

    def __call__(self, suffix_len: Any, sparse: Any) -> np.ndarray:
        return self.values[bucket_of(suffix_len, self.edges), np.asarray(sparse, dtype=bool).astype(np.int64)]

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready form (``LambdaTable.from_dict`` reads it back)."""
        return {"edges": list(self.edges), "values": self.values.tolist()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LambdaTable":
        return cls(d["values"], d["edges"])

    @classmethod
    def fit(cls, lm_logprobs: Any, infgram_probs: Any, suffix_len: Any, sparse: Any,
            edges: Sequence[int] = DEFAULT_BUCKETS, min_count: int = 50,
            fallback: Optional[float] = None, prior_tokens: float = 5000.0) -> "LambdaTable":
        """Tunes λ on held-out tokens by maximum likelihood, separately in every
        (bucket, sparse) cell: ``lm_logprobs`` and ``infgram_probs`` are the observed
        tokens' neural log-probs and ∞-gram probabilities (−1 = undefined counts as
        0). Cells with fewer than ``min_count`` tokens get ``fallback`` (default:
        the single λ fitted on all tokens); the others are shrunk towards it as if
        it had been seen on ``prior_tokens`` more tokens, so that small cells do not
        chase their validation tokens (on the shared docs data this helped on both
        a random and a shifted split)."""
        lm = np.asarray(lm_logprobs, dtype=np.float64)
        p_inf = np.clip(np.asarray(infgram_probs, dtype=np.float64), 0.0, 1.0)
        n = np.asarray(suffix_len)
        sp = np.asarray(sparse, dtype=bool)
        if not (lm.shape == p_inf.shape == n.shape == sp.shape) or lm.ndim != 1:
            raise InvalidArgumentError("lm_logprobs, infgram_probs, suffix_len and sparse must be 1-D "
                                       "arrays of one length")
        overall = fit_lambda(lm, p_inf) if fallback is None else float(fallback)
        if prior_tokens < 0:
            raise InvalidArgumentError("prior_tokens must be non-negative")
        values = np.full((len(edges), 2), overall)
        buckets = bucket_of(n, edges)
        for b in range(len(edges)):
            for s in (0, 1):
                cell = (buckets == b) & (sp == bool(s))
                count = int(cell.sum())
                if count >= min_count:
                    own = fit_lambda(lm[cell], p_inf[cell])
                    values[b, s] = (count * own + prior_tokens * overall) / (count + prior_tokens)
        return cls(values, edges)


def fit_lambda(lm_logprobs: Any, infgram_probs: Any, iterations: int = 60) -> float:
    """The λ in [0, 1] maximizing Σ log(λ·p∞ + (1−λ)·p_lm) over tokens. The
    objective is concave in λ, so bisection on its derivative finds the optimum."""
    p_lm = np.exp(np.asarray(lm_logprobs, dtype=np.float64))
    p_inf = np.clip(np.asarray(infgram_probs, dtype=np.float64), 0.0, 1.0)
    if p_lm.size == 0:
        return 0.0

    def slope(lam: float) -> float:
        mixed = lam * p_inf + (1 - lam) * p_lm
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            terms = np.where(mixed > 0, (p_inf - p_lm) / mixed, np.where(p_inf > p_lm, np.inf, -np.inf))
        return float(np.sum(terms))

    if slope(0.0) <= 0:
        return 0.0
    if slope(1.0) >= 0:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if slope(mid) > 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _lambda_per_row(lam: Lambda, rows: int, suffix_len: Any, sparse: Any) -> np.ndarray:
    if isinstance(lam, (int, float)) and not isinstance(lam, bool):
        values = np.full(rows, float(lam))
    elif callable(lam):
        if suffix_len is None or sparse is None:
            raise InvalidArgumentError(
                "λ depends on the suffix length and sparse flag: pass the dict from engine.ntd_dense "
                "(or suffix_len= and sparse=)")
        values = np.broadcast_to(np.asarray(lam(np.asarray(suffix_len), np.asarray(sparse)),
                                            dtype=np.float64), (rows,))
    else:
        try:
            values = np.broadcast_to(np.asarray(lam, dtype=np.float64), (rows,))
        except (TypeError, ValueError):
            raise InvalidArgumentError(
                f"lam must be a float, one value per row, or a callable (suffix_len, sparse) -> λ; "
                f"got {type(lam).__name__}") from None
    if not np.all((values >= 0) & (values <= 1)):
        raise InvalidArgumentError("λ must be in [0, 1]")
    return values


def mix(lm_logprobs: Any, infgram: Any, lam: Lambda = 0.5, *, suffix_len: Any = None,
        sparse: Any = None) -> Any:
    """Mixed log-probabilities ``log(λ·P∞ + (1−λ)·softmax(lm_logprobs))``.

    ``lm_logprobs``: a numpy array or torch tensor of shape ``[V]`` or ``[B, V]`` of
    log-probs (logits work too: they are normalized first). ``infgram``: the dict
    :meth:`anygram.Engine.ntd_dense` returns, or the ∞-gram probabilities ``[V]`` /
    ``[B, V]`` themselves. ``lam``: a float, one value per row, or a callable
    ``(suffix_len, sparse) -> λ`` such as a :class:`LambdaTable`. Rows whose ∞-gram
    distribution is undefined (all zero) keep the neural distribution. Returns the
    type of ``lm_logprobs`` (same device and dtype for torch), same shape.
    """
    if isinstance(infgram, Mapping):
        probs = infgram["probs"]
        suffix_len = infgram.get("suffix_len") if suffix_len is None else suffix_len
        sparse = infgram.get("sparse") if sparse is None else sparse
    else:
        probs = infgram
    torch_in = _is_torch(lm_logprobs)
    probs_np = probs.detach().cpu().numpy() if _is_torch(probs) else np.asarray(probs)
    shape = tuple(lm_logprobs.shape)
    if len(shape) not in (1, 2):
        raise InvalidArgumentError(f"lm_logprobs must have shape [V] or [B, V], got {list(shape)}")
    if tuple(probs_np.shape) != shape:
        raise InvalidArgumentError(
            f"the ∞-gram distribution has shape {list(probs_np.shape)} but lm_logprobs has {list(shape)}: "
            f"give engine.ntd_dense(..., vocab_size={shape[-1]})")
    rows = 1 if len(shape) == 1 else shape[0]
    probs2 = probs_np.reshape(rows, shape[-1]).astype(np.float64)
    lam_rows = _lambda_per_row(lam, rows, suffix_len, sparse)
    lam_rows = np.where(probs2.sum(axis=1) > 0, lam_rows, 0.0)
    with np.errstate(divide="ignore"):
        log_lam = np.log(lam_rows)[:, None]
        log_rest = np.log1p(-lam_rows)[:, None]
        log_inf = np.log(probs2)
    if torch_in:
        import torch

        x = lm_logprobs.reshape(rows, shape[-1])
        work = torch.float64 if x.dtype == torch.float64 else torch.float32
        lm = torch.log_softmax(x.to(work), dim=-1)
        as_t = lambda a: torch.as_tensor(a, dtype=work, device=x.device)  # noqa: E731
        out = torch.logaddexp(as_t(log_lam) + as_t(log_inf), as_t(log_rest) + lm)
        return out.to(x.dtype).reshape(shape)
    x = np.asarray(lm_logprobs).reshape(rows, shape[-1])
    work = np.float64 if x.dtype == np.float64 else np.float32
    lm = x.astype(np.float64)
    lm = lm - np.logaddexp.reduce(lm, axis=1, keepdims=True)
    out = np.logaddexp(log_lam + log_inf, log_rest + lm)
    return out.astype(work).reshape(shape)


def mix_token_logprobs(lm_token_logprobs: Any, infgram_probs: Any, lam: Lambda = 0.5, *,
                       suffix_len: Any = None, sparse: Any = None) -> np.ndarray:
    """Mixed log-probs of observed tokens only: ``log(λ·p∞ + (1−λ)·exp(lm))`` per
    position, from the neural log-prob of each token and its ∞-gram probability
    (``engine.score(...)["prob"]``; −1 = undefined, where λ is taken as 0). Accepts
    the dict ``engine.score`` returns as ``infgram_probs``."""
    if isinstance(infgram_probs, Mapping):
        suffix_len = infgram_probs.get("suffix_len") if suffix_len is None else suffix_len
        sparse = infgram_probs.get("sparse") if sparse is None else sparse
        infgram_probs = infgram_probs["prob"]
    lm = np.asarray(lm_token_logprobs, dtype=np.float64)
    p_inf = np.asarray(infgram_probs, dtype=np.float64)
    if lm.shape != p_inf.shape or lm.ndim != 1:
        raise InvalidArgumentError(f"lm log-probs {list(lm.shape)} and ∞-gram probs {list(p_inf.shape)} "
                                   "must be 1-D arrays of one length")
    lam_rows = _lambda_per_row(lam, lm.shape[0], suffix_len, sparse)
    lam_rows = np.where(p_inf >= 0, lam_rows, 0.0)
    with np.errstate(divide="ignore"):
        return np.logaddexp(np.log(lam_rows) + np.log(np.clip(p_inf, 0, 1)), np.log1p(-lam_rows) + lm)


def perplexity(logprobs: Any) -> float:
    """``exp(−mean log-prob)``."""
    lp = np.asarray(logprobs, dtype=np.float64)
    return math.exp(-float(lp.mean())) if lp.size else float("nan")
