"""cnmctl and the API as Docker users and API clients expect them, against a
real stack (test_cli's `stack`): filters, prune filters, events with times and
filters, Watch's first message, list revisions, expired revisions."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import grpc
import pytest
import redis
import test_cli
from test_cli import CNMCTL, cnmctl, fails, ok

from clients.client import Client
from clients.errors import ClientError
from cnm.controller.v1 import controller_pb2 as pb
from cnm.controller.v1 import controller_pb2_grpc
from cnm.events.v1 import events_pb2
from cnm.ipam.v1 import ipam_pb2, ipam_pb2_grpc
from harness.wait import until
from harness.world import single_host
from services.rpc_errors import error_info

# test_cli's fixture: a real ipam + driver (in its own namespace) + controller.
stack = test_cli.stack


def _ls(st, *flags: str) -> set[str]:
    lines = ok(st, "network", "ls", "--format", "json", *flags).splitlines()
    return {json.loads(line)["Name"] for line in lines}


def test_network_filters_and_prune_filters_as_docker(stack):
    ok(stack, "network", "create", "--label", "env=dev", "--label", "tier=web", "a")
    ok(stack, "network", "create", "--label", "env=dev", "b")
    ok(stack, "network", "create", "--label", "env=prod", "--label", "tier=web", "c")
    ok(stack, "sandbox", "create", "s1")
    ok(stack, "network", "connect", "a", "s1")

    # Repeated label filters AND (as docker); other keys still OR within.
    assert _ls(stack, "-f", "label=env=dev", "-f", "label=tier=web") == {"a"}
    assert _ls(stack, "-f", "label=tier") == {"a", "c"}
    assert _ls(stack, "-f", "name=a", "-f", "name=b") == {"a", "b"}
    assert _ls(stack, "-f", "type=custom") >= {"a", "b", "c"}
    assert _ls(stack, "-f", "dangling=true", "-f", "label=env") == {"b", "c"}
    assert _ls(stack, "-f", "dangling=false") == {"a"}
    err = fails(stack, "network", "ls", "-f", "type=system", code=2)
    assert "type=system" in err

    # prune --filter: only dangling networks carrying every label.
    out = ok(stack, "network", "prune", "-f", "--filter", "label=env=prod")
    assert out == "Deleted Networks:\nc\n"
    # until: created before a time; "b" was made before this moment, a new one after.
    cut = time.time()
    # Creation times are wall-clock: a new cnmctl process makes "late" after `cut`.
    ok(stack, "network", "create", "--label", "env=dev", "late")
    out = ok(stack, "network", "prune", "-f", "--filter", f"until={cut}")
    assert out == "Deleted Networks:\nb\n"
    assert _ls(stack, "-f", "label=env") == {"a", "late"}
    fails(stack, "network", "prune", "-f", "--filter", "until=soon", code=2)


def test_events_filters_and_time_window(stack):
    start = time.time()
    net = ok(stack, "network", "create", "evnet").strip()
    ok(stack, "sandbox", "create", "evsb")
    ok(stack, "network", "connect", "evnet", "evsb")
    ok(stack, "network", "disconnect", "evnet", "evsb")
    end = time.time() + 0.001

    def events(*flags: str) -> list[dict]:
        text = ok(stack, "events", "--format", "json", "--since", f"{start}", "--until",
                  f"{end}", *flags)  # fmt: skip
        return [json.loads(line) for line in text.splitlines()]

    # A window in the past: replayed, then the command ends by itself.
    kinds = [(e["Type"], e["Action"]) for e in events()]
    assert ("network", "create") in kinds and ("sandbox", "create") in kinds
    assert ("endpoint", "join") in kinds and ("endpoint", "leave") in kinds
    assert [e["Name"] for e in events("-f", "type=network")] == ["evnet"]
    joins = events("-f", "event=connect", "-f", "network=evnet")
    assert [(e["Type"], e["Action"]) for e in joins] == [("endpoint", "join")]
    assert joins[0]["Attributes"]["network"] == net
    by_sandbox = events("-f", "sandbox=evsb")
    assert {e["Type"] for e in by_sandbox} == {"sandbox", "endpoint"}
    # Durations: "1h" is an hour before now; the window covers everything above.
    text = ok(stack, "events", "--format", "json", "--since", "1h", "--until", f"{end}",
              "-f", "type=network")  # fmt: skip
    assert "evnet" in text


def test_watch_first_message_list_revision_and_expired_revision(stack, redis_url):
    with Client(stack.controller, timeout=15) as client:
        client.create_network("w1")
        stub = controller_pb2_grpc.ControllerStub(client._channel)
        listed = stub.ListNetworks(pb.ListNetworksRequest(), timeout=15)
        assert listed.revision >= 1
        # The first message says the stream is live, and from which revision.
        stream = client.watch(0, markers=True, timeout=15)
        first = next(stream)
        assert first.type == events_pb2.EVENT_TYPE_WATCH_STARTED
        assert first.revision == listed.revision
        assert int(first.attributes["oldest_revision"]) == 1
        client.create_network("w2")
        live = next(stream)
        assert (live.name, live.revision) == ("w2", listed.revision + 1)
        stream.close()

        # Watching from a list's revision misses nothing after it.
        resumed = client.watch(listed.revision, timeout=15)
        assert next(resumed).name == "w2"
        resumed.close()

        # Retention dropped the oldest events: an old revision is OUT_OF_RANGE.
        client.create_network("w3")
        r = redis.Redis.from_url(redis_url, decode_responses=True)
        (key,) = [k for k in r.keys("*events") if r.type(k) == "stream"]
        r.xtrim(key, maxlen=1, approximate=False)
        r.close()
        with pytest.raises(ClientError) as exc:
            next(client.watch(1, timeout=15))
        assert exc.value.code.name == "OUT_OF_RANGE"
        assert exc.value.reason == "REVISION_EXPIRED"
        assert exc.value.metadata["oldest_revision"] == str(listed.revision + 2)
        call = stub.Watch(pb.WatchRequest(since_revision=1), timeout=15)
        with pytest.raises(Exception) as raw:
            next(call)
        assert error_info(raw.value).reason == "REVISION_EXPIRED"


def test_go_templates_on_ls_and_inspect(stack):
    net_id = ok(stack, "network", "create", "--subnet", "10.41.0.0/24", "--gateway", "10.41.0.1",
                "--label", "team=a", "-o", "com.docker.network.bridge.name=br-tmpl",
                "tmpl").strip()  # fmt: skip
    sb = ok(stack, "sandbox", "create", "--label", "role=db", "tsb").strip()
    ok(stack, "network", "connect", "--ip", "10.41.0.7", "tmpl", "tsb")

    assert ok(stack, "network", "ls", "-f", "name=tmpl", "--format", "{{.Name}}") == "tmpl\n"
    (obj,) = [json.loads(x) for x in
              ok(stack, "network", "ls", "-f", "name=tmpl", "--format", "{{json .}}").splitlines()]  # fmt: skip
    assert obj["Name"] == "tmpl" and obj["ID"] == net_id[:12]
    table = ok(stack, "network", "ls", "-f", "name=tmpl", "--format", "table {{.ID}}\\t{{.Name}}")
    assert table.splitlines() == ["NETWORK ID     NAME", f"{net_id[:12]}   tmpl"]

    def inspect(kind: str, ref: str, template: str) -> str:
        return ok(stack, kind, "inspect", "-f", template, ref)

    assert inspect("network", "tmpl", "{{.IPAM.Config}}") == "[{10.41.0.0/24  10.41.0.1 map[]}]\n"
    assert inspect("network", "tmpl", "{{range .Containers}}{{.IPv4Address}}{{end}}") == (
        "10.41.0.7/24\n"
    )
    assert inspect("network", "tmpl", '{{index .Labels "team"}}') == "a\n"
    assert json.loads(inspect("network", "tmpl", "{{json .Options}}")) == {
        "com.docker.network.bridge.name": "br-tmpl"
    }
    assert inspect("sandbox", "tsb", "{{.Name}} {{.Labels}}") == "tsb map[role:db]\n"
    assert inspect("sandbox", "tsb", "{{range .Endpoints}}{{.IPv4Address}}{{end}}") == (
        "10.41.0.7/24\n"
    )
    ep = json.loads(ok(stack, "endpoint", "ls", "--format", "{{json .}}", "--network", "tmpl"))
    assert inspect("endpoint", ep["ID"], "{{.Network}} {{.SandboxID}}") == f"tmpl {sb}\n"
    assert inspect("host", "h1", "{{.ID}} {{.State}}") == "h1 ready\n"
    # Two objects: one line each, as docker.
    assert ok(stack, "network", "inspect", "-f", "{{.Name}}", "tmpl", net_id) == "tmpl\ntmpl\n"
    # A field the object lacks: one error line; either way invalid input, exit 2.
    err = fails(stack, "network", "inspect", "-f", "{{.Nope}}", "tmpl", code=2)
    assert "can't evaluate field Nope" in err
    fails(stack, "network", "inspect", "-f", "{{.Name", "tmpl", code=2)


def test_completion_offers_live_names_and_drivers(stack):
    ok(stack, "network", "create", "compnet")
    ok(stack, "sandbox", "create", "compsb")
    script = ok(stack, "completion", "bash")
    env = {"PATH": f"{Path(CNMCTL).parent}:/usr/bin:/bin", "CNM_CONTROLLER": stack.controller}

    def complete(*words: str) -> set[str]:
        quoted = " ".join(f"'{w}'" for w in ("cnmctl", *words))
        driver = (f"{script}\nCOMP_WORDS=({quoted}); COMP_CWORD={len(words)}; _shtab_cnmctl; "
                  'printf "%s\\n" "${COMPREPLY[@]}"')  # fmt: skip
        res = subprocess.run(["bash", "--norc", "--noprofile", "-c", driver], env=env,
                             capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
        return set(filter(None, res.stdout.splitlines()))

    assert complete("network", "inspect", "comp") == {"compnet"}
    assert complete("network", "connect", "compnet", "") >= {"compsb"}
    assert complete("network", "create", "-d", "") >= {"bridge", "null"}
    assert complete("sandbox", "rm", "") == {"compsb"}
    assert complete("host", "inspect", "") == {"h1"}


def test_ipam_release_pool_frees_a_pool_requested_directly(stack):
    # As the README's grpcurl example does: a pool asked from IPAM directly.
    with grpc.insecure_channel(f"unix://{stack.run_dir}/ipam.sock") as channel:
        ipam = ipam_pb2_grpc.IpamStub(channel)
        resp = ipam.RequestPool(
            ipam_pb2.RequestPoolRequest(address_space="LocalDefault", pool="10.77.0.0/24"),
            timeout=15,
        )
    err = fails(stack, "network", "create", "--subnet", "10.77.0.0/24", "blocked")
    assert "10.77.0.0/24" in err
    assert ok(stack, "ipam", "release-pool", "10.77.0.0/24") == f"{resp.pool_id}\n"
    ok(stack, "network", "create", "--subnet", "10.77.0.0/24", "freed")
    # A network's pool goes with the network; an unknown pool is not found.
    err = fails(stack, "ipam", "release-pool", "10.77.0.0/24")
    assert "in use by network freed" in err
    res = cnmctl(stack, "ipam", "release-pool", "10.99.0.0/24", resp.pool_id)
    assert res.returncode == 1 and "pool '10.99.0.0/24' not found" in res.stderr
    assert res.stderr.count("\n") == 2  # one line per refused pool


def test_errors_read_like_docker_and_exit_codes_follow_the_kind(stack):
    # Invalid input is 2 whether cnmctl or the controller finds it.
    res = cnmctl(stack, "network", "create", "--subnet", "10.50.0.0/33", "badcidr")
    assert res.returncode == 2, res.stderr
    res = cnmctl(stack, "network", "create", "--subnet", "10.50.0.1/24", "hostbits")
    assert res.returncode == 2 and res.stderr.startswith("Error: "), res.stderr
    assert "10.50.0.1/24" in res.stderr
    # Refused by the state: 1.
    assert cnmctl(stack, "network", "rm", "ghost").returncode == 1

    # A driver's refusal reads as the driver worded it, with names, not ids.
    ok(stack, "network", "create", "--internal", "--subnet", "10.51.0.0/24", "intnet")
    ok(stack, "sandbox", "create", "errsb")
    err = fails(stack, "network", "connect", "-p", "8080:80", "intnet", "errsb")
    assert err.startswith("Error: network 'intnet' is internal: ports cannot be published"), err
    assert not re.search(r"[0-9a-f]{64}", err) and "CreateEndpoint" not in err
    assert "driver service" not in err


@pytest.fixture
def builtin_stack(redis_url, netns_host, netns_prefix, spawn):
    """test_cli's stack with the built-in networks on, as cnmd runs it."""
    env = {"CNM_BUILTIN_NETWORKS": "true"}
    with single_host(spawn, redis_url, netns_host, netns_prefix, controller_env=env) as st:
        yield st


def test_builtin_host_and_none_networks_as_docker(builtin_stack):
    st = builtin_stack
    # Made in the background at start.
    until(lambda: _ls(st, "-f", "type=builtin") == {"host", "none"}, "host and none", timeout=30)
    rows = [line.split() for line in ok(st, "network", "ls").splitlines()[1:]]
    assert [r[1:] for r in rows] == [["host", "host", "local"], ["none", "null", "local"]]
    assert _ls(st, "-f", "type=builtin") == {"host", "none"}
    assert _ls(st, "-f", "dangling=true") == set()

    err = fails(st, "network", "rm", "host")
    assert err == "Error: host is a pre-defined network and cannot be removed\n"
    err = fails(st, "network", "create", "-d", "host", "host2")
    assert err == 'Error: only one instance of "host" network is allowed\n'
    fails(st, "network", "create", "-d", "null", "none2")
    ok(st, "network", "create", "--subnet", "10.52.0.0/24", "br")
    assert ok(st, "network", "prune", "-f") == "Deleted Networks:\nbr\n"
    ok(st, "network", "create", "--subnet", "10.52.0.0/24", "br")

    # A sandbox on none or host is on nothing else, either way round.
    ok(st, "sandbox", "create", "quiet")
    ok(st, "network", "connect", "none", "quiet")
    err = fails(st, "network", "connect", "br", "quiet")
    assert "private (none) mode" in err
    # `--network host` (as docker run): the host's own namespace, no interface;
    # published ports discarded with Docker's warning.
    res = cnmctl(st, "sandbox", "create", "--network", "host", "-p", "8080:80", "hosted")
    assert res.returncode == 0, res.stderr
    assert res.stderr == "WARNING: Published ports are discarded when using host network mode\n"
    (sb,) = json.loads(ok(st, "sandbox", "inspect", "hosted"))
    assert sb["NetworkMode"] == "host" and sb["Key"] == f"/run/netns/{st.hosts['h1'].netns}"
    assert [(e["Network"], e["Ports"]) for e in sb["Endpoints"]] == [("host", {})]
    err = fails(st, "network", "connect", "br", "hosted")
    assert "cannot be disconnected from host network or connected to host network" in err
    ok(st, "sandbox", "create", "bridged")
    ok(st, "network", "connect", "br", "bridged")
    fails(st, "network", "connect", "host", "bridged")
    # Host networking is chosen at creation, never by connecting (Docker refuses it too).
    ok(st, "sandbox", "create", "plain")
    err = fails(st, "network", "connect", "host", "plain")
    assert "cannot be disconnected from host network or connected to host network" in err
    (sb,) = json.loads(ok(st, "sandbox", "inspect", "plain"))
    assert sb["NetworkMode"] == "default" and sb["Endpoints"] == []
    ok(st, "sandbox", "rm", "hosted")
    assert Path(f"/run/netns/{st.hosts['h1'].netns}").exists()
    with Client(st.controller, timeout=15) as client:
        for kw in ({"external_key": "/proc/1/ns/net"}, {"runtime_moves_interfaces": True}):
            with pytest.raises(ClientError) as exc:
                client.create_sandbox("badhost", host_network=True, **kw)
            assert exc.value.code.name == "INVALID_ARGUMENT", exc.value
            assert exc.value.reason == "INVALID_HOST_NETWORK" and "host_network" in str(exc.value)
    (net,) = json.loads(ok(st, "network", "inspect", "none"))
    assert set(net["Containers"]) == {json.loads(ok(st, "sandbox", "inspect", "quiet"))[0]["Id"]}


def test_attachable_and_scope_flags(stack):
    ok(stack, "network", "create", "--attachable", "--scope", "local", "att")
    (net,) = json.loads(ok(stack, "network", "inspect", "att"))
    assert (net["Attachable"], net["Ingress"], net["Scope"]) == (True, False, "local")
    res = cnmctl(stack, "network", "create", "--scope", "global", "wrongscope")
    assert res.returncode == 2 and "has local scope: --scope global" in res.stderr
    assert _ls(stack, "-f", "name=wrongscope") == set()


def test_container_iface_prefix_names_the_interfaces(stack):
    option = "com.docker.network.container_iface_prefix"
    ok(stack, "network", "create", "--subnet", "10.53.0.0/24", "-o", f"{option}=cnm", "pfx")
    ok(stack, "sandbox", "create", "pfxsb")
    ok(stack, "network", "connect", "pfx", "pfxsb")
    (ep,) = json.loads(ok(stack, "endpoint", "inspect", ok(stack, "endpoint", "ls", "-q").strip()))
    assert ep["InterfaceName"] == "cnm0"
    res = cnmctl(stack, "network", "create", "-o", f"{option}=0bad/", "badpfx")
    assert res.returncode == 2 and option in res.stderr


def test_unknown_options_are_refused_and_labels_stay_free(stack):
    mtu_typo = "com.docker.network.driver.mut=1400"
    res = cnmctl(stack, "network", "create", "--subnet", "10.54.0.0/24", "-o", mtu_typo, "typo")
    assert res.returncode == 2, res.stderr
    assert "unknown network option 'com.docker.network.driver.mut' for the bridge driver" in (
        res.stderr
    )
    # Global scope: refused at creation, not at the first join on some host.
    res = cnmctl(stack, "network", "create", "-d", "overlay", "-o", "vxlan_mode=x", "ov")
    assert res.returncode == 2 and "'vxlan_mode' for the overlay driver" in res.stderr
    assert _ls(stack, "-f", "name=typo") == set() and _ls(stack, "-f", "name=ov") == set()
    ok(stack, "network", "create", "--subnet", "10.54.0.0/24", "--label", "any.key=1",
       "-o", "com.docker.network.driver.mtu=1400", "fine")  # fmt: skip
    ok(stack, "sandbox", "create", "optsb")
    ok(stack, "network", "connect", "fine", "optsb")
