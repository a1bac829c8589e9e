"""Rendering of a sandbox's hosts and resolv.conf (pure), and the atomic write."""

from __future__ import annotations

import os

import pytest

from driver_service.models import DnsConfig, ExtraHost
from driver_service.sandbox_files import (
    DEFAULT_NAMESERVERS_V4,
    LOCALHOST_BLOCK,
    HostEntry,
    legacy_hosts,
    own_names,
    render_hosts,
    render_resolv_conf,
    write_atomic,
)

HOST_RESOLV = """# host file
nameserver 127.0.0.53
nameserver 10.1.1.1
nameserver ::1
nameserver 2001:db8::1
search lan example.org
options edns0 trust-ad
"""


def test_hosts_has_own_line_localhost_block_peers_then_extra_hosts():
    text = render_hosts(
        [HostEntry("10.0.0.2", own_names("web", "corp.example"))],
        [HostEntry("10.0.0.3", ("db", "db.back", "pg"))],
        [ExtraHost("gw.example", "10.9.9.9")],
    )
    lines = text.splitlines()
    assert lines[0].startswith("#")
    assert lines[1] == "10.0.0.2\tweb.corp.example web"
    assert "\n".join(lines[2:8]) + "\n" == LOCALHOST_BLOCK
    assert lines[8:] == ["10.0.0.3\tdb db.back pg", "10.9.9.9\tgw.example"]


def test_hosts_without_domain_and_host_mode_base():
    assert own_names("web", "") == ("web",)
    text = render_hosts([], [], [], base="127.0.0.1 localhost myhost")
    assert "127.0.0.1 localhost myhost\n" in text and "ip6-allnodes" not in text


@pytest.mark.parametrize(
    "dns, ipv6, servers, search, options",
    [
        pytest.param(DnsConfig(), False, ["10.1.1.1"], "search lan example.org",
                     "options edns0 trust-ad", id="host-file-without-loopback-and-ipv6"),
        pytest.param(DnsConfig(), True, ["10.1.1.1", "2001:db8::1"], "search lan example.org",
                     "options edns0 trust-ad", id="host-file-keeps-ipv6-with-ipv6"),
        pytest.param(DnsConfig(servers=("9.9.9.9", "fd00::53")), False, ["9.9.9.9"],
                     "search lan example.org", "options edns0 trust-ad",
                     id="own-servers-replace-host-servers"),
        pytest.param(DnsConfig(search=("corp",), options=("ndots:3",)), False, ["10.1.1.1"],
                     "search corp", "options ndots:3", id="own-search-and-options"),
    ],
)  # fmt: skip
def test_resolv_conf(dns, ipv6, servers, search, options):
    text = render_resolv_conf(HOST_RESOLV, dns, ipv6=ipv6)
    assert [
        line.split()[1] for line in text.splitlines() if line.startswith("nameserver")
    ] == servers
    assert search in text.splitlines() and options in text.splitlines()


def test_resolv_conf_falls_back_to_public_servers_when_only_loopback_is_left():
    text = render_resolv_conf("nameserver 127.0.0.53\n", DnsConfig(), ipv6=False)
    assert [ln.split()[1] for ln in text.splitlines() if ln.startswith("nameserver")] == list(
        DEFAULT_NAMESERVERS_V4
    )


def test_resolv_conf_in_host_namespace_is_unfiltered():
    text = render_resolv_conf(HOST_RESOLV, DnsConfig(), ipv6=False, host_namespace=True)
    assert "nameserver 127.0.0.53" in text and "nameserver 2001:db8::1" in text


def test_write_atomic_replaces_the_file_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "sb" / "hosts"
    write_atomic(path, "one\n")
    inode = path.stat().st_ino
    write_atomic(path, "two\n")
    assert path.read_text() == "two\n" and path.stat().st_ino != inode
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert os.listdir(path.parent) == ["hosts"]


@pytest.mark.parametrize(
    "dns, ext, search, options",
    [
        (DnsConfig(), "[host(127.0.0.53) 10.1.1.1]", "search lan", "options edns0 ndots:0"),
        (
            DnsConfig(servers=("10.9.9.9",), search=("corp",), options=("ndots:3",)),
            "[10.9.9.9]",
            "search corp",
            "options ndots:3",
        ),
    ],
    ids=["host-servers", "sandbox-servers"],
)
def test_resolv_conf_with_the_embedded_resolver(dns, ext, search, options):
    """Docker's file with the internal resolver: 127.0.0.11 alone, the upstreams it
    forwards to in a comment (loopback ones marked host(...)), ndots:0 unless given."""
    host = "nameserver 127.0.0.53\nnameserver 10.1.1.1\nsearch lan\noptions edns0\n"
    text = render_resolv_conf(host, dns, ipv6=False, resolver="127.0.0.11")
    lines = text.splitlines()
    assert [ln for ln in lines if ln.startswith("nameserver")] == ["nameserver 127.0.0.11"]
    assert f"# ExtServers: {ext}" in lines and search in lines and options in lines


def test_legacy_hosts_option_values():
    assert legacy_hosts({"cnm.network.legacy_hosts": "true"})
    assert legacy_hosts({"cnm.network.legacy_hosts": " Yes "})
    assert not legacy_hosts({"cnm.network.legacy_hosts": "false"})
    assert not legacy_hosts({})
