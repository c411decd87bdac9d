#!/usr/bin/env python3
"""vsmp_raw.py: a raw VSM protocol client for the integration tests.

Authenticates to a VSM the way docs/vsm-protocol.md says (HMAC-SM3 from
Python's hashlib, independent of the project's code), then sends one frame
of a named case and prints what came back:

    status=0xSSSSSSSS type=0xTTTT id=N len=L closed=yes|no

closed=yes when the VSM closed the connection after its answer.

usage: vsmp_raw.py HOST PORT TOKEN_ID SECRET_FILE CASE

CASE "hold" sends a valid frame, prints its line prefixed "first ", then
waits for a line on stdin and sends another on the same session, printing
it prefixed "second " (a session that lives across a change on the CHSM).
"""
import hmac
import os
import socket
import struct
import sys
import time

MAGIC = 0x564D5031
CLIENT, SERVER = b"VSMP1-CLIENT", b"VSMP1-SERVER"


def u32(v):
    return struct.pack(">I", v)


def blob(b):
    return u32(len(b)) + b


# name: (type, flags, status, payload, claimed length or None)
CASES = {
    "valid": (0x0011, 0, 0, u32(4), None),
    "unknown-type": (0x0999, 0, 0, b"", None),
    "oversized": (0x0011, 0, 0, b"", 2 * 1024 * 1024),
    "response-type": (0x8011, 0, 0, u32(4), None),
    "status-set": (0x0011, 0, 1, u32(4), None),
    "flags-set": (0x0011, 2, 0, u32(4), None),
    "short-payload": (0x0011, 0, 0, b"\x00\x00\x04", None),
    "trailing-bytes": (0x0011, 0, 0, u32(4) + b"x", None),
    "bytes-past-payload": (0x0020, 0, 0, u32(1) + u32(40) + b"pw", None),
    "bytes-over-max": (0x0020, 0, 0, u32(1) + blob(b"p" * 65), None),
    "auth-again": (0x0002, 0, 0, blob(b"x") + blob(b"\0" * 32) + blob(b"\0" * 32), None),
}


def main():
    host, port, token_id, secret_file, case = sys.argv[1:6]
    token_id = token_id.encode()
    with open(secret_file, "rb") as f:
        secret = f.read()
    s = None

    def recv_n(n):
        b = b""
        while len(b) < n:
            c = s.recv(n - len(b))
            if not c:
                raise EOFError
            b += c
        return b

    def frame():
        magic, typ, _flags, rid, st, n = struct.unpack(">IHHIII", recv_n(20))
        if magic != MAGIC or n > 1 << 20:
            raise ValueError("bad frame")
        return typ, rid, st, recv_n(n)

    def send(typ, rid, payload, flags=0, status=0, length=None):
        n = len(payload) if length is None else length
        s.sendall(struct.pack(">IHHIII", MAGIC, typ, flags, rid, status, n) + payload)

    # A VSM at maxSessions closes new connections at once, and it notices a
    # closed session asynchronously: retry the HELLO for a while.
    for attempt in range(50):
        s = socket.create_connection((host, int(port)), timeout=15)
        try:
            typ, _, _, p = frame()
            break
        except (EOFError, ConnectionResetError):
            s.close()
            time.sleep(0.1)
    else:
        print("no HELLO")
        return 1
    nlen = struct.unpack(">I", p[4:8])[0]
    snonce = p[8:8 + nlen]
    cnonce = os.urandom(32)
    proof = hmac.new(secret, CLIENT + snonce + cnonce + token_id, "sm3").digest()
    send(0x0002, 1, blob(token_id) + blob(cnonce) + blob(proof))
    typ, rid, st, p = frame()
    want = hmac.new(secret, SERVER + cnonce + snonce + token_id, "sm3").digest()
    if typ != 0x8002 or st != 0 or p != blob(want):
        print("auth failed status=0x%08X" % st)
        return 1

    if case == "hold":
        typ, flags, status, payload, length = CASES["valid"]
        send(typ, 6, payload)
        typ, rid, st, p = frame()
        print("first status=0x%08X type=0x%04X id=%d len=%d" % (st, typ, rid, len(p)), flush=True)
        sys.stdin.readline()
        send(typ & 0x7FFF, 8, payload)
        try:
            typ, rid, st, p = frame()
        except (EOFError, ConnectionResetError, OSError):
            print("second closed", flush=True)
            return 1
        print("second status=0x%08X type=0x%04X id=%d len=%d" % (st, typ, rid, len(p)), flush=True)
        return 0
    typ, flags, status, payload, length = CASES[case]
    send(typ, 7, payload, flags=flags, status=status, length=length)
    typ, rid, st, p = frame()
    try:
        s.settimeout(1 if case == "valid" else 5)
        closed = "yes" if s.recv(1) == b"" else "no"
    except socket.timeout:
        closed = "no"
    except ConnectionResetError:
        closed = "yes"
    print("status=0x%08X type=0x%04X id=%d len=%d closed=%s" % (st, typ, rid, len(p), closed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
