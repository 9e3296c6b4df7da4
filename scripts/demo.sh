#!/usr/bin/env bash
# The demo command's body (run by `make demo` after set-up). Prints every command it runs so they can be
# copied for real data. Everything lands in runs/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
OUT=runs/demo
mkdir -p "$OUT"

run() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

for kind in llava vit-gpt2 blip-caption blip-vqa clip dual-encoder; do
  run radtune tiny "$kind" "$OUT/tiny-$kind"
done
echo
echo "Tiny models written to $OUT/tiny-*."
