#!/usr/bin/env python3
"""boards/image/vmtest.py: the driver behind boards/test-image.sh (read its header first).

Boots a scratch copy of a boards/image.sh image under qemu-system-aarch64 -M virt (TCG) with
Debian's kernel and initrd taken from the image, and proves from the host side that the
systemd-started tenbit-edge decodes frames sent by the host's `tenbit send` over a pty
wired to the guest's PL011 UART. A small command agent on a second virtio console (injected
into the scratch copy only, never into the image) runs the checks inside the guest.
Every step has a time limit; a guest that does not come up fails with its console tail.
"""

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

# The guest's epoch store, pre-seeded above any clock. The listener only opens sealed frames
# (its ACKs are not sealed), so it never takes an epoch: the store must come through restarts
# and reboots unchanged, like everything else under /var/lib/tenbit.
EPOCH0 = 4000000000


class Fail(Exception):
    """A check failed; the message says which and why."""


def log(msg):
    print(f"test-image: {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    kw.setdefault("check", True)
    return subprocess.run(cmd, **kw)


# ---- the image on the host side ----------------------------------------------------------

def partitions(img):
    table = json.loads(run(["sfdisk", "-J", img], capture_output=True, text=True).stdout)
    parts = table["partitiontable"]["partitions"]
    root = [p for p in parts if p["type"] == "83"]
    if not root:
        raise Fail(f"{img}: no Linux (type 83) root partition in its partition table")
    return root[-1]


def debugfs(fs, requests, write=False):
    """Runs debugfs requests (one per line) on an ext4 file; returns stdout."""
    args = ["debugfs"] + (["-w"] if write else []) + ["-f", "-", fs]
    r = run(args, input="\n".join(requests) + "\n", capture_output=True, text=True)
    return r.stdout + r.stderr


def fs_cat(fs, path):
    r = run(["debugfs", "-R", f"cat {path}", fs], capture_output=True)
    return r.stdout


AGENT = r"""#!/bin/sh
# tenbit test agent (boards/test-image.sh): runs the test host's commands from /dev/hvc1.
# Injected into the test's scratch copy of the image only.
stty -F /dev/hvc1 raw -echo 2>/dev/null || true
exec </dev/hvc1 >/dev/hvc1 2>&1
while IFS=' ' read -r id cmd; do
  sh -c "$cmd" >/run/tenbit-agent.out 2>&1 </dev/null
  rc=$?
  printf '@@R %s %s %s\n' "$id" "$rc" "$(base64 -w0 /run/tenbit-agent.out)"
done
"""

AGENT_UNIT = """[Unit]
Description=tenbit test agent on hvc1 (boards/test-image.sh scratch copies only)
After=dev-hvc1.device
Wants=dev-hvc1.device

[Service]
ExecStart=/usr/local/sbin/tenbit-test-agent
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
"""


def prepare(args, work):
    """Scratch copy of the image, kernel/initrd out of it, test configuration into it."""
    disk = os.path.join(work, "disk.img")
    log(f"copying {args.image} to a scratch disk")
    run(["cp", "--sparse=always", args.image, disk])
    p = partitions(disk)
    off, size = p["start"] * 512, p["size"] * 512
    rootfs = os.path.join(work, "root.part")
    run(["dd", f"if={disk}", f"of={rootfs}", "bs=1M", f"skip={off}", f"count={size}",
         "iflag=skip_bytes,count_bytes", "conv=sparse", "status=none"])
    boot = debugfs(rootfs, ["ls -p /boot"])
    kernels = sorted(set(re.findall(r"/(vmlinuz-[^/]+)/", boot)))
    initrds = sorted(set(re.findall(r"/(initrd\.img-[^/]+)/", boot)))
    if not kernels or not initrds:
        raise Fail(f"no /boot/vmlinuz-* and /boot/initrd.img-* in the image's root file system:\n{boot}")
    kernel, initrd = os.path.join(work, "vmlinuz"), os.path.join(work, "initrd")
    debugfs(rootfs, [f"dump /boot/{kernels[-1]} {kernel}", f"dump /boot/{initrds[-1]} {initrd}"])
    if not os.path.getsize(kernel) or not os.path.getsize(initrd):
        raise Fail("could not read the kernel/initrd out of the image")

    passwd = fs_cat(rootfs, "/etc/passwd").decode()
    m = re.search(r"^tenbit:[^:]*:(\d+):(\d+):", passwd, re.M)
    if not m:
        raise Fail("the image has no tenbit user (was the tenbit-edge .deb installed?)")
    uid, gid = m.group(1), m.group(2)
    default = fs_cat(rootfs, "/etc/default/tenbit-edge").decode()
    if "TENBIT_PORT=" not in default:
        raise Fail("the image has no /etc/default/tenbit-edge")
    # The user's configuration: the host cable's link and speed, a pre-shared key (sealed
    # frames), and the prompt QA frames were made for. It must survive reboots and upgrades.
    conf = re.sub(r"^TENBIT_LINK=.*$", "TENBIT_LINK=serial-115200", default, flags=re.M)
    conf = re.sub(r"^TENBIT_BAUD=.*$", "TENBIT_BAUD=115200", conf, flags=re.M)
    conf = re.sub(r'^TENBIT_ARGS="(.*)"$', r'TENBIT_ARGS="\1 --prompt-file /etc/tenbit/prompt.txt"',
                  conf, flags=re.M)
    conf += "# boards/test-image.sh: sealed frames\nTENBIT_KEY_FILE=/etc/tenbit/key\n"
    files = {
        "agent": (AGENT, "0755"),
        "agent.service": (AGENT_UNIT, "0644"),
        "default": (conf, "0644"),
        "key": (args.key_hex + "\n", "0640"),
        "prompt": (args.prompt, "0644"),
        "epoch": (f"{EPOCH0}\n", "0644"),
        # -M virt's PL011 is ttyAMA0: the radio's name there (an /etc override, as on a board).
        "udev": ('SUBSYSTEM=="tty", KERNEL=="ttyAMA0", SYMLINK+="tenbit-radio", GROUP="dialout", '
                 'MODE="0660", TAG+="systemd", ENV{SYSTEMD_WANTS}+="tenbit-edge.service"\n', "0644"),
    }
    for name, (text, mode) in files.items():
        path = os.path.join(work, "inject-" + name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, int(mode, 8))
    inj = lambda n: os.path.join(work, "inject-" + n)
    st = "/var/lib/tenbit/.local/state/tenbit"
    reqs = [
        f"write {inj('agent')} /usr/local/sbin/tenbit-test-agent",
        f"write {inj('agent.service')} /etc/systemd/system/tenbit-test-agent.service",
        "symlink /etc/systemd/system/multi-user.target.wants/tenbit-test-agent.service "
        "/etc/systemd/system/tenbit-test-agent.service",
        "rm /etc/default/tenbit-edge",
        f"write {inj('default')} /etc/default/tenbit-edge",
        "mkdir /etc/tenbit",
        f"write {inj('key')} /etc/tenbit/key",
        f"sif /etc/tenbit/key gid {gid}",
        f"write {inj('prompt')} /etc/tenbit/prompt.txt",
        "rm /etc/udev/rules.d/99-tenbit-radio.rules",
        f"write {inj('udev')} /etc/udev/rules.d/99-tenbit-radio.rules",
        "mkdir /var/lib/tenbit/.local", "mkdir /var/lib/tenbit/.local/state", f"mkdir {st}",
        f"write {inj('epoch')} {st}/epoch",
    ]
    for d in ["/var/lib/tenbit/.local", "/var/lib/tenbit/.local/state", st, f"{st}/epoch"]:
        reqs += [f"sif {d} uid {uid}", f"sif {d} gid {gid}"]
    debugfs(rootfs, reqs, write=True)
    for path, want in [("/etc/default/tenbit-edge", conf), (f"{st}/epoch", f"{EPOCH0}\n"),
                       ("/usr/local/sbin/tenbit-test-agent", AGENT)]:
        if fs_cat(rootfs, path).decode() != want:
            raise Fail(f"could not write {path} into the scratch copy")
    run(["dd", f"if={rootfs}", f"of={disk}", "bs=1M", f"seek={off}", "oflag=seek_bytes",
         "conv=notrunc,sparse", "status=none"])
    os.unlink(rootfs)
    label = "RASPIROOT" if "RASPIROOT" in run(["blkid", "-p", "-O", str(off), "-o", "value", "-s", "LABEL", disk],
                                               capture_output=True, text=True, check=False).stdout else "TENBITROOT"
    return disk, kernel, initrd, label, conf


# ---- the guest ---------------------------------------------------------------------------

class Guest:
    def __init__(self, args, work, disk, kernel, initrd, cmdline, extra_disk=None):
        self.work = work
        self.console = os.path.join(work, "console.log")
        self.sock = os.path.join(work, "agent.sock")
        for f in (self.console, self.sock):
            if os.path.exists(f):
                os.unlink(f)
        cmd = ["qemu-system-aarch64", "-M", "virt", "-cpu", args.cpu, "-smp", "2", "-m", str(args.mem),
               "-accel", "tcg,thread=multi", "-kernel", kernel, "-initrd", initrd, "-append", cmdline,
               "-drive", f"if=none,id=disk,format=raw,file={disk}", "-device", "virtio-blk-pci,drive=disk",
               "-chardev", "pty,id=radio", "-serial", "chardev:radio",
               "-device", "virtio-serial-pci",
               "-chardev", f"file,id=con,path={self.console}", "-device", "virtconsole,chardev=con",
               "-chardev", f"socket,id=agent,path={self.sock},server=on,wait=off",
               "-device", "virtconsole,chardev=agent",
               "-nic", "none", "-display", "none", "-monitor", "none"]
        if extra_disk:
            cmd += ["-drive", f"if=none,id=extra,format=raw,readonly=on,file={extra_disk}",
                    "-device", "virtio-blk-pci,drive=extra"]
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.pty = None
        self.qemu_out = []
        for line in self.p.stdout:
            self.qemu_out.append(line)
            m = re.search(r"char device redirected to (/dev/pts/\d+) \(label radio\)", line)
            if m:
                self.pty = m.group(1)
                break
        if not self.pty:
            raise Fail("qemu did not start: " + "".join(self.qemu_out))
        threading.Thread(target=lambda: [self.qemu_out.append(x) for x in self.p.stdout], daemon=True).start()
        self.conn = None
        self.buf = b""
        self.seq = 0

    def tail(self, n=40):
        try:
            with open(self.console, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            lines = []
        return "\n".join(lines[-n:]) or "(the guest console is empty)"

    def fail(self, msg):
        raise Fail(f"{msg}\n--- guest console (last lines) ---\n{self.tail()}\n--- qemu ---\n{''.join(self.qemu_out[-10:])}")

    def connect(self, deadline):
        while self.conn is None:
            if self.p.poll() is not None:
                self.fail(f"qemu exited (status {self.p.returncode}) before the guest came up")
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(self.sock)
                self.conn = s
            except OSError:
                if time.monotonic() > deadline:
                    self.fail("qemu's agent socket never appeared")
                time.sleep(0.2)

    def cmd(self, line, timeout=120, check=True):
        """Runs a shell command in the guest; returns (rc, output bytes)."""
        self.seq += 1
        cid = f"c{self.seq}"
        self.conn.sendall(f"{cid} {line}\n".encode())
        deadline = time.monotonic() + timeout
        pat = re.compile(rb"@@R " + cid.encode() + rb" (\d+) ([A-Za-z0-9+/=]*)\n")
        while True:
            m = pat.search(self.buf)
            if m:
                self.buf = self.buf[m.end():]
                rc, out = int(m.group(1)), base64.b64decode(m.group(2))
                if check and rc != 0:
                    raise Fail(f"guest command failed (status {rc}): {line}\n{out.decode('utf-8', 'replace')}")
                return rc, out
            left = deadline - time.monotonic()
            if left <= 0:
                self.fail(f"guest command timed out after {timeout} s: {line}")
            if self.p.poll() is not None:
                self.fail(f"qemu exited (status {self.p.returncode}) during: {line}")
            self.conn.settimeout(min(left, 1.0))
            try:
                chunk = self.conn.recv(65536)
                if chunk:
                    self.buf += chunk
            except socket.timeout:
                pass

    def out(self, line, timeout=120):
        return self.cmd(line, timeout)[1].decode("utf-8", "replace").strip()

    def wait_agent(self, timeout, old_boot=None):
        """Waits until the agent answers (in a boot other than old_boot); returns the boot id."""
        deadline = time.monotonic() + timeout
        self.connect(deadline)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.fail(f"the guest did not boot to its agent within {timeout} s")
            try:
                bid = self.out("cat /proc/sys/kernel/random/boot_id", timeout=min(left, 10))
                if bid and bid != old_boot:
                    return bid
                time.sleep(2)
            except Fail as e:
                if "qemu exited" in str(e):
                    raise
                if time.monotonic() > deadline:
                    raise
                self.buf = b""

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


# ---- the checks --------------------------------------------------------------------------

def main_pid(g):
    return int(g.out("systemctl show -p MainPID --value tenbit-edge.service") or 0)


def wait_accepting(g, timeout, old_pid=0):
    """Until tenbit-edge (a new process if old_pid is given) has the radio port open: the
    listener opens it after loading the model, so from then on it accepts frames."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = main_pid(g)
        if pid and pid != old_pid:
            rc, out = g.cmd(f"ls -l /proc/{pid}/fd 2>/dev/null | grep -c 'ttyAMA0'", check=False)
            if rc == 0 and out.strip() not in (b"", b"0"):
                return pid
        time.sleep(2)
    g.fail(f"tenbit-edge did not open the radio port within {timeout} s:\n"
           + g.out("systemctl status --no-pager tenbit-edge.service; journalctl -b -u tenbit-edge --no-pager | tail -n 20"))


def epoch(g):
    return int(g.out("cat /var/lib/tenbit/.local/state/tenbit/epoch"))


def send_and_read(g, args, work, frame, expect, label, timeout):
    """Sends a ready frame from the host; waits for the guest's new message file; compares."""
    # By inode: without --state the listener numbers files per run (msg-00001.txt again after
    # a restart), written atomically (new inode), so a new message can reuse an old name.
    listing = "cd /var/lib/tenbit/messages 2>/dev/null && stat -c '%n:%i' * 2>/dev/null || true"
    before = set(g.out(listing).split())
    t0 = time.monotonic()
    r = run([args.tenbit, "send", "--frame", frame, "--link", "serial-115200", "--port", g.pty,
             "--mtu", "240", "--key-file", args.key_file, "--epoch-file", os.path.join(work, "host-epoch")],
            capture_output=True, text=True, timeout=timeout, check=False)
    if r.returncode != 0:
        g.fail(f"{label}: tenbit send failed (status {r.returncode}):\n{r.stderr[-2000:]}")
    hep = os.path.join(work, "host-epoch")
    he = int(open(hep).read().strip()) if os.path.exists(hep) else 0
    if he <= getattr(args, "last_host_epoch", 0):
        raise Fail(f"{label}: the host sender's sealing epoch did not advance ({he})")
    args.last_host_epoch = he
    deadline = t0 + timeout
    while True:
        now = set(g.out(listing).split())
        new = sorted(x.rsplit(":", 1)[0] for x in now - before)
        if new:
            break
        if time.monotonic() > deadline:
            g.fail(f"{label}: no decoded message in /var/lib/tenbit/messages within {timeout} s:\n"
                   + g.out("journalctl -b -u tenbit-edge --no-pager | tail -n 20"))
        time.sleep(2)
    time.sleep(1)
    got = g.cmd(f"cat /var/lib/tenbit/messages/{new[0]}")[1]
    secs = time.monotonic() - t0
    if got != expect:
        raise Fail(f"{label}: the guest decoded {len(got)} bytes that differ from the {len(expect)} expected:\n"
                   f"got:      {got!r}\nexpected: {expect!r}")
    log(f"ok   {label}: {len(expect)} bytes decoded in the guest byte for byte ({new[0]}, {secs:.0f} s from send)")
    return new[0]


def test(args):
    work = args.work
    os.makedirs(work, exist_ok=True)
    key = hashlib.sha256(b"tenbit test-image key").hexdigest()
    args.key_hex = key
    args.key_file = os.path.join(work, "host.key")
    with open(args.key_file, "w") as f:
        f.write(key + "\n")
    with open(args.prompt_file) as f:
        args.prompt = f.read()
    for stale in ("host-epoch",):
        if os.path.exists(os.path.join(work, stale)):
            os.unlink(os.path.join(work, stale))
    disk, kernel, initrd, label, conf = prepare(args, work)
    cmdline = args.cmdline or f"root=LABEL={label} rw rootwait console=hvc0 net.ifnames=0"
    log(f"booting: qemu-system-aarch64 -M virt -cpu {args.cpu} -smp 2 -m {args.mem} (TCG), cmdline: {cmdline}")
    g = Guest(args, work, disk, kernel, initrd, cmdline, extra_disk=args.upgrade_disk)
    figures = {}
    try:
        boot1 = g.wait_agent(args.boot_timeout)
        log(f"ok   guest up (agent answers) {time.monotonic() - g.t0:.0f} s after qemu started; radio pty {g.pty}")
        pid = wait_accepting(g, args.boot_timeout)
        figures["boot_to_accepting_s"] = time.monotonic() - g.t0
        up = float(g.out("cut -d' ' -f1 /proc/uptime"))
        log(f"ok   tenbit-edge (pid {pid}) accepts frames {figures['boot_to_accepting_s']:.0f} s after qemu "
            f"started (guest uptime {up:.0f} s)")
        st = g.out("systemctl is-active tenbit-edge.service")
        if st != "active":
            g.fail(f"systemctl is-active tenbit-edge: {st}")
        log("ok   systemctl is-active tenbit-edge: active")

        send_and_read(g, args, work, args.lossless_frame, args.lossless_expect, "lossless frame", args.msg_timeout)
        hwm = g.out(f"grep -E 'VmHWM|VmRSS' /proc/{main_pid(g)}/status | tr -s ' \\t' ' '")
        figures["vmhwm"] = hwm
        log(f"ok   tenbit-edge memory in the guest ({args.mem} MB): {hwm.replace(chr(10), ', ')}")

        g.cmd(f"kill -9 {pid}")
        t = time.monotonic()
        pid2 = wait_accepting(g, 120, old_pid=pid)
        log(f"ok   killed pid {pid}: systemd restarted tenbit-edge as pid {pid2} ({time.monotonic() - t:.0f} s)")
        e1 = epoch(g)
        if e1 != EPOCH0:
            g.fail(f"the epoch store reads {e1} after a restart, expected {EPOCH0}")

        g.cmd("systemctl reboot", check=False)
        t = time.monotonic()
        g.wait_agent(args.boot_timeout, old_boot=boot1)
        pid3 = wait_accepting(g, args.boot_timeout)
        figures["reboot_to_accepting_s"] = time.monotonic() - t
        log(f"ok   rebooted: tenbit-edge accepting again after {figures['reboot_to_accepting_s']:.0f} s (pid {pid3})")
        if g.out("systemctl is-active tenbit-edge.service") != "active":
            g.fail("tenbit-edge not active after the reboot")
        e3 = epoch(g)
        if e3 != EPOCH0:
            g.fail(f"the epoch store reads {e3} after the reboot, expected {EPOCH0}: it did not survive")
        if g.cmd("cat /etc/default/tenbit-edge")[1].decode() != conf:
            g.fail("/etc/default/tenbit-edge changed across the reboot")
        log(f"ok   the reboot kept the epoch store ({e3}), the key and the configuration")
        msgs = g.out("ls /var/lib/tenbit/messages")
        send_and_read(g, args, work, args.lossless_frame, args.lossless_expect, "lossless frame after the reboot",
                      args.msg_timeout)

        if args.upgrade_disk:
            size = args.upgrade_size
            g.cmd(f"head -c {size} /dev/vdb > /root/new.deb && dpkg-deb -f /root/new.deb Version")
            newv = g.out("dpkg-deb -f /root/new.deb Version")
            oldv = g.out("dpkg-query -W -f '${Version}' tenbit-edge")
            g.cmd("dpkg -i /root/new.deb", timeout=900)
            if g.out("dpkg-query -W -f '${Version}' tenbit-edge") != newv:
                g.fail("the upgrade did not install the new version")
            if g.cmd("cat /etc/default/tenbit-edge")[1].decode() != conf:
                g.fail("the upgrade replaced the user's /etc/default/tenbit-edge (a conffile)")
            pid4 = wait_accepting(g, 300, old_pid=pid3)
            log(f"ok   upgrade {oldv} -> {newv}: conffile kept, service restarted (pid {pid3} -> {pid4})")

        # Last of the decodes, being the slowest under TCG: the edge regenerates the whole
        # small-model conversation (answer, 10 questions, revision) from the 10 answer bits.
        if args.qa_frame:
            send_and_read(g, args, work, args.qa_frame, args.qa_expect, "10-bit QA frame", args.qa_timeout)
            hwm = g.out(f"grep -E 'VmHWM|VmRSS' /proc/{main_pid(g)}/status | tr -s ' \\t' ' '")
            figures["vmhwm_after_qa"] = hwm
            log(f"ok   tenbit-edge memory after the QA replay: {hwm.replace(chr(10), ', ')}")

        if args.upgrade_disk:
            g.cmd("dpkg -r tenbit-edge", timeout=300)
            st = g.out("systemctl is-active tenbit-edge.service || true")
            if st == "active":
                g.fail("tenbit-edge still active after dpkg -r")
            left = g.out("ls /var/lib/tenbit/messages")
            if set(msgs.split()) - set(left.split()):
                g.fail(f"dpkg -r removed the user's messages: before {msgs!r}, after {left!r}")
            g.cmd("test -s /var/lib/tenbit/.local/state/tenbit/epoch && test -f /etc/default/tenbit-edge")
            log(f"ok   dpkg -r: service {st}, messages, epoch store and configuration left in place")

        g.cmd("systemctl poweroff", check=False)
        try:
            g.p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            log("warning: the guest did not power off within 120 s; killed")
    finally:
        g.stop()
    return figures


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--image", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--tenbit", required=True)
    ap.add_argument("--cpu", default="cortex-a53")
    ap.add_argument("--mem", type=int, default=512)
    ap.add_argument("--cmdline", default="")
    ap.add_argument("--boot-timeout", type=int, default=900)
    ap.add_argument("--msg-timeout", type=int, default=900)
    ap.add_argument("--qa-timeout", type=int, default=2400)
    ap.add_argument("--prompt-file", required=True)
    ap.add_argument("--lossless-frame", required=True)
    ap.add_argument("--lossless-expect-file", required=True)
    ap.add_argument("--qa-frame", default="")
    ap.add_argument("--qa-expect-file", default="")
    ap.add_argument("--upgrade-disk", default="")
    ap.add_argument("--upgrade-size", type=int, default=0)
    args = ap.parse_args()
    args.lossless_expect = open(args.lossless_expect_file, "rb").read()
    args.qa_expect = open(args.qa_expect_file, "rb").read() if args.qa_expect_file else b""
    t0 = time.monotonic()
    try:
        figures = test(args)
    except Fail as e:
        print(f"test-image: FAIL {e}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as e:
        print(f"test-image: FAIL command {e.cmd} exited {e.returncode}: {e.stderr}", file=sys.stderr)
        return 1
    log(f"PASS in {time.monotonic() - t0:.0f} s; figures: {json.dumps(figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
