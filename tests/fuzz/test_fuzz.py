"""A catalogue of bad inputs thrown at every public RPC (controller, IPAM, driver)
and at cnmctl, against one running world: each gets its exact status code (and
ErrorInfo reason where one is promised), a message of bounded size, and leaves
Redis, the host's links, its nftables ruleset and the run's namespaces exactly
as they were."""

from __future__ import annotations

import os

import grpc
import pytest
from catalogue import Case, oversize_cases
from catalogue_cli import CASES as CLI_CASES
from catalogue_cli import EXIT_CODES, USAGE
from catalogue_controller import CASES as CONTROLLER_CASES
from catalogue_services import DRIVER_CASES, IPAM_CASES
from world import T, fuzz_world

from clients import cli
from services import limits
from services.rpc_errors import error_info

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")

RPC_CASES = oversize_cases() + CONTROLLER_CASES + IPAM_CASES + DRIVER_CASES


@pytest.fixture(scope="module")
def world(redis_server, netns_prefix):
    with fuzz_world(redis_server, netns_prefix) as f:
        yield f, {"state": f.state()}


@pytest.fixture
def unchanged(world):
    """Fails the test when anything of the world changed during it. The baseline
    then moves on, so that one case that changed the world is the one reported,
    not every case after it."""
    fuzz, baseline = world
    yield fuzz
    before, after = baseline["state"], fuzz.state()
    changed = {
        part: sorted(k for k in after[part].keys() | before[part].keys()
                     if after[part].get(k) != before[part].get(k))
        if isinstance(after[part], dict) else after[part]
        for part in after
        if after[part] != before[part]
    }  # fmt: skip
    baseline["state"] = after
    assert not changed, f"changed: {changed}"


def test_the_catalogue_is_large_and_covers_every_rpc() -> None:
    from catalogue import SERVICES

    assert len(RPC_CASES) + len(CLI_CASES) >= 150
    assert len({c.id for c in RPC_CASES}) == len(RPC_CASES), "case ids must be unique"
    covered = {(c.service, c.method) for c in RPC_CASES}
    # Every method with an input, except PruneNetworks (no input at all) and Watch
    # (a revision number: every value is valid).
    wanted = {
        (s, m.name)
        for s, d in SERVICES.items()
        for m in d.methods
        if m.input_type.fields and m.name not in ("Watch",)
    }
    assert wanted - covered == set()


@pytest.mark.parametrize("c", RPC_CASES, ids=lambda c: c.id)
def test_bad_rpc_input_gets_its_exact_code_and_changes_nothing(unchanged, c: Case) -> None:
    stub = unchanged.stubs[c.service]
    with pytest.raises(grpc.RpcError) as exc:
        reply = getattr(stub, c.method)(c.build(unchanged.ids), timeout=T)
        if c.method == "Watch":
            next(reply)
    err = exc.value
    assert err.code() == c.code, err.details()
    assert len(err.details()) <= limits.MESSAGE_MAX + 3
    if c.text is not None:
        assert c.text in err.details()
    if c.reason is not None:
        info = error_info(err)
        assert info is not None and info.reason == c.reason, info


@pytest.mark.parametrize(("argv", "kind", "text"), CLI_CASES)
def test_bad_cnmctl_command_line_fails_cleanly_and_changes_nothing(
    unchanged, capsys, argv: list[str], kind: str, text: str
) -> None:
    address = unchanged.world.controller
    try:
        code = cli.main(["--controller", address, "--timeout", str(T), *argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    assert code == EXIT_CODES[kind], err
    assert out == ("[]\n" if "inspect" in argv else "")
    assert text in err
    assert len(err) <= limits.MESSAGE_MAX + 500
    if kind == USAGE:
        assert err.startswith("usage: cnmctl"), err
    else:
        assert err.startswith("Error: ") and err.count("\n") == 1, err
