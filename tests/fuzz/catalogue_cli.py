"""Bad command lines for cnmctl: (id, argv, kind of failure, words of its stderr).

The kinds are cnmctl's exit-code contract (clients/cli.py): REFUSED (exit 1:
not found, already exists, in use; one line "Error: " + the server's message),
INVALID (exit 2: a value the controller rejects, INVALID_ARGUMENT; one
"Error: " line) and USAGE (exit 2: what cnmctl rejects itself, CIDRs,
addresses and port specs included; argparse's usage line, then the reason).
`inspect` of a missing object prints `[]` first, as `docker network inspect`. The world is world.py's (n1, s1 connected, s2 idle, free).
"""

from __future__ import annotations

import pytest

REFUSED, INVALID, USAGE = "refused", "invalid", "usage"
EXIT_CODES = {REFUSED: 1, INVALID: 2, USAGE: 2}
LONG = "x" * 20000


def cli(id_: str, argv: list[str], kind: str, text: str):
    return pytest.param(argv, kind, text, id=id_)


CASES = [
    cli("net-create-bad-name", ["network", "create", "bad.name"], INVALID, "invalid network name"),
    cli("net-create-20000-char-name", ["network", "create", LONG], INVALID, "at most 4096"),
    cli("net-create-4000-char-name-echo-cut", ["network", "create", "n" * 4000], INVALID, "n" * 64 + "'..."),
    cli("net-create-subnet-garbage", ["network", "create", "--subnet", "banana", "fz"], USAGE, "banana"),
    cli("net-create-subnet-every-address", ["network", "create", "--subnet", "0.0.0.0/0", "fz"], INVALID, "0.0.0.0/0"),
    cli("net-create-subnet-overlaps-n1", ["network", "create", "--subnet", "10.91.0.0/16", "fz"], REFUSED, "10.91.0.0"),
    cli("net-create-label-key-300", ["network", "create", "--label", "k" * 300 + "=v", "fz"], INVALID, "at most 255"),
    cli("net-create-label-value-5000", ["network", "create", "--label", "k=" + "v" * 5000, "fz"], INVALID, "at most 4096"),
    cli("net-create-200-labels", ["network", "create", *[f"--label=l{i}=v" for i in range(200)], "fz"], INVALID, "200 entries"),
    cli("net-create-name-taken", ["network", "create", "n1"], REFUSED, "n1"),
    cli("net-create-mtu-garbage", ["network", "create", "-o", "com.docker.network.driver.mtu=abc", "fz"], INVALID, "mtu"),
    cli("net-create-driver-unknown", ["network", "create", "-d", "nope", "fz"], REFUSED, "nope"),
    cli("net-create-no-name", ["network", "create"], USAGE, "NAME"),
    cli("net-inspect-unknown", ["network", "inspect", "ghost"], REFUSED, "ghost"),
    cli("net-rm-with-endpoints", ["network", "rm", "n1"], REFUSED, "n1"),
    cli("net-rm-unknown", ["network", "rm", "ghost"], REFUSED, "ghost"),
    cli("net-connect-unknown-network", ["network", "connect", "ghost", "s2"], REFUSED, "ghost"),
    cli("net-connect-unknown-sandbox", ["network", "connect", "n1", "ghost"], REFUSED, "ghost"),
    cli("net-connect-already-connected", ["network", "connect", "n1", "s1"], REFUSED, "already on network"),
    cli("net-connect-ip-outside", ["network", "connect", "--ip", "10.9.9.9", "n1", "s2"], INVALID, "10.9.9.9"),
    cli("net-connect-mac-garbage", ["network", "connect", "--mac-address", "zz", "n1", "s2"], INVALID, "zz"),
    cli("net-connect-port-70000", ["network", "connect", "-p", "70000:80", "n1", "s2"], USAGE, "70000"),
    cli("net-connect-host-ip-not-on-host", ["network", "connect", "-p", "192.0.2.77:8080:80", "n1", "s2"], REFUSED, "cannot assign requested address"),
    cli("net-disconnect-not-connected", ["network", "disconnect", "n1", "s2"], REFUSED, "s2"),
    cli("net-ls-filter-unknown-key", ["network", "ls", "-f", "colour=red"], USAGE, "colour"),
    cli("sb-create-dns-malformed", ["sandbox", "create", "--dns", "8.8.8", "fz"], USAGE, "8.8.8"),
    cli("sb-create-hostname-leading-dash", ["sandbox", "create", "--hostname=-bad", "fz"], INVALID, "hostname"),
    cli("sb-create-netns-relative", ["sandbox", "create", "--netns", "proc/1/ns/net", "fz"], INVALID, "external_key"),
    cli("sb-create-name-taken", ["sandbox", "create", "s1"], REFUSED, "s1"),
    cli("sb-create-label-1mb", ["sandbox", "create", "--label", "k=" + "v" * (1 << 20), "fz"], INVALID, "at most 4096"),
    cli("sb-inspect-unknown", ["sandbox", "inspect", "ghost"], REFUSED, "ghost"),
    cli("sb-rm-unknown", ["sandbox", "rm", "ghost"], REFUSED, "ghost"),
    cli("ep-inspect-unknown", ["endpoint", "inspect", "ghost"], REFUSED, "ghost"),
    cli("host-inspect-unknown", ["host", "inspect", "h9"], REFUSED, "h9"),
    cli("gc-without-ids-or-all", ["gc"], USAGE, "--all"),
    cli("unknown-command", ["frobnicate"], USAGE, "frobnicate"),
]  # fmt: skip
