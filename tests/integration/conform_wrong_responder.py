#!/usr/bin/env python3
"""A deliberately wrong CHSM for test_conform: a plain-HTTP proxy on loopback
in front of a real chsmd (HTTPS) that passes every exchange through unchanged
except one interface, broken in one of these ways (argv[2]):

  unsigned   GET /gmt0088/v1/chsm/status answers without X-GMT-Device-Signature
  wrongcode  an unknown path (1004) answers code 1003 in its body
  leak       PUT /gmt0088/v1/chsm/image-upload-address answers the header
             values it was sent (an upload credential) in its data

Usage: conform_wrong_responder.py UPSTREAM_PORT MODE PORTFILE
Prints nothing; writes the port it listens on into PORTFILE.
"""
import http.client
import json
import http.server
import ssl
import sys

UPSTREAM = int(sys.argv[1])
MODE = sys.argv[2]
CTX = ssl.create_default_context()
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def forward(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("host", "connection", "content-length")}
        up = http.client.HTTPSConnection("127.0.0.1", UPSTREAM, context=CTX, timeout=60)
        up.request(self.command, self.path, body=body, headers=headers)
        r = up.getresponse()
        data = r.read()
        out = [(k, v) for k, v in r.getheaders()
               if k.lower() not in ("content-length", "connection", "transfer-encoding")]
        up.close()
        if MODE == "unsigned" and self.command == "GET" and self.path == "/gmt0088/v1/chsm/status":
            out = [(k, v) for k, v in out if k.lower() != "x-gmt-device-signature"]
        if MODE == "wrongcode" and b'"code":1004' in data:
            data = data.replace(b'"code":1004', b'"code":1003')
        if (MODE == "leak" and self.command == "PUT" and body
                and self.path == "/gmt0088/v1/chsm/image-upload-address" and r.status == 200):
            doc = json.loads(data)
            doc["data"]["headers"] = json.loads(body).get("headers", {})
            data = json.dumps(doc, separators=(",", ":")).encode()
        self.send_response(r.status)
        for k, v in out:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = forward


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
with open(sys.argv[3], "w") as f:
    f.write(str(srv.server_address[1]))
srv.serve_forever()
