#!/usr/bin/env bash
# boards/image.sh — a bootable Debian bookworm arm64 SD-card image with tenbit-edge installed.
#
# Usage:  boards/image.sh BOARD -o FILE.img [--model PATH] [--deb PATH] [--root-size MIB]
#                          [--work DIR] [--allow-unbootable] [--no-cache]
#   BOARD              a profile in boards/: pi-zero-2w, pi4, pi5, generic-aarch64
#   -o FILE.img        the image to write (also FILE.img.sha256 and FILE.img.manifest)
#   --model PATH       bundle this GGUF (it must still match the profile's pinned sha256)
#   --deb PATH         install this tenbit-edge .deb instead of building one with deploy.sh
#   --root-size MIB    size of the root file system while it is built (default 2048; the
#                      finished one is shrunk to its contents + 25%)
#   --work DIR         scratch space (default ~/.cache/tenbit/image/work; needs ~3 GiB)
#   --allow-unbootable build a profile whose [image] says its kernel cannot boot the board
#   --no-cache         redo the second stage even if an identical one is cached
#   --reuse-stage2     finish from a second stage that completed in --work after image.sh
#                      itself stopped (e.g. its timeout was killed); nothing is re-run
#
# How (details: docs/boards.md, "SD-card image"):
#  1. the tenbit-edge .deb from boards/deploy.sh (aarch64 build via boards/cross.sh, model
#     fetched by the catalogue's pinned step); the model inside it is checked against the
#     profile's sha256 and refused if it differs;
#  2. stage 1 on the host: mmdebstrap --variant=extract downloads the arm64 packages from
#     deb.debian.org (bookworm + security) and unpacks them into a directory; no maintainer
#     script runs and nothing is mounted (this machine has no binfmt_misc, and bind-mounting
#     the host's /dev into a chroot has broken it before); cached in ~/.cache/tenbit/image;
#  3. mkfs.ext4 -d turns that tree into the root file system (and mkfs.vfat makes the Pi's
#     firmware partition), all in plain files;
#  4. stage 2 INSIDE an emulated arm64 guest: qemu-system-aarch64 -M virt (TCG) boots Debian's
#     kernel with a tiny static init (boards/image/stage2-init.c), which runs
#     boards/image/stage2.sh on the new root: dpkg installs every package (kernel postinst
#     makes the initrd, raspi-firmware fills the FAT partition), then the tenbit-edge .deb,
#     enables the unit, sets hostname, fstab, consoles, the radio's udev name, cleans up and
#     powers off; the result is cached by its inputs;
#  5. the partitions are shrunk and written into one MBR disk image with fixed ids.
# Needs (apt): mmdebstrap qemu-system-arm e2fsprogs dosfstools fdisk kmod gcc-aarch64-linux-gnu
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cache=${TENBIT_IMAGE_CACHE:-$HOME/.cache/tenbit/image}

die() { echo "boards/image.sh: error: $*" >&2; exit 1; }
log() { printf '==> %s\n' "$*" >&2; }
boards_list() { (cd "$here" && ls ./*.toml | sed 's|^\./||; s|\.toml$||' | tr '\n' ' '); }

board= out= model_arg= deb_arg= root_mb=2048 work= allow_unbootable= no_cache= reuse_stage2=
while [ $# -gt 0 ]; do
  case "$1" in
    -o|--out) out=${2:?-o needs a file name}; shift 2 ;;
    --model) model_arg=${2:?--model needs a path}; shift 2 ;;
    --deb) deb_arg=${2:?--deb needs a path}; shift 2 ;;
    --root-size) root_mb=${2:?--root-size needs MiB}; shift 2 ;;
    --work) work=${2:?--work needs a directory}; shift 2 ;;
    --allow-unbootable) allow_unbootable=1; shift ;;
    --no-cache) no_cache=1; shift ;;
    --reuse-stage2) reuse_stage2=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -z "$board" ] || die "one board at a time (got $board and $1)"; board=$1; shift ;;
  esac
done
[ -n "$board" ] || die "usage: boards/image.sh BOARD -o FILE.img; boards: $(boards_list)"
profile=$here/$board.toml
[ -f "$profile" ] || die "unknown board '$board': no profile boards/$board.toml; boards: $(boards_list)"
[ -n "$out" ] || die "-o FILE.img is required"
case "$root_mb" in ''|*[!0-9]*) die "--root-size must be a number of MiB, got '$root_mb'" ;; esac
[ -n "$deb_arg" ] && [ -n "$model_arg" ] && die "--deb and --model exclude each other (the .deb carries its model)"

need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found: apt-get install $2"; }
need python3 python3
need dpkg-deb dpkg

# ---- the profile --------------------------------------------------------------------------
eval "$(python3 - "$profile" "$repo/Cargo.toml" <<'PY'
import shlex, sys, tomllib
p = tomllib.load(open(sys.argv[1], "rb"))
ws = tomllib.load(open(sys.argv[2], "rb"))
img = p.get("image")
if not isinstance(img, dict):
    sys.exit(f"profile {sys.argv[1]}: no [image] section (boards/image.sh needs one)")
def get(d, sec, key, typ):
    if key not in d:
        sys.exit(f"profile {sys.argv[1]}: missing [{sec}] {key}")
    v = d[key]
    if not isinstance(v, typ) or isinstance(v, bool):
        sys.exit(f"profile {sys.argv[1]}: [{sec}] {key} must be {typ.__name__}")
    return v
firmware = get(img, "image", "firmware", str)
if firmware not in ("raspi", "extlinux"):
    sys.exit(f"profile {sys.argv[1]}: [image] firmware must be raspi or extlinux, not {firmware!r}")
lists = {k: get(img, "image", k, list) for k in ("gettys", "config_txt")}
for k, v in lists.items():
    if not all(isinstance(x, str) for x in v):
        sys.exit(f"profile {sys.argv[1]}: [image] {k} must be a list of strings")
f = {
    "P_NAME": get(p["board"], "board", "name", str),
    "P_RAM_MB": str(get(p["board"], "board", "ram_mb", int)),
    "P_MODEL_FILE": get(p["model"], "model", "file", str),
    "P_MODEL_SHA256": get(p["model"], "model", "sha256", str).lower(),
    "P_UDEV": "\n".join(get(p["serial"], "serial", "udev_rules", list)),
    "P_VERSION": ws["workspace"]["package"]["version"],
    "I_FIRMWARE": firmware,
    "I_HOSTNAME": get(img, "image", "hostname", str),
    "I_RADIO_DEV": get(img, "image", "radio_kernel_device", str),
    "I_CONSOLES": get(img, "image", "consoles", str),
    "I_CMDLINE": get(img, "image", "cmdline_extra", str),
    "I_GETTYS": " ".join(lists["gettys"]),
    "I_CONFIG_TXT": "\n".join(lists["config_txt"]),
    "I_UNBOOTABLE": img.get("unbootable", ""),
}
for k, v in f.items():
    print(f"{k}={shlex.quote(v)}")
PY
)" || die "bad profile $profile"
if [ -n "$I_UNBOOTABLE" ] && [ -z "$allow_unbootable" ]; then
  die "board $board: $I_UNBOOTABLE; the image would not boot (--allow-unbootable builds it anyway)"
fi

out_dir=$(dirname "$out")
mkdir -p "$out_dir" || die "cannot create $out_dir"
out=$(cd "$out_dir" && pwd)/$(basename "$out")
work=${work:-$cache/work}
mkdir -p "$work" "$cache/debs" || die "cannot create $work"
work=$(cd "$work" && pwd)
t_start=$(date +%s)

# Reproducibility: every time stamp the tools take (file systems, the guest clock, initrd)
# comes from SOURCE_DATE_EPOCH: by default the time of the checked-out commit.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 1700000000)}
export SOURCE_DATE_EPOCH
# Stable ids derived from the board name (same inputs -> same image).
ids=$(python3 -c 'import hashlib,sys,uuid; h=hashlib.sha256(sys.argv[1].encode()).hexdigest(); print(uuid.UUID(h[:32]), h[32:40], h[40:48])' "tenbit-image-$board")
read -r fs_uuid disk_id fat_serial <<<"$ids"
# Errors from writing into the scratch space are most often a full disk: say so.
space_hint() { df -h "$work" 2>/dev/null | tail -n 1 | awk '{print "(" $4 " free in " $6 ")"}'; }

# ---- 1. the tenbit-edge package -------------------------------------------------------------
if [ -n "$deb_arg" ]; then
  [ -f "$deb_arg" ] || die "--deb $deb_arg: no such file"
  deb=$deb_arg
else
  log "building the tenbit-edge package for $board (boards/deploy.sh)"
  deploy_args=("$board" --out "$work/deb")
  [ -z "$model_arg" ] || deploy_args+=(--model "$model_arg")
  "$here/deploy.sh" "${deploy_args[@]}" >/dev/null || die "boards/deploy.sh $board failed (see above)"
  deb=$work/deb/tenbit-edge-$board.deb
fi
[ "$(dpkg-deb -f "$deb" Architecture)" = arm64 ] || die "$deb is not an arm64 package"
log "checking the model inside $(basename "$deb") against the profile's pin"
got=$({ dpkg-deb --fsys-tarfile "$deb" | tar -xOf - "./usr/share/tenbit/models/$P_MODEL_FILE" 2>/dev/null; } | sha256sum | cut -d' ' -f1) || true
empty=$(sha256sum </dev/null | cut -d' ' -f1)
[ "$got" != "$empty" ] || die "$deb carries no /usr/share/tenbit/models/$P_MODEL_FILE (built with --no-model?); the image needs the model"
[ "$got" = "$P_MODEL_SHA256" ] || die "model sha256 mismatch: $P_MODEL_FILE in $deb has sha256 $got, the profile boards/$board.toml pins $P_MODEL_SHA256; refusing to build"
deb_sha=$(sha256sum "$deb" | cut -d' ' -f1)

# ---- 2. stage 1: packages extracted on the host (cached) ----------------------------------
need mmdebstrap mmdebstrap
need qemu-system-aarch64 qemu-system-arm
need mkfs.ext4 e2fsprogs
need resize2fs e2fsprogs
need debugfs e2fsprogs
need mkfs.vfat dosfstools
need sfdisk fdisk
need depmod kmod
need aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu
suite=bookworm
mirror=http://deb.debian.org/debian
security=http://deb.debian.org/debian-security
pkgs="systemd-sysv udev kmod linux-image-arm64 initramfs-tools apt e2fsprogs usr-is-merged"
case "$I_FIRMWARE" in
  raspi) pkgs="$pkgs raspi-firmware dosfstools" ;;
  extlinux) pkgs="$pkgs u-boot-menu" ;;
esac
ex_key=$(printf '%s\n' "$suite" "$mirror" "$pkgs" "$(mmdebstrap --version)" "v1" | sha256sum | cut -c1-16)
extract=$cache/rootfs-$ex_key
if [ ! -f "$extract/.tenbit-complete" ]; then
  log "stage 1: mmdebstrap --variant=extract ($suite arm64: $pkgs) -> $extract"
  rm -rf "$extract.tmp"
  # --skip=chroot/mount: never mount anything (host /dev, /proc, /sys stay untouched);
  # --skip=check/qemu: the arm64 binaries are not run on the host at all. The .debs are also
  # archived in the cache (extract-hook), but not fed back in: stage 2 installs every .deb in
  # the tree's archive, so stale ones from another package set must not be there.
  # shellcheck disable=SC2046
  mmdebstrap --mode=root --variant=extract --architectures=arm64 \
    --skip=check/qemu --skip=chroot/mount --skip=cleanup/apt/cache --skip=cleanup/apt/lists \
    --setup-hook=/usr/share/mmdebstrap/hooks/merged-usr/setup00.sh \
    --extract-hook='cp -n "$1"/var/cache/apt/archives/*.deb '"$cache"'/debs/' \
    --include='?essential' --include='?priority(required)' --include="${pkgs// /,}" \
    "$suite" "$extract.tmp" \
    "deb $mirror $suite main non-free-firmware" \
    "deb $mirror $suite-updates main non-free-firmware" \
    "deb $security $suite-security main non-free-firmware" \
    >"$work/stage1.log" 2>&1 || { tail -n 20 "$work/stage1.log" >&2; die "stage 1 (mmdebstrap) failed $(space_hint); log: $work/stage1.log"; }
  touch "$extract.tmp/.tenbit-complete"
  mv "$extract.tmp" "$extract"
fi
kver=$(cd "$extract/boot" && ls vmlinuz-* | sed 's/^vmlinuz-//' | sort -V | tail -n 1)
[ -n "$kver" ] || die "no kernel in $extract/boot"

# ---- 3. stage 2 in the guest (cached by all of its inputs) --------------------------------
key=$(cat "$profile" "$here/image/stage2.sh" "$here/image/stage2-init.c" "$0" | sha256sum | cut -c1-16)
key=$(printf '%s\n' "$key" "$ex_key" "$deb_sha" "$SOURCE_DATE_EPOCH" "$root_mb" | sha256sum | cut -c1-16)
built=$cache/built-$board-$key
if [ -n "$no_cache" ] || [ ! -f "$built/.tenbit-complete" ]; then
  if [ -n "$reuse_stage2" ] && [ -f "$work/root.img" ] && grep -q '^TENBIT-STAGE2-OK' "$work/stage2.log" 2>/dev/null; then
  log "stage 2: reusing the completed one in $work (--reuse-stage2)"
  t0=0 t1=0
  else
  rm -rf "$built" "$work/root" "$work/root.img" "$work/firm.img" "$work/initrd"
  log "staging the root file system ($(du -sm "$extract" | cut -f1) MiB) in $work"
  cp -a "$extract" "$work/root" || die "copying the root file system into $work failed: disk full? $(space_hint)"
  rm -f "$work/root/.tenbit-complete"
  root=$work/root
  s2=$root/tenbit-stage2
  mkdir -p "$s2"
  install -m 0644 "$here/image/stage2.sh" "$s2/stage2.sh"
  install -m 0644 "$deb" "$s2/tenbit-edge.deb"
  (cd "$root/var/cache/apt/archives" && for f in *.deb; do
     if [ "$(dpkg-deb -f "$f" Essential)" = yes ]; then echo "$f" >&3; else echo "$f"; fi
   done 3>"$s2/essential.list" >"$s2/rest.list")
  case "$I_FIRMWARE" in
    raspi) root_label=RASPIROOT
           printf 'LABEL=RASPIROOT\t/\text4\trw,errors=remount-ro\t0\t1\nLABEL=RASPIFIRM\t/boot/firmware\tvfat\trw,noatime\t0\t2\n' > "$s2/fstab" ;;
    extlinux) root_label=TENBITROOT
           printf 'LABEL=TENBITROOT\t/\text4\trw,errors=remount-ro\t0\t1\n' > "$s2/fstab" ;;
  esac
  printf '%s\n' "$I_CONFIG_TXT" > "$s2/config.txt"
  : > "$s2/99-tenbit-radio.rules"
  if [ -n "$I_RADIO_DEV" ]; then
    {
      echo "# /etc/udev/rules.d/99-tenbit-radio.rules: the radio UART under this image's Debian kernel"
      echo "# (boards/$board.toml [image] radio_kernel_device); replaces /lib/udev/rules.d/99-tenbit-radio.rules."
      echo "SUBSYSTEM==\"tty\", KERNEL==\"$I_RADIO_DEV\", SYMLINK+=\"tenbit-radio\", GROUP=\"dialout\", MODE=\"0660\", TAG+=\"systemd\", ENV{SYSTEMD_WANTS}+=\"tenbit-edge.service\""
    } > "$s2/99-tenbit-radio.rules"
  fi
  {
    printf 'BOARD=%q\nHOSTNAME=%q\nFIRMWARE=%q\nROOT_LABEL=%q\n' "$board" "$I_HOSTNAME" "$I_FIRMWARE" "$root_label"
    printf 'CONSOLES=%q\nCMDLINE_EXTRA=%q\nGETTYS=%q\nSOURCE_DATE_EPOCH=%q\n' "$I_CONSOLES" "$I_CMDLINE" "$I_GETTYS" "$SOURCE_DATE_EPOCH"
  } > "$s2/board.env"
  depmod -b "$root" "$kver"

  # The throw-away initramfs: static init + the modules to mount an ext4 virtio disk.
  aarch64-linux-gnu-gcc -static -Os -o "$work/stage2-init" "$here/image/stage2-init.c"
  python3 - "$root/lib/modules/$kver" "$work/stage2-init" "$work/initrd" <<'PY' || die "could not write the stage-2 initramfs"
import os, sys
moddir, init, out = sys.argv[1:]
deps = {}
for line in open(os.path.join(moddir, "modules.dep")):
    k, _, v = line.partition(":")
    deps[os.path.basename(k)[:-3]] = (k, v.split())
order, seen = [], set()
def add(name):
    path, ds = deps[name]
    for d in ds:
        add(os.path.basename(d)[:-3])
    if name not in seen:
        seen.add(name); order.append(path)
for m in ["virtio_pci", "virtio_blk", "crc32c_generic", "ext4"]:
    add(m)
files = [("init", open(init, "rb").read(), 0o100755),
         ("modules.order", "".join("/" + p + "\n" for p in order).encode(), 0o100644)]
dirs = set()
for p in order:
    parts = p.split("/")
    for i in range(1, len(parts)):
        dirs.add("/".join(parts[:i]))
    files.append((p, open(os.path.join(moddir, p), "rb").read(), 0o100644))
ino = [1]
def entry(name, data, mode):
    ino[0] += 1
    hdr = "070701" + "".join("%08X" % x for x in (ino[0], mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0))
    b = hdr.encode() + name.encode() + b"\0"
    b += b"\0" * (-len(b) % 4) + data
    return b + b"\0" * (-len(b) % 4)
blob = b"".join(entry(d, b"", 0o40755) for d in sorted(dirs))
blob += b"".join(entry(n, d, m) for n, d, m in files)
blob += entry("TRAILER!!!", b"", 0)
open(out, "wb").write(blob)
PY

  log "stage 2: root file system image (${root_mb} MiB ext4)"
  E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mkfs.ext4 -q -F -L "$root_label" -U "$fs_uuid" \
      -E "hash_seed=$fs_uuid,root_owner=0:0" -d "$root" "$work/root.img" "${root_mb}M" 2>"$work/mkfs.log" || {
    cat "$work/mkfs.log" >&2
    if grep -qiE "no space|could not allocate|not enough|file too large" "$work/mkfs.log" || [ "$(df -Pk "$work" | awk 'NR==2{print $4}')" -lt 4096 ]; then
      die "out of space: the root file system does not fit in --root-size ${root_mb} MiB, or $work is full $(space_hint)"
    fi
    die "mkfs.ext4 failed $(space_hint)"
  }
  rm -rf "$root"
  drives=(-drive "if=none,id=root,format=raw,file=$work/root.img" -device virtio-blk-pci,drive=root,addr=0x4)
  if [ "$I_FIRMWARE" = raspi ]; then
    rm -f "$work/firm.img"
    mkfs.vfat -F 32 -n RASPIFIRM -i "$fat_serial" --invariant -C "$work/firm.img" $((256 * 1024)) >/dev/null 2>"$work/mkfs.log" \
      || { cat "$work/mkfs.log" >&2; die "mkfs.vfat failed: disk full? $(space_hint)"; }
    drives+=(-drive "if=none,id=firm,format=raw,file=$work/firm.img" -device virtio-blk-pci,drive=firm,addr=0x5)
  fi
  s2_timeout=${TENBIT_STAGE2_TIMEOUT:-7200}
  log "stage 2: dpkg inside qemu-system-aarch64 (TCG, 2 vCPUs; up to ${s2_timeout} s; log $work/stage2.log)"
  t0=$(date +%s)
  rc=0
  timeout "$s2_timeout" qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 2048 -accel tcg,thread=multi \
    -rtc "base=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%S),clock=vm" \
    -kernel "$extract/boot/vmlinuz-$kver" -initrd "$work/initrd" \
    -append "console=ttyAMA0 panic=-1 loglevel=4" \
    "${drives[@]}" -nic none -display none -monitor none -serial "file:$work/stage2.log" -no-reboot \
    || rc=$?
  t1=$(date +%s)
  if ! grep -q '^TENBIT-STAGE2-OK' "$work/stage2.log"; then
    tail -n 30 "$work/stage2.log" >&2
    [ "$rc" != 124 ] || die "stage 2 did not finish within ${s2_timeout} s (TENBIT_STAGE2_TIMEOUT); log: $work/stage2.log"
    if grep -qiE "No space left|ENOSPC" "$work/stage2.log"; then
      die "stage 2 ran out of space in the ${root_mb} MiB root file system: pass a larger --root-size"
    fi
    die "stage 2 failed in the guest (qemu exit $rc); log: $work/stage2.log"
  fi
  log "stage 2 done in $((t1 - t0)) s"
  fi

  # Shrink the root file system to its contents + 25% (at least 256 MiB free).
  e2fsck -fy "$work/root.img" >/dev/null 2>&1 || true
  e2fsck -fn "$work/root.img" >/dev/null 2>&1 || die "the root file system is damaged after stage 2"
  E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH resize2fs -M "$work/root.img" >/dev/null 2>&1 || die "resize2fs -M failed"
  blocks=$(dumpe2fs -h "$work/root.img" 2>/dev/null | sed -n 's/^Block count: *//p')
  bsize=$(dumpe2fs -h "$work/root.img" 2>/dev/null | sed -n 's/^Block size: *//p')
  used_mb=$((blocks * bsize / 1048576))
  extra=$((used_mb / 4)); [ "$extra" -ge 256 ] || extra=256
  final_mb=$((used_mb + extra))
  E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH resize2fs "$work/root.img" "${final_mb}M" >/dev/null 2>&1 || die "resize2fs to ${final_mb} MiB failed $(space_hint)"
  truncate -s "${final_mb}M" "$work/root.img"
  mkdir -p "$built.tmp"
  mv "$work/root.img" "$built.tmp/root.img"
  [ "$I_FIRMWARE" != raspi ] || mv "$work/firm.img" "$built.tmp/firm.img"
  cp "$work/stage2.log" "$built.tmp/stage2.log"
  echo "$((t1 - t0))" > "$built.tmp/stage2.seconds"
  touch "$built.tmp/.tenbit-complete"
  rm -rf "$built"
  mv "$built.tmp" "$built"
else
  log "stage 2: reusing $built (same inputs; --no-cache redoes it)"
fi

# ---- 4. the disk image ----------------------------------------------------------------------
root_bytes=$(stat -c %s "$built/root.img")
rm -f "$out.tmp"
if [ "$I_FIRMWARE" = raspi ]; then
  # What the Pi's boot ROM wants: MBR, partition 1 FAT32 (LBA) with the firmware, 2 the root.
  fat_start=8192 fat_sectors=$((256 * 2048))
  root_start=$((fat_start + fat_sectors))
  table="label: dos
label-id: 0x$disk_id
unit: sectors

start=$fat_start, size=$fat_sectors, type=c
start=$root_start, size=$((root_bytes / 512)), type=83"
else
  # One bootable ext4 partition; the first 16 MiB stay free for the board's own U-Boot.
  root_start=32768
  table="label: dos
label-id: 0x$disk_id
unit: sectors

start=$root_start, size=$((root_bytes / 512)), type=83, bootable"
fi
total=$((root_start * 512 + root_bytes))
truncate -s "$total" "$out.tmp" || die "cannot create $out.tmp $(space_hint)"
echo "$table" | sfdisk --quiet --no-reread --no-tell-kernel "$out.tmp" >/dev/null || die "sfdisk failed on $out.tmp"
if [ "$I_FIRMWARE" = raspi ]; then
  dd if="$built/firm.img" of="$out.tmp" bs=1M seek=$((fat_start / 2048)) conv=notrunc,sparse status=none \
    || die "writing the firmware partition failed: disk full? $(space_hint)"
fi
dd if="$built/root.img" of="$out.tmp" bs=1M seek=$((root_start / 2048)) conv=notrunc,sparse status=none \
  || die "writing the root partition failed: disk full? $(space_hint)"
mv "$out.tmp" "$out"
debugfs -R "cat /var/lib/tenbit-image.manifest" "$built/root.img" > "$out.manifest" 2>/dev/null || true
(cd "$(dirname "$out")" && sha256sum "$(basename "$out")" > "$(basename "$out").sha256")
log "board $board: $out, $((total / 1048576)) MiB (root $((root_bytes / 1048576)) MiB), sha256 $(cut -d' ' -f1 "$out.sha256")"
log "stage 2 took $(cat "$built/stage2.seconds") s under TCG; total $(( $(date +%s) - t_start )) s"
echo "$out"
