#!/usr/bin/env bash
# boards/test-image.sh — boot a boards/image.sh image under qemu-system-aarch64 and prove,
# from the host, that its systemd-started tenbit-edge decodes what the host sends.
#
# Usage:  boards/test-image.sh [BOARD] [--img FILE] [--no-qa] [--no-upgrade]
#                              [--boot-timeout S] [--cmdline STR] [--work DIR]
#   BOARD          default pi-zero-2w (the smallest board: the guest gets its 512 MB)
#   --img FILE     the image (default ~/.cache/tenbit/image/out/BOARD.img, built if missing)
#   --no-qa        skip the 10-bit QA frame (its replay regenerates the whole small-model
#                  conversation: the slowest step under TCG)
#   --no-upgrade   skip the upgrade/remove checks
#   --boot-timeout S  how long a boot may take before the test fails with the console tail
#   --cmdline STR  kernel command line instead of the image's root (for the boot-failure test)
#
# The guest: qemu-system-aarch64 -M virt -cpu cortex-a53, 2 vCPUs (TCG), 512 MB, Debian's
# kernel + initrd read out of the image, the image (a scratch copy) on virtio-blk, the PL011
# (guest ttyAMA0, named /dev/tenbit-radio by an /etc/udev rule) wired to a host pty, the
# console on virtio console hvc0 (-> console.log) and a test agent on hvc1 (injected into the
# scratch copy only). The user configuration written into the copy: link serial-115200, a
# pre-shared key (sealed frames), a QA prompt file, a pre-seeded epoch store.
# Checks (each bounded in time): the unit is active after boot and has the port open; a
# held-out response (lossless frame, sealed) and a 10-bit QA frame sent with
# `tenbit send --link serial-115200 --port <pty>` come out of /var/lib/tenbit/messages byte
# for byte; VmHWM of tenbit-edge; kill -9 -> systemd restarts it; reboot keeps the epoch
# store, key and configuration, and sealed frames from the host (a new sender epoch each
# send) are still accepted after it; upgrading to a re-versioned .deb keeps
# the conffile and restarts the service; dpkg -r stops it and leaves the user's data.
# Prints the figures (boot to accepting frames, VmHWM) and PASS, or FAIL with the reason.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cache=${TENBIT_IMAGE_CACHE:-$HOME/.cache/tenbit/image}
die() { echo "boards/test-image.sh: error: $*" >&2; exit 1; }
log() { printf '==> %s\n' "$*" >&2; }

board= img= qa=1 upgrade=1 boot_timeout=900 cmdline= work=
while [ $# -gt 0 ]; do
  case "$1" in
    --img) img=${2:?--img needs a file}; shift 2 ;;
    --no-qa) qa=; shift ;;
    --no-upgrade) upgrade=; shift ;;
    --boot-timeout) boot_timeout=${2:?}; shift 2 ;;
    --cmdline) cmdline=${2:?}; shift 2 ;;
    --work) work=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -z "$board" ] || die "one board at a time"; board=$1; shift ;;
  esac
done
board=${board:-pi-zero-2w}
[ -f "$here/$board.toml" ] || die "unknown board '$board' (no boards/$board.toml)"
for t in qemu-system-aarch64 debugfs sfdisk blkid python3 dpkg-deb; do
  command -v "$t" >/dev/null || die "$t not found (apt-get install qemu-system-arm e2fsprogs fdisk util-linux python3 dpkg)"
done
work=${work:-$cache/test-$board}
mkdir -p "$work"

img=${img:-$cache/out/$board.img}
if [ ! -f "$img" ]; then
  log "no image at $img: building it (boards/image.sh $board)"
  "$here/image.sh" "$board" -o "$img" >/dev/null
fi

# ---- host side: the tenbit CLI, the model, the frames -------------------------------------
tenbit=${TENBIT_BIN:-$repo/target/release/tenbit}
if [ ! -x "$tenbit" ]; then
  (cd "$repo" && cargo build --release -p tenbit --bin tenbit) || die "cannot build the host tenbit"
fi
model=$HOME/.cache/tenbit/models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$model" ] || "$tenbit" models fetch >&2 || die "no $model (tenbit models fetch failed)"
frames=$work/frames
mkdir -p "$frames"
resp=$repo/tests/data/llm/06-apples-math.response.txt
resp_prompt=$repo/tests/data/llm/06-apples-math.prompt.txt
[ -f "$resp" ] && [ -f "$resp_prompt" ] || die "missing held-out response $resp (tests/data/llm)"
# The listener's prompt (QA frames need the receiver to know it); the lossless frame carries
# its own prompt (--send-prompt).
printf '%s' "Is 17 a prime number? Answer yes or no." > "$frames/qa.prompt"
tb_sha=$(sha256sum "$tenbit" | cut -c1-12)
ll=$frames/lossless-$tb_sha.tbf
if [ ! -s "$ll" ]; then
  "$tenbit" encode -q --model "$model" --prompt-file "$resp_prompt" --send-prompt "$resp" -o "$ll.tmp"
  "$tenbit" decode -q --model "$model" --prompt-file "$frames/qa.prompt" "$ll.tmp" -o "$frames/ll.check"
  cmp -s "$frames/ll.check" "$resp" || die "the host's own decode of the lossless frame differs from $resp"
  mv "$ll.tmp" "$ll"
fi
qa_args=()
if [ -n "$qa" ]; then
  strong=$HOME/.cache/tenbit/models/Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf
  [ -f "$strong" ] || die "QA frames need the strong model $strong (tenbit models fetch Qwen2.5-Coder-0.5B-Instruct-Q4_K_M), or --no-qa"
  qaf=$frames/qa10-$tb_sha.tbf
  if [ ! -s "$qaf" ] || [ ! -s "$qaf.txt" ]; then
    log "making the 10-bit QA frame on the host (strong model: $(basename "$strong"))"
    "$tenbit" encode --mode qa --bits 10 --strong "$strong" --model "$model" \
      --prompt-file "$frames/qa.prompt" -o "$qaf.tmp" 2> "$frames/qa.encode.log" \
      || { tail -n 5 "$frames/qa.encode.log" >&2; die "tenbit encode --mode qa failed"; }
    final=$(sed -n '/final answer:$/,$p' "$frames/qa.encode.log" | sed 1d)
    "$tenbit" decode -q --model "$model" --prompt-file "$frames/qa.prompt" "$qaf.tmp" -o "$qaf.txt.tmp"
    [ "$(cat "$qaf.txt.tmp")" = "$final" ] || die "the host's QA replay differs from the encoder's final answer"
    mv "$qaf.txt.tmp" "$qaf.txt"
    mv "$qaf.tmp" "$qaf"
  fi
  qa_args=(--qa-frame "$qaf" --qa-expect-file "$qaf.txt")
fi

# ---- the upgrade package: the image's .deb with a higher version -------------------------
up_args=()
if [ -n "$upgrade" ]; then
  deb=$cache/work/deb/tenbit-edge-$board.deb
  [ -f "$deb" ] || "$here/deploy.sh" "$board" --out "$cache/work/deb" >/dev/null
  v=$(dpkg-deb -f "$deb" Version)
  newv="$v+upgrade1"
  up=$work/upgrade.deb
  if [ ! -s "$up" ] || [ "$(dpkg-deb -f "$up" Version)" != "$newv" ] || [ "$up" -ot "$deb" ]; then
    rm -rf "$work/repack"
    dpkg-deb -R "$deb" "$work/repack"
    sed -i "s/^Version: .*/Version: $newv/" "$work/repack/DEBIAN/control"
    dpkg-deb --root-owner-group -Zgzip -b "$work/repack" "$up" >/dev/null
    rm -rf "$work/repack"
  fi
  size=$(stat -c %s "$up")
  cp "$up" "$work/upgrade.disk"
  truncate -s $(( (size + 511) / 512 * 512 )) "$work/upgrade.disk"
  up_args=(--upgrade-disk "$work/upgrade.disk" --upgrade-size "$size")
fi

log "image $img ($(( $(stat -c %s "$img") / 1048576 )) MiB), load: $(cut -d' ' -f1-3 /proc/loadavg)"
exec python3 "$here/image/vmtest.py" --image "$img" --work "$work" --tenbit "$tenbit" \
  --boot-timeout "$boot_timeout" ${cmdline:+--cmdline "$cmdline"} \
  --prompt-file "$frames/qa.prompt" --lossless-frame "$ll" --lossless-expect-file "$resp" \
  "${qa_args[@]}" "${up_args[@]}"
