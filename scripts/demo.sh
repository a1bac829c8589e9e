#!/usr/bin/env bash
# The README's first command: sudo scripts/demo.sh
#
# On a fresh Debian/Ubuntu machine, as root: installs what is missing
# (scripts/setup.sh), starts cnmd in the background on its own Redis (or
# reuses a cnmd that already runs), then walks a short cnmctl scenario: a
# bridge network, two sandboxes, an HTTP server in one with its port
# published on 127.0.0.1, ping between them, the page fetched through the
# published port. Each step is printed as the command, then its output.
#
# Idempotent: the demo's objects (network "demo", sandboxes "web" and
# "client", all labelled cnm.demo=true) left by a previous run are removed
# first; an object of the same name without that label stops the demo.
# The HTTP server is stopped by PID at the end of the scenario (also when a
# step fails); the network and sandboxes are left for exploring.
#
# Environment:
#   CNM_RUN_DIR, CNM_DATA_DIR, CNM_HOST_ID, CNM_NETNS_PREFIX, ...  cnmd's own
#       settings (defaults /run/cnm, /var/lib/cnm); /etc/cnm/cnm.toml is used
#       when it exists (CNM_CONFIG=FILE for another, CNM_CONFIG= for none)
#   CNM_DEMO_SUBNET    the demo network's subnet (default 10.123.0.0/24)
#   CNM_DEMO_PORT      the published port on 127.0.0.1 (default 8080)
#   CNM_DEMO_SETUP=0   skip scripts/setup.sh (the machine is set up already)
#   CNM_DEMO_STOP=1    at the end, remove the demo's objects and stop cnmd
#
# Structure: one function per stage, run in order by main().
set -eEuo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CNMD=("$ROOT/.venv/bin/cnmd")
CONFIG=${CNM_CONFIG-/etc/cnm/cnm.toml}
[[ -n $CONFIG && -f $CONFIG ]] && CNMD+=(--config "$CONFIG")
SUBNET=${CNM_DEMO_SUBNET:-10.123.0.0/24}
PORT=${CNM_DEMO_PORT:-8080}
NET=demo
SANDBOXES=(web client)
LABEL=cnm.demo=true
PAGE_TEXT="Hello from the web sandbox"

HTTP_PID=""
WWW=""
RUN_DIR=""
DATA_DIR=""
STEP=""
ERRORED=0

say() { printf '\n== %s\n' "$*"; }

# What a newcomer would type: `cnmctl ...` is the venv's, on this cnmd's
# controller socket (CNM_CONTROLLER, exported by find_dirs).
cnmctl() { "$ROOT/.venv/bin/cnmctl" "$@"; }

# Prints the command as it would be typed (arguments with spaces or quotes
# single-quoted), then runs it.
show() {
    local out="" arg
    for arg in "$@"; do
        if [[ $arg =~ [[:space:]\"\'\$\(\)\;\&\|\<\>] ]]; then
            out+="'${arg//\'/\'\\\'\'}' "
        else
            out+="$arg "
        fi
    done
    STEP=${out% }
    printf '\n$ %s\n' "$STEP"
}
run() {
    show "$@"
    "$@"
}

on_error() {
    # Once: with errtrace the trap also fires in each function the error leaves.
    ((ERRORED)) && return
    ERRORED=1
    echo "demo.sh: failed (exit $1)${STEP:+ after: $STEP}" >&2
    [[ -z $RUN_DIR ]] || echo "demo.sh: see ${CNMD[*]} status, and the logs in $DATA_DIR/log" >&2
}
trap 'on_error $?' ERR
trap 'stop_http_server quiet; [[ -z $WWW ]] || rm -rf "$WWW"' EXIT

require_root() {
    if ((EUID != 0)); then
        echo "demo.sh: run as root (sudo scripts/demo.sh): cnm builds network namespaces" >&2
        exit 1
    fi
}

setup() {
    if [[ ${CNM_DEMO_SETUP:-1} == 0 ]]; then
        return
    fi
    say "set-up (scripts/setup.sh)"
    scripts/setup.sh
}

# cnmd's run and data dirs as cnmd itself resolves them (config file,
# CNM_RUN_DIR / CNM_DATA_DIR, defaults).
find_dirs() {
    local dirs
    dirs=$(
        CONFIG=$CONFIG "$ROOT/.venv/bin/python" -c '
import os
from pathlib import Path
from services.cnmd import CnmdConfig
from services.config import load
file = os.environ["CONFIG"]
cfg = load(CnmdConfig, section="cnmd", file=file if os.path.isfile(file) else None)
print(Path(cfg.run_dir).absolute())
print(Path(cfg.data_dir).absolute())'
    )
    RUN_DIR=${dirs%%$'\n'*}
    DATA_DIR=${dirs#*$'\n'}
    export CNM_CONTROLLER="unix://$RUN_DIR/controller.sock"
}

start_cnmd() {
    say "cnmd"
    local rc=0
    "${CNMD[@]}" status >/dev/null 2>&1 || rc=$?
    case $rc in
        0) echo "cnmd is already running and SERVING" ;;
        3) "${CNMD[@]}" --daemon ;;
        *)
            "${CNMD[@]}" status || true
            echo "demo.sh: cnmd runs but is not SERVING; see the logs in $DATA_DIR/log" >&2
            exit 1
            ;;
    esac
}

show_status() {
    say "cnmd status"
    "${CNMD[@]}" status
}

# --- the scenario -----------------------------------------------------------------------------

# "yes" when `cnmctl KIND inspect NAME` finds an object labelled cnm.demo=true,
# "other" when the name belongs to something else, "" when there is none.
owner() {
    cnmctl "$1" inspect "$2" 2>/dev/null | "$ROOT/.venv/bin/python" -c '
import json, sys
objs = json.load(sys.stdin)
print("yes" if objs[0].get("Labels", {}).get("cnm.demo") == "true" else "other")' 2>/dev/null || true
}

# The IPv4 address (without prefix length) of a sandbox's only endpoint.
sandbox_ip() {
    cnmctl sandbox inspect "$1" | "$ROOT/.venv/bin/python" -c '
import json, sys
print(json.load(sys.stdin)[0]["Endpoints"][0]["IPv4Address"].split("/")[0])'
}

http_pid_file() { echo "${RUN_DIR:-/nonexistent}/demo-http.pid"; }

# Stops the HTTP server this script started (or an earlier run left behind,
# found through the pid file), by PID, only if that PID still runs http.server.
stop_http_server() {
    local pid=$HTTP_PID file
    file=$(http_pid_file)
    [[ -n $pid || ! -f $file ]] || pid=$(<"$file")
    [[ -n $pid ]] || return 0
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'http\.server'; then
        [[ $1 == quiet ]] || show kill "$pid"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
    HTTP_PID=""
    rm -f "$file"
}

# Every name is checked before anything is removed: a name taken by someone
# else stops the demo with nothing changed.
remove_demo_objects() {
    local kind_name kind name i theirs=() ours=()
    for kind_name in "${SANDBOXES[@]/#/sandbox:}" "network:$NET"; do
        kind=${kind_name%%:*}
        name=${kind_name#*:}
        case $(owner "$kind" "$name") in
            yes) ours+=("$kind" "$name") ;;
            other) theirs+=("$kind \"$name\"") ;;
        esac
    done
    if ((${#theirs[@]})); then
        echo "demo.sh: $(printf '%s, ' "${theirs[@]}")not the demo's (no label $LABEL):" \
            "nothing was changed; remove them, or run the demo against another cnmd" \
            "(CNM_RUN_DIR, CNM_DATA_DIR)" >&2
        exit 1
    fi
    ((${#ours[@]})) || { echo "(nothing to remove)"; return 0; }
    # Sandboxes first: removing one removes the endpoints its connects made,
    # and a network with endpoints cannot be removed.
    for ((i = 0; i < ${#ours[@]}; i += 2)); do
        run cnmctl "${ours[i]}" rm "${ours[i + 1]}"
    done
}

scenario() {
    say "the scenario: cnmctl is $ROOT/.venv/bin/cnmctl, CNM_CONTROLLER=$CNM_CONTROLLER"
    stop_http_server quiet
    echo "Removing what a previous run of the demo left, if anything:"
    remove_demo_objects

    say "a bridge network"
    run cnmctl network create -d bridge --subnet "$SUBNET" --label "$LABEL" "$NET"

    say "two sandboxes (each a network namespace: one container's network stack)"
    run cnmctl sandbox create --hostname web --label "$LABEL" web
    run cnmctl sandbox create --hostname client --label "$LABEL" client

    say "both connected; web's port 80 published on 127.0.0.1:$PORT"
    run cnmctl network connect -p "127.0.0.1:$PORT:80" "$NET" web
    run cnmctl network connect "$NET" client
    run cnmctl sandbox exec web -- ip -br addr
    local web_ip client_ip
    web_ip=$(sandbox_ip web)
    client_ip=$(sandbox_ip client)

    say "a small HTTP server in web, in the background"
    WWW=$(mktemp -d /tmp/cnm-demo-www.XXXXXX)
    printf '<!doctype html><title>cnm demo</title><h1>%s</h1>\n' "$PAGE_TEXT" >"$WWW/index.html"
    printf '\n$ cnmctl sandbox exec web -- python3 -m http.server --bind 0.0.0.0 --directory %s 80 &\n' "$WWW"
    # The binary, not the cnmctl function (a function in the background runs in
    # a subshell of its own): cnmctl exec()s nsenter, which exec()s python3, so
    # $! is the server's own PID.
    "$ROOT/.venv/bin/cnmctl" sandbox exec web -- python3 -m http.server --bind 0.0.0.0 --directory "$WWW" 80 \
        >"$RUN_DIR/demo-http.log" 2>&1 &
    HTTP_PID=$!
    echo "$HTTP_PID" >"$(http_pid_file)"
    echo "(pid $HTTP_PID; this script stops it at the end; its log: $RUN_DIR/demo-http.log)"
    wait_for_server "$web_ip"

    say "ping between the sandboxes, by name (cnm-dns answers on 127.0.0.11 in each)"
    run cnmctl sandbox exec client -- getent hosts web
    run cnmctl sandbox exec client -- ping -c 3 -i 0.2 -W 2 web
    run cnmctl sandbox exec web -- ping -c 3 -i 0.2 -W 2 "client.$NET"

    say "the page, fetched through the published port on this machine's 127.0.0.1"
    if command -v curl >/dev/null; then
        run curl -sS --max-time 5 "http://127.0.0.1:$PORT/"
    else
        run python3 -c "import urllib.request as u; print(u.urlopen(\"http://127.0.0.1:$PORT/\", timeout=5).read().decode(), end=\"\")"
    fi

    say "what cnm knows"
    run cnmctl network inspect "$NET"
    run cnmctl sandbox ls
    run cnmctl network ls

    say "the HTTP server stops"
    stop_http_server loud
}

# Until web's server answers inside web's own namespace (it needs a moment to
# start); the published port is then tried once, as a step of its own.
wait_for_server() {
    local i
    for i in $(seq 100); do
        if cnmctl sandbox exec web -- python3 -c "import socket; socket.create_connection(('$1', 80), 1).close()" 2>/dev/null; then
            return 0
        fi
        kill -0 "$HTTP_PID" 2>/dev/null || {
            echo "demo.sh: the HTTP server exited:" >&2
            cat "$RUN_DIR/demo-http.log" >&2
            exit 1
        }
        sleep 0.1
    done
    echo "demo.sh: the HTTP server in web does not answer after 10 s" >&2
    exit 1
}

finish() {
    if [[ ${CNM_DEMO_STOP:-0} == 1 ]]; then
        say "clean up (CNM_DEMO_STOP=1): the demo's objects, then cnmd"
        remove_demo_objects
        run "${CNMD[@]}" stop
        return
    fi
    local bin=$ROOT/.venv/bin run_dir_flag="" data_dir_flag=""
    # Spelled out when not the default, so the commands work without CNM_RUN_DIR.
    [[ $RUN_DIR == /run/cnm ]] || run_dir_flag=" --run-dir $RUN_DIR"
    [[ $DATA_DIR == /var/lib/cnm ]] || data_dir_flag=" --data-dir $DATA_DIR"
    say "done"
    cat <<EOF
cnmd keeps running in the background, and so do the demo's network and sandboxes.

Keep exploring (as root):
  export CNM_CONTROLLER=$CNM_CONTROLLER
  $bin/cnmctl --help
  $bin/cnmctl sandbox inspect web
  $bin/cnmctl endpoint ls --network $NET
  $bin/cnmctl host ls
  $bin/cnmctl ipam ls
  $bin/cnmctl sandbox exec client -- ip route
  $bin/cnmctl sandbox exec web -- python3 -m http.server 80   # then: curl http://127.0.0.1:$PORT/
  $bin/cnmctl events                                            # live, until Ctrl-C
  $bin/grpcurl -plaintext -unix $RUN_DIR/controller.sock list cnm.controller.v1.Controller
  $bin/grpcurl -plaintext -unix -d '{}' $RUN_DIR/controller.sock cnm.controller.v1.Controller/ListNetworks

Stop and clean up:
  $bin/cnmctl sandbox rm web client && $bin/cnmctl network rm $NET
  ${CNMD[*]} stop$run_dir_flag
cnm's state stays in $DATA_DIR (Redis' append-only file, sandbox files, logs);
remove that directory after cnmd stop to start afresh.
If cnmd is no longer running, this removes what it left (namespaces, links,
nftables tables, its private store):
  ${CNMD[*]} cleanup$run_dir_flag$data_dir_flag
EOF
}

main() {
    require_root
    setup
    find_dirs
    start_cnmd
    show_status
    scenario
    finish
}

main "$@"
