#!/usr/bin/env bash
# Link figures of README "Links": every corpus response as raw text, as zstd -19 and as a
# tenbit frame made by the real encoder with the prompt known to both ends, sent through the
# seeded LoRa channel simulator (link/examples/link_sim.rs).
#
#   bench/link_figures.sh [WORKDIR] [link_sim options, e.g. --loss 10 --runs 20]
#
# WORKDIR (default target/link-figures) receives text/ and frames/; frames are re-encoded only
# when missing or older than their response. Every frame is decoded back and compared with its
# response before the simulation runs (TENBIT_LINK_VERIFY=0 skips that).
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-target/link-figures}
shift || true
mkdir -p "$work/text" "$work/frames"
cargo build --release --quiet -p tenbit
bin=target/release/tenbit
n=0
for r in tests/data/llm/*.response.txt; do
  stem=$(basename "$r" .response.txt)
  p="tests/data/llm/$stem.prompt.txt"
  cp "$r" "$work/text/$stem.txt"
  f="$work/frames/$stem.tb"
  if [ ! -s "$f" ] || [ "$r" -nt "$f" ] || [ "$p" -nt "$f" ]; then
    "$bin" encode -q --prompt-file "$p" "$r" -o "$f"
  fi
  if [ "${TENBIT_LINK_VERIFY:-1}" = 1 ]; then
    "$bin" decode -q --prompt-file "$p" "$f" | cmp -s - "$r" || {
      echo "frame $f does not decode to $r" >&2
      exit 1
    }
  fi
  n=$((n + 1))
done
echo "$n responses: $(cat "$work"/text/* | wc -c) bytes of text, $(cat "$work"/frames/* | wc -c) bytes of frames" >&2
cargo run --release --quiet -p tenbit-link --features link-full --example link_sim -- \
  --text "$work/text" --variant frames="$work/frames" "$@"
