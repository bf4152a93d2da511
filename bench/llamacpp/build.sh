#!/usr/bin/env bash
# Build llama.cpp's tools from the source vendored in the PyPI sdist of llama-cpp-python (the
# route to llama.cpp through a package registry), for side-by-side speed figures and a second
# correctness reference against tenbit's engine. Nothing of it is committed: source, venv and
# binaries live under $TENBIT_REF_DIR (default ~/.cache/tenbit/llamacpp).
#
#   bench/llamacpp/build.sh      # ~15-20 min on 2 cores the first time; re-runs are incremental
#   bench/llamacpp/run.sh        # llama-bench tables, 1 and 2 threads
#
# Builds: llama-bench, llama-simple (greedy), llama-completion, llama-perplexity, llama-tokenize,
# and llama_ref (bench/llamacpp/llama_ref.c: per-token NLL / greedy ids as JSON).
set -euo pipefail
VER=0.3.36 # llama-cpp-python; vendors llama.cpp build 0c1e570 (ggml 0.25.3)
SHA=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
HERE=$(cd "$(dirname "$0")" && pwd)
DIR=${TENBIT_REF_DIR:-$HOME/.cache/tenbit/llamacpp}
JOBS=${JOBS:-$(nproc)}
mkdir -p "$DIR" && cd "$DIR"
DIR=$(pwd -P)
[ -x venv/bin/cmake ] && [ -x venv/bin/ninja ] || { python3 -m venv venv && venv/bin/pip install -q cmake ninja; }
TGZ="sdist/llama_cpp_python-$VER.tar.gz"
if [ ! -f "$TGZ" ]; then
  # --no-binary for this package only: an sdist, while its build tools may come as wheels.
  venv/bin/pip download -q --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VER" -d sdist
fi
echo "$SHA  $TGZ" | sha256sum -c -
[ -d "llama_cpp_python-$VER" ] || tar xzf "$TGZ"
SRC="$DIR/llama_cpp_python-$VER/vendor/llama.cpp"
cd "$SRC"
nice -n 10 "$DIR/venv/bin/cmake" -S . -B build -G Ninja -DCMAKE_MAKE_PROGRAM="$DIR/venv/bin/ninja" \
  -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON \
  -DLLAMA_BUILD_SERVER=OFF -DCMAKE_BUILD_TYPE=Release
nice -n 10 "$DIR/venv/bin/cmake" --build build -j"$JOBS" \
  --target llama-bench llama-simple llama-completion llama-perplexity llama-tokenize
cc -O2 -Wall -Wextra -I"$SRC/include" -I"$SRC/ggml/include" "$HERE/llama_ref.c" \
  -L"$SRC/build/bin" -lllama -lggml -lggml-base -lm -Wl,-rpath,"$SRC/build/bin" -o "$DIR/llama_ref"
echo "built: $SRC/build/bin/{llama-bench,llama-simple,llama-completion,llama-perplexity,llama-tokenize}"
echo "built: $DIR/llama_ref"
