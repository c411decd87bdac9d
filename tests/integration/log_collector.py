#!/usr/bin/env python3
"""log_collector.py: an HTTP log collector for the log shipping test
(python3 standard library only).

    log_collector.py --dir DIR --port N

Listens on 127.0.0.1:N and prints the port as the first line of stdout.
Every POST whose body is a JSON array is answered 200 and its elements are
appended, one compact JSON object a line, to DIR/records.jsonl, and the
request's headers, as one JSON object a line, to DIR/headers.jsonl.
Anything else is answered 400.
"""
import argparse
import http.server
import json
import os
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            try:
                items = json.loads(body)
                ok = isinstance(items, list)
            except ValueError:
                ok = False
            if not ok:
                self.answer(400)
                return
            with open(os.path.join(args.dir, "records.jsonl"), "a") as f:
                for it in items:
                    f.write(json.dumps(it, separators=(",", ":")) + "\n")
            with open(os.path.join(args.dir, "headers.jsonl"), "a") as f:
                f.write(json.dumps(dict(self.headers.items())) + "\n")
            self.answer(200)

        def answer(self, status):
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, fmt, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", args.port), Handler)
    print(srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
