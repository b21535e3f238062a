#!/usr/bin/env bash
# anygram eval-lm on ../shared/data: index docs.jsonl.zst without its held-out documents
# (index % 20 == 19, the ones lm/ never saw), then evaluate lm/'s log-probs of those
# documents (lm_eval/) alone and mixed with the ∞-gram: λ tuned on half of them,
# reported on the other half. Writes bench/results/<date>-eval-lm*.{txt,json}.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=../shared/data
WORK=${WORK:-bench/results/tmp}
PY=${PY:-.venv/bin/python}
OUT=bench/results/$(date -u +%F)-eval-lm
mkdir -p "$WORK"
if [ ! -f "$WORK/docs-train-index/anygram.json" ]; then
  "$PY" - "$DATA/docs.jsonl.zst" "$WORK/docs-train.jsonl" <<'PYEOF'
import io, sys, zstandard
with open(sys.argv[1], "rb") as raw, open(sys.argv[2], "w") as out:
    for i, line in enumerate(io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(raw), encoding="utf-8")):
        if i % 20 != 19:
            out.write(line)
PYEOF
  "$PY" -m anygram.cli build "$WORK/docs-train.jsonl" --output "$WORK/docs-train-index" \
    --tokenizer "$DATA/gpt2-tokenizer.json" --overwrite
  rm "$WORK/docs-train.jsonl"
fi
run() {  # $1: suffix of the output files; the rest: extra eval-lm arguments
  local suffix=$1; shift
  "$PY" -m anygram.cli eval-lm --index "$WORK/docs-train-index" \
    --tokens "$DATA/lm_eval/heldout_tokens.npy" --offsets "$DATA/lm_eval/heldout_offsets.npy" \
    --lm-logprobs "$DATA/lm_eval/heldout_lm_logprobs.npy" --json "$OUT$suffix.json" "$@" | tee "$OUT$suffix.txt"
}
run ""                                  # even/odd documents: validation/test
run -halves --split halves              # first/second half of the documents
run -empty-context --context empty      # no document-start context
