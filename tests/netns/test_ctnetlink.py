"""ctnetlink flush: the entries of the named addresses go (either direction,
both families), every other entry stays. Real conntrack entries made by pings
inside a test namespace whose nftables rule turns conntrack on."""

from __future__ import annotations

import sys

from harness import netns as hn

TRACK = (
    ("add", "table", "inet", "t"),
    ("add", "chain", "inet", "t", "out", "{ type filter hook output priority 0; }"),
    ("add", "rule", "inet", "t", "out", "ct", "state", "new", "counter"),
)
FLUSH = (
    "from driver_service.ctnetlink import flush_addresses as f; import sys; print(f(sys.argv[1:]))"
)


def _flows(ns: str) -> str:
    return hn.exec_in(ns, "conntrack", "-L", check=False).stdout


def test_flush_deletes_only_the_entries_of_the_named_addresses(netns_host):
    ns = netns_host
    for command in TRACK:
        hn.exec_in(ns, "nft", *command)
    hn.exec_in(ns, "ip", "addr", "add", "fd00:c7::1/64", "dev", "lo", "nodad")
    for address in ("127.0.0.2", "127.0.0.3", "fd00:c7::1", "::1"):
        assert hn.ping(ns, address)
    flows = _flows(ns)
    assert all(f"dst={a}" in flows for a in ("127.0.0.2", "127.0.0.3", "fd00:c7::1", "::1"))

    out = hn.exec_in(ns, sys.executable, "-c", FLUSH, "127.0.0.2", "fd00:c7::1")
    assert out.stdout.strip() == "2"
    flows = _flows(ns)
    assert "127.0.0.2" not in flows and "fd00:c7::1" not in flows
    assert "dst=127.0.0.3" in flows and "dst=::1" in flows
    # Nothing left to delete: no error, nothing counted.
    again = hn.exec_in(ns, sys.executable, "-c", FLUSH, "127.0.0.2")
    assert again.stdout.strip() == "0"


SWEEP = (
    "from driver_service.conntrack import ConntrackFlusher as F; import sys; "
    "print(F().sweep(sys.argv[1].split(','), sys.argv[2].split(',')))"
)


def test_sweep_deletes_the_entries_of_addresses_nobody_holds_inside_the_subnets(netns_host):
    """A driver's start-up sweep: inside its subnets only the held addresses keep
    their entries; addresses outside every subnet are not its business."""
    ns = netns_host
    for command in TRACK:
        hn.exec_in(ns, "nft", *command)
    hn.exec_in(ns, "ip", "addr", "add", "fd00:c7::1/64", "dev", "lo", "nodad")
    hn.exec_in(ns, "ip", "addr", "add", "fd00:c7::2/64", "dev", "lo", "nodad")
    for address in ("127.0.0.2", "127.0.0.3", "127.0.1.1", "fd00:c7::1", "fd00:c7::2"):
        assert hn.ping(ns, address)

    out = hn.exec_in(
        ns, sys.executable, "-c", SWEEP, "127.0.0.2/31,fd00:c7::/64", "127.0.0.3,fd00:c7::2"
    )
    # One entry per ping (127.x pings come from 127.0.0.1, outside 127.0.0.2/31).
    assert out.stdout.strip() == "2", _flows(ns)
    flows = _flows(ns)
    assert "dst=127.0.0.2 " not in flows and "dst=fd00:c7::1 " not in flows
    for kept in ("127.0.0.3", "127.0.1.1", "fd00:c7::2"):
        assert f"dst={kept} " in flows, f"{kept} is held or outside the subnets: its entry stays"
