#!/usr/bin/env bash
# xfer against nginx (WebDAV PUT): uploads, downloads, configured headers,
# redirects, errors, https with a CA file, and flat memory on 200 MiB. The
# checks are in tests/xfer/test_xfer_http.c; this script runs the server.
. "$(dirname "$0")/lib.sh"
it_begin xfer_nginx

command -v nginx >/dev/null || fail_now "nginx is not installed (scripts/install-deps.sh)"
nginx_start tls
mkdir -p "$IT_DIR/scratch"
dead=$(free_port)
check "nothing listens on the dead port" not_listening 127.0.0.1 "$dead"
XFER_URL=$NGINX_URL XFER_WWW=$NGINX_WWW XFER_DEAD_URL=http://127.0.0.1:$dead \
  XFER_TLS_URL=$NGINX_TLS_URL XFER_CA=$NGINX_CA XFER_TMP=$IT_DIR/scratch \
  "$CHSM_BIN/test_xfer_http" 2>&1 | sed 's/^/#   /'
check "test_xfer_http passed" [ "${PIPESTATUS[0]}" = 0 ]

# Credentials went to nginx, not into its view of the URL we log: the query
# string reached nginx (so it was sent), and nginx saw the Authorization
# header (the /auth/ upload with it succeeded: 201 in the access log).
check "nginx stored the upload made with the configured header" \
  grep -q '"PUT /auth/obj?sig=QUERYSECRET HTTP/1.1" 201' "$IT_DIR/nginx/access.log"
check "nginx refused the one without it" \
  grep -q '"PUT /auth/obj?sig=QUERYSECRET HTTP/1.1" 403' "$IT_DIR/nginx/access.log"
nginx_stop
check "nginx stopped" not_listening 127.0.0.1 "${NGINX_URL##*:}"
it_end
