#!/usr/bin/env bash
# Multi-host on one machine: sudo scripts/cluster-demo.sh
#
# Builds a simulated cluster with tests/harness/cluster.py: N hosts (default
# 3) as network namespaces joined by an underlay bridge that lives in a
# namespace of its own (192.0.2.0/24, TEST-NET-1, never routed), each running
# `cnm-driver --host-id hN --advertise-addr 192.0.2.1N`, and one Redis, IPAM
# and controller on unix sockets. Then, with cnmctl: an overlay network, a
# sandbox on each host connected to it, every sandbox pinging every other
# across the VXLAN underlay, the peers' FDB and neighbour entries of one host,
# and a disconnect whose entries vanish on the other hosts.
#
# Everything is torn down on exit, also on failure or Ctrl-C (trap): sandboxes
# and network through the API, the services stopped by the PIDs the harness
# recorded, `cnm-driver --cleanup` on every host, the namespaces removed.
#
# Environment:
#   CNM_CLUSTER_HOSTS   number of hosts (default 3)
#   CNM_CLUSTER_NAME    prefix of every namespace made (default cnmdemo)
#   CNM_CLUSTER_DIR     run directory (default: a new one under /tmp)
#   CNM_CLUSTER_KEEP=1  leave the cluster up (tear it down later with
#                       .venv/bin/python tests/harness/cluster.py down --dir DIR)
set -eEuo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY="$ROOT/.venv/bin/python"
HOSTS=${CNM_CLUSTER_HOSTS:-3}
NAME=${CNM_CLUSTER_NAME:-cnmdemo}
DIR=${CNM_CLUSTER_DIR:-$(mktemp -d /tmp/cnmcluster-XXXXXX)}
NET=demo-overlay

say() { printf '\n== %s\n' "$*"; }
cnmctl() { "$ROOT/.venv/bin/cnmctl" "$@"; }
show() {
    printf '$ %s\n' "$*"
    "$@"
}
# The VXLAN device's own (static, remote) entries; the bridge's learned ones are left out.
show_fdb() {
    printf '$ ip netns exec %s bridge fdb show dev vxlan0 | grep dst\n' "$1"
    ip netns exec "$1" bridge fdb show dev vxlan0 | grep dst || true
}

teardown() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ ${CNM_CLUSTER_KEEP:-0} == 1 && $rc == 0 ]]; then
        say "cluster left up: $PY tests/harness/cluster.py down --dir $DIR"
        return
    fi
    say "tearing down"
    "$PY" tests/harness/cluster.py down --dir "$DIR" || rc=1
    leftover=$(ip netns list | awk -v p="$NAME-" 'index($1, p) == 1 {print $1}')
    if [[ -n $leftover ]]; then
        echo "cluster-demo: namespaces left behind: $leftover" >&2
        rc=1
    fi
    exit "$rc"
}

if [[ $(id -u) != 0 ]]; then
    echo "cluster-demo: needs root (network namespaces)" >&2
    exit 1
fi
if ip netns list | awk -v p="$NAME-" 'index($1, p) == 1 {found=1} END {exit !found}'; then
    echo "cluster-demo: namespaces named $NAME-* exist already; set CNM_CLUSTER_NAME" >&2
    exit 1
fi
trap teardown EXIT
trap 'exit 130' INT TERM

say "building $HOSTS hosts in $DIR"
"$PY" tests/harness/cluster.py up --dir "$DIR" --hosts "$HOSTS" --name "$NAME" >/dev/null
export CNM_CONTROLLER="unix://$DIR/controller.sock"
show cnmctl host ls

say "one overlay network (its VNI from IPAM, its subnet from GlobalDefault)"
show cnmctl network create --driver overlay "$NET"
vni=$(cnmctl network inspect "$NET" | "$PY" -c \
    'import json,sys; print(json.load(sys.stdin)[0]["Options"]["com.docker.network.driver.overlay.vxlanid_list"])')
echo "VNI $vni"

say "a sandbox on each host, connected to it"
declare -a SANDBOXES=() NETNS=() ADDRS=()
for i in $(seq 1 "$HOSTS"); do
    sb="sb$i"
    show cnmctl sandbox create --host "h$i" "$sb" >/dev/null
    show cnmctl network connect "$NET" "$sb"
    info=$(cnmctl sandbox inspect "$sb" | "$PY" -c \
        'import json,sys; s=json.load(sys.stdin)[0]; print(s["Key"].rsplit("/",1)[1])')
    # --format json: one JSON object per line.
    addr=$(cnmctl endpoint ls --network "$NET" --sandbox "$sb" --format json | "$PY" -c \
        'import json,sys; print(json.loads(sys.stdin.readline())["IPv4Address"].split("/")[0])')
    SANDBOXES+=("$sb")
    NETNS+=("$info")
    ADDRS+=("$addr")
done
show cnmctl endpoint ls --network "$NET"

say "every sandbox pings every other, across hosts (VXLAN over the underlay)"
for i in "${!SANDBOXES[@]}"; do
    for j in "${!SANDBOXES[@]}"; do
        [[ $i == "$j" ]] && continue
        printf '%s (h%d) -> %s (h%d): ' "${SANDBOXES[$i]}" $((i + 1)) "${ADDRS[$j]}" $((j + 1))
        ip netns exec "${NETNS[$i]}" ping -c1 -W2 -q "${ADDRS[$j]}" | awk -F', ' '/packet loss/ {print $3}'
    done
done
show ip netns exec "${NETNS[0]}" ip -d link show eth0

ovns="$NAME-ov-h1-$(cnmctl network inspect "$NET" | "$PY" -c \
    'import json,sys; print(json.load(sys.stdin)[0]["Id"][:12])')"
say "host h1's static entries for the remote peers (no learning, no flooding)"
show_fdb "$ovns"
show ip netns exec "$ovns" ip neigh show dev vxlan0

if ((HOSTS > 1)); then
    last=$((HOSTS - 1))
    say "disconnect ${SANDBOXES[$last]}: its entries leave h1 at once"
    show cnmctl network disconnect "$NET" "${SANDBOXES[$last]}"
    sleep 0.2
    show_fdb "$ovns"
fi
say "done"
