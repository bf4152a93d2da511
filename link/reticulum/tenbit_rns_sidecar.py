#!/usr/bin/env python3
"""tenbit's Reticulum sidecar: carries tenbit frames over the reference Reticulum stack.

Started and supervised by `tenbit send --reticulum DEST` / `tenbit-edge listen --reticulum`
(tenbit-link, src/reticulum.rs); not meant to be run by hand. Pinned to rns 1.5.7 (the version
the tests install); another version is refused unless TENBIT_RNS_ANY_VERSION=1.

Reticulum's own encryption, routing, proofs, links and resources are used as they are:
* listen: an IN destination `tenbit.edge` with an identity persisted in --identity, announced
  at start and every --announce-interval seconds; proves every packet (PROVE_ALL) and accepts
  every resource on links to it. Each frame that arrives is passed up to tenbit.
* send: resolves DEST (path request, bounded by --path-timeout), then sends each frame as one
  encrypted packet when it fits the packet MDU (383 bytes) and waits for the delivery proof;
  larger frames go over a Link as a Resource. A delivery proof (or a completed resource) is
  reported back to tenbit, which decides about retries.

Protocol on stdin/stdout (stdout is kept for it alone: RNS logs go to stderr): messages of
`tag (1 byte) | length (u32 LE) | payload`.
  sidecar -> tenbit: b"R" ready (payload: own destination hash, hex, or the peer's when sending),
                     b"D" frame received, b"A" delivered (payload: u64 LE id), b"F" failed
                     (u64 LE id + reason), b"E" fatal error (text; the sidecar exits).
  tenbit -> sidecar: b"S" send (u64 LE id + frame).
"""
import argparse
import os
import struct
import sys
import threading
import time

PIN = "1.5.7"
APP, ASPECT = "tenbit", "edge"

proto_out = os.fdopen(os.dup(1), "wb", buffering=0)
os.dup2(2, 1)  # anything printed by the stack goes to stderr, never into the protocol
out_lock = threading.Lock()


def emit(tag, payload=b""):
    with out_lock:
        proto_out.write(tag + struct.pack("<I", len(payload)) + payload)


def fatal(text, code=3):
    emit(b"E", text.encode())
    sys.stderr.write("tenbit-rns-sidecar: " + text + "\n")
    os._exit(code)


def read_exact(f, n):
    buf = b""
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--identity", required=True)
    ap.add_argument("--mode", choices=["listen", "send"], required=True)
    ap.add_argument("--dest")
    ap.add_argument("--announce-interval", type=float, default=30.0)
    ap.add_argument("--path-timeout", type=float, default=30.0)
    ap.add_argument("--loglevel", type=int, default=2)
    a = ap.parse_args()

    try:
        import RNS
    except ImportError as e:
        fatal("cannot import RNS (pip install rns==%s): %s" % (PIN, e), 4)
    if RNS.__version__ != PIN and os.environ.get("TENBIT_RNS_ANY_VERSION") != "1":
        fatal("rns %s found, the sidecar is pinned to %s" % (RNS.__version__, PIN), 4)

    def log(line):
        sys.stderr.write(line + "\n")

    RNS.Reticulum(configdir=a.config, loglevel=a.loglevel, logdest=log)

    if os.path.isfile(a.identity):
        identity = RNS.Identity.from_file(a.identity)
        if identity is None:
            fatal("identity file %s is damaged" % a.identity)
    else:
        identity = RNS.Identity()
        d = os.path.dirname(a.identity)
        if d:
            os.makedirs(d, exist_ok=True)
        tmp = a.identity + ".tmp"
        identity.to_file(tmp)
        os.replace(tmp, a.identity)

    if a.mode == "listen":
        listen(RNS, identity, a)
    else:
        send(RNS, identity, a)


def listen(RNS, identity, a):
    dest = RNS.Destination(identity, RNS.Destination.IN, RNS.Destination.SINGLE, APP, ASPECT)
    dest.set_proof_strategy(RNS.Destination.PROVE_ALL)
    dest.set_packet_callback(lambda data, packet: emit(b"D", bytes(data)))

    def resource_done(resource):
        if resource.status == RNS.Resource.COMPLETE:
            emit(b"D", resource.data.read())

    def link_up(link):
        link.set_resource_strategy(RNS.Link.ACCEPT_ALL)
        link.set_resource_concluded_callback(resource_done)
        link.set_packet_callback(lambda data, packet: emit(b"D", bytes(data)))

    dest.set_link_established_callback(link_up)
    dest.announce()
    emit(b"R", dest.hash.hex().encode())
    last = time.time()
    # Runs until tenbit closes our stdin (or kills us).
    stop = threading.Event()

    def watch_stdin():
        while sys.stdin.buffer.read(4096):
            pass
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    while not stop.wait(0.5):
        if time.time() - last >= a.announce_interval:
            dest.announce()
            last = time.time()
    os._exit(0)


def send(RNS, identity, a):
    try:
        dest_hash = bytes.fromhex(a.dest)
    except (TypeError, ValueError):
        fatal("destination hash must be hex")
    if len(dest_hash) != RNS.Reticulum.TRUNCATED_HASHLENGTH // 8:
        fatal("destination hash must be %d hex digits" % (RNS.Reticulum.TRUNCATED_HASHLENGTH // 4))
    deadline = time.time() + a.path_timeout
    if not RNS.Transport.has_path(dest_hash):
        RNS.Transport.request_path(dest_hash)
    last_req = time.time()
    while not RNS.Transport.has_path(dest_hash) or RNS.Identity.recall(dest_hash) is None:
        if time.time() > deadline:
            fatal("no path to %s within %.0f s" % (a.dest, a.path_timeout), 5)
        if time.time() - last_req > 5:
            RNS.Transport.request_path(dest_hash)
            last_req = time.time()
        time.sleep(0.1)
    peer = RNS.Identity.recall(dest_hash)
    out = RNS.Destination(peer, RNS.Destination.OUT, RNS.Destination.SINGLE, APP, ASPECT)
    emit(b"R", out.hash.hex().encode())
    state = {"link": None}

    def get_link():
        link = state["link"]
        if link is not None and link.status == RNS.Link.ACTIVE:
            return link
        link = RNS.Link(out)
        t = time.time() + a.path_timeout
        while link.status != RNS.Link.ACTIVE:
            if link.status == RNS.Link.CLOSED or time.time() > t:
                return None
            time.sleep(0.05)
        state["link"] = link
        return link

    def ok(mid):
        return lambda *_: emit(b"A", struct.pack("<Q", mid))

    def failed(mid, why):
        return lambda *_: emit(b"F", struct.pack("<Q", mid) + why.encode())

    stdin = sys.stdin.buffer
    while True:
        head = read_exact(stdin, 5)
        if head is None:
            os._exit(0)
        tag, n = head[:1], struct.unpack("<I", head[1:])[0]
        body = read_exact(stdin, n)
        if body is None or tag != b"S" or n < 8:
            fatal("bad request from tenbit")
        mid, frame = struct.unpack("<Q", body[:8])[0], body[8:]
        if len(frame) <= RNS.Packet.ENCRYPTED_MDU:
            receipt = RNS.Packet(out, frame).send()
            if not receipt:
                emit(b"F", struct.pack("<Q", mid) + b"packet not sent")
                continue
            receipt.set_timeout(a.path_timeout)
            receipt.set_delivery_callback(ok(mid))
            receipt.set_timeout_callback(failed(mid, "no delivery proof"))
        else:
            link = get_link()
            if link is None:
                emit(b"F", struct.pack("<Q", mid) + b"link not established")
                continue
            def done(r, mid=mid):
                if r.status == RNS.Resource.COMPLETE:
                    ok(mid)()
                else:
                    failed(mid, "resource transfer failed")()

            RNS.Resource(frame, link, callback=done)


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except BaseException as e:  # the supervisor reports it and exits with the link code
        fatal("sidecar crashed: %r" % (e,))
