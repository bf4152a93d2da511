#!/usr/bin/env bash
# boards/test-deploy.sh — check the board profiles and the packages boards/deploy.sh makes.
#
# Usage: boards/test-deploy.sh [--full]
#   default: cross-builds tenbit-edge once, packages every board with it (--bin; the model is
#            bundled for pi-zero-2w only, to keep the run small) and inspects each .deb and
#            tarball with dpkg-deb --info/--contents and by extracting them
#   --full:  also runs deploy.sh pi-zero-2w without --bin (the real per-board build with the
#            profile's target-cpu) and reports how long it took
# Also checks that deploy.sh refuses bad input (unknown board, conflicting options, a model
# whose sha256 differs from the profile's pin).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cd "$repo"
target=aarch64-unknown-linux-gnu
full=
[ "${1:-}" = --full ] && full=1

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
model=${TENBIT_MODEL:-$HOME/.cache/tenbit/models/SmolLM2-135M-Instruct.Q4_1.gguf}
work=$(mktemp -d "${TMPDIR:-/tmp}/tenbit-test-deploy.XXXXXX")
trap 'rm -rf "$work"' EXIT
fails=0
ok() { printf '  ok   %s\n' "$*"; }
bad() { printf '  FAIL %s\n' "$*"; fails=$((fails + 1)); }
check() { local what=$1; shift; if "$@" >/dev/null 2>&1; then ok "$what"; else bad "$what"; fi; }

echo "== profiles"
python3 - "$here"/*.toml <<'PY' || fails=$((fails + 1))
import re, sys, tomllib
need = {
    "board": {"name": str, "description": str, "core": str, "cores": int, "ram_mb": int, "os": str},
    "build": {"target": str, "target_cpu": str, "target_features": str, "kernel": str, "threads": int},
    "serial": {"device": str, "kernel_device": str, "baud": int, "udev_rules": list},
    "radio": {"module": str, "link": str, "mtu": int},
    "memory": {"ram_budget_mb": int, "max_ctx": int},
    "model": {"default": str, "file": str, "sha256": str, "fits": list},
}
link_re = re.compile(r"^(serial-\d+|lora-sf([7-9]|1[0-2])(-bw(125|250|500))?(-cr4/[5-8])?(-pre\d+)?(-(eu868|us915|none))?)$")
bad = 0
for path in sys.argv[1:]:
    p = tomllib.load(open(path, "rb"))
    errs = []
    for sec, keys in need.items():
        for k, t in keys.items():
            v = p.get(sec, {}).get(k)
            if not isinstance(v, t) or isinstance(v, bool):
                errs.append(f"[{sec}] {k} missing or not {t.__name__}")
    if not errs:
        name = path.rsplit("/", 1)[-1][:-5]
        if p["board"]["name"] != name: errs.append("name != file name")
        if p["build"]["target"] != "aarch64-unknown-linux-gnu": errs.append("target")
        if p["build"]["kernel"] not in ("neon", "scalar"): errs.append("kernel")
        if "+neon" not in p["build"]["target_features"]: errs.append("NEON not listed")
        if "dotprod" in p["build"]["target_features"] and p["board"]["core"] in ("cortex-a53", "cortex-a72", "generic"):
            errs.append("dotprod on an ARMv8.0 core")
        if p["serial"]["baud"] not in (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800):
            errs.append("non-standard baud")
        if not link_re.match(p["radio"]["link"]): errs.append(f"link {p['radio']['link']!r}")
        if not all('SYMLINK+="tenbit-radio"' in r and 'GROUP="dialout"' in r for r in p["serial"]["udev_rules"]):
            errs.append("udev rule without tenbit-radio symlink / dialout group")
        if p["memory"]["ram_budget_mb"] > p["board"]["ram_mb"]: errs.append("budget above RAM")
        if not re.fullmatch(r"[0-9a-f]{64}", p["model"]["sha256"]): errs.append("sha256")
        if p["model"]["default"] not in p["model"]["fits"]: errs.append("default model not in fits")
        # The KV cache at max_ctx (46 KiB/position for the 135M model) + weights must fit.
        if p["model"]["file"].startswith("SmolLM2-135M"):
            need_mb = 94 + p["memory"]["max_ctx"] * 46 / 1024 + 16
            if need_mb > p["memory"]["ram_budget_mb"]: errs.append(f"max_ctx needs {need_mb:.0f} MB")
    print(("  ok   " if not errs else "  FAIL ") + path.rsplit("/", 1)[-1] + ("" if not errs else ": " + "; ".join(errs)))
    bad += bool(errs)
names = {tomllib.load(open(x, "rb"))["board"]["name"] for x in sys.argv[1:]}
for must in ("pi-zero-2w", "pi4", "pi5", "generic-aarch64"):
    if must not in names:
        print(f"  FAIL missing profile {must}"); bad += 1
sys.exit(1 if bad else 0)
PY

echo "== refusals"
check "unknown board is refused" bash -c '! boards/deploy.sh no-such-board --out "$1" --no-model' _ "$work/x"
check "--no-model with --model is refused" bash -c '! boards/deploy.sh pi4 --no-model --model "$1" --out "$2"' _ "$model" "$work/x"
mkdir -p "$work/fake"
printf 'GGUF not really a model' > "$work/fake/SmolLM2-135M-Instruct.Q4_1.gguf"
echo "== build tenbit-edge for $target once"
"$here/cross.sh" cargo build --release --quiet --target "$target" -p tenbit-edge --bin tenbit-edge
bin=$CARGO_TARGET_DIR/$target/release/tenbit-edge
check "a model with the wrong sha256 is refused" bash -c '! boards/deploy.sh pi4 --bin "$1" --model "$2" --out "$3"' _ "$bin" "$work/fake/SmolLM2-135M-Instruct.Q4_1.gguf" "$work/x"

inspect() { # board with_model
  local b=$1 with_model=$2 deb=$work/dist/tenbit-edge-$1.deb tgz=$work/dist/tenbit-edge-$1.tar.gz
  local profile=$here/$b.toml x=$work/x-$b
  echo "== $b"
  check "$b: .deb and .tar.gz exist" test -s "$deb" -a -s "$tgz"
  local info contents
  info=$(dpkg-deb --info "$deb")
  contents=$(dpkg-deb --contents "$deb")
  check "$b: Package tenbit-edge, arm64" grep -qzP 'Package: tenbit-edge\n.*\n Architecture: arm64' <<<"$info"
  check "$b: Depends on libc6" grep -q 'Depends: libc6 (>= 2\.[0-9]*)' <<<"$info"
  check "$b: maintainer scripts present" grep -q 'postinst' <<<"$info"
  for f in ./usr/bin/tenbit-edge ./lib/systemd/system/tenbit-edge.service \
           ./lib/systemd/system/tenbit-edge.service.d/10-board.conf ./etc/default/tenbit-edge \
           ./lib/udev/rules.d/99-tenbit-radio.rules ./usr/share/doc/tenbit-edge/board.toml; do
    check "$b: contains $f" grep -q " $f\$" <<<"$contents"
  done
  if [ "$with_model" = 1 ]; then
    check "$b: bundles the model" grep -q ' ./usr/share/tenbit/models/SmolLM2-135M-Instruct.Q4_1.gguf$' <<<"$contents"
  else
    check "$b: --no-model leaves it out" bash -c '! grep -q "\.gguf$" <<<"$1"' _ "$contents"
  fi
  check "$b: files owned by root" bash -c '! grep -v " root/root " <<<"$1" | grep -q .' _ "$contents"
  mkdir -p "$x/deb" "$x/tar"
  dpkg-deb -x "$deb" "$x/deb" && dpkg-deb -e "$deb" "$x/deb/DEBIAN"
  tar -xzf "$tgz" -C "$x/tar"
  check "$b: binary is an aarch64 ELF" bash -c 'readelf -h "$1" | grep -q "Machine:.*AArch64"' _ "$x/deb/usr/bin/tenbit-edge"
  check "$b: binary is stripped" bash -c '! readelf -S "$1" | grep -q "\.debug_info"' _ "$x/deb/usr/bin/tenbit-edge"
  check "$b: unit runs tenbit-edge listen with port/baud/link" grep -q \
    '^ExecStart=/usr/bin/tenbit-edge listen --port ${TENBIT_PORT} --baud ${TENBIT_BAUD} --link ${TENBIT_LINK}' \
    "$x/deb/lib/systemd/system/tenbit-edge.service"
  local port baud link budget
  eval "$(python3 -c 'import sys,tomllib,shlex; p=tomllib.load(open(sys.argv[1],"rb")); print("port=%s baud=%s link=%s budget=%s" % tuple(shlex.quote(str(v)) for v in (p["serial"]["device"], p["serial"]["baud"], p["radio"]["link"], p["memory"]["ram_budget_mb"])))' "$profile")"
  check "$b: /etc/default has the profile's port" grep -qx "TENBIT_PORT=$port" "$x/deb/etc/default/tenbit-edge"
  check "$b: /etc/default has the profile's baud" grep -qx "TENBIT_BAUD=$baud" "$x/deb/etc/default/tenbit-edge"
  check "$b: /etc/default has the profile's link" grep -qxF "TENBIT_LINK=$link" "$x/deb/etc/default/tenbit-edge"
  check "$b: /etc/default passes --mtu, --threads and --out-dir" grep -qE '^TENBIT_ARGS="--mtu [0-9]+ --threads [0-9]+ --out-dir /var/lib/tenbit/messages"$' "$x/deb/etc/default/tenbit-edge"
  check "$b: no unreplaced @PLACEHOLDER@" bash -c '! grep -rl "@[A-Z_]*@" "$1/etc" "$1/lib" "$1/DEBIAN"' _ "$x/deb"
  check "$b: MemoryHigh is the RAM budget" grep -qx "MemoryHigh=${budget}M" "$x/deb/lib/systemd/system/tenbit-edge.service.d/10-board.conf"
  check "$b: udev rule makes /dev/tenbit-radio and wants the service" bash -c \
    'grep -v "^#" "$1" | grep "SYMLINK+=\"tenbit-radio\"" | grep -q "SYSTEMD_WANTS}+=\"tenbit-edge.service\""' _ "$x/deb/lib/udev/rules.d/99-tenbit-radio.rules"
  check "$b: conffiles lists /etc/default/tenbit-edge" grep -qx /etc/default/tenbit-edge "$x/deb/DEBIAN/conffiles"
  for s in postinst prerm postrm; do check "$b: $s is valid sh" sh -n "$x/deb/DEBIAN/$s"; done
  check "$b: postinst adds the service user to dialout" grep -q 'usermod -a -G dialout tenbit' "$x/deb/DEBIAN/postinst"
  if command -v systemd-analyze >/dev/null; then
    # verify wants the ExecStart binary to exist: check a copy pointing at /bin/true.
    sed 's|^ExecStart=/usr/bin/tenbit-edge|ExecStart=/bin/true|' "$x/deb/lib/systemd/system/tenbit-edge.service" > "$x/tenbit-edge.service"
    check "$b: systemd-analyze verify accepts the unit" bash -c \
      'out=$(systemd-analyze verify "$1" 2>&1) && ! grep -qiE "unknown|invalid|failed to parse|bad" <<<"$out"' _ "$x/tenbit-edge.service"
  fi
  check "$b: tarball has install.sh and the postinst" test -x "$x/tar/tenbit-edge-$b/install.sh" -a -x "$x/tar/tenbit-edge-$b/scripts/postinst"
  check "$b: tarball tree == .deb tree" diff -r "$x/deb/usr" "$x/tar/tenbit-edge-$b/root/usr"
  check "$b: install.sh is valid sh" sh -n "$x/tar/tenbit-edge-$b/install.sh"
  check "$b: SHA256SUMS matches" bash -c 'cd "$1" && sha256sum -c --quiet SHA256SUMS' _ "$work/dist"
}

for b in pi-zero-2w pi4 pi5 generic-aarch64; do
  if [ "$b" = pi-zero-2w ]; then margs=(--model "$model"); wm=1; else margs=(--no-model); wm=0; fi
  if boards/deploy.sh "$b" --bin "$bin" "${margs[@]}" --out "$work/dist" >"$work/deploy-$b.log" 2>&1; then
    inspect "$b" "$wm"
  else
    bad "$b: deploy.sh failed:"; tail -n 20 "$work/deploy-$b.log"
  fi
  rm -rf "$work/x-$b"
done

if [ -n "$full" ]; then
  echo "== full per-board build: deploy.sh pi-zero-2w (target-cpu=cortex-a53)"
  t0=$SECONDS
  if boards/deploy.sh pi-zero-2w --no-model --out "$work/full" >"$work/full.log" 2>&1; then
    ok "deploy.sh pi-zero-2w built and packaged in $((SECONDS - t0)) s"
    tail -n 3 "$work/full.log"
  else
    bad "deploy.sh pi-zero-2w (full build)"; tail -n 20 "$work/full.log"
  fi
fi

echo
if [ "$fails" -gt 0 ]; then echo "test-deploy: $fails check(s) FAILED"; exit 1; fi
echo "test-deploy: all checks passed"
