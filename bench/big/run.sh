#!/usr/bin/env bash
# A u16 index past 2^32 bytes of text (issue 14 item 4), end to end:
#   1. tokenize the docs corpus once (a small anygram index with the GPT-2 tokenizer);
#   2. tile it COPIES times, each copy under its own vocabulary permutation, into ONE shard
#      (make_index.py: one copy in RAM, the core's writer and external suffix sort within MEM);
#   3. check it (check.py: brute force, infini-gram on the same files, hot latency, verify).
# Usage: bash bench/big/run.sh [WORK_DIR] [COPIES] [MEM]   (defaults: /work/big 84 9.5G)
# The build is long on a small machine: run it under nohup; its log is WORK_DIR/build$COPIES.log.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${1:-/work/big}"
copies="${2:-84}"
mem="${3:-9.5G}"
shared="${SHARED:-$here/../../../shared/data}"
python="${PYTHON:-python}"
mkdir -p "$work"

if [ ! -f "$work/docs-src/anygram.json" ]; then
  "$python" -m anygram.cli build "$shared/docs.jsonl.zst" -o "$work/docs-src" \
    --tokenizer "$shared/gpt2-tokenizer.json" --no-metadata --quiet --mem 4G
fi
if [ ! -f "$work/tiled$copies/anygram.json" ]; then
  nice -n 5 /usr/bin/time -v "$python" "$here/make_index.py" --source "$work/docs-src" \
    --copies "$copies" --output "$work/tiled$copies" --mem "$mem" > "$work/build$copies.log" 2>&1
fi
"$python" "$here/check.py" --index "$work/tiled$copies" --name "big-u16-tiled$copies"
