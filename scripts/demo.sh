#!/usr/bin/env bash
# The README's first command: sudo scripts/demo.sh
#
# On a fresh Debian/Ubuntu machine, as root: installs what is missing
# (scripts/setup.sh), starts cnmd in the background on its own Redis, and
# shows the health of every component. Idempotent: a cnmd that already runs
# is reused. Stop it with `sudo .venv/bin/cnmd stop`.
#
# cnmd's own settings apply (CNM_RUN_DIR, CNM_DATA_DIR, CNM_HOST_ID, ... or
# /etc/cnm/cnm.toml when present); the defaults are /run/cnm and /var/lib/cnm.
#
# Structure: one function per stage, run in order by main(). The cnmctl
# scenario belongs in scenario(); it runs against a cnmd that is SERVING.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CNMD=("$ROOT/.venv/bin/cnmd")
CNMCTL=("$ROOT/.venv/bin/cnmctl")
CONFIG=${CNM_CONFIG:-/etc/cnm/cnm.toml}
[[ -f $CONFIG ]] && CNMD+=(--config "$CONFIG")

say() { printf '\n== %s\n' "$*"; }

require_root() {
    if ((EUID != 0)); then
        echo "demo.sh: run as root (sudo scripts/demo.sh): cnm builds network namespaces" >&2
        exit 1
    fi
}

setup() {
    say "set-up (scripts/setup.sh)"
    scripts/setup.sh
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
            echo "demo.sh: cnmd runs but is not SERVING; see the logs under its data dir" >&2
            exit 1
            ;;
    esac
}

show_status() {
    say "cnmd status"
    "${CNMD[@]}" status
}

# The cnmctl walk-through (networks, sandboxes, ping between them) goes here;
# CNMCTL is the CLI, and cnmd is SERVING when this runs.
scenario() {
    :
}

main() {
    require_root
    setup
    start_cnmd
    show_status
    scenario
    say "done"
    echo "cnmd keeps running in the background; stop it with: sudo $ROOT/.venv/bin/cnmd stop"
}

main "$@"
