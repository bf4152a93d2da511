#!/usr/bin/env bash
# Compression of held-out domain text with and without a LoRA adapter, through the real CLI.
#   bench/lora/eval.sh ADAPTER FILE...
# Prints per file: bytes, frame bytes base / adapter, and totals as bits per byte.
set -euo pipefail
adapter=$1; shift
tb=${TENBIT:-target/release/tenbit}
tot=0; tb_base=0; tb_ad=0
printf '| file | bytes | base frame | adapter frame | base bits/byte | adapter bits/byte |\n|---|---:|---:|---:|---:|---:|\n'
for f in "$@"; do
  n=$(stat -L -c %s "$f")
  b=$("$tb" -q encode "$f" | wc -c)
  a=$("$tb" -q encode --adapter "$adapter" "$f" | wc -c)
  tot=$((tot + n)); tb_base=$((tb_base + b)); tb_ad=$((tb_ad + a))
  awk -v f="$(basename "$f")" -v n=$n -v b=$b -v a=$a \
    'BEGIN { printf "| %s | %d | %d | %d | %.3f | %.3f |\n", f, n, b, a, 8*b/n, 8*a/n }'
done
awk -v n=$tot -v b=$tb_base -v a=$tb_ad \
  'BEGIN { printf "| **total** | %d | %d | %d | %.3f | %.3f |\n\nadapter frames are %.1f%% smaller (base/adapter = %.3fx)\n", n, b, a, 8*b/n, 8*a/n, 100*(1-a/b), b/a }'
