#!/bin/sh
# boards/image/stage2.sh: the second stage of boards/image.sh, run INSIDE the arm64 guest
# (qemu-system-aarch64, TCG) as the only process after stage2-init.c chrooted into the new
# root filesystem. The host extracted every .deb (mmdebstrap --variant=extract) but could run
# none of their maintainer scripts (no binfmt_misc here); this script installs them with the
# image's own dpkg, installs tenbit-edge, configures the board and powers the guest off.
# It prints TENBIT-STAGE2-OK as its last line on success (image.sh waits for it).
set -eu
export PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
  DEBCONF_NONINTERACTIVE_SEEN=true
S=/tenbit-stage2
. $S/board.env
export SOURCE_DATE_EPOCH

fail() {
  echo "stage2: FAILED: $*"
  echo TENBIT-STAGE2-FAILED
  sync
  echo o > /proc/sysrq-trigger
  sleep 60
}
trap 'fail "a command exited with an error (status $?)"' EXIT

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
# The guest clock starts at SOURCE_DATE_EPOCH (qemu -rtc base=...), so every generated file
# gets a stable time stamp where the tools ask the clock.
echo "stage2: $(date -u) kernel $(uname -r), $(nproc) vCPUs, board $BOARD"

if [ "$FIRMWARE" = raspi ]; then
  modprobe vfat
  modprobe nls_cp437 || true
  modprobe nls_ascii || true
  mkdir -p /boot/firmware
  mount -t vfat /dev/vdb /boot/firmware
fi

cd /var/cache/apt/archives
# 1. Essential:yes packages first, in one dpkg call (what debootstrap's and mmdebstrap's own
#    second stages do): their scripts may rely only on each other.
echo "stage2: installing $(wc -l < $S/essential.list) essential packages"
# shellcheck disable=SC2046
dpkg --install --force-depends $(cat $S/essential.list)
# 2. Everything else (kernel, systemd, udev, firmware hooks ...), then settle any leftovers.
echo "stage2: installing $(wc -l < $S/rest.list) more packages"
# shellcheck disable=SC2046
dpkg --install --force-depends $(cat $S/rest.list)
dpkg --configure -a
dpkg --audit
echo "stage2: packages installed"

# 3. Base configuration of the image.
echo "$HOSTNAME" > /etc/hostname
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' "$HOSTNAME" > /etc/hosts
cat "$S/fstab" > /etc/fstab
# No password on any account: log in on the console needs one set by the user (see
# docs/boards.md); root is locked.
passwd -l root >/dev/null
# Board console (getty on the serial/USB gadget console named in the profile).
for u in $GETTYS; do systemctl enable "$u"; done
# journald: keep the journal in RAM only (SD-card wear; the decoder logs every message).
mkdir -p /etc/systemd/journald.conf.d
printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=16M\n' > /etc/systemd/journald.conf.d/10-tenbit.conf

# 4. The decoder. Its postinst creates the tenbit user and links the model; the unit is
#    enabled here (the postinst only does it when systemd is running).
dpkg --install "$S/tenbit-edge.deb"
systemctl enable tenbit-edge.service
if [ -s "$S/99-tenbit-radio.rules" ]; then
  # The radio's UART under this image's (Debian, mainline device tree) kernel; see the
  # profile's [image] radio_kernel_device.
  install -m 0644 "$S/99-tenbit-radio.rules" /etc/udev/rules.d/99-tenbit-radio.rules
fi

# 5. Boot files for the board.
if [ "$FIRMWARE" = raspi ]; then
  {
    echo "ROOTPART=LABEL=$ROOT_LABEL"
    echo "CONSOLES=\"$CONSOLES\""
  } >> /etc/default/raspi-firmware
  cat "$S/config.txt" > /etc/default/raspi-firmware-custom
  echo "$CMDLINE_EXTRA" > /etc/default/raspi-extra-cmdline
  # Rewrites config.txt and cmdline.txt and copies kernel, initrd and device trees.
  DEB_MAINT_PARAMS=configure /etc/kernel/postinst.d/z50-raspi-firmware
  echo "stage2: /boot/firmware:"; ls -l /boot/firmware | sed 's/^/  /'
  echo "stage2: config.txt:"; sed 's/^/  /' /boot/firmware/config.txt
  echo "stage2: cmdline.txt:"; sed 's/^/  /' /boot/firmware/cmdline.txt
fi
if [ "$FIRMWARE" = extlinux ]; then
  # U-Boot distro boot reads /boot/extlinux/extlinux.conf; u-boot-menu's kernel hook keeps
  # it current on kernel upgrades.
  printf 'U_BOOT_ROOT="root=LABEL=%s"\nU_BOOT_PARAMETERS="rw rootwait %s"\n' "$ROOT_LABEL" "$CMDLINE_EXTRA" >> /etc/default/u-boot
  u-boot-update
  echo "stage2: extlinux.conf:"; sed 's/^/  /' /boot/extlinux/extlinux.conf
fi
ls /boot/initrd.img-* >/dev/null

# 6. No build tools in the image.
for t in gcc cc c++ g++ make ld as cargo rustc cpp; do
  if command -v "$t" >/dev/null 2>&1; then echo "stage2: build tool $t found in the image"; exit 1; fi
done

# 7. Clean up: no caches, logs or per-machine identity in the image.
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/lib/dpkg/*-old
rm -f /var/log/dpkg.log /var/log/alternatives.log /var/log/apt/* /etc/ssh/ssh_host_* 2>/dev/null || true
rm -f /var/lib/systemd/random-seed /var/lib/dbus/machine-id
# Empty machine-id: systemd makes one at first boot (and treats that boot as first boot).
: > /etc/machine-id
dpkg-query -W -f '${Package} ${Version} ${Architecture}\n' > /var/lib/tenbit-image.manifest
echo "stage2: $(wc -l < /var/lib/tenbit-image.manifest) packages, $(du -sxm / | cut -f1) MiB used"
rm -rf "$S"

trap - EXIT
cd /
[ "$FIRMWARE" != raspi ] || umount /boot/firmware
umount /tmp /run /dev/pts || true
sync
mount -o remount,ro / || true
sync
echo TENBIT-STAGE2-OK
echo o > /proc/sysrq-trigger
sleep 60
