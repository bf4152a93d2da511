#!/usr/bin/env bash
# boards/deploy.sh — build the installable decoder for one board ("flashing" tenbit-edge).
#
# Usage:  boards/deploy.sh <board> [--out DIR] [--no-model] [--model PATH] [--bin PATH]
#   <board>       a profile in boards/: pi-zero-2w, pi4, pi5, generic-aarch64
#   --out DIR     where the artefacts go (default: dist/)
#   --no-model    do not bundle the model (copy it to the board yourself; see boards/README.md)
#   --model PATH  bundle this GGUF instead of the one `tenbit models path/fetch` finds
#   --bin PATH    package this already-built aarch64 tenbit-edge instead of building it
#
# Produces  DIR/tenbit-edge-<board>.deb     (install: sudo apt install ./tenbit-edge-<board>.deb)
#           DIR/tenbit-edge-<board>.tar.gz  (install: tar xzf ...; sudo ./tenbit-edge-<board>/install.sh)
#           DIR/SHA256SUMS
# Both carry /usr/bin/tenbit-edge, /usr/share/tenbit/models/<model>.gguf, the systemd unit
# (tenbit-edge listen on the board's port/baud/link from /etc/default/tenbit-edge), a udev rule
# for /dev/tenbit-radio and a postinst that creates the `tenbit` service user in `dialout`.
#
# The binary is built with the profile's target-cpu/target-feature through boards/cross.sh.
# Those flags tune code generation only: the engine's results are bit-identical on every
# kernel and core (integer dot products, no FMA contraction, fixed reduction order).
# Needs: python3 >= 3.11 (tomllib, to read the profile), dpkg-deb, tar, gzip, readelf.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

die() { echo "boards/deploy.sh: $*" >&2; exit 1; }
log() { printf '==> %s\n' "$*" >&2; }

boards_list() { (cd "$here" && ls ./*.toml | sed 's|^\./||; s|\.toml$||' | tr '\n' ' '); }

board= out=$repo/dist no_model= model_arg= bin_arg=
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --out=*) out=${1#--out=}; shift ;;
    --no-model) no_model=1; shift ;;
    --model) model_arg=${2:?--model needs a path}; shift 2 ;;
    --model=*) model_arg=${1#--model=}; shift ;;
    --bin) bin_arg=${2:?--bin needs a path}; shift 2 ;;
    --bin=*) bin_arg=${1#--bin=}; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1" ;;
    *) [ -z "$board" ] || die "one board at a time (got $board and $1)"; board=$1; shift ;;
  esac
done
[ -n "$board" ] || die "usage: boards/deploy.sh <board> [--out DIR] [--no-model]; boards: $(boards_list)"
profile=$here/$board.toml
[ -f "$profile" ] || die "no profile boards/$board.toml; boards: $(boards_list)"
[ -z "$no_model" ] || [ -z "$model_arg" ] || die "--no-model and --model exclude each other"
command -v python3 >/dev/null || die "python3 (>= 3.11, for tomllib) is needed to read $profile"
command -v dpkg-deb >/dev/null || die "dpkg-deb is needed (apt-get install dpkg)"
mkdir -p "$out"
out=$(cd "$out" && pwd)

# ---- read and check the profile (one shell assignment per field, shell-quoted) ----------
eval "$(python3 - "$profile" "$repo/Cargo.toml" <<'PY'
import shlex, sys, tomllib
p = tomllib.load(open(sys.argv[1], "rb"))
ws = tomllib.load(open(sys.argv[2], "rb"))
def get(sec, key, typ):
    try:
        v = p[sec][key]
    except KeyError:
        sys.exit(f"profile {sys.argv[1]}: missing [{sec}] {key}")
    if not isinstance(v, typ) or isinstance(v, bool):
        sys.exit(f"profile {sys.argv[1]}: [{sec}] {key} must be {typ.__name__}")
    return v
f = {
    "P_NAME": get("board", "name", str),
    "P_DESC": get("board", "description", str),
    "P_TARGET": get("build", "target", str),
    "P_CPU": get("build", "target_cpu", str),
    "P_FEATURES": get("build", "target_features", str),
    "P_KERNEL": get("build", "kernel", str),
    "P_PORT": get("serial", "device", str),
    "P_BAUD": str(get("serial", "baud", int)),
    "P_RADIO": get("radio", "module", str),
    "P_LINK": get("radio", "link", str),
    "P_MTU": str(get("radio", "mtu", int)),
    "P_THREADS": str(get("build", "threads", int)),
    "P_RAM_MB": str(get("memory", "ram_budget_mb", int)),
    "P_MODEL_FILE": get("model", "file", str),
    "P_MODEL_NAME": get("model", "default", str),
    "P_MODEL_SHA256": get("model", "sha256", str).lower(),
    "P_VERSION": ws["workspace"]["package"]["version"],
}
rules = get("serial", "udev_rules", list)
if not rules or not all(isinstance(r, str) and "tenbit-radio" in r for r in rules):
    sys.exit(f"profile {sys.argv[1]}: [serial] udev_rules must be strings creating tenbit-radio")
f["P_UDEV"] = "\n".join(rules)
if f["P_NAME"] + ".toml" != sys.argv[1].rsplit("/", 1)[-1]:
    sys.exit(f"profile {sys.argv[1]}: [board] name must match the file name")
if len(f["P_MODEL_SHA256"]) != 64 or any(c not in "0123456789abcdef" for c in f["P_MODEL_SHA256"]):
    sys.exit(f"profile {sys.argv[1]}: [model] sha256 must be 64 hex digits")
if "/" in f["P_MODEL_FILE"] or not f["P_MODEL_FILE"].endswith(".gguf"):
    sys.exit(f"profile {sys.argv[1]}: [model] file must be a bare *.gguf file name")
for k, v in f.items():
    print(f"{k}={shlex.quote(v)}")
PY
)" || die "bad profile $profile"

case "$P_TARGET" in
  aarch64-unknown-linux-gnu) deb_arch=arm64 ;;
  armv7-unknown-linux-gnueabihf) deb_arch=armhf ;;
  *) die "target $P_TARGET has no Debian architecture mapping" ;;
esac

# ---- 1. the binary ----------------------------------------------------------------------
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
if [ -n "$bin_arg" ]; then
  [ -f "$bin_arg" ] || die "--bin $bin_arg: no such file"
  bin=$bin_arg
  log "packaging the given binary $bin (not rebuilt with the $board flags)"
else
  flags="-C target-cpu=$P_CPU"
  [ -z "$P_FEATURES" ] || flags="$flags -C target-feature=$P_FEATURES"
  flags_var="CARGO_TARGET_$(echo "$P_TARGET" | tr 'a-z-' 'A-Z_')_RUSTFLAGS"
  log "building tenbit-edge for $P_TARGET ($flags)"
  (cd "$repo" && env "$flags_var=$flags" "$here/cross.sh" \
      cargo build --release --target "$P_TARGET" -p tenbit-edge --bin tenbit-edge)
  bin=$CARGO_TARGET_DIR/$P_TARGET/release/tenbit-edge
fi
case "$(readelf -h "$bin" 2>/dev/null | sed -n 's/^ *Machine: *//p')" in
  AArch64) [ "$deb_arch" = arm64 ] || die "$bin is AArch64 but the profile wants $deb_arch" ;;
  ARM) [ "$deb_arch" = armhf ] || die "$bin is ARM but the profile wants $deb_arch" ;;
  *) die "$bin is not an ARM ELF executable" ;;
esac

# ---- 2. the model -----------------------------------------------------------------------
# `tenbit models path` prints where the default model lives and `tenbit models fetch` gets it
# (pinned sha256); the host binary runs natively, through cargo when it is not installed.
# If the host CLI cannot run, the default cache location is used. Either way the file must
# match the profile's sha256 before it is bundled.
host_tenbit() {
  if command -v tenbit >/dev/null; then tenbit "$@"
  else (cd "$repo" && cargo run --release --quiet -p tenbit --bin tenbit -- "$@"); fi
}
model=
if [ -n "$no_model" ]; then
  log "not bundling the model (--no-model): copy $P_MODEL_FILE to the board, see README"
elif [ -n "$model_arg" ]; then
  model=$model_arg
else
  path=$(host_tenbit models path 2>/dev/null | tail -n 1 || true)
  if [ -z "$path" ] || [ ! -f "$path" ]; then
    log "model not at '${path}'; trying tenbit models fetch"
    host_tenbit models fetch >&2 || log "warning: tenbit models fetch failed; looking in the default cache"
    path=$(host_tenbit models path 2>/dev/null | tail -n 1 || true)
  fi
  # The profile names the file; the printed path names the directory it lives in.
  for cand in "$path" "$(dirname "${path:-.}")/$P_MODEL_FILE" "$HOME/.cache/tenbit/models/$P_MODEL_FILE"; do
    if [ -f "$cand" ] && [ "$(basename "$cand")" = "$P_MODEL_FILE" ]; then model=$cand; break; fi
  done
  [ -n "$model" ] || die "no $P_MODEL_FILE found (tenbit models path said '${path}'); pass --model PATH or --no-model"
fi
if [ -n "$model" ]; then
  [ -f "$model" ] || die "model $model: no such file"
  [ "$(head -c 4 "$model")" = GGUF ] || die "model $model is not a GGUF file"
  if [ -z "$model_arg" ] || [ "$(basename "$model_arg")" = "$P_MODEL_FILE" ]; then
    log "checking sha256 of $model"
    got=$(sha256sum "$model" | cut -d' ' -f1)
    [ "$got" = "$P_MODEL_SHA256" ] || die "model $model has sha256 $got, the profile pins $P_MODEL_SHA256"
  fi
  model_note="$P_MODEL_NAME (bundled)"
else
  model_note="$P_MODEL_NAME (not bundled: copy it to /usr/share/tenbit/models/)"
fi

# ---- 3. stage the file tree -------------------------------------------------------------
stage=$(mktemp -d "${TMPDIR:-/tmp}/tenbit-deploy.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/root
install -d "$root/usr/bin" "$root/usr/share/tenbit/models" "$root/usr/share/doc/tenbit-edge" \
  "$root/lib/systemd/system/tenbit-edge.service.d" "$root/lib/udev/rules.d" "$root/etc/default"
install -m 0755 "$bin" "$root/usr/bin/tenbit-edge"
stripped=
for s in "${STRIP:-}" aarch64-linux-gnu-strip llvm-strip; do
  [ -n "$s" ] && command -v "$s" >/dev/null || continue
  if "$s" "$root/usr/bin/tenbit-edge" 2>/dev/null; then stripped=$s; break; fi
done
[ -n "$stripped" ] || log "warning: no strip for $P_TARGET found; the binary keeps its debug info"
[ -z "$model" ] || install -m 0644 "$model" "$root/usr/share/tenbit/models/$P_MODEL_FILE"

subst() {
  sed -e "s|@BOARD@|$P_NAME|g" -e "s|@PORT@|$P_PORT|g" -e "s|@BAUD@|$P_BAUD|g" \
      -e "s|@LINK@|$P_LINK|g" -e "s|@MTU@|$P_MTU|g" -e "s|@THREADS@|$P_THREADS|g" -e "s|@KERNEL@|$P_KERNEL|g" -e "s|@RADIO@|$P_RADIO|g" \
      -e "s|@MODEL_PATH@|/usr/share/tenbit/models/$P_MODEL_FILE|g" \
      -e "s|@MODEL_FILE@|$P_MODEL_FILE|g" -e "s|@RAM_BUDGET_MB@|$P_RAM_MB|g" \
      -e "s|@RAM_MAX_MB@|$((P_RAM_MB + P_RAM_MB / 4))|g" \
      -e "s|@TARGET_CPU@|$P_CPU|g" -e "s|@BOARD_DESC@|$P_DESC|g" \
      -e "s|@MODEL_NOTE@|$model_note|g" -e "s|@VERSION@|$P_VERSION|g" "$@"
}
install -m 0644 "$here/systemd/tenbit-edge.service" "$root/lib/systemd/system/tenbit-edge.service"
subst "$here/systemd/board.conf" > "$root/lib/systemd/system/tenbit-edge.service.d/10-board.conf"
subst "$here/systemd/tenbit-edge.default" > "$root/etc/default/tenbit-edge"
{
  echo "# /lib/udev/rules.d/99-tenbit-radio.rules — from boards/$P_NAME.toml (generated)."
  echo "# Override with /etc/udev/rules.d/99-tenbit-radio.rules; see /usr/share/doc/tenbit-edge/udev.md"
  printf '%s\n' "$P_UDEV" | sed 's|$|, TAG+="systemd", ENV{SYSTEMD_WANTS}+="tenbit-edge.service"|'
} > "$root/lib/udev/rules.d/99-tenbit-radio.rules"
install -m 0644 "$here/README.md" "$root/usr/share/doc/tenbit-edge/README.md"
install -m 0644 "$here/udev/README.md" "$root/usr/share/doc/tenbit-edge/udev.md"
install -m 0644 "$profile" "$root/usr/share/doc/tenbit-edge/board.toml"
chmod -R u=rwX,go=rX "$root"
chmod 0755 "$root/usr/bin/tenbit-edge"

# Runtime dependencies from the ELF itself: the newest glibc symbol version it needs.
glibc=$(readelf --dyn-syms -W "$root/usr/bin/tenbit-edge" | grep -o 'GLIBC_[0-9.]*' \
        | sed 's/GLIBC_//' | sort -uV | tail -n 1)
depends="libc6 (>= ${glibc:-2.17})"
if readelf -d "$root/usr/bin/tenbit-edge" | grep -q 'libgcc_s\.so'; then depends="$depends, libgcc-s1"; fi

# ---- 4. the .deb ------------------------------------------------------------------------
deb_root=$stage/deb
cp -a "$root" "$deb_root"
install -d "$deb_root/DEBIAN"
installed_kb=$(du -sk "$root" | cut -f1)
subst -e "s|@DEPENDS@|$depends|g" -e "s|@INSTALLED_KB@|$installed_kb|g" \
  -e "s|^Architecture: .*|Architecture: $deb_arch|" "$here/debian/control.in" > "$deb_root/DEBIAN/control"
for s in postinst prerm postrm; do
  subst "$here/debian/$s" > "$deb_root/DEBIAN/$s"
  chmod 0755 "$deb_root/DEBIAN/$s"
done
install -m 0644 "$here/debian/conffiles" "$deb_root/DEBIAN/conffiles"
deb=$out/tenbit-edge-$P_NAME.deb
log "dpkg-deb --build -> $deb"
dpkg-deb --root-owner-group -Zgzip --build "$deb_root" "$deb" >/dev/null

# ---- 5. the tarball (same tree + install.sh running the same postinst) ------------------
tname=tenbit-edge-$P_NAME
tdir=$stage/$tname
install -d "$tdir/scripts"
cp -a "$root" "$tdir/root"
for s in postinst prerm postrm; do cp -a "$deb_root/DEBIAN/$s" "$tdir/scripts/$s"; done
cat > "$tdir/install.sh" <<EOF
#!/bin/sh
# Install tenbit-edge for $P_NAME without dpkg: the same files and postinst as the .deb.
# Keeps an existing /etc/default/tenbit-edge (the new one goes next to it as .dist).
set -e
[ "\$(id -u)" = 0 ] || { echo "run as root: sudo \$0" >&2; exit 1; }
cd "\$(dirname "\$0")"
if [ -f /etc/default/tenbit-edge ]; then
  mv root/etc/default/tenbit-edge root/etc/default/tenbit-edge.dist
fi
(cd root && tar -cf - .) | tar -C / --no-same-owner --no-overwrite-dir -xf -
sh scripts/postinst configure
echo "installed tenbit-edge ($P_NAME); settings: /etc/default/tenbit-edge; status: systemctl status tenbit-edge"
EOF
chmod 0755 "$tdir/install.sh"
tarball=$out/$tname.tar.gz
log "tar -> $tarball"
tar --owner=0 --group=0 --numeric-owner -C "$stage" -czf "$tarball" "$tname"

(cd "$out" && sha256sum "$(basename "$deb")" "$(basename "$tarball")" > SHA256SUMS)

# ---- 6. smoke test: the packaged binary starts (under qemu-user when not on the board) --
runner_var="CARGO_TARGET_$(echo "$P_TARGET" | tr 'a-z-' 'A-Z_')_RUNNER"
runner=${!runner_var:-}
if [ -z "$runner" ] && [ "$(uname -m)" != aarch64 ] && command -v qemu-aarch64-static >/dev/null; then
  runner="qemu-aarch64-static -L /usr/aarch64-linux-gnu"
fi
if [ "$(uname -m)" = aarch64 ] || [ -n "$runner" ]; then
  # shellcheck disable=SC2086 # the runner is a command line
  if $runner "$root/usr/bin/tenbit-edge" --help >/dev/null 2>&1; then
    log "smoke test: packaged tenbit-edge --help runs"
  else
    log "warning: packaged tenbit-edge --help failed under '${runner:-native}'"
  fi
fi

size=$(stat -c %s "$root/usr/bin/tenbit-edge")
log "board $P_NAME: binary $size bytes (${stripped:+stripped}), glibc >= ${glibc:-?}, model: $model_note"
ls -l "$deb" "$tarball" >&2
echo "$deb"
echo "$tarball"
