#!/usr/bin/env bash
# One-time (idempotent) set-up of a Debian/Ubuntu machine for cnm, as root:
# system packages, a virtualenv in .venv built on the system Python, the
# generated gRPC stubs, and cnm itself installed in editable mode.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(redis-server nftables libnftables1 iproute2 iputils-ping conntrack
              python3 python3-venv python3-dev procps kmod util-linux
              # cnm-cni's tests: containerd's ctr as the CNI caller, a busybox rootfs,
              # and the reference plugins chained around cnm (loopback, tuning)
              containerd busybox-static containernetworking-plugins)
# cnm-docker-plugin's tests: a real dockerd (busybox image from busybox-static above)
APT_PACKAGES+=(docker.io)
# The compose test: docker-compose builds and runs the stack on a local base
# made by debootstrap; redis-sentinel's test runs a Sentinel set.
APT_PACKAGES+=(docker-compose debootstrap)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # No service starts during the install (docker.io would start a dockerd in
    # the root namespace): RUNLEVEL=1 and, if none exists, a policy-rc.d that says no.
    policy=/usr/sbin/policy-rc.d
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get update -qq
    RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Always Debian's /usr/bin/python3: pyenv or other Pythons on PATH must not
# leak into the venv, the console scripts or the tests.
PYTHON=/usr/bin/python3
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "setup: cnm needs Python >= 3.11 at $PYTHON" >&2; exit 1; }

if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c 'import sys; sys.exit(sys.base_prefix != "/usr")'; then
    rm -rf .venv
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.cnm-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
    .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
    touch "$stamp"
fi
scripts/gen-protos.sh
# The README's Node.js client example (its test skips without node).
node_example=clients/examples/node
if command -v npm >/dev/null && [[ ! -d $node_example/node_modules/@grpc/grpc-js ]]; then
    (cd "$node_example" && npm ci --no-audit --no-fund --loglevel=error) \
        || echo "setup: npm ci in $node_example failed; its test will try again" >&2
fi
