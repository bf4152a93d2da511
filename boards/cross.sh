#!/usr/bin/env bash
# boards/cross.sh — the project's one entry point for cross-building (and running) tenbit
# for the boards: aarch64 Linux SBCs (Raspberry Pi Zero 2 W / 4 / 5, any arm64 SBC) and the
# bare-metal Cortex-M build of `tenbit-wire` and `tenbit-link`.
#
# Usage:  boards/cross.sh CMD [ARGS...]       (CMD is normally cargo)
#   boards/cross.sh cargo build --release --target aarch64-unknown-linux-gnu -p tenbit-edge
#   boards/cross.sh cargo test  --target aarch64-unknown-linux-gnu -p tenbit-wire -p tenbit-link -p tenbit-engine -p tenbit-lm
#   boards/cross.sh cargo build --target thumbv7em-none-eabihf -p tenbit-wire -p tenbit-link --no-default-features
#   boards/cross.sh --check aarch64-unknown-linux-gnu      # only say which route would be used
#   boards/cross.sh --runner aarch64-unknown-linux-gnu     # print the runner (qemu) command line
#
# Why a wrapper: the same command line must work on a developer machine with rustup and on
# machines where `rustup target add` cannot download. Three routes, first that works wins:
#   1. standard: the target's std is installed (`rustup target add <triple>`). We only add the
#      linker and, on a non-aarch64 host, the qemu-user runner so `cargo test`/`cargo run`
#      execute the aarch64 binaries. Needs: gcc-aarch64-linux-gnu (+ libc6-dev-arm64-cross)
#      and qemu-user-static from the OS packages (Debian/Ubuntu names).
#   2. build-std: ../shared/tools/cross-aarch64.sh (present in the tenbit dev environment)
#      installs the same OS packages, fetches rust-src matching the active rustc and builds std
#      from source with -Zbuild-std. Output is identical code; only the first build is slower.
#   3. neither: print what to install and fail.
# The runner is qemu-user *without* binfmt: cargo calls it explicitly through
# CARGO_TARGET_<TRIPLE>_RUNNER, which this script exports (callers such as the cross-arch test
# read the same variable).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
shared_tool=${TENBIT_CROSS_TOOL:-$repo/../shared/tools/cross-aarch64.sh}

die() { echo "boards/cross.sh: $*" >&2; exit 1; }

check_only=
if [ "${1:-}" = --runner ]; then
  # Print how to execute binaries of this target here (empty on a native host), after the
  # same setup as a build, so scripts can run cross-built binaries outside of cargo.
  [ $# -ge 2 ] || die "--runner needs a target triple"
  var="CARGO_TARGET_$(echo "$2" | tr 'a-z-' 'A-Z_')_RUNNER"
  exec "$0" sh -c 'printenv "$1" || true' sh "$var" --target "$2"
fi
if [ "${1:-}" = --check ]; then
  check_only=1
  shift
  [ $# -ge 1 ] || die "--check needs a target triple"
  set -- cargo build --target "$1"
fi
[ $# -gt 0 ] || die "usage: boards/cross.sh CMD [ARGS...]   (see the header of this file)"

# The target asked for, from --target T / --target=T or CARGO_BUILD_TARGET.
target=${CARGO_BUILD_TARGET:-}
prev=
for a in "$@"; do
  case "$a" in --target=*) target=${a#--target=} ;; esac
  [ "$prev" = --target ] && target=$a
  prev=$a
done

host_arch=$(uname -m)

# Is the target's prebuilt std installed in the active toolchain (route 1)?
have_std() {
  local sysroot
  sysroot=$(rustc --print sysroot 2>/dev/null) || return 1
  [ -d "$sysroot/lib/rustlib/$1/lib" ] && ls "$sysroot/lib/rustlib/$1/lib"/libcore-*.rlib >/dev/null 2>&1
}

# Linker/runner environment for route 1, per target family.
setup_standard() {
  case "$1" in
    aarch64-unknown-linux-gnu)
      if [ "$host_arch" != aarch64 ]; then
        command -v aarch64-linux-gnu-gcc >/dev/null ||
          die "missing aarch64-linux-gnu-gcc: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross"
        export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER:-aarch64-linux-gnu-gcc}
        export CC_aarch64_unknown_linux_gnu=${CC_aarch64_unknown_linux_gnu:-aarch64-linux-gnu-gcc}
        export AR_aarch64_unknown_linux_gnu=${AR_aarch64_unknown_linux_gnu:-aarch64-linux-gnu-ar}
        if command -v qemu-aarch64-static >/dev/null; then
          export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER:-qemu-aarch64-static -L /usr/aarch64-linux-gnu}
        fi
      fi
      ;;
    armv7-unknown-linux-gnueabihf)
      export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=${CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER:-arm-linux-gnueabihf-gcc}
      if command -v qemu-arm-static >/dev/null; then
        export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER=${CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER:-qemu-arm-static -L /usr/arm-linux-gnueabihf}
      fi
      ;;
    thumb*) ;; # rust-lld links bare-metal targets; nothing to add
  esac
}

if [ -z "$target" ] || [ "$target" = "$(rustc -vV | sed -n 's/^host: //p')" ]; then
  [ -n "$check_only" ] && { echo "host build (no cross toolchain needed)"; exit 0; }
  exec "$@"
fi

if have_std "$target"; then
  setup_standard "$target"
  [ -n "$check_only" ] && { echo "standard: rustup target $target is installed"; exit 0; }
  exec "$@"
fi

if [ -x "$shared_tool" ]; then
  [ -n "$check_only" ] && { echo "build-std: via $shared_tool"; exit 0; }
  exec "$shared_tool" "$@"
fi

cat >&2 <<EOF
boards/cross.sh: no way to build for $target on this machine.
Install the standard target and the cross linker, then re-run:
  rustup target add $target
EOF
case "$target" in
  aarch64-unknown-linux-gnu)
    echo "  sudo apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static" >&2 ;;
  armv7-unknown-linux-gnueabihf)
    echo "  sudo apt-get install gcc-arm-linux-gnueabihf libc6-dev-armhf-cross qemu-user-static" >&2 ;;
esac
exit 1
