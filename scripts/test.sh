#!/usr/bin/env bash
# The README's test command: set up everything that is missing (idempotent),
# then run the whole pytest suite. Extra arguments go to pytest, e.g.
#   sudo scripts/test.sh tests/unit -k bitseq
# Needs root: the netns and integration tiers build network namespaces.
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh || { echo "test.sh: scripts/setup.sh failed" >&2; exit 1; }

args=("$@")
((${#args[@]})) || args=(tests/)
# -ra: one summary line per skipped/failed test, so a skip's reason is visible.
.venv/bin/pytest -ra "${args[@]}"
rc=$?
if ((rc == 5)); then
    # pytest's "no tests collected" must never count as a pass.
    echo "test.sh: pytest collected no tests" >&2
    exit 1
fi
exit "$rc"
