#!/usr/bin/env bash
# llama.cpp generation/prompt speed on the default model, 1 and 2 threads (see build.sh).
set -euo pipefail
DIR=${TENBIT_REF_DIR:-$HOME/.cache/tenbit/llamacpp}
BIN=$(ls -d "$DIR"/llama_cpp_python-*/vendor/llama.cpp/build/bin | head -1)
MODEL=${1:-$HOME/.cache/tenbit/models/SmolLM2-135M-Instruct.Q4_1.gguf}
for t in 1 2; do
  "$BIN/llama-bench" -m "$MODEL" -t "$t" -p 64 -n 64 -r 3
done
