"""Pure logic of the controller: resolution, filters, pagination, the JSON
codec, host records, join rules, undo stacks and deadlines."""

from __future__ import annotations

import time

import pytest

from controller_service import deadline, listing, rules
from controller_service.hosts import aggregate_drivers, heartbeat_of, parse_drivers, parse_host
from controller_service.models import (
    DnsConfig,
    DriverCap,
    Endpoint,
    EndpointState,
    ExtraHost,
    Host,
    HostState,
    IpamConfig,
    IpamSpec,
    Network,
    NetworkFilter,
    NetworkSpec,
    PoolAllocation,
    PortBinding,
    Sandbox,
    Scope,
    State,
    from_json,
    to_json,
)
from controller_service.resolve import resolve
from controller_service.rollback import Undo
from services.errors import CnmError, FailedPrecondition, InvalidArgument, NotFound
from services.liveness import StoreClock, judge

A = "a" * 64
AB = "ab" + "0" * 62
AC = "ac" + "0" * 62


# ------------------------------------------------------------------ resolution


def _resolver(ids: list[str], names: dict[str, str]):
    return dict(
        exists=lambda i: i in ids,
        by_name=names.get,
        by_prefix=lambda p: [i for i in sorted(ids) if i.startswith(p)][:2],
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(AB, AB, id="full-id"),
        pytest.param("web", AC, id="exact-name"),
        pytest.param("ab", AB, id="unique-prefix"),
        # A name that is also a prefix of another id: the name wins (Docker's order).
        pytest.param("ab0", AC, id="name-before-prefix"),
    ],
)
def test_resolve_order_is_id_then_name_then_prefix(text, expected):
    r = _resolver([AB, AC], {"web": AC, "ab0": AC})
    assert resolve("network", text, **r) == expected


def test_resolve_full_id_wins_over_a_name_equal_to_another_id():
    r = _resolver([AB, AC], {AB: AC})
    assert resolve("network", AB, **r) == AB


@pytest.mark.parametrize(
    ("text", "error", "words"),
    [
        pytest.param("", InvalidArgument, "required", id="empty"),
        pytest.param("a", InvalidArgument, "ambiguous", id="ambiguous-prefix"),
        pytest.param("nope", NotFound, "no such network 'nope'", id="unknown-name"),
        pytest.param("ff", NotFound, "no such network 'ff'", id="unknown-prefix"),
        pytest.param("f" * 64, NotFound, "no such network", id="unknown-full-id"),
    ],
)
def test_resolve_errors_name_the_object(text, error, words):
    r = _resolver([AB, AC], {})
    with pytest.raises(error, match=words):
        resolve("network", text, **r)


# ------------------------------------------------------------------ filters and pages


def _net(name: str, *, id_: str = A, driver: str = "bridge", scope=Scope.LOCAL, labels=None):
    return Network(id=id_, name=name, driver=driver, scope=scope, labels=labels or {})


NETS = [
    _net("front", id_="1" * 64, labels={"env": "prod", "tier": "web"}),
    _net("back", id_="2" * 64, labels={"env": "dev"}),
    _net("overlay-a", id_="3" * 64, driver="overlay", scope=Scope.GLOBAL),
]


@pytest.mark.parametrize(
    ("flt", "names"),
    [
        pytest.param(NetworkFilter(), {"front", "back", "overlay-a"}, id="empty-matches-all"),
        pytest.param(NetworkFilter(names=("ron",)), {"front"}, id="name-substring"),
        pytest.param(NetworkFilter(names=("front", "back")), {"front", "back"}, id="names-or"),
        pytest.param(NetworkFilter(ids=("2", "3")), {"back", "overlay-a"}, id="id-prefixes-or"),
        pytest.param(NetworkFilter(drivers=("overlay",)), {"overlay-a"}, id="driver"),
        pytest.param(NetworkFilter(labels=("env",)), {"front", "back"}, id="label-key"),
        pytest.param(NetworkFilter(labels=("env=prod",)), {"front"}, id="label-key-value"),
        pytest.param(NetworkFilter(scopes=(Scope.GLOBAL,)), {"overlay-a"}, id="scope"),
        pytest.param(
            NetworkFilter(labels=("env",), names=("back", "overlay-a")), {"back"}, id="and-across"
        ),
        pytest.param(
            NetworkFilter(drivers=("bridge",), scopes=(Scope.GLOBAL,)), set(), id="and-empty"
        ),
    ],
)
def test_network_filters_and_across_keys_or_within(flt, names):
    assert {n.name for n in NETS if listing.network_matches(n, flt)} == names


def test_label_filters_must_all_match():
    both = NetworkFilter(labels=("env", "env=prod"))
    assert {n.name for n in NETS if listing.network_matches(n, both)} == {"front"}


def test_type_and_dangling_filters():
    host = _net("host", id_="9" * 64, driver="host")
    fake_host = _net("host2", id_="8" * 64, driver="host")
    builtin = NetworkFilter(types=("builtin",))
    assert listing.network_matches(host, builtin)
    assert not listing.network_matches(fake_host, builtin)
    assert listing.network_matches(fake_host, NetworkFilter(types=("custom",)))
    dangling = NetworkFilter(dangling=True)
    # Built-in networks are never dangling, as in Docker.
    assert not listing.network_matches(host, dangling, endpoints=0)
    assert listing.network_matches(fake_host, dangling, endpoints=0)
    assert not listing.network_matches(fake_host, dangling, endpoints=2)
    assert listing.network_matches(fake_host, NetworkFilter(dangling=False), endpoints=2)
    with pytest.raises(InvalidArgument, match="type=system") as exc:
        listing.validate_filter(NetworkFilter(types=("system",)))
    assert exc.value.field == "filter.types"


def test_label_filter_without_key_is_invalid():
    with pytest.raises(InvalidArgument, match="label filter"):
        listing.validate_filter(NetworkFilter(labels=("=x",)))


def test_pagination_walks_every_item_once_in_order():
    items = [f"n{i:03d}" for i in range(25)]
    seen, token = [], ""
    while True:
        page = listing.paginate(reversed(items), lambda s: s, 10, token)
        seen += page.items
        token = page.next_token
        if not token:
            break
    assert seen == items


def test_pagination_survives_deletion_of_the_last_item_seen():
    items = [f"n{i}" for i in range(6)]
    page = listing.paginate(items, lambda s: s, 3, "")
    rest = [i for i in items if i != page.items[-1]]
    assert listing.paginate(rest, lambda s: s, 3, page.next_token).items == ("n3", "n4", "n5")


def test_pagination_cuts_a_page_of_big_objects_by_bytes_and_still_walks_all():
    big = "x" * (listing.PAGE_BYTES // 5)
    items = [f"n{i}{big}" for i in range(12)]
    seen, token, pages = [], "", 0
    while True:
        page = listing.paginate(items, lambda s: s[:3], 1000, token)
        assert 1 <= len(page.items) <= 5
        seen += page.items
        pages += 1
        token = page.next_token
        if not token:
            break
    assert sorted(seen) == sorted(items)
    assert pages >= 3


@pytest.mark.parametrize(
    ("size", "token"),
    [pytest.param(-1, "", id="negative-size"), pytest.param(0, "%%%", id="garbage-token")],
)
def test_pagination_rejects_bad_input(size, token):
    with pytest.raises(InvalidArgument):
        listing.paginate([], lambda s: s, size, token)


# ------------------------------------------------------------------ JSON codec


def test_records_round_trip_through_json():
    net = Network(
        id=A,
        name="n",
        driver="bridge",
        scope=Scope.GLOBAL,
        ipam=IpamSpec(configs=(IpamConfig(subnet="10.0.0.0/24", aux_addresses={"r": "10.0.0.9"}),)),
        pools=(
            PoolAllocation(
                pool_id="LocalDefault/10.0.0.0/24", subnet="10.0.0.0/24", gateway="10.0.0.1/24"
            ),
        ),
        labels={"a": "b"},
        state=State.DELETING,
        owner="me",
        op_since=1.5,
    )
    ep = Endpoint(
        id=A,
        name="e",
        network_id=A,
        network_name="n",
        port_bindings=(PortBinding(protocol="udp", container_port=53, host_port=5353),),
        aliases=("x", "y"),
        state=EndpointState.JOINED,
    )
    sb = Sandbox(
        id=A,
        name="s",
        host="h1",
        dns=DnsConfig(servers=("1.1.1.1",), search=("example.com",)),
        extra_hosts=(ExtraHost("db", "10.0.0.5"),),
    )
    for obj in (net, ep, sb):
        assert from_json(type(obj), to_json(obj)) == obj


def test_codec_ignores_fields_it_does_not_know():
    text = to_json(Sandbox(id=A, name="s", host="h")).replace("{", '{"future_field":1,', 1)
    assert from_json(Sandbox, text).name == "s"


# ------------------------------------------------------------------ hosts


def _fields(last: float, drivers: str = '[{"name":"bridge","scope":"local","error":""}]'):
    return {
        "id": "h1",
        "address": "unix:///x.sock",
        "drivers": drivers,
        "last_heartbeat": repr(last),
        "ttl": "10",
    }


@pytest.mark.parametrize(
    ("age", "state"),
    [
        pytest.param(0, HostState.READY, id="fresh"),
        pytest.param(10, HostState.READY, id="at-ttl"),
        pytest.param(10.5, HostState.UNREACHABLE, id="missed-ttl"),
    ],
)
def test_host_state_follows_heartbeat_age(age, state):
    fields = _fields(1000 - age)
    live = judge({"h1": heartbeat_of(fields, 10)}, StoreClock(now=1000, started=0))["h1"]
    assert parse_host("h1", fields, 10, live).state is state


def test_host_with_garbage_fields_is_unreachable_not_an_error():
    fields = {"last_heartbeat": "soon", "ttl": "x", "drivers": "{"}
    assert heartbeat_of(fields, 10) == (0.0, 10)
    live = judge({"h1": heartbeat_of(fields, 10)}, StoreClock(now=1000, started=0))["h1"]
    host = parse_host("h1", fields, 10, live)
    assert host.state is HostState.UNREACHABLE and host.drivers == ()


def test_driver_with_invalid_scope_is_reported_with_an_error():
    caps = parse_drivers('[{"name":"p","scope":"galactic"},{"name":"bridge","scope":"local"}]')
    assert caps[0].scope is None and "invalid scope" in caps[0].error
    assert caps[1] == DriverCap("bridge", Scope.LOCAL, "")


def test_drivers_aggregate_across_hosts_and_flag_scope_conflicts():
    h1 = Host("h1", "a", drivers=(DriverCap("bridge", Scope.LOCAL), DriverCap("p", Scope.LOCAL)))
    h2 = Host("h2", "b", drivers=(DriverCap("bridge", Scope.LOCAL), DriverCap("p", Scope.GLOBAL)))
    infos = {d.name: d for d in aggregate_drivers([h1, h2])}
    assert infos["bridge"].hosts == ("h1", "h2") and infos["bridge"].scope is Scope.LOCAL
    assert infos["p"].scope is None and "disagree" in infos["p"].error


# ------------------------------------------------------------------ join rules


def _pair(ep_state=EndpointState.READY, ep_sandbox="", ep_host="", net_scope=Scope.LOCAL):
    net = Network(
        id="n" * 64,
        name="net",
        driver="bridge",
        scope=net_scope,
        host="h1" if net_scope is Scope.LOCAL else "",
        state=State.READY,
    )
    ep = Endpoint(
        id="e" * 64,
        name="ep",
        network_id=net.id,
        network_name="net",
        state=ep_state,
        sandbox_id=ep_sandbox,
        host=ep_host,
    )
    sb = Sandbox(id="s" * 64, name="sb", host="h1", state=State.READY)
    return net, ep, sb


@pytest.mark.parametrize(
    ("kwargs", "sb_host", "sb_nets", "words"),
    [
        pytest.param(
            {"ep_state": EndpointState.JOINED, "ep_sandbox": "o" * 64},
            "h1",
            {},
            "already joined",
            id="endpoint-joined-elsewhere",
        ),
        pytest.param(
            {"ep_state": EndpointState.CREATING}, "h1", {}, "creating", id="endpoint-creating"
        ),
        pytest.param(
            {}, "h1", {"n" * 64: "x" * 64}, "already on network", id="sandbox-already-on-network"
        ),
        pytest.param({}, "h2", {}, "local to host 'h1'", id="local-network-other-host"),
        pytest.param(
            {"net_scope": Scope.GLOBAL, "ep_host": "h2"},
            "h1",
            {},
            "lives on host 'h2'",
            id="global-endpoint-other-host",
        ),
    ],
)
def test_join_rules_are_failed_precondition(kwargs, sb_host, sb_nets, words):
    net, ep, sb = _pair(**kwargs)
    sb = Sandbox(id=sb.id, name=sb.name, host=sb_host, state=State.READY)
    with pytest.raises(FailedPrecondition, match=words):
        rules.check_join(net, ep, sb, sb_nets)


@pytest.mark.parametrize(
    ("state", "reason", "words"),
    [
        (EndpointState.JOINED, "SANDBOX_ALREADY_ON_NETWORK", "already on network 'net'"),
        (None, "SANDBOX_ALREADY_ON_NETWORK", "already on network 'net'"),
        (EndpointState.CREATING, "ENDPOINT_BUSY", "is creating\\); retry when it settles"),
        (EndpointState.JOINING, "ENDPOINT_BUSY", "is joining"),
        (EndpointState.LEAVING, "ENDPOINT_BUSY", "is leaving"),
        (EndpointState.DELETING, "ENDPOINT_BUSY", "is deleting"),
    ],
)
def test_a_connection_still_settling_is_busy_not_already_there(state, reason, words):
    # An earlier attempt of the same Connect that failed half-way (its rollback
    # could not reach Redis) left a CREATING attachment: retrying is right.
    net, _, sb = _pair()
    other = "x" * 64
    with pytest.raises(FailedPrecondition, match=words) as err:
        rules.check_not_on_network(net, sb, {net.id: other}, state_of={other: state}.get)
    assert err.value.reason == reason


def test_join_rules_accept_a_valid_pair():
    net, ep, sb = _pair()
    rules.check_join(net, ep, sb, {})


# ------------------------------------------------------------------ undo, deadlines


def test_undo_runs_in_reverse_and_keeps_the_first_error():
    done = []

    def boom():
        raise RuntimeError("undo failed")

    with pytest.raises(ValueError, match="original"), Undo() as undo:
        undo.step("one", done.append, 1)
        undo.step("boom", boom)
        undo.step("two", done.append, 2)
        raise ValueError("original")
    assert done == [2, 1]
    assert [str(e) for e in undo.failures] == ["undo failed"]


def test_undo_commit_runs_nothing():
    done = []
    with Undo() as undo:
        undo.step("one", done.append, 1)
        undo.commit()
    assert done == []


def test_outgoing_timeout_is_bounded_by_the_callers_deadline():
    assert deadline.timeout(10) == 10
    with deadline.serving(2.0):
        assert 1.5 < deadline.timeout(10) <= 2.0 - deadline.MARGIN
        assert deadline.timeout(0.5) == 0.5
    with deadline.serving(0.0):
        assert deadline.timeout(10) == deadline.MINIMUM
    assert deadline.timeout(10) == 10


def test_hosts_ready_check_uses_the_clock():
    assert parse_host("h", _fields(time.time()), time.time(), 10).state is HostState.READY


def test_error_messages_name_objects_instead_of_full_ids():
    from controller_service.messages import humanize

    known = {"a" * 64: "web"}
    text = f"network '{'a' * 64}' is internal; endpoint {'b' * 64} gone; short {'c' * 12}"
    assert humanize(text, known.get) == (
        f"network 'web' is internal; endpoint {'b' * 12} gone; short {'c' * 12}"
    )


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        pytest.param(NetworkSpec(name="h2", driver="host"), "SINGLETON_NETWORK", id="second-host"),
        pytest.param(
            NetworkSpec(name="n", driver="null", internal=True),
            "UNSUPPORTED_BY_DRIVER",
            id="internal-null",
        ),
        pytest.param(
            NetworkSpec(
                name="n", driver="null", ipam=IpamSpec(configs=(IpamConfig(subnet="10.0.0.0/24"),))
            ),
            "UNSUPPORTED_BY_DRIVER",
            id="subnet-null",
        ),
    ],
)
def test_host_and_null_network_rules(spec, reason):
    from controller_service import builtin

    existing = [_net("host", id_="9" * 64, driver="host")]
    with pytest.raises(CnmError) as exc:
        builtin.check_create(spec, existing)
    assert exc.value.reason == reason
    builtin.check_create(NetworkSpec(name="b", driver="bridge"), existing)
    with pytest.raises(FailedPrecondition, match="pre-defined network"):
        builtin.check_delete(existing[0])
