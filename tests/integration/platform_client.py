"""platform_client.py: signed management requests (PROFILE.md §5) for the
integration tests, in Python: the string to sign is built here, the SM2
signature is made by the openssl CLI (as lib.sh's gmt_request does), and
requests go over one keep-alive HTTPS connection.

    p = Platform("https://127.0.0.1:PORT", cacert, key_pem, key_id)
    status, env = p.request("POST", "/gmt0088/v1/vsms/v1/start")

request() raises OSError (or http.client's errors) when the connection
fails; the caller decides what an unanswered request means.
"""
import base64
import hashlib
import http.client
import json
import os
import ssl
import subprocess
import time
import urllib.parse

DISTID = "1234567812345678"


def sm3_hex(data):
    return hashlib.new("sm3", data).hexdigest()


def sign_sm2(key_pem, data):
    r = subprocess.run(["openssl", "dgst", "-sm3", "-sign", key_pem, "-sigopt",
                        "distid:" + DISTID], input=data, capture_output=True, check=True)
    return base64.b64encode(r.stdout).decode()


def auth_headers(method, target, body, key_pem, key_id, ts=None, nonce=None):
    """The §5 headers; target is a str or the exact bytes of the request line."""
    ts = ts if ts is not None else int(time.time() * 1000)
    nonce = nonce or os.urandom(16).hex()
    if isinstance(target, str):
        target = target.encode()
    tbs = b"\n".join([b"GMT0088-V1", method.encode(), target, str(ts).encode(), nonce.encode(),
                      key_id.encode(), sm3_hex(body).encode()])
    return {"X-GMT-Timestamp": str(ts), "X-GMT-Nonce": nonce, "X-GMT-Key-Id": key_id,
            "X-GMT-Signature-Alg": "SM2-SM3", "X-GMT-Signature": sign_sm2(key_pem, tbs)}


class Platform:
    def __init__(self, base, cacert, key_pem, key_id, timeout=30):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port
        self.ctx = ssl.create_default_context(cafile=cacert)
        self.key_pem, self.key_id, self.timeout = key_pem, key_id, timeout
        self.conn = None

    def _connection(self):
        if self.conn is None:
            self.conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx,
                                                    timeout=self.timeout)
        return self.conn

    def request(self, method, target, body=None, headers=None, on_sent=None):
        """Returns (HTTP status, parsed envelope or None). on_sent, when
        given, is called once the request is sent, before the answer is
        read."""
        data = b"" if body is None else json.dumps(body).encode()
        h = auth_headers(method, target, data, self.key_pem, self.key_id)
        if data:
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        c = self._connection()
        try:
            c.request(method, target, body=data or None, headers=h)
            if on_sent:
                on_sent()
            r = c.getresponse()
            raw = r.read()
        except Exception:
            self.close()
            raise
        try:
            return r.status, json.loads(raw)
        except ValueError:
            return r.status, None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None
