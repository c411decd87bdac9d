#!/usr/bin/env bash
# Network and time on the linux platform (root): chsmd runs with
# --platform linux in a network namespace of its own (and a UTS namespace,
# so sethostname stays there), with two interfaces of its own.
#  - 7.2.4 applies addresses, the default route, the host name and
#    resolv.conf ("applied": "now"); the next 7.2.4 replaces them; an
#    interface that does not exist is 1003 and a step that fails (here
#    resolv.conf, whose path is made a folder) is 5000 with everything
#    undone.
#  - VSMs each run in a namespace of their own behind a veth pair on the
#    bridge; a client in another namespace on that bridge reaches each at
#    its configured address (vsmtool info/sign); a live move (7.3.3);
#    one address per VSM (3009); the namespaces go with stop and delete,
#    and leftovers go at chsmd's start.
#  - 7.2.5 writes the chrony sources file and a real chronyd (run by this
#    test, reading that folder, never touching the clock) reloads it:
#    "applied": "now"; with chronyd gone, "next-start".
# chsmd is entered into its namespaces with nsenter and unshare, not `ip
# netns exec`: that gives it a private mount namespace, where the
# namespaces it makes with `ip netns add` would be invisible to this test.
# Every namespace, link and process made here is removed on exit.
. "$(dirname "$0")/lib.sh"
it_begin network_linux
API=/gmt0088/v1

if [ "$(id -u)" != 0 ]; then
  echo "# SKIP: the linux platform needs root (network namespaces, sethostname, chronyd); CI runs this as root"
  exit 77
fi
for tool in ip nsenter unshare chronyd chronyc; do
  command -v "$tool" >/dev/null || fail_now "$tool is not installed: run scripts/install-deps.sh"
done

T=chsmt$$
HOSTNS=${T}h
CLIENTNS=${T}c
BR=${T}b
NETNS_BEFORE=$(ip netns list | awk '{print $1}' | sort)

net_cleanup() {
  chsm_stop_all
  local ns
  for ns in $(ip netns list | awk '{print $1}' | sort | comm -13 <(echo "$NETNS_BEFORE") -); do
    ip netns delete "$ns" 2>/dev/null
  done
  ip netns delete "$HOSTNS" 2>/dev/null
  ip netns delete "$CLIENTNS" 2>/dev/null
  it_cleanup
}
trap net_cleanup EXIT

# chsmd's namespace: loopback and two interfaces (dummy where the kernel
# has it, else one end of a veth pair).
ip netns add "$HOSTNS" || fail_now "ip netns add"
ip -n "$HOSTNS" link set dev lo up
for i in eth1 eth2; do
  if ! ip -n "$HOSTNS" link add "$i" type dummy 2>/dev/null; then
    ip -n "$HOSTNS" link add "$i" type veth peer name "${i}p" || fail_now "make $i"
    ip -n "$HOSTNS" link set dev "${i}p" up
  fi
done

# Requests go to chsmd's loopback, inside its namespace.
curl() { ip netns exec "$HOSTNS" curl "$@"; }
in_host() { ip netns exec "$HOSTNS" "$@"; }

# ---- chronyd: reads the sources folder chsmd writes ----
mkdir -p "$IT_DIR/sources.d" "$IT_DIR/chronyrun"
chmod 700 "$IT_DIR/chronyrun"
CHRONY_SOCK=$IT_DIR/chronyrun/chronyd.sock
cat > "$IT_DIR/chrony.conf" <<CONF
port 0
cmdport 0
bindcmdaddress $CHRONY_SOCK
sourcedir $IT_DIR/sources.d
pidfile $IT_DIR/chronyrun/chronyd.pid
driftfile $IT_DIR/chrony.drift
CONF
chronyd -d -x -u root -f "$IT_DIR/chrony.conf" > "$IT_DIR/chronyd.log" 2>&1 &
CHRONY_PID=$!
IT_BG_PIDS="${IT_BG_PIDS:-} $CHRONY_PID"
check "chronyd answers on its command socket" eventually 20 chronyc -h "$CHRONY_SOCK" tracking

# ---- chsmd, linux platform ----
chsm_init --max-vsms 4
# A leftover of an earlier run of this CHSM: removed at start.
TAG=$(python3 -c 'import sys
h = 2166136261
for b in sys.argv[1].encode():
    h = ((h ^ b) * 16777619) & 0xffffffff
print("%06x" % (h & 0xffffff))' "$DEVICE_ID")
ip netns add "chsm-$TAG-stale"
runopt_rejected() { "$CHSM_BIN/chsmd" run --state-dir "$IT_DIR/none" "$@" >/dev/null 2>&1; [ $? -eq 2 ]; }
check "--platform other is refused" runopt_rejected --platform bsd
check "--vsm-bridge -x is refused" runopt_rejected --vsm-bridge -x
check "--resolv-conf relative is refused" runopt_rejected --resolv-conf etc/resolv.conf
RESOLV=$IT_DIR/resolv.conf
echo "nameserver 192.0.2.99" > "$RESOLV"
CHSMD_WRAP="nsenter --net=/run/netns/$HOSTNS unshare --uts" chsm_start --platform linux \
  --vsm-bridge "$BR" --resolv-conf "$RESOLV" --chrony-sources "$IT_DIR/sources.d/openchsm.sources" \
  --chronyc-socket "$CHRONY_SOCK"
enroll_platform
device_pub_pem
check "the stale namespace of this CHSM is gone" bash -c "! ip netns list | grep -q '^chsm-$TAG-stale'"

host_name() { nsenter --target "$CHSMD_PID" --uts hostname; }
addr_of() { ip -n "$HOSTNS" -o addr show dev "$1" | awk '{print $4}' | tr '\n' ' '; }
# (no `| grep -q` here: with pipefail, ip's SIGPIPE would fail the check)
has_addr() { [[ " $(addr_of "$1") " == *" $2 "* ]]; }
default_v4() { ip -n "$HOSTNS" -4 route show default | head -n 1; }
ORIG_HOST=$(host_name)

# ---- 7.2.4 applied ----
N1='{"hostname":"chsm-net-a","interfaces":[{"name":"eth1","address":"10.77.1.2/24","gateway":"10.77.1.1"},{"name":"eth2","address":"fd77::2/64"}],"dns":["10.77.1.53","fd77::53"]}'
gmt_request PUT $API/chsm/network "$N1"
expect_signed "7.2.4 on the linux platform" 0 200
check "7.2.4 answers applied: now" [ "$(resp_data .applied)" = now ]
check "eth1 has 10.77.1.2/24 ($(addr_of eth1))" has_addr eth1 10.77.1.2/24
check "eth2 has fd77::2/64 ($(addr_of eth2))" has_addr eth2 fd77::2/64
check "eth1 is up" bash -c "ip -n '$HOSTNS' link show dev eth1 | grep -q 'UP'"
check "default route via 10.77.1.1 dev eth1 ($(default_v4))" bash -c "ip -n '$HOSTNS' -4 route show default | grep -q 'via 10.77.1.1 dev eth1'"
check "the host name is chsm-net-a" [ "$(host_name)" = chsm-net-a ]
check "resolv.conf names both servers" bash -c "grep -qx 'nameserver 10.77.1.53' '$RESOLV' && grep -qx 'nameserver fd77::53' '$RESOLV'"
check "resolv.conf lost the old server" bash -c "! grep -q 192.0.2.99 '$RESOLV'"
check "the host name of the test's own namespace is untouched" [ "$(hostname)" != chsm-net-a ]

# The next configuration replaces it.
N2='{"hostname":"chsm-net-b","interfaces":[{"name":"eth1","address":"10.77.1.3/24","gateway":"10.77.1.254"}],"dns":["10.77.1.54"]}'
gmt_request PUT $API/chsm/network "$N2"
expect_signed "7.2.4 replaces the configuration" 0 200
check "eth1 has 10.77.1.3/24 ($(addr_of eth1))" has_addr eth1 10.77.1.3/24
check "eth1 lost 10.77.1.2" bash -c "! ip -n '$HOSTNS' -o addr show dev eth1 | grep -qw 10.77.1.2/24"
check "eth2 lost fd77::2 (no longer configured)" bash -c "! ip -n '$HOSTNS' -o addr show dev eth2 | grep -qw fd77::2/64"
check "default route via 10.77.1.254" bash -c "ip -n '$HOSTNS' -4 route show default | grep -q 'via 10.77.1.254 dev eth1'"
check "only one default route" [ "$(ip -n "$HOSTNS" -4 route show default | wc -l)" = 1 ]
check "the host name is chsm-net-b" [ "$(host_name)" = chsm-net-b ]
SNAP_ADDR=$(addr_of eth1); SNAP_ROUTE=$(default_v4); SNAP_RESOLV=$(cat "$RESOLV")
snapshot_same() {
  [ "$(addr_of eth1)" = "$SNAP_ADDR" ] && [ "$(default_v4)" = "$SNAP_ROUTE" ] &&
    [ "$(host_name)" = chsm-net-b ] && [ "$(cat "$RESOLV")" = "$SNAP_RESOLV" ] &&
    [[ "$(ip -n "$HOSTNS" -o addr show dev eth2)" != *10.77.2* ]]
}

# An interface that does not exist: 1003, nothing changed.
gmt_request PUT $API/chsm/network '{"hostname":"chsm-net-c","interfaces":[{"name":"eth1","address":"10.77.1.9/24"},{"name":"eth9","address":"10.77.9.2/24"}]}'
expect_signed "7.2.4 naming an interface this CHSM lacks" 1003 400
check "the message names it" grep -q 'interface eth9 does not exist on this CHSM' "$RESP_BODY"
check "after 1003 the host is as before" snapshot_same

# A step that fails (resolv.conf cannot be replaced): 5000, all undone.
rm -f "$RESOLV"; mkdir "$RESOLV"; SNAP_RESOLV=$(cat "$RESOLV" 2>/dev/null)
gmt_request PUT $API/chsm/network '{"hostname":"chsm-net-d","interfaces":[{"name":"eth1","address":"10.77.1.4/24","gateway":"10.77.1.1"},{"name":"eth2","address":"10.77.2.2/24"}],"dns":["10.77.1.55"]}'
expect_signed "7.2.4 whose last step fails" 5000 500
check "the 5000 message says nothing changed and why" jqt "$RESP_BODY" \
  '.message | test("nothing changed") and test("resolv.conf")'
check "after 5000 the addresses, route and host name are as before ($(addr_of eth1); $(default_v4); $(host_name))" snapshot_same
gmt_request GET $API/chsm/status/all
check "after 5000 7.2.3 still shows chsm-net-b" jqt "$RESP_BODY" '.data.config.network.hostname == "chsm-net-b"'
rmdir "$RESOLV"; echo "nameserver 10.77.1.54" > "$RESOLV"

# ---- VSMs in namespaces of their own ----
head -c 32 /dev/urandom | base64 -w0 > "$IT_DIR/tok.b64"
SECRET=$(cat "$IT_DIR/tok.b64")
P=$(free_port)
vnet() { printf '{"ipAddress":"%s","prefixLength":24,"gateway":"10.88.0.1","port":%s}' "$1" "$2"; }
task_ok "create v1 at 10.88.0.11:$P, started" POST $API/vsms \
  "{\"vsmId\":\"v1\",\"name\":\"one\",\"network\":$(vnet 10.88.0.11 "$P"),\"token\":{\"tokenId\":\"app\",\"secret\":\"$SECRET\"},\"start\":true}"
task_ok "create v2 at 10.88.0.12:$P, started" POST $API/vsms \
  "{\"vsmId\":\"v2\",\"name\":\"two\",\"network\":$(vnet 10.88.0.12 "$P"),\"token\":{\"tokenId\":\"app\",\"secret\":\"$SECRET\"},\"start\":true}"
NS1=chsm-$TAG-v1; NS2=chsm-$TAG-v2
check "v1 has its namespace $NS1" bash -c "ip netns list | grep -q '^$NS1'"
check "v2 has its namespace $NS2" bash -c "ip netns list | grep -q '^$NS2'"
check "v1's address is on eth0 in its namespace" bash -c "ip -n '$NS1' -o addr show dev eth0 | grep -qw 10.88.0.11/24"
check "v1's default route is via 10.88.0.1" bash -c "ip -n '$NS1' route show default | grep -q 'via 10.88.0.1'"
check "v1's process runs in its namespace" [ "$(readlink "/proc/$(vsm_pid v1)/ns/net")" = "$(ip netns exec "$NS1" readlink /proc/self/ns/net)" ]
check "the bridge $BR exists in chsmd's namespace" ip -n "$HOSTNS" link show dev "$BR"

# The client: a namespace of its own, on the bridge.
ip netns add "$CLIENTNS"
ip -n "$HOSTNS" link add "${T}k" type veth peer name eth0 netns "$CLIENTNS"
ip -n "$HOSTNS" link set dev "${T}k" master "$BR" up
ip -n "$CLIENTNS" link set dev lo up
ip -n "$CLIENTNS" addr add 10.88.0.100/24 dev eth0
ip -n "$CLIENTNS" link set dev eth0 up
tool() { ip netns exec "$CLIENTNS" timeout 20 "$CHSM_BIN/vsmtool" --endpoint "$1" --token-id app --token-secret-file "$IT_DIR/tok.b64" "${@:2}"; }
reach() { ip netns exec "$CLIENTNS" timeout 3 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }
not_reach() { ! reach "$@"; }
printf 'to be signed' > "$IT_DIR/msg"
check "client: vsmtool info on v1 at 10.88.0.11:$P" eventually 10 eval 'tool 10.88.0.11:$P info > "$IT_DIR/info1"'
check "client: vsmtool info on v2 at 10.88.0.12:$P" eventually 10 eval 'tool 10.88.0.12:$P info >/dev/null'
check "client: keygen and sign on v1" eval 'tool 10.88.0.11:$P keygen --index 1 >/dev/null && tool 10.88.0.11:$P sign --index 1 --in "$IT_DIR/msg" | tr -d "\n" > "$IT_DIR/sig"'
check "client: the signature verifies on v1" eval 'tool 10.88.0.11:$P verify --index 1 --in "$IT_DIR/msg" --sig "$IT_DIR/sig" >/dev/null'
check "chsmd's namespace does not carry v1's address" bash -c "! ip -n '$HOSTNS' -o addr | grep -q 10.88.0.11"

# One address per VSM on this platform.
gmt_request PUT $API/vsms/v2/network "$(vnet 10.88.0.11 "$(free_port)")"
expect_signed "7.3.3: v1's address for v2 (another port): 3009 on linux" 3009 409

# Live move of v1.
gmt_request PUT $API/vsms/v1/network "$(vnet 10.88.0.21 "$P")"
expect_signed "7.3.3 moves running v1 to 10.88.0.21" 0 200
check "applied: live" [ "$(resp_data .applied)" = live ]
check "client: v1 answers at 10.88.0.21" eventually 10 eval 'tool 10.88.0.21:$P verify --index 1 --in "$IT_DIR/msg" --sig "$IT_DIR/sig" >/dev/null'
check "client: nothing at 10.88.0.11 any more" not_reach 10.88.0.11 "$P"
check "v1's namespace no longer has 10.88.0.11" bash -c "! ip -n '$NS1' -o addr show dev eth0 | grep -qw 10.88.0.11/24"
check "v2 still answers" eval 'tool 10.88.0.12:$P info >/dev/null'

# Stop and delete remove the namespaces.
task_ok "stop v1" POST $API/vsms/v1/stop
check "v1's namespace is gone after stop" bash -c "! ip netns list | grep -q '^$NS1'"
task_ok "start v1 again" POST $API/vsms/v1/start
check "client: v1 answers at 10.88.0.21 after its start" eventually 10 eval 'tool 10.88.0.21:$P info >/dev/null'
task_ok "delete v2" DELETE $API/vsms/v2
check "v2's namespace is gone after delete" bash -c "! ip netns list | grep -q '^$NS2'"

# ---- 7.2.5: chrony ----
SOURCES=$IT_DIR/sources.d/openchsm.sources
gmt_request PUT $API/chsm/ntp '{"servers":["127.0.0.1","192.0.2.123"],"enabled":true}'
expect_signed "7.2.5 on the linux platform" 0 200
check "7.2.5 answers applied: now (chronyd reloaded)" [ "$(resp_data .applied)" = now ]
check "the sources file names both servers" bash -c "grep -qx 'server 127.0.0.1 iburst' '$SOURCES' && grep -qx 'server 192.0.2.123 iburst' '$SOURCES'"
check "chronyd uses them" eventually 10 bash -c "chronyc -h '$CHRONY_SOCK' -n sources | grep -q 192.0.2.123"
gmt_request PUT $API/chsm/ntp '{"servers":["192.0.2.124"],"enabled":false}'
expect_signed "7.2.5 disabled" 0 200
check "disabled: the sources file names no server" bash -c "! grep -q '^server' '$SOURCES'"
check "disabled: chronyd dropped them" eventually 10 bash -c "! chronyc -h '$CHRONY_SOCK' -n sources | grep -q 192.0.2.12"
kill "$CHRONY_PID"; wait "$CHRONY_PID" 2>/dev/null
gmt_request PUT $API/chsm/ntp '{"servers":["192.0.2.125"]}'
expect_signed "7.2.5 with chronyd down" 0 200
check "chronyd down: applied next-start" [ "$(resp_data .applied)" = next-start ]
check "chronyd down: the file is written all the same" grep -qx 'server 192.0.2.125 iburst' "$SOURCES"
check "log: config.ntp.not_reloaded" grep -q 'event=config.ntp.not_reloaded' "$CHSMD_LOG"

# ---- the end ----
check "SIGTERM stops chsmd cleanly" chsm_stop
check "a clean stop removes the VSM namespaces" bash -c "! ip netns list | grep -q '^chsm-$TAG-'"
CHSMD_WRAP="nsenter --net=/run/netns/$HOSTNS unshare --uts" chsm_start --platform linux \
  --vsm-bridge "$BR" --resolv-conf "$RESOLV" --chrony-sources "$SOURCES" --chronyc-socket "$CHRONY_SOCK"
check "after a restart v1 runs again in its namespace" eventually 20 eval 'tool 10.88.0.21:$P info >/dev/null'
check "after a restart the stored network is applied again (host name)" [ "$(host_name)" = chsm-net-b ]
check "SIGTERM stops chsmd again" chsm_stop
check "no namespace of this CHSM is left" bash -c "! ip netns list | grep -q '^chsm-$TAG-'"
it_end
