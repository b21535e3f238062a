"""``anygram eval-lm``: how much the ∞-gram LM helps a neural LM on held-out text.

Inputs: documents as token ids (``--tokens`` + ``--offsets`` ``.npy``) or JSONL text
(tokenized with the index's tokenizer), and the neural model's log-probability of
every token (``--lm-logprobs`` ``.npy``, or ``--model`` computed with ``transformers``).
The documents are split into a validation half, on which λ is tuned, and a test half,
on which everything is reported:

* the model's perplexity alone;
* the ∞-gram's next-token accuracy (the mode of its next-token distribution is the
  actual token) and how often its estimate is defined / non-zero / sparse;
* the perplexity of the mixture λ·P∞ + (1−λ)·P_model with one λ, and with λ per
  suffix-length bucket and sparse flag (as in the infini-gram paper);
* all of it per suffix-length bucket.

Document starts: the model scores each document's first token after
``<|endoftext|>``. The ∞-gram's matching context is the document start (the
separator before every document in the index; ``--context doc-start``, the
default), so early tokens are predicted from documents that begin the same way
and back off as usual; ``--context empty`` scores every document as a bare text.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .errors import InvalidArgumentError
from .mix import DEFAULT_BUCKETS, LambdaTable, bucket_names, bucket_of, fit_lambda, mix_token_logprobs
from .progress import progress_bar


def load_documents(tokens_path: str, offsets_path: str) -> List[np.ndarray]:
    """Documents from a flat token array and its boundaries (``len(docs) + 1`` offsets)."""
    tokens = np.load(tokens_path)
    offsets = np.load(offsets_path).astype(np.int64)
    if tokens.ndim != 1 or offsets.ndim != 1 or len(offsets) < 2:
        raise InvalidArgumentError(f"{tokens_path} must be 1-D token ids and {offsets_path} at least two offsets")
    if offsets[0] != 0 or offsets[-1] != len(tokens) or np.any(np.diff(offsets) < 0):
        raise InvalidArgumentError(
            f"{offsets_path}: offsets must start at 0, not decrease and end at the {len(tokens)} tokens "
            f"(got {offsets[0]} … {offsets[-1]})")
    tokens = tokens.astype(np.int64)
    return [tokens[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]


def load_jsonl(path: str, engine: Any, text_field: str = "text") -> List[np.ndarray]:
    """Documents from a JSONL file (``.zst`` / ``.gz`` too), tokenized with the index's tokenizer."""
    from .corpus import check_text, read_jsonl

    docs = []
    for n, record in enumerate(read_jsonl(path), 1):
        if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
            raise InvalidArgumentError(f"{path}: example {n} is not a JSON object with a string {text_field!r} field")
        text = check_text(record[text_field], f"{path}: example {n}, field {text_field!r}")
        docs.append(np.asarray(engine.tokenize(text), dtype=np.int64))
    return docs


def model_logprobs(model_path: str, docs: Sequence[np.ndarray], bos_token_id: int, window: int = 512,
                   stride: int = 255, device: Optional[str] = None, progress: Optional[bool] = None) -> np.ndarray:
    """Log-prob of every token under a ``transformers`` causal LM, each document
    scored after ``bos_token_id`` with a sliding window: windows of ``window``
    tokens start every ``stride`` tokens of ``[bos] + doc``, and each scores the
    tokens the previous ones did not (so every token but the first window's sees
    at least ``window - stride`` tokens of context). The defaults reproduce the
    log-probs of ../shared/data/lm_eval. ``progress``: a bar of tokens scored on stderr
    (default: when stderr is a terminal)."""
    if not 0 < stride < window:
        raise InvalidArgumentError(f"need 0 < stride < window, got stride {stride}, window {window}")
    try:
        import torch
        from transformers import AutoModelForCausalLM
    except ImportError:
        raise InvalidArgumentError("--model needs torch and transformers (pip install torch transformers); "
                                   "or pass --lm-logprobs") from None
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = AutoModelForCausalLM.from_pretrained(model_path).to(device).eval()
    if device == "cpu":
        model = model.float()
    out = []
    if progress is None:
        progress = sys.stderr.isatty()
    with torch.no_grad(), progress_bar(sum(len(d) for d in docs), "model log-probs", "tok", progress) as bar:
        for doc in docs:
            seq = torch.tensor(np.concatenate([[bos_token_id], doc]), device=device)
            lp = torch.empty(len(doc), dtype=torch.float32)
            done = 0  # tokens of seq[1:] scored so far
            begin = 0
            while done < len(doc):
                end = min(begin + window, len(seq))
                logits = model(seq[begin:end][None]).logits[0].float()
                logp = torch.log_softmax(logits[:-1], dim=-1)
                targets = seq[begin + 1:end]
                token_lp = logp.gather(1, targets[:, None])[:, 0].cpu()
                # seq position p (p >= 1) is doc token p - 1; score those not yet scored
                first_new = done + 1 - (begin + 1)
                lp[done:end - 1] = token_lp[first_new:]
                bar.update(end - 1 - done)
                done = end - 1
                begin += stride
            out.append(lp.numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def split_documents(n: int, split: str) -> tuple:
    """Validation and test document indices: ``alternate`` (even / odd) or ``halves``.
    One document is both (λ is then tuned and reported on the same text)."""
    idx = np.arange(n)
    if split in ("alternate", "halves") and n == 1:
        return idx, idx
    if split == "alternate":
        return idx[0::2], idx[1::2]
    if split == "halves":
        return idx[: n // 2], idx[n // 2:]
    raise InvalidArgumentError(f"split must be 'alternate' or 'halves', not {split!r}")


def check_logprobs(lm_logprobs: np.ndarray, lengths: Sequence[int], source: str = "lm_logprobs") -> np.ndarray:
    """The model's log-probs as float64, one per token: finite and at most 0, else an
    error naming ``source`` (a file or an argument) and the first bad position."""
    lm = np.asarray(lm_logprobs)
    total = int(sum(lengths))
    if lm.ndim != 1 or len(lm) != total:
        raise InvalidArgumentError(f"{source}: {lm.shape[0] if lm.ndim else 0} model log-probs "
                                   f"(shape {lm.shape}) for {total} tokens; expected one per token")
    if not (np.issubdtype(lm.dtype, np.floating) or np.issubdtype(lm.dtype, np.integer)):
        raise InvalidArgumentError(f"{source}: log-probs must be numbers, not {lm.dtype}")
    lm = lm.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(lm) | (lm > 0))
    if bad.size:
        at = int(bad[0])
        doc = int(np.searchsorted(np.cumsum(lengths), at, side="right"))
        offset = at - int(sum(lengths[:doc]))
        raise InvalidArgumentError(
            f"{source}: log-prob {lm[at]!r} at token {at} (document {doc}, token {offset}) is not a log-probability "
            f"(it must be finite and <= 0); {bad.size} such value(s) in all")
    return lm


def _ppl(lp: np.ndarray) -> float:
    return float(np.exp(-lp.mean())) if lp.size else float("nan")


def evaluate(engine: Any, docs: Sequence[np.ndarray], lm_logprobs: np.ndarray, split: str = "alternate",
             context: str = "doc-start", edges: Sequence[int] = DEFAULT_BUCKETS, max_support: int = 1000,
             min_count: int = 50, lm_source: str = "lm_logprobs") -> Dict[str, Any]:
    """Runs the evaluation; returns a JSON-ready report. ``lm_source`` names the
    log-probs in error messages (the CLI passes its flag and file)."""
    lengths = [len(d) for d in docs]
    if not lengths:
        raise InvalidArgumentError("no documents to evaluate")
    lm = check_logprobs(lm_logprobs, lengths, lm_source)
    if context not in ("doc-start", "empty"):
        raise InvalidArgumentError(f"context must be 'doc-start' or 'empty', not {context!r}")
    started = time.perf_counter()
    scores = engine.score_batch(list(docs), sparse=True, top=True, max_support=max_support,
                                doc_start=context == "doc-start")
    score_seconds = time.perf_counter() - started
    cat = lambda key: np.concatenate([s[key] for s in scores]) if scores else np.zeros(0)  # noqa: E731
    prob, suffix_len, sparse = cat("prob"), cat("suffix_len").astype(np.int64), cat("sparse").astype(bool)
    top = cat("top_token")
    actual = np.concatenate(docs) if docs else np.zeros(0, dtype=np.int64)
    doc_of = np.repeat(np.arange(len(docs)), lengths)
    valid_docs, test_docs = split_documents(len(docs), split)
    valid, test = np.isin(doc_of, valid_docs), np.isin(doc_of, test_docs)

    p_inf = np.where(prob >= 0, prob, 0.0)
    single = fit_lambda(lm[valid], p_inf[valid])
    table = LambdaTable.fit(lm[valid], p_inf[valid], suffix_len[valid], sparse[valid], edges=edges,
                            min_count=min_count)
    mixed_single = mix_token_logprobs(lm, prob, single)
    mixed_table = mix_token_logprobs(lm, prob, table, suffix_len=suffix_len, sparse=sparse)

    def summary(mask: np.ndarray) -> Dict[str, Any]:
        n = int(mask.sum())
        if n == 0:
            return {"tokens": 0}
        return {
            "tokens": n,
            "model_ppl": _ppl(lm[mask]),
            "mix_single_ppl": _ppl(mixed_single[mask]),
            "mix_table_ppl": _ppl(mixed_table[mask]),
            "infgram_accuracy": float(np.mean(top[mask] == actual[mask])),
            "infgram_defined": float(np.mean(prob[mask] >= 0)),
            "infgram_nonzero": float(np.mean(prob[mask] > 0)),
            "context_found": float(np.mean(suffix_len[mask] > 0)),
            "sparse": float(np.mean(sparse[mask])),
            "sparse_accuracy": float(np.mean(top[mask & sparse] == actual[mask & sparse]))
            if np.any(mask & sparse) else None,
            "mean_suffix_len": float(suffix_len[mask].mean()),
        }

    buckets = bucket_of(suffix_len, edges)
    names = bucket_names(edges)
    return {
        "documents": {"total": len(docs), "validation": len(valid_docs), "test": len(test_docs), "split": split,
                      # One document: λ is tuned on the text it is reported on.
                      "same_documents": bool(np.array_equal(valid_docs, test_docs))},
        "context": context,
        "index": engine.path,
        "score_seconds": score_seconds,
        "score_tokens_per_second": len(actual) / score_seconds if score_seconds > 0 else None,
        "lambda_single": single,
        "lambda_table": table.to_dict(),
        "validation": summary(valid),
        "test": summary(test),
        "test_by_bucket": {names[b]: summary(test & (buckets == b)) for b in range(len(edges))},
    }


def format_report(r: Dict[str, Any]) -> str:
    t = r["test"]
    d = r["documents"]
    if d.get("same_documents"):
        split_line = (f"documents: {d['total']}: λ tuned and reported on the same document (too few to split); "
                      f"∞-gram context at a document start: {r['context']}")
    else:
        split_line = (f"documents: {d['validation']} validation (λ tuned), {d['test']} test "
                      f"({d['split']} split); ∞-gram context at a document start: {r['context']}")
    if t["tokens"] == 0:
        return split_line + "\nno test tokens (the test documents are empty): nothing to report"
    lines = [
        split_line,
        f"∞-gram scoring: {r['score_tokens_per_second'] or 0:,.0f} tokens/s",
        "",
        f"test tokens                     {t['tokens']:,}",
        f"model perplexity                {t['model_ppl']:.3f}",
        f"∞-gram next-token accuracy      {t['infgram_accuracy']:.2%}  (sparse positions: "
        f"{t['sparse']:.1%} of tokens, accuracy {t['sparse_accuracy'] or 0:.2%})",
        f"∞-gram coverage                 P∞ defined {t['infgram_defined']:.2%}, non-zero {t['infgram_nonzero']:.2%}, "
        f"context of ≥1 token found {t['context_found']:.2%}",
        f"mixture, one λ = {r['lambda_single']:.3f}          {t['mix_single_ppl']:.3f}  "
        f"({(t['mix_single_ppl'] / t['model_ppl'] - 1):+.1%})",
        f"mixture, λ by suffix & sparse   {t['mix_table_ppl']:.3f}  ({(t['mix_table_ppl'] / t['model_ppl'] - 1):+.1%})",
        "",
        f"{'suffix len':>10} {'tokens':>8} {'sparse':>7} {'acc':>7} {'model':>9} {'mix 1λ':>9} {'mix table':>9}"
        f" {'λ dense':>7} {'λ sparse':>8}",
    ]
    values = r["lambda_table"]["values"]
    for k, (name, b) in enumerate(r["test_by_bucket"].items()):
        if b["tokens"] == 0:
            continue
        lines.append(f"{name:>10} {b['tokens']:>8,} {b['sparse']:>7.1%} {b['infgram_accuracy']:>7.1%} "
                     f"{b['model_ppl']:>9.3f} {b['mix_single_ppl']:>9.3f} {b['mix_table_ppl']:>9.3f}"
                     f" {values[k][0]:>7.3f} {values[k][1]:>8.3f}")
    return "\n".join(lines)
