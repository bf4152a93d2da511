#!/usr/bin/env bash
# boards/test-relay.sh — the microcontroller relay, end to end in an emulator. Called by CI
# through tests/run-all.sh; run it by hand the same way.
#
#   host `tenbit send --link serial-115200 --port A` --COBS--> pty A
#     -> relay firmware (relay/, thumbv7em-none-eabihf) in qemu-system-arm -M mps2-an386,
#        UART0 <- A, checks each packet (framing, header, CRC, LoRa MTU), re-frames it as KISS,
#        UART1 -> B (ACKs come back the other way, so ARQ runs end to end)
#   -> pty B --KISS--> board `tenbit-edge listen --link kiss+lora-sf9 --port B`
#
#   1. build the firmware (boards' cross toolchain: build-std core from Debian's rust-src);
#      print its flash/RAM use (`size`) against the 256 KB / 64 KB budget (memory.x enforces it)
#   2. start two socat pty pairs and QEMU with UART0/UART1 on them; the relay logs with defmt
#      over semihosting (QEMU's stdout), decoded here with defmt-print (pinned, cargo install'd
#      into ~/.cache/tenbit/tools)
#   3. bad input: a malformed packet, a packet with a wrong CRC and an oversized frame go into
#      A; the relay must drop and count each (defmt log: dropped 3: crc 1 malformed 1
#      oversized 1) and keep running; a KISS command frame and a bad-CRC KISS data frame go into
#      B (the LoRa side): dropped 2: crc 1 malformed 1
#   4. a held-out response (one packet, ARQ) and a sealed multi-shard message (--mtu 64,
#      --key-file on both ends; the relay has no key) are decoded by tenbit-edge byte for byte
#
# Every wait is bounded (TENBIT_RELAY_TIMEOUT seconds per step, default 180); on failure the
# relay's decoded log, QEMU's stderr and both CLIs' stderr are printed. Processes are stopped
# by pid. Environment: TENBIT_BIN_DIR (default <repo>/target/release, built if missing),
# TENBIT_MODEL, TENBIT_RELAY_KEEP=1 keeps the work directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cd "$repo"
step_timeout=${TENBIT_RELAY_TIMEOUT:-180}
bins=${TENBIT_BIN_DIR:-$repo/target/release}
tools=${TENBIT_TOOLS_DIR:-$HOME/.cache/tenbit/tools}
defmt_print_version=1.2.0
say() { printf '[test-relay] %s\n' "$*"; }

# --- 0. host packages (CI starts from a fresh machine) --------------------------------------
need=()
command -v qemu-system-arm >/dev/null || need+=(qemu-system-arm)
command -v socat >/dev/null || need+=(socat)
command -v arm-none-eabi-size >/dev/null || need+=(binutils-arm-none-eabi)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! "$tools/bin/defmt-print" -V 2>/dev/null | grep -q "$defmt_print_version"; then
  say "installing defmt-print $defmt_print_version into $tools"
  # --debug: an unoptimised build compiles in about half the time, and it only decodes a few
  # dozen log frames here.
  cargo install --quiet --locked --debug --root "$tools" defmt-print --version "=$defmt_print_version"
fi

# --- 1. firmware ------------------------------------------------------------------------------
say "building relay firmware (thumbv7em-none-eabihf)"
fw_target=${CARGO_TARGET_DIR:-$repo/target}/relay
# The firmware keeps its own profile (size-optimised, LTO): tests/run-all.sh's profile overrides
# for the host crates must not reach it, or the flash figures would change.
(cd relay && env -u CARGO_PROFILE_RELEASE_LTO -u CARGO_PROFILE_RELEASE_DEBUG \
   CARGO_TARGET_DIR=$fw_target "$here/cross.sh" \
   cargo build --release --locked --target thumbv7em-none-eabihf)
elf=$fw_target/thumbv7em-none-eabihf/release/tenbit-relay
read -r text data bss _ < <(arm-none-eabi-size "$elf" | tail -1)
say "size: flash $((text + data)) B of 262144 (text $text, data $data); static RAM $((data + bss)) B of 65536 (data $data, bss $bss; stack grows down from the top of the 64 KB)"

if [ ! -x "$bins/tenbit" ] || [ ! -x "$bins/tenbit-edge" ]; then
  say "building release binaries"
  cargo build --release --bins
fi
model_env=()
[ -n "${TENBIT_MODEL:-}" ] && model_env=(TENBIT_MODEL="$TENBIT_MODEL")

# --- 2. ptys + QEMU -----------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/tenbit-relay.XXXXXX")
pids=()
failed=1
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$failed" = 1 ]; then
    echo "---- relay log (defmt, decoded; last 40 lines) ----"
    "$tools/bin/defmt-print" -e "$elf" <"$work/relay.defmt" 2>&1 | tail -40 || true
    for f in qemu.err listen1.err send1.err listen2.err send2.err; do
      [ -s "$work/$f" ] && { echo "---- $f (tail) ----"; tail -20 "$work/$f"; }
    done
    echo "[test-relay] FAILED (work dir kept: $work)"
  elif [ "${TENBIT_RELAY_KEEP:-0}" = 1 ]; then
    say "work dir kept: $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

relay_log() { "$tools/bin/defmt-print" -e "$elf" <"$work/relay.defmt" 2>/dev/null; }
# wait_for WHAT CMD...: poll until CMD succeeds, at most $step_timeout s.
wait_for() {
  local what=$1; shift
  local end=$((SECONDS + step_timeout))
  until "$@"; do
    if [ $SECONDS -ge $end ]; then echo "[test-relay] timed out after ${step_timeout}s waiting for $what" >&2; return 1; fi
    sleep 0.2
  done
}

for side in A B; do
  socat "pty,raw,echo=0,link=$work/host$side" "pty,raw,echo=0,link=$work/qemu$side" 2>"$work/socat$side.err" &
  pids+=($!)
done
wait_for "socat ptys" test -e "$work/hostA" -a -e "$work/qemuA" -a -e "$work/hostB" -a -e "$work/qemuB"
# Hold the host ends open for the whole test (as a plugged-in USB adapter stays open): the
# processes under test come and go, and a pty whose last opener closes can drop bytes in flight.
exec 3<>"$work/hostA" 4<>"$work/hostB"

: >"$work/relay.defmt"
qemu-system-arm -M mps2-an386 -display none -monitor none -nodefaults -nic none \
  -chardev "serial,id=ua,path=$work/qemuA" -chardev "serial,id=ub,path=$work/qemuB" \
  -serial chardev:ua -serial chardev:ub \
  -semihosting-config enable=on,target=native \
  -kernel "$elf" >"$work/relay.defmt" 2>"$work/qemu.err" &
qemu=$!
pids+=($qemu)
relay_up() { kill -0 "$qemu" 2>/dev/null || { echo "[test-relay] QEMU exited" >&2; exit 1; }; relay_log | grep -q 'tenbit-relay up'; }
wait_for "the relay's start line" relay_up
say "relay up: $(relay_log | grep 'tenbit-relay up')"

# --- 3. bad input -------------------------------------------------------------------------------
python3 - >"$work/hostA" <<'EOF'
import sys, zlib
def cobs(raw):
    out, block = bytearray(), bytearray()
    for b in raw:
        if b == 0:
            out += bytes([len(block) + 1]) + block; block = bytearray()
        else:
            block.append(b)
            if len(block) == 254:
                out += bytes([255]) + block; block = bytearray()
    out += bytes([len(block) + 1]) + block
    return bytes(out) + b"\0"
# 1. malformed: header version bits 01 (not 10)
bad_header = bytes([0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47])
# 2. wrong CRC: a SINGLE packet (header 0xb0, id 7) whose CRC-32 does not match its payload
single = bytes([0xB0, 0x07]) + b"relay me"
crc = zlib.crc32(single) ^ 0x5A5A5A5A
wrong_crc = single + crc.to_bytes(4, "little")
# 3. oversized: 400 bytes without a delimiter, then one
sys.stdout.buffer.write(cobs(bad_header) + cobs(wrong_crc) + bytes([0x55]) * 400 + b"\0")
EOF
dropped3() { relay_log | grep -q 'A->B dropped: .*(dropped 3:'; }
wait_for "the relay to drop the 3 bad packets" dropped3
counts=$(relay_log | grep 'A->B dropped' | tail -1 | sed 's/.*(dropped/dropped/; s/)$//')
say "bad input: $counts"
[ "$counts" = "dropped 3: framing 0 crc 1 malformed 1 oversized 1 other 0" ] || { echo "[test-relay] unexpected drop counts: $counts" >&2; exit 1; }
# ... and on the LoRa side (what a TNC hands the relay): a KISS command frame (not port-0
# data) and a KISS data frame whose packet fails its CRC.
python3 - >"$work/hostB" <<'EOF'
import sys, zlib
def kiss(cmd, data):
    esc = data.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc")
    return b"\xc0" + bytes([cmd]) + esc + b"\xc0"
single = bytes([0xB0, 0x09]) + b"from the radio"
wrong_crc = single + (zlib.crc32(single) ^ 0x1).to_bytes(4, "little")
sys.stdout.buffer.write(kiss(0x06, b"\x01\x02") + kiss(0x00, wrong_crc))
EOF
dropped2b() { relay_log | grep -q 'B->A dropped: .*(dropped 2:'; }
wait_for "the relay to drop the 2 bad frames from the LoRa side" dropped2b
counts=$(relay_log | grep 'B->A dropped' | tail -1 | sed 's/.*(dropped/dropped/; s/)$//')
say "bad input from the LoRa side: $counts"
[ "$counts" = "dropped 2: framing 0 crc 1 malformed 1 oversized 0 other 0" ] || { echo "[test-relay] unexpected drop counts: $counts" >&2; exit 1; }

# --- 4. messages through the relay ---------------------------------------------------------------
data=tests/data/llm
# round NAME TEXT PROMPT EXTRA_ARGS...: listener on B, sender on A, compare bytes.
round() {
  local n=$1 text=$2 prompt_file=$3; shift 3
  local prompt; prompt=$(cat "$prompt_file")
  env "${model_env[@]}" timeout "$step_timeout" "$bins/tenbit-edge" listen --port "$work/hostB" \
    --link kiss+lora-sf9 --count 1 --prompt "$prompt" "$@" >"$work/listen$n.out" 2>"$work/listen$n.err" &
  local lpid=$!
  pids+=($lpid)
  env "${model_env[@]}" timeout "$step_timeout" "$bins/tenbit" send --port "$work/hostA" \
    --link serial-115200 --prompt "$prompt" "$@" "$text" >"$work/send$n.out" 2>"$work/send$n.err" \
    || { echo "[test-relay] tenbit send (round $n) failed" >&2; exit 1; }
  wait "$lpid" || { echo "[test-relay] tenbit-edge listen (round $n) failed" >&2; exit 1; }
  { cat "$text"; printf '\n\n'; } >"$work/expect$n"
  cmp "$work/expect$n" "$work/listen$n.out" || { echo "[test-relay] round $n: decoded text differs" >&2; exit 1; }
  say "round $n: $(wc -c <"$text") B of text decoded byte for byte through the relay ($(grep -o 'estimated airtime[^,]*' "$work/send$n.err" | head -1))"
}
round 1 "$data/02-bowline-knot.response.txt" "$data/02-bowline-knot.prompt.txt"
fwd1=$(relay_log | grep -c 'A->B data' || true)
acks1=$(relay_log | grep -c 'B->A ack' || true)
say "round 1: relay forwarded $fwd1 data packet(s) A->B, $acks1 ACK(s) B->A"
[ "$fwd1" -ge 1 ] && [ "$acks1" -ge 1 ] || { echo "[test-relay] the relay did not forward data and ACKs" >&2; exit 1; }

od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$work/key"
round 2 "$data/04-rust-read-file.response.txt" "$data/04-rust-read-file.prompt.txt" \
  --mtu 64 --key-file "$work/key" --epoch-file "$work/epoch"
sealed=$(relay_log | grep -c 'A->B data .*sealed true' || true)
say "round 2: relay forwarded $sealed sealed shard(s) without the key"
[ "$sealed" -ge 2 ] || { echo "[test-relay] expected a sealed multi-shard message through the relay" >&2; exit 1; }
kill -0 "$qemu" 2>/dev/null || { echo "[test-relay] QEMU (the relay) stopped" >&2; exit 1; }
if relay_log | grep -q 'panic'; then echo "[test-relay] the relay panicked" >&2; exit 1; fi
stack=$(relay_log | grep -o 'stack high water [0-9]* B' | tail -1)
say "relay $stack (of 65536 B RAM)"
say "relay log tail:"
relay_log | tail -3 | sed 's/^/    /'
failed=0
say "PASS"
