"""vsmp_client.py: a VSM protocol (docs/vsm-protocol.md) client for the
integration tests, written from the protocol document with Python's own
hashlib and hmac, independent of the project's C code.

    c = Vsmp("127.0.0.1", port, b"token-id", secret_bytes)
    point = c.keygen(SIGN, 1)            # 65-byte 04||X||Y
    rs = c.sign(1, e)                    # e = sm2_e(point, message)
    c.close()

Every call returns the response payload, or raises SdrError(status) for a
status other than SDR_OK, or OSError / EOFError when the connection fails
(the VSM died). A test checks a signature with the openssl CLI:
openssl_verify(point, message, rs).
"""
import hashlib
import hmac
import os
import socket
import struct
import subprocess
import tempfile

MAGIC = 0x564D5031
CLIENT, SERVER = b"VSMP1-CLIENT", b"VSMP1-SERVER"
T_HELLO, T_AUTH = 0x0001, 0x0002
T_RANDOM = 0x0011
T_EXPORT_SIGN_PUBLIC = 0x0022
T_INTERNAL_SIGN = 0x0040
T_KEY_GENERATE, T_KEY_LIST, T_KEY_DESTROY = 0x0100, 0x0101, 0x0102
SIGN, ENC, KEK = 1, 2, 3

SDR = {0: "SDR_OK", 0x01000001: "SDR_UNKNOWERR", 0x01000003: "SDR_COMMFAIL",
       0x01000007: "SDR_PARDENY", 0x01000008: "SDR_KEYNOTEXIST",
       0x0100000E: "SDR_VERIFYERR", 0x01000015: "SDR_KEYERR",
       0x0100001C: "SDR_NOBUFFER", 0x0100001D: "SDR_INARGERR"}
SDR_CODE = {v: k for k, v in SDR.items()}
DISTID = b"1234567812345678"
# SubjectPublicKeyInfo of an SM2 key, up to the 65-byte point.
SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200")


class SdrError(Exception):
    def __init__(self, status):
        super().__init__(SDR.get(status, "0x%08X" % status))
        self.status = status


def u32(v):
    return struct.pack(">I", v)


def blob(b):
    return u32(len(b)) + b


class Vsmp:
    """One authenticated session. src: a local address to bind (the VSM
    delays failed AUTHs per client address)."""

    def __init__(self, host, port, token_id, secret, src=None, timeout=15, auth=True):
        self.s = socket.create_connection((host, int(port)), timeout=timeout,
                                          source_address=(src, 0) if src else None)
        self.rid = 1
        self.on_sent = None       # called after a request is sent (test hooks)
        typ, _, st, p = self.frame()
        if typ != T_HELLO or st != 0:
            raise EOFError("no HELLO")
        nlen = struct.unpack(">I", p[4:8])[0]
        self.server_nonce = p[8:8 + nlen]
        vlen = struct.unpack(">I", p[8 + nlen:12 + nlen])[0]
        self.vsm_id = p[12 + nlen:12 + nlen + vlen]
        if auth:
            self.auth(token_id, secret)

    def auth(self, token_id, secret):
        cnonce = os.urandom(32)
        proof = hmac.new(secret, CLIENT + self.server_nonce + cnonce + token_id, "sm3").digest()
        p = self.call(T_AUTH, blob(token_id) + blob(cnonce) + blob(proof))
        want = hmac.new(secret, SERVER + cnonce + self.server_nonce + token_id, "sm3").digest()
        if p != blob(want):
            raise SdrError(SDR_CODE["SDR_COMMFAIL"])

    def recv_n(self, n):
        b = b""
        while len(b) < n:
            c = self.s.recv(n - len(b))
            if not c:
                raise EOFError("connection closed")
            b += c
        return b

    def frame(self):
        magic, typ, _flags, rid, st, n = struct.unpack(">IHHIII", self.recv_n(20))
        if magic != MAGIC or n > (1 << 20) + 4096:
            raise EOFError("bad frame")
        return typ, rid, st, self.recv_n(n)

    def send_raw(self, data):
        self.s.sendall(data)

    def call(self, typ, payload=b"", flags=0, status=0):
        """Sends one request frame; returns the response payload."""
        self.rid += 1
        self.s.sendall(struct.pack(">IHHIII", MAGIC, typ, flags, self.rid, status, len(payload))
                       + payload)
        if self.on_sent:
            self.on_sent()
        rtyp, rid, st, p = self.frame()
        if rtyp != (typ | 0x8000) or rid != self.rid:
            raise EOFError("unexpected response type 0x%04X id %d" % (rtyp, rid))
        if st != 0:
            raise SdrError(st)
        return p

    def keygen(self, key_type, index, password=b""):
        p = self.call(T_KEY_GENERATE, u32(key_type) + u32(index) + blob(password))
        n = struct.unpack(">I", p[:4])[0]
        return p[4:4 + n]

    def public(self, index):
        p = self.call(T_EXPORT_SIGN_PUBLIC, u32(index))
        return p[4:]

    def sign(self, index, e):
        p = self.call(T_INTERNAL_SIGN, u32(index) + blob(e))
        return p[4:]

    def destroy(self, key_type, index):
        self.call(T_KEY_DESTROY, u32(key_type) + u32(index))

    def key_list(self):
        """[(type, index)] of the VSM's keys."""
        p = self.call(T_KEY_LIST)
        count = struct.unpack(">I", p[:4])[0]
        out, off = [], 4
        for _ in range(count):
            t, i, _pw = struct.unpack(">III", p[off:off + 12])
            out.append((t, i))
            off += 20
        return out

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


# ---- SM2 helpers: e = SM3(Z || M) (GB/T 32918.2), DER, openssl ----

_CURVE = bytes.fromhex(
    "FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC"
    "28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93"
    "32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7"
    "BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0")


def sm2_e(point, message, uid=DISTID):
    z = hashlib.new("sm3", (len(uid) * 8).to_bytes(2, "big") + uid + _CURVE + point[1:]).digest()
    return hashlib.new("sm3", z + message).digest()


def _der_int(b):
    b = b.lstrip(b"\0") or b"\0"
    if b[0] & 0x80:
        b = b"\0" + b
    return b"\x02" + bytes([len(b)]) + b


def rs_to_der(rs):
    body = _der_int(rs[:32]) + _der_int(rs[32:])
    return b"\x30" + bytes([len(body)]) + body


def point_to_pem(point):
    import base64
    b64 = base64.b64encode(SPKI_PREFIX + point).decode()
    return "-----BEGIN PUBLIC KEY-----\n%s\n-----END PUBLIC KEY-----\n" % b64


def openssl_verify(point, message, rs):
    """True when the openssl CLI verifies rs (r||s) over message with the
    public point (SM3, signer ID 1234567812345678)."""
    with tempfile.TemporaryDirectory() as d:
        paths = {n: os.path.join(d, n) for n in ("pub.pem", "msg", "sig")}
        with open(paths["pub.pem"], "w") as f:
            f.write(point_to_pem(point))
        with open(paths["msg"], "wb") as f:
            f.write(message)
        with open(paths["sig"], "wb") as f:
            f.write(rs_to_der(rs))
        r = subprocess.run(["openssl", "dgst", "-sm3", "-verify", paths["pub.pem"],
                            "-sigopt", "distid:" + DISTID.decode(), "-signature",
                            paths["sig"], paths["msg"]], capture_output=True)
        return r.returncode == 0 and b"Verified OK" in r.stdout


def sign_and_verify(conn, index, point):
    """Signs a fresh message with the key at index through conn and checks
    it with openssl against point. Returns True or raises SdrError."""
    msg = os.urandom(48)
    rs = conn.sign(index, sm2_e(point, msg))
    return openssl_verify(point, msg, rs)
