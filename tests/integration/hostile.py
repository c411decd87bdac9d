#!/usr/bin/env python3
"""hostile.py: the hostile clients of test_hostile.sh.

  hostile.py raw HOST PORT CACERT --method M --target-hex HEX [--key PEM --key-id FP]
      one request whose target is any bytes (NUL, raw UTF-8, absolute
      form), signed over those exact bytes when a key is given; prints
      "status=NNN code=C" (code: the envelope's, "-" when there is none) or
      "closed" when the server closed without an answer.
  hostile.py slow HOST PORT CACERT --mode trickle|idle-tcp|idle-tls --n N --max-secs S
      N connections that never finish a request: trickle sends a request
      head one byte every second; idle-tcp connects and sends nothing (no
      TLS handshake); idle-tls completes the handshake and sends nothing.
      Prints "closed=X of N" once the server closed them all or after S s.
  hostile.py flood HOST PORT --n N --src ADDR --release FILE
      N TCP connections from ADDR as fast as the kernel takes them, then
      counts those the server closed at once (within 2 s) and holds the
      others until FILE exists; prints "opened=O closed_at_once=C held=H
      failed=F" (failed: connect itself failed) when held, and again at the
      end "still_open=K" (closed by the server while held: H - K).
  hostile.py stop HOST PORT CACERT --n N --release FILE --max-secs S
      connections in every state for a stop of the server: TCP only,
      the first bytes of a ClientHello, a whole ClientHello whose answer is
      never read (the server mid-handshake), TLS idle, half a request head,
      one answered and kept alive, and N that pipeline requests without
      pause and read the answers as they come. Once each pipeline has an
      answer and no connection was closed, writes "open=K" to FILE; then
      waits until the server closed them all (or S s passed) and prints
      "answers=A closed=C of K" and, per connection left open, its kind.
  hostile.py tenant HOST 0 --src ADDR --a-port P --a-token-id ID --a-secret-file F
                   --a-index I --b-port P --b-token-id ID --b-index J --b-pub-file F
      a tenant with VSM A's token attacks VSM B (cmd_tenant says how);
      prints "ok - " / "not ok - " lines
"""
import argparse
import os
import select
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import platform_client as P  # noqa: E402
import vsmp_client as V  # noqa: E402


def tls_ctx(cacert):
    return ssl.create_default_context(cafile=cacert)


def read_answer(s):
    """The status and envelope code of one HTTP answer on s, or None."""
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            c = s.recv(65536)
            if not c:
                return None
            data += c
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(body) < length:
            c = s.recv(65536)
            if not c:
                break
            body += c
    except (OSError, ssl.SSLError):
        return None if not data else None
    status = int(head.split(b" ")[1])
    code = "-"
    try:
        import json
        code = str(json.loads(body)["code"])
    except (ValueError, KeyError, TypeError):
        pass
    return status, code


def cmd_raw(a):
    target = bytes.fromhex(a.target_hex)
    hdrs = {"Host": "127.0.0.1"}
    if a.key:
        h = P.auth_headers(a.method, target, b"", a.key, a.key_id)
        hdrs.update(h)
    req = a.method.encode() + b" " + target + b" HTTP/1.1\r\n" + b"".join(
        k.encode() + b": " + v.encode() + b"\r\n" for k, v in hdrs.items()) + \
        b"Connection: close\r\n\r\n"
    raw = socket.create_connection((a.host, a.port), timeout=30)
    s = tls_ctx(a.cacert).wrap_socket(raw, server_hostname="127.0.0.1")
    s.sendall(req)
    ans = read_answer(s)
    s.close()
    print("closed" if ans is None else "status=%d code=%s" % ans)
    return 0


def cmd_slow(a):
    ctx = tls_ctx(a.cacert)
    head = b"GET /gmt0088/v1/chsm HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200
    conns = []
    for _ in range(a.n):
        raw = socket.create_connection((a.host, a.port), timeout=30)
        s = ctx.wrap_socket(raw, server_hostname="127.0.0.1") if a.mode != "idle-tcp" else raw
        s.setblocking(False)
        conns.append(s)
    print("open=%d" % len(conns), flush=True)
    open_ = set(range(len(conns)))
    sent = 0
    end = time.time() + a.max_secs
    while open_ and time.time() < end:
        time.sleep(1)
        for i in list(open_):
            s = conns[i]
            try:
                if a.mode == "trickle" and sent < len(head):
                    s.send(head[sent:sent + 1])
                r, _, _ = select.select([s], [], [], 0)
                if r and s.recv(4096) == b"":
                    open_.discard(i)
            except ssl.SSLWantReadError:
                pass
            except (OSError, ssl.SSLError):
                open_.discard(i)
        sent += 1
    print("closed=%d of %d" % (len(conns) - len(open_), len(conns)), flush=True)
    for s in conns:
        s.close()
    return 0


def closed_by_peer(s):
    """The peer closed s (EOF or reset); poll, since select() cannot take
    descriptors over 1023."""
    p = select.poll()
    p.register(s, select.POLLIN)
    if not p.poll(0):
        return False
    try:
        return s.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def cmd_flood(a):
    socks, failed = [], 0
    for _ in range(a.n):
        s = socket.socket()
        s.settimeout(5)
        try:
            s.bind((a.src, 0))
            s.connect((a.host, a.port))
            socks.append(s)
        except OSError:
            failed += 1
            s.close()
    time.sleep(2)
    closed = 0
    live = []
    for s in socks:
        if closed_by_peer(s):
            closed += 1
            s.close()
        else:
            live.append(s)
    print("opened=%d closed_at_once=%d held=%d failed=%d" % (len(socks), closed, len(live), failed),
          flush=True)
    for _ in range(1200):
        if os.path.exists(a.release):
            break
        time.sleep(0.1)
    still = 0
    for s in live:
        still += 0 if closed_by_peer(s) else 1
        s.close()
    print("still_open=%d" % still, flush=True)
    return 0


def peer_gone(s):
    """s (non-blocking) reached its end: EOF, reset or a TLS error; what
    arrived before is read and dropped."""
    try:
        while True:
            if not s.recv(65536):
                return True
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
        return False
    except (OSError, ssl.SSLError):
        return True


def cmd_stop(a):
    ctx = tls_ctx(a.cacert)
    get = b"GET /gmt0088/v1/chsm/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    def tcp():
        return socket.create_connection((a.host, a.port), timeout=30)

    def tls():
        return ctx.wrap_socket(tcp(), server_hostname="127.0.0.1")
    held = [("tcp-only", tcp())]
    s = tcp()
    s.sendall(bytes.fromhex("160301020001"))  # a record header, then nothing
    held.append(("partial-client-hello", s))
    s = tcp()
    bio_in, bio_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    hs = ctx.wrap_bio(bio_in, bio_out, server_hostname="127.0.0.1")
    try:
        hs.do_handshake()
    except ssl.SSLWantReadError:
        pass
    s.sendall(bio_out.read())  # the server answers and waits for our Finished
    held.append(("mid-handshake", s))
    held.append(("tls-idle", tls()))
    s = tls()
    s.sendall(get[:30])
    held.append(("half-a-head", s))
    s = tls()
    s.sendall(get)
    if read_answer(s) is None:
        print("keep-alive: no answer", flush=True)
        return 1
    held.append(("keep-alive", s))
    pipes = [tls() for _ in range(a.n)]
    for s in [c for _, c in held] + pipes:
        s.setblocking(False)
    pending = [b""] * len(pipes)
    got = [0] * len(pipes)
    conns = held + [("pipeline", s) for s in pipes]
    gone = [False] * len(conns)
    released = False
    end = time.time() + a.max_secs
    while not all(gone) and time.time() < end:
        for i, s in enumerate(pipes):
            if gone[len(held) + i]:
                continue
            try:
                if not pending[i]:
                    pending[i] = get * 64
                pending[i] = pending[i][s.send(pending[i]):]
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                pass
            except (OSError, ssl.SSLError):
                gone[len(held) + i] = True
                continue
            try:
                while True:
                    d = s.recv(65536)
                    if not d:
                        gone[len(held) + i] = True
                        break
                    got[i] += d.count(b"HTTP/1.1 ")
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                pass
            except (OSError, ssl.SSLError):
                gone[len(held) + i] = True
        for i, (_, s) in enumerate(held):
            gone[i] = gone[i] or peer_gone(s)
        if not released and all(got):
            if any(gone):
                break  # closed before the stop: the test says so
            with open(a.release, "w") as f:
                f.write("open=%d\n" % len(conns))
            released = True
        time.sleep(0.005)
    print("answers=%d closed=%d of %d" % (sum(got), sum(gone), len(conns)), flush=True)
    for (kind, s), g in zip(conns, gone):
        if not g:
            print("open: " + kind, flush=True)
        s.close()
    return 0


def cmd_tenant(a):
    """A tenant holding VSM A's token attacks VSM B (whose secret it does
    not know) from address a.src. Prints ok / not ok lines."""
    import base64
    with open(a.a_secret_file) as f:
        a_secret = base64.b64decode(f.read().strip())
    a_id = a.a_token_id.encode()
    failed = 0

    def ok(cond, desc):
        nonlocal failed
        print(("ok - " if cond else "not ok - ") + "tenant of A: " + desc, flush=True)
        failed += 0 if cond else 1

    def refused_at_auth(port, token_id, secret, desc):
        try:
            c = V.Vsmp("127.0.0.1", port, token_id, secret, src=a.src)
        except V.SdrError as e:
            ok(e.status == V.SDR_CODE["SDR_PARDENY"], "%s: %s" % (desc, e))
            return
        except (OSError, EOFError) as e:
            ok(False, "%s: connection failed before AUTH was answered (%s)" % (desc, e))
            return
        c.close()
        ok(False, "%s: authenticated" % desc)

    def expect_sdr(fn, want, desc):
        try:
            fn()
        except V.SdrError as e:
            ok(e.status == V.SDR_CODE[want], "%s: %s" % (desc, e))
            return
        except (OSError, EOFError) as e:
            ok(want == "closed", "%s: connection closed (%s)" % (desc, e))
            return
        ok(False, "%s: accepted" % desc)

    # 1. B's endpoint with A's token, with B's token id and A's secret, and
    #    with token ids that try to name something else.
    refused_at_auth(a.b_port, a_id, a_secret, "B's endpoint with A's token: SDR_PARDENY")
    refused_at_auth(a.b_port, a.b_token_id.encode(), a_secret,
                    "B's endpoint with B's token id and A's secret: SDR_PARDENY")
    refused_at_auth(a.b_port, b"../" + a_id, a_secret, "B's endpoint, token id ../A: SDR_PARDENY")
    refused_at_auth(a.b_port, a_id + b"\0" + a.b_token_id.encode(), a_secret,
                    "B's endpoint, token id with a NUL: SDR_PARDENY")
    # 2. B's endpoint, requests before AUTH: refused and closed.
    for typ, name, payload in ((V.T_KEY_LIST, "KEY_LIST", b""),
                               (V.T_INTERNAL_SIGN, "INTERNAL_SIGN", V.u32(a.b_index) + V.blob(b"e" * 32)),
                               (V.T_EXPORT_SIGN_PUBLIC, "EXPORT_SIGN_PUBLIC", V.u32(a.b_index))):
        c = V.Vsmp("127.0.0.1", a.b_port, None, None, src=a.src, auth=False)
        expect_sdr(lambda: c.call(typ, payload), "SDR_COMMFAIL",
                   "B's endpoint, %s before AUTH: SDR_COMMFAIL" % name)
        try:
            closed = c.s.recv(1) == b""
        except OSError:
            closed = True
        ok(closed, "B's endpoint, %s before AUTH: connection closed" % name)
        c.close()
    # 3. In A's own session: B's key index reaches only A's keystore.
    c = V.Vsmp("127.0.0.1", a.a_port, a_id, a_secret, src=a.src)
    expect_sdr(lambda: c.sign(a.b_index, b"e" * 32), "SDR_KEYNOTEXIST",
               "A's session, INTERNAL_SIGN at B's key index %d (A has none there)" % a.b_index)
    expect_sdr(lambda: c.public(a.b_index), "SDR_KEYNOTEXIST",
               "A's session, EXPORT_SIGN_PUBLIC at B's key index")
    expect_sdr(lambda: c.destroy(V.SIGN, a.b_index), "SDR_KEYNOTEXIST",
               "A's session, KEY_DESTROY at B's key index")
    for idx in (0, 0xFFFFFFFF, 1 << 31):
        expect_sdr(lambda: c.sign(idx, b"e" * 32), "SDR_INARGERR",
                   "A's session, INTERNAL_SIGN at index %d" % idx)
    with open(a.b_pub_file) as f:
        b_point = bytes.fromhex(f.read().strip())
    a_point = c.public(a.a_index)
    msg = os.urandom(32)
    rs = c.sign(a.a_index, V.sm2_e(a_point, msg))
    ok(V.openssl_verify(a_point, msg, rs) and not V.openssl_verify(b_point, msg, rs),
       "A's session, INTERNAL_SIGN at index %d (B has a key there too) signs with A's key, "
       "not B's" % a.a_index)
    c.close()
    # 4. Crafted frames in A's session: a response type, flags, a wrong
    #    magic, an oversized length: SDR_COMMFAIL or closed, never served.
    crafted = (("a response type", lambda c: c.call(V.T_KEY_LIST | 0x8000)),
               ("flags set", lambda c: c.call(V.T_KEY_LIST, flags=1)),
               ("a status set", lambda c: c.call(V.T_KEY_LIST, status=1)),
               ("a length over the limit", lambda c: (c.send_raw(V.struct.pack(
                   ">IHHIII", V.MAGIC, V.T_KEY_LIST, 0, 9, 0, 64 << 20)), c.frame())),
               ("a wrong magic", lambda c: (c.send_raw(b"\0" * 20), c.frame())))
    for desc, fn in crafted:
        c = V.Vsmp("127.0.0.1", a.a_port, a_id, a_secret, src=a.src)
        try:
            r = fn(c)
            got = "answered: %r" % (r,)
            good = isinstance(r, tuple) and len(r) == 2 and r[1][2] == V.SDR_CODE["SDR_COMMFAIL"]
        except V.SdrError as e:
            got, good = str(e), e.status == V.SDR_CODE["SDR_COMMFAIL"]
        except (OSError, EOFError) as e:
            got, good = "closed (%s)" % e, True
        ok(good, "A's session, a frame with %s: %s" % (desc, got))
        c.close()
    return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd")
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("cacert", nargs="?")
    for opt in ("--method", "--target-hex", "--key", "--key-id", "--mode", "--src", "--release",
                "--a-token-id", "--a-secret-file", "--b-token-id", "--b-pub-file"):
        ap.add_argument(opt)
    for opt in ("--n", "--max-secs", "--a-port", "--b-port", "--a-index", "--b-index"):
        ap.add_argument(opt, type=int)
    a = ap.parse_args()
    return {"raw": cmd_raw, "slow": cmd_slow, "flood": cmd_flood, "stop": cmd_stop,
            "tenant": cmd_tenant}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
