#!/usr/bin/env bash
# tenbit's engine and llama.cpp side by side: same GGUF files, same thread counts, runs
# alternated in the same minutes (llama.cpp, then tenbit, per model and thread count, for R
# rounds), one table with the ratio column. The figures in README's speed section come from it.
#
#   bench/speed_side_by_side.sh                  # all three models, 1 and 2 threads, 2 rounds
#   ROUNDS=3 THREADS="1 2 4" MODELS="smollm2-135m" bench/speed_side_by_side.sh
#   EXTRA=1 bench/speed_side_by_side.sh          # also tg64 after a 1024-token prefill (both
#                                                # engines) and 8 sequences decoding together
#
# llama.cpp: the pinned sdist build of bench/llamacpp/build.sh (built here first if missing;
# ~30 min on 2 cores). Models: through the catalogue (`tenbit models fetch`, pinned sha256).
# Tests: pp64, pp512 (prefill into an empty cache) and tg64 (64 one-token steps), as
# llama-bench defines them; tenbit's side is `cargo run -p tenbit-engine --example speed`.
# A busy machine moves both engines' numbers by tens of percent: compare only rows from the
# same run, and read the load figures printed at the start and the end.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
REF=${TENBIT_REF_DIR:-$HOME/.cache/tenbit/llamacpp}
ROUNDS=${ROUNDS:-2}
THREADS=${THREADS:-"1 2"}
MODELS=${MODELS:-"smollm2-135m qwen2.5-coder-0.5b qwen2.5-coder-1.5b"}
REPS=${REPS:-3}
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/tenbit-speed.XXXXXX")}
mkdir -p "$OUT"

BIN=$(ls -d "$REF"/llama_cpp_python-*/vendor/llama.cpp/build/bin 2>/dev/null | head -1 || true)
if [ ! -x "$BIN/llama-bench" ]; then
  echo "llama-bench not found under $REF: building it (bench/llamacpp/build.sh)" >&2
  "$HERE/llamacpp/build.sh" >&2
  BIN=$(ls -d "$REF"/llama_cpp_python-*/vendor/llama.cpp/build/bin | head -1)
fi
cd "$ROOT"
cargo build --release -q -p tenbit -p tenbit-engine --example speed
TENBIT="$ROOT/target/release/tenbit"
SPEED="$ROOT/target/release/examples/speed"

echo "# tenbit vs llama.cpp, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)"
echo "# load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# llama.cpp: $BIN/llama-bench (-r $REPS); tenbit: $SPEED (-r $REPS); $ROUNDS rounds, alternated"

# results: one line per measurement: engine model threads test tok/s
RES="$OUT/results.txt"
: >"$RES"
for round in $(seq "$ROUNDS"); do
  for name in $MODELS; do
    model=$("$TENBIT" models fetch "$name" | tail -1)
    for t in $THREADS; do
      csv="$OUT/llama-$name-t$t-r$round.csv"
      "$BIN/llama-bench" -m "$model" -t "$t" -p 64,512 -n 64 -r "$REPS" -o csv >"$csv" 2>/dev/null
      awk -F, -v m="$name" -v t="$t" 'NR==1{for(i=1;i<=NF;i++){gsub(/"/,"",$i);c[$i]=i};next}
        {gsub(/"/,""); np=$c["n_prompt"]; ng=$c["n_gen"];
         test=(np>0 ? "pp" np : "tg" ng); print "llama.cpp", m, t, test, $c["avg_ts"]}' "$csv" >>"$RES"
      tests=("-p 64 -n 64" "-p 512 -n 0")
      if [ -n "${EXTRA:-}" ]; then
        csv="$OUT/llama-$name-t$t-r$round-d1024.csv"
        "$BIN/llama-bench" -m "$model" -t "$t" -p 0 -n 64 -d 1024 -r "$REPS" -o csv >"$csv" 2>/dev/null
        awk -F, -v m="$name" -v t="$t" 'NR==1{for(i=1;i<=NF;i++){gsub(/"/,"",$i);c[$i]=i};next}
          {gsub(/"/,""); print "llama.cpp", m, t, "tg" $c["n_gen"] "@d" $c["n_depth"], $c["avg_ts"]}' \
          "$csv" >>"$RES"
        tests+=("-p 0 -n 64 -d 1024")
      fi
      for args in "${tests[@]}"; do
        line=$("$SPEED" -t "$t" $args -r "$REPS" "$model")
        echo "$line" >>"$OUT/tenbit.log"
        echo "$line" | grep -oE '(pp|tg)[0-9]+(@d[0-9]+)? [0-9.]+ tok/s' | while read -r test ts _; do
          echo "tenbit $name $t $test $ts" >>"$RES"
        done
      done
    done
  done
done

echo
echo "| model | threads | test | llama.cpp tok/s | tenbit tok/s | tenbit / llama.cpp |"
echo "|---|---:|---|---:|---:|---:|"
# medians over rounds, per (engine, model, threads, test)
awk '{k=$2" "$3" "$4; v[$1" "k]=v[$1" "k]" "$5; keys[k]=1}
  function med(s,   a, n, i, j, x) { n=split(s, a, " ");
    for(i=2;i<=n;i++){x=a[i]; for(j=i-1;j>=1&&a[j]+0>x+0;j--) a[j+1]=a[j]; a[j+1]=x}
    return (n%2 ? a[(n+1)/2] : (a[n/2]+a[n/2+1])/2) }
  END{for(k in keys){split(k, p, " "); l=med(v["llama.cpp " k]); b=med(v["tenbit " k]);
    printf "| %s | %s | %s | %.1f | %.1f | %.2fx |\n", p[1], p[2], p[3], l, b, (l>0 ? b/l : 0)}}' \
  "$RES" | sort -t'|' -k2,2 -k3,3n -k4,4
echo
if [ -n "${EXTRA:-}" ]; then
  echo "tenbit only (llama-bench has no batched decode): 8 sequences decoding together after a"
  echo "16-token prefill each (tg32x8, aggregate tok/s of all 8) against one alone (tg32):"
  for name in $MODELS; do
    model=$("$TENBIT" models fetch "$name" | tail -1)
    for t in $THREADS; do
      echo "$name t=$t: $("$SPEED" -t "$t" -p 0 -n 32 -d 16 -b 8 -r 2 "$model")"
    done
  done
  echo
fi
echo "# load at end: $(cut -d' ' -f1-3 /proc/loadavg); raw results in $OUT"
