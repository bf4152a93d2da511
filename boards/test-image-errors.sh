#!/usr/bin/env bash
# boards/test-image-errors.sh — bad input to boards/image.sh and boards/test-image.sh gives a
# clear error, fast, without building an image.
#
# Usage:  boards/test-image-errors.sh          # the fast cases (seconds, no downloads)
#         TENBIT_VM_TEST=1 boards/test-image-errors.sh   # + full disk and boot failure
#
# Fast (CI): unknown board; a .deb whose bundled model differs from the profile's sha256 pin;
#   a --model file that is not the pinned one; a profile marked unbootable; a bad --root-size.
# With TENBIT_VM_TEST=1 (they need the cached Debian packages or download them, and the image):
#   full disk while building (--root-size too small for the root file system; and a 200 MiB
#   tmpfs as the scratch space), and a guest that cannot boot (kernel command line naming a
#   root that does not exist: test-image.sh must fail within its boot timeout and print the
#   guest's console tail).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cache=${TENBIT_IMAGE_CACHE:-$HOME/.cache/tenbit/image}
work=$(mktemp -d "${TMPDIR:-/tmp}/tenbit-image-errors.XXXXXX")
mnt=
cleanup() {
  if [ -n "$mnt" ] && mountpoint -q "$mnt"; then umount "$mnt"; fi
  rm -rf "$work"
}
trap cleanup EXIT
fails=0 passes=0

# expect NAME PATTERN CMD...: CMD must fail, say PATTERN (extended regex, case-insensitive)
# on stderr/stdout, and finish within the limit.
expect() {
  local name=$1 pat=$2 limit=${LIMIT:-60}
  shift 2
  local t0 out rc
  t0=$(date +%s)
  out=$(timeout "$limit" "$@" 2>&1)
  rc=$?
  local secs=$(( $(date +%s) - t0 ))
  if [ "$rc" = 0 ]; then
    echo "  FAIL $name: succeeded, expected an error"; fails=$((fails + 1))
  elif [ "$rc" = 124 ]; then
    echo "  FAIL $name: still running after ${limit} s"; fails=$((fails + 1))
  elif ! grep -qiE -- "$pat" <<<"$out"; then
    echo "  FAIL $name: exit $rc but no /$pat/ in:"; tail -n 8 <<<"$out" | sed 's/^/       /'
    fails=$((fails + 1))
  else
    echo "  ok   $name (exit $rc, ${secs} s): $(grep -iE -- "$pat" <<<"$out" | head -n 1 | cut -c1-150)"
    passes=$((passes + 1))
  fi
  LAST_OUT=$out
}

echo "== boards/image.sh: bad input"
expect "unknown board" "unknown board 'no-such-board'.*boards: .*pi-zero-2w" \
  "$here/image.sh" no-such-board -o "$work/x.img"
expect "missing -o" "-o FILE.img is required" "$here/image.sh" pi4
expect "bad --root-size" "--root-size must be a number" "$here/image.sh" pi4 -o "$work/x.img" --root-size lots
expect "unbootable profile refused" "no Raspberry Pi 5.*--allow-unbootable" "$here/image.sh" pi5 -o "$work/x.img"

# A tenbit-edge package whose model is not the pinned file (same name, other bytes).
fake=$work/fake
mkdir -p "$fake/DEBIAN" "$fake/usr/share/tenbit/models"
{ printf 'GGUF'; head -c 4096 /dev/zero; } > "$fake/usr/share/tenbit/models/SmolLM2-135M-Instruct.Q4_1.gguf"
printf 'Package: tenbit-edge\nVersion: 0.0.1\nArchitecture: arm64\nMaintainer: test <t@example.invalid>\nDescription: fake\n' \
  > "$fake/DEBIAN/control"
dpkg-deb --root-owner-group -b "$fake" "$work/fake.deb" >/dev/null
expect "model sha256 mismatch (--deb)" "model sha256 mismatch: .*pins b179c9523d0e" \
  "$here/image.sh" pi-zero-2w -o "$work/x.img" --deb "$work/fake.deb"
rm -f "$fake/usr/share/tenbit/models/"*.gguf
dpkg-deb --root-owner-group -b "$fake" "$work/nomodel.deb" >/dev/null
expect "package without the model" "carries no /usr/share/tenbit/models" \
  "$here/image.sh" pi-zero-2w -o "$work/x.img" --deb "$work/nomodel.deb"
# The same through deploy.sh (--model): it needs the aarch64 build, so only where it exists.
if [ -x "$repo/target/aarch64-unknown-linux-gnu/release/tenbit-edge" ] && [ -n "${TENBIT_VM_TEST:-}" ]; then
  { printf 'GGUF'; head -c 4096 /dev/urandom; } > "$work/SmolLM2-135M-Instruct.Q4_1.gguf"
  LIMIT=600 expect "model sha256 mismatch (--model)" "sha256 .*the profile pins b179c9523d0e" \
    "$here/image.sh" pi-zero-2w -o "$work/x.img" --model "$work/SmolLM2-135M-Instruct.Q4_1.gguf"
fi

if [ -n "${TENBIT_VM_TEST:-}" ]; then
  deb=$cache/work/deb/tenbit-edge-pi-zero-2w.deb
  echo "== full disk while building (needs $deb from a previous boards/image.sh pi-zero-2w)"
  if [ -f "$deb" ]; then
    LIMIT=900 expect "root file system too small (--root-size 64)" "out of space.*--root-size 64 MiB" \
      "$here/image.sh" pi-zero-2w -o "$work/x.img" --deb "$deb" --root-size 64 --work "$work/w1" --no-cache
    mnt=$work/tiny
    mkdir -p "$mnt"
    if mount -t tmpfs -o size=200m tmpfs "$mnt" 2>/dev/null; then
      LIMIT=900 expect "scratch space full (200 MiB tmpfs)" "disk full|out of space" \
        "$here/image.sh" pi-zero-2w -o "$work/x.img" --deb "$deb" --work "$mnt" --no-cache
      umount "$mnt"
    else
      echo "  FAIL cannot mount a tmpfs for the full-disk case (needs root)"; fails=$((fails + 1))
    fi
  else
    echo "  FAIL no $deb: run boards/image.sh pi-zero-2w -o ... first"; fails=$((fails + 1))
  fi
  echo "== a guest that cannot boot"
  LIMIT=400 expect "boot failure: bounded, with console tail" "did not boot.*within 150 s" \
    "$here/test-image.sh" pi-zero-2w --no-qa --no-upgrade --boot-timeout 150 --work "$work/boot" \
    --cmdline "root=LABEL=NO-SUCH-ROOT rootdelay=20 console=hvc0 panic=10"
  if grep -q -- "--- guest console" <<<"$LAST_OUT" && grep -qiE "NO-SUCH-ROOT|does not exist|Gave up" <<<"$LAST_OUT"; then
    echo "  ok   the failure shows the guest console tail (initramfs gave up on the root)"; passes=$((passes + 1))
  else
    echo "  FAIL the boot failure did not show the guest console tail:"; tail -n 15 <<<"$LAST_OUT" | sed 's/^/       /'
    fails=$((fails + 1))
  fi
else
  echo "== full disk and boot failure: skipped (set TENBIT_VM_TEST=1; they need Debian packages and the image)"
fi

echo "test-image-errors: $passes passed, $fails failed"
[ "$fails" = 0 ]
