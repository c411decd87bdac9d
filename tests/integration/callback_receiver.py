#!/usr/bin/env python3
"""callback_receiver.py: the platform's end of task callbacks, for the
integration tests (python3 standard library only).

    callback_receiver.py --dir DIR [--port N] [--fail-first N]

Listens on 127.0.0.1 (port N, or an ephemeral one) and prints the port as
the first line of stdout. Every POST is recorded in DIR as a pair of files,
numbered across restarts of the receiver on the same DIR:

    NNN.body   the body, byte for byte
    NNN.json   {"path": request-target, "headers": {name: value},
                "status": the status answered}

The .json file is written last (by rename), so a test that sees it sees
the whole request. The first N POSTs (counted in DIR, so across restarts
too) are answered 500, the following ones 200. Anything else is 404.
"""
import argparse
import http.server
import json
import os
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--fail-first", type=int, default=0)
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)

    def recorded():
        return sum(1 for f in os.listdir(args.dir) if f.endswith(".json"))

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            n = recorded() + 1
            status = 500 if n <= args.fail_first else 200
            base = os.path.join(args.dir, "%03d" % n)
            with open(base + ".body", "wb") as f:
                f.write(body)
            meta = {"path": self.path, "headers": dict(self.headers.items()), "status": status}
            with open(base + ".tmp", "w") as f:
                json.dump(meta, f)
            os.rename(base + ".tmp", base + ".json")
            self.answer(status)

        def do_GET(self):
            self.answer(404)

        def answer(self, status):
            text = b"{}"
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, fmt, *a):
            pass

    http.server.HTTPServer.allow_reuse_address = True
    srv = http.server.HTTPServer(("127.0.0.1", args.port), Handler)
    print(srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
