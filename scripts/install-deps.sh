#!/usr/bin/env bash
# Installs every Debian package OpenCHSM needs to build, test and run.
# Run as root (or with sudo available). Safe to run again.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git
  libssl-dev openssl            # SM2/SM3/SM4 and TLS
  libevent-dev                  # HTTP server (evhttp + bufferevent_openssl + pthreads)
  libjansson-dev                # JSON
  libsqlite3-dev sqlite3        # durable state
  libcurl4-openssl-dev curl     # outgoing transfers; curl drives tests
  libcmocka-dev                 # unit tests
  python3 jq                    # integration tests: callback receiver, JSON checks
  procps psmisc iproute2        # ps, fuser, ss for tests; ip for chsmd --platform linux
  util-linux mount              # unshare, fallocate, mount (test_images_fullfs)
  valgrind                      # constant-time test of SM2; the daemon under memcheck (label valgrind)
  clang libclang-rt-14-dev      # libFuzzer harnesses (tests/fuzz, scripts/fuzz.sh)
  nginx                         # tests run their own (WebDAV PUT; the floor of bench/mgmt.sh), never the service
  rsyslog                       # integration tests: a real syslog collector (run unprivileged by the test)
  chrony                        # test_ntp_chrony runs its own chronyd on loopback as a real NTP server; test_network_linux one that chsmd reconfigures
)
# test_openapi: node and npm (Debian's, unless a node with its npm is installed
# already, e.g. NodeSource's, whose package conflicts with Debian's npm) and the
# validators pinned by tests/openapi/package-lock.json.
command -v npm >/dev/null 2>&1 || PACKAGES+=(nodejs npm)
npm_ci() {
  local d; d=$(cd "$(dirname "$0")/../tests/openapi" && pwd)
  [ "$d/node_modules/.package-lock.json" -nt "$d/package-lock.json" ] ||
    (cd "$d" && npm ci --no-audit --no-fund --loglevel=error)
}

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  npm_ci
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# Without an init system (containers), no service may start during the
# install (rsyslog's would): a temporary policy-rc.d refuses them.
policy_added=0
if [ ! -d /run/systemd/system ] && [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod 755 /usr/sbin/policy-rc.d
  policy_added=1
fi
rc=0
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" || rc=$?
# nginx runs only as the tests' own instances: stop and disable the system
# service its package starts and enables where an init system runs.
if printf '%s\n' "${missing[@]}" | grep -qx nginx; then
  if [ -d /run/systemd/system ]; then $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true
  else
    $SUDO invoke-rc.d nginx stop >/dev/null 2>&1 || true
    $SUDO update-rc.d nginx disable >/dev/null 2>&1 || true
  fi
fi
if [ "$policy_added" = 1 ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
npm_ci || rc=$?
exit $rc
