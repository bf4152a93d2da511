#!/usr/bin/env bash
# llama.cpp speed on the default model (see build.sh): prompt processing (pp64) and generation
# (tg64) tokens/s at 1 and 2 threads, 3 repetitions each, then one summary line per thread count.
#
#   bench/llamacpp/run.sh [MODEL]
set -euo pipefail
DIR=${TENBIT_REF_DIR:-$HOME/.cache/tenbit/llamacpp}
BIN=$(ls -d "$DIR"/llama_cpp_python-*/vendor/llama.cpp/build/bin 2>/dev/null | head -1)
[ -x "$BIN/llama-bench" ] || { echo "llama-bench not built: run bench/llamacpp/build.sh" >&2; exit 1; }
MODEL=${1:-$HOME/.cache/tenbit/models/SmolLM2-135M-Instruct.Q4_1.gguf}
for t in 1 2; do
  # one run: the markdown table to the terminal, the same results as csv for the summary
  "$BIN/llama-bench" -m "$MODEL" -t "$t" -p 64 -n 64 -r 3 -o md -oe csv \
    2>"${TMPDIR:-/tmp}/llama-bench-t$t.csv"
done
echo
for t in 1 2; do
  # csv columns: n_prompt, n_gen and avg_ts located by header name
  awk -F, -v t="$t" 'NR==1{for(i=1;i<=NF;i++){gsub(/"/,"",$i);c[$i]=i};next}
    {gsub(/"/,""); if ($c["n_prompt"]>0) pp=$c["avg_ts"]; else tg=$c["avg_ts"]}
    END{printf "llama.cpp threads=%s: pp64 %.1f tok/s, tg64 %.1f tok/s\n", t, pp, tg}' \
    "${TMPDIR:-/tmp}/llama-bench-t$t.csv"
done
