#!/usr/bin/env bash
# bench/edge_footprint.sh — footprint of the edge decoder: binary size, peak RSS and decode
# speed of the aarch64 tenbit-edge, plus labelled estimates for real Cortex-A53/A72/A76 boards.
#
# Usage: bench/edge_footprint.sh [--input FILE] [--prompt P] [--skip-qemu]
#   --input FILE   response to encode and decode (default: the responses of
#                  tests/data/cross_arch/ joined into one, ~110 tokens)
#   --skip-qemu    do not time the aarch64 decode under qemu (it runs ~40x slower than native)
# Writes bench/out/edge_footprint.md (and prints it). Environment: CARGO_TARGET_DIR,
# TENBIT_MODEL, TENBIT_HOST_BIN / TENBIT_EDGE_HOST / TENBIT_EDGE_AARCH64 to skip building.
#
# What is measured, and what each figure means:
# * size: the aarch64 release binary as built and after strip (what the .deb ships), gzipped.
# * peak RSS: `/usr/bin/time -v` of the decode. Under qemu-user that is *qemu's* RSS (guest
#   memory + translated-code cache + emulator), an upper bound for the guest. The x86_64 build
#   of the same code runs natively too: the same data structures, the same mmapped model, so
#   its RSS is the figure to compare with a board's budget (code size differs by ~1 MB).
# * decode tok/s under qemu: indicative only (TCG emulation, ~40x slower than a real core).
# * board estimates: NOT measurements. Two bounds, the lower one wins:
#     compute:   cycles/token of the 128-bit SSE2 kernel on this x86 core (single thread,
#                measured here; NEON is the same width) scaled by each core's clock and an
#                assumed per-clock throughput relative to this core (A76 0.8, A72 0.5,
#                A53 0.3: published IPC comparisons, in-order A53 lowest), times 4 cores at
#                60% parallel efficiency;
#     bandwidth: every weight byte is streamed once per decoded token (the tied 49152x576
#                output matrix included), at the effective DRAM bandwidth llama.cpp reaches
#                on these boards (Pi 5 ~11 GB/s: llama3.2:3b Q4_K_M 2.0 GB at 5.5 tok/s on a
#                BCM2712, geerlingguy/ai-benchmarks#24; Pi 4 ~5 GB/s: LPDDR4-3200 32-bit,
#                5-7 GB/s reported; Zero 2 W ~1.5 GB/s: LPDDR2-900 32-bit, 3.6 GB/s peak,
#                assumed 40%).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cd "$repo"
target=aarch64-unknown-linux-gnu

input= prompt= skip_qemu=
while [ $# -gt 0 ]; do
  case "$1" in
    --input) input=${2:?}; shift 2 ;;
    --prompt) prompt=${2:?}; shift 2 ;;
    --skip-qemu) skip_qemu=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "edge_footprint.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -z "$input" ] || [ -f "$input" ] || { echo "edge_footprint.sh: no input $input" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "edge_footprint.sh: needs GNU time (apt-get install time)" >&2; exit 1; }

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
model=${TENBIT_MODEL:-$HOME/.cache/tenbit/models/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -f "$model" ] || { echo "edge_footprint.sh: model $model missing (tenbit models fetch)" >&2; exit 1; }

# ---- binaries ---------------------------------------------------------------------------
if [ -z "${TENBIT_HOST_BIN:-}" ] || [ -z "${TENBIT_EDGE_HOST:-}" ]; then
  cargo build --release --quiet -p tenbit -p tenbit-edge --bins
fi
host=${TENBIT_HOST_BIN:-$CARGO_TARGET_DIR/release/tenbit}
edge_host=${TENBIT_EDGE_HOST:-$CARGO_TARGET_DIR/release/tenbit-edge}
if [ -z "${TENBIT_EDGE_AARCH64:-}" ]; then
  "$here/../boards/cross.sh" cargo build --release --quiet --target "$target" -p tenbit-edge --bin tenbit-edge
fi
edge=${TENBIT_EDGE_AARCH64:-$CARGO_TARGET_DIR/$target/release/tenbit-edge}
runner=$("$repo/boards/cross.sh" --runner "$target")

work=$(mktemp -d "${TMPDIR:-/tmp}/tenbit-footprint.XXXXXX")
trap 'rm -rf "$work"' EXIT
if [ -z "$input" ]; then
  input=$work/responses.txt
  cat "$repo"/tests/data/cross_arch/*.txt > "$input"
fi

# ---- sizes ------------------------------------------------------------------------------
strip_tool=
for s in aarch64-linux-gnu-strip llvm-strip; do command -v "$s" >/dev/null && { strip_tool=$s; break; }; done
cp "$edge" "$work/edge.stripped"
[ -z "$strip_tool" ] || "$strip_tool" "$work/edge.stripped"
cp "$edge_host" "$work/edge_host.stripped" && strip "$work/edge_host.stripped"
sz() { stat -c %s "$1"; }
size_raw=$(sz "$edge") size_stripped=$(sz "$work/edge.stripped")
size_gz=$(gzip -9c "$work/edge.stripped" | wc -c)
size_host=$(sz "$work/edge_host.stripped")

# ---- measurements -----------------------------------------------------------------------
pargs=()
[ -z "$prompt" ] || pargs=(--prompt "$prompt")
# measure LABEL CMD... : runs CMD under GNU time, sets M_WALL (s) and M_RSS (kB)
measure() {
  local label=$1; shift
  /usr/bin/time -v -o "$work/time.$label" "$@" >"$work/out.$label" 2>"$work/err.$label" || {
    echo "edge_footprint.sh: $label failed: $*" >&2; tail -n 20 "$work/err.$label" >&2; exit 1; }
  M_RSS=$(sed -n 's/^\s*Maximum resident set size (kbytes): //p' "$work/time.$label")
  M_WALL=$(sed -n 's/^\s*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$work/time.$label" \
           | awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }')
}

"$host" encode --model "$model" "${pargs[@]}" "$input" -o "$work/frame.tbf"
frame_bytes=$(sz "$work/frame.tbf")
# Decode steps = coded positions minus the chat-template prefix (which the decoder feeds as one
# batch). The prefix is measured as the positions of a one-character text, minus that character.
positions=$("$host" hash-logits --model "$model" "${pargs[@]}" "$input" | grep -c .)
printf 'a' > "$work/one.txt"
prefix=$(( $("$host" hash-logits --model "$model" "${pargs[@]}" "$work/one.txt" | grep -c .) - 1 ))
tokens=$((positions - prefix))
[ "$tokens" -gt 0 ] || { echo "edge_footprint.sh: hash-logits gave $positions positions, prefix $prefix" >&2; exit 1; }

measure native_all "$edge_host" decode --model "$model" "$work/frame.tbf" -o "$work/dec.native"
cmp -s "$work/dec.native" "$input" || { echo "edge_footprint.sh: native decode differs from input" >&2; exit 1; }
nat_wall=$M_WALL nat_rss=$M_RSS
# Single thread (affinity limits the engine's default thread count) with the SSE2 kernel,
# the 128-bit one comparable to NEON: the base of the compute estimate.
measure native_sse2 env TENBIT_KERNEL=sse2 taskset -c 0 "$edge_host" decode --model "$model" "$work/frame.tbf" -o "$work/dec.sse2"
sse2_wall=$M_WALL

qemu_line="(skipped: --skip-qemu)"
if [ -z "$skip_qemu" ]; then
  # shellcheck disable=SC2086 # the runner is a command line
  measure qemu $runner "$edge" decode --model "$model" "$work/frame.tbf" -o "$work/dec.qemu"
  cmp -s "$work/dec.qemu" "$input" || { echo "edge_footprint.sh: aarch64 decode differs from input" >&2; exit 1; }
  qemu_line=$(awk -v n="$tokens" -v w="$M_WALL" -v r="$M_RSS" \
    'BEGIN { printf "%.2f tok/s (%d tokens in %.1f s, wall incl. model load); qemu peak RSS %.1f MiB", n / w, n, w, r / 1024 }')
fi

mhz=$(awk -F: '/^cpu MHz/ { printf "%d", $2; exit }' /proc/cpuinfo)
mhz=${mhz:-2500}
model_bytes=$(sz "$model")

report=$repo/bench/out/edge_footprint.md
mkdir -p "$(dirname "$report")"
{
  echo "# tenbit-edge footprint ($(date -u +%Y-%m-%d), $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?'))"
  echo
  echo "Input: $(basename "$input") ($(sz "$input") bytes, $tokens decoded tokens after a $prefix-position"
  echo "chat-template prefix) -> frame $frame_bytes bytes. Speeds are decoded tokens / wall time"
  echo "of the whole command (model load and the batched prefix included)."
  echo "Model: $(basename "$model") ($model_bytes bytes)."
  echo
  echo "## Measured"
  echo
  echo "| what | value |"
  echo "|---|---|"
  echo "| aarch64 tenbit-edge, release as built | $size_raw bytes |"
  echo "| aarch64 tenbit-edge, stripped (shipped in the .deb) | $size_stripped bytes |"
  echo "| aarch64 tenbit-edge, stripped + gzip -9 | $size_gz bytes |"
  echo "| x86_64 tenbit-edge, stripped (comparison) | $size_host bytes |"
  awk -v r="$nat_rss" -v n="$tokens" -v w="$nat_wall" 'BEGIN {
    printf "| peak RSS of decode, x86_64 native (= the aarch64 figure, same code and data) | %.1f MiB |\n", r / 1024
    printf "| decode speed, x86_64 native, all cores, fastest kernel | %.1f tok/s (wall incl. load) |\n", n / w }'
  awk -v n="$tokens" -v w="$sse2_wall" 'BEGIN {
    printf "| decode speed, x86_64 native, 1 thread, SSE2 (128-bit) kernel | %.1f tok/s |\n", n / w }'
  echo "| decode under qemu-user (aarch64, NEON kernel; indicative only) | $qemu_line |"
  echo
  echo "## Estimates for real boards (NOT measured; see the header of bench/edge_footprint.sh)"
  echo
  echo "| board | core | compute bound | bandwidth bound | estimate |"
  echo "|---|---|---|---|---|"
  awk -v n="$tokens" -v w="$sse2_wall" -v mhz="$mhz" -v mb="$model_bytes" 'BEGIN {
    cyc = mhz * 1e6 * w / n            # x86 cycles per token, 1 thread, SSE2
    split("Pi 5|Pi 4|Pi Zero 2 W", board, "|")
    split("Cortex-A76 @ 2.4 GHz|Cortex-A72 @ 1.5 GHz|Cortex-A53 @ 1.0 GHz", core, "|")
    split("2.4 1.5 1.0", ghz, " "); split("0.8 0.5 0.3", ipc, " "); split("11 5 1.5", bw, " ")
    for (i = 1; i <= 3; i++) {
      c = ghz[i] * 1e9 * ipc[i] / cyc * 4 * 0.6
      b = bw[i] * 1e9 / mb
      e = (c < b) ? c : b
      printf "| %s | %s | %.0f tok/s | %.0f tok/s | ~%.0f tok/s (range %.0f-%.0f) |\n", board[i], core[i], c, b, e, e / 2, e * 1.5
    }
    printf "\nBase: %.1f M x86 cycles/token (1 thread, SSE2, %d MHz).\n", cyc / 1e6, mhz }'
  echo
  echo "## RAM budget (Pi Zero 2 W: 512 MB total, decoder peak RSS target < 300 MB)"
  echo
  awk -v r="$nat_rss" 'BEGIN { printf "Peak RSS %.1f MiB: %s the 300 MB target.\n", r / 1024, (r / 1024 < 286) ? "within" : "OVER" }'
} | tee "$report"
echo "(written to ${report#"$repo"/})" >&2
