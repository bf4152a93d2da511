#!/usr/bin/env bash
# Build llama.cpp's llama-bench and llama-cli from the source vendored in the PyPI sdist of
# llama-cpp-python (the only route to llama.cpp from a package registry), for side-by-side speed
# figures against tenbit's engine. Nothing of it is committed; it lives under $TENBIT_REF_DIR.
#
#   bench/llamacpp/build.sh            # ~10-20 min on 2 cores
#   bench/llamacpp/run.sh              # prints llama-bench tables for 1 and 2 threads
set -euo pipefail
VER=0.3.36
SHA=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
DIR=${TENBIT_REF_DIR:-$HOME/.cache/tenbit/llamacpp}
mkdir -p "$DIR" && cd "$DIR"
[ -x venv/bin/cmake ] || { python3 -m venv venv && venv/bin/pip install -q cmake ninja; }
if [ ! -f "sdist/llama_cpp_python-$VER.tar.gz" ]; then
  venv/bin/pip download -q --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VER" -d sdist
fi
echo "$SHA  sdist/llama_cpp_python-$VER.tar.gz" | sha256sum -c -
[ -d "llama_cpp_python-$VER" ] || tar xzf "sdist/llama_cpp_python-$VER.tar.gz"
cd "llama_cpp_python-$VER/vendor/llama.cpp"
../../../venv/bin/cmake -S . -B build -G Ninja -DCMAKE_MAKE_PROGRAM="$DIR/venv/bin/ninja" \
  -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=OFF -DCMAKE_BUILD_TYPE=Release
../../../venv/bin/cmake --build build -j"$(nproc)" --target llama-bench
echo "built: $PWD/build/bin/llama-bench"
