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
# Two worker processes (CNM_TEST_WORKERS=0: none), each a test run of its own
# (its own tag, Redis and namespaces: harness/kernel_snapshot.py); a file's
# tests stay on one worker, so its module-scoped worlds are built once.
workers=${CNM_TEST_WORKERS:-2}
[[ $workers =~ ^[0-9]+$ ]] || { echo "test.sh: CNM_TEST_WORKERS=$workers: expected a number" >&2; exit 2; }
.venv/bin/pytest -ra -n "$workers" --dist loadfile "${args[@]}"
rc=$?
if ((rc == 5)); then
    # pytest's "no tests collected" must never count as a pass.
    echo "test.sh: pytest collected no tests" >&2
    exit 1
fi
exit "$rc"
