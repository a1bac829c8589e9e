"""cnmctl argument handling without a controller: flag values, usage errors (exit 2),
--help on every command, and the generated shell completion."""

from __future__ import annotations

import argparse
import shutil
import subprocess

import pytest

from clients import cli
from clients.args import SubnetConfig, extra_host, ipam_configs, key_value
from clients.completion import script
from clients.filters import network_filters
from services.version import version

# Nothing listens here: a command that got past its usage checks would fail
# with exit 1 (unreachable), never 2, so exit 2 proves nothing was sent.
NOWHERE = "unix:///nonexistent/cnm-test/controller.sock"


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = cli.main(["--controller", NOWHERE, "--timeout", "1", *argv])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---------------------------------------------------------------- value parsers


@pytest.mark.parametrize(
    "text,required,expected",
    [
        ("a=b", True, ("a", "b")),
        ("a=b=c", True, ("a", "b=c")),
        ("a=", True, ("a", "")),
        ("flag", False, ("flag", "")),
    ],
)
def test_key_value(text, required, expected):
    assert key_value(text, value_required=required) == expected


@pytest.mark.parametrize("text", ["novalue", "=x", ""], ids=["no-equals", "no-key", "empty"])
def test_key_value_rejects(text):
    with pytest.raises(ValueError, match="KEY=VALUE"):
        key_value(text)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("db:10.0.0.5", ("db", "10.0.0.5")),
        ("db=10.0.0.5", ("db", "10.0.0.5")),
        ("v6:::1", ("v6", "::1")),
        ("v6=[2001:db8::1]", ("v6", "2001:db8::1")),
    ],
    ids=["colon", "equals", "ipv6-colon", "ipv6-bracketed"],
)
def test_extra_host(text, expected):
    assert extra_host(text) == expected


@pytest.mark.parametrize(
    "text",
    ["db", "db:", ":10.0.0.1", "db:not-an-ip"],
    ids=["no-ip", "empty-ip", "no-name", "bad-ip"],
)
def test_extra_host_rejects(text):
    with pytest.raises(ValueError, match="extra host"):
        extra_host(text)


def test_network_filters_group_repeated_keys():
    assert network_filters(["name=a", "driver=bridge", "name=b", "label=x=y"]) == {
        "name": ["a", "b"],
        "driver": ["bridge"],
        "label": ["x=y"],
    }


@pytest.mark.parametrize(
    "item,message",
    [
        ("name", "expected name=value"),
        ("dangling=maybe", "dangling=maybe"),
        ("color=red", "invalid filter 'color'"),
        ("type=system", "type=system"),
        ("scope=swarm", "scope=swarm"),
    ],
    ids=["no-value", "bad-dangling", "unknown-key", "bad-type", "bad-scope"],
)
def test_network_filters_reject(item, message):
    with pytest.raises(ValueError, match=message):
        network_filters([item])


def test_ipam_configs_pair_each_value_with_its_subnet():
    configs = ipam_configs(
        ["10.1.0.0/16", "fd00:1::/64"],
        ip_ranges=["10.1.2.0/24"],
        gateways=["fd00:1::1", "10.1.0.1"],
        aux_addresses=[("router", "10.1.0.2"), ("v6router", "fd00:1::2")],
    )
    assert configs == [
        SubnetConfig("10.1.0.0/16", "10.1.2.0/24", "10.1.0.1", {"router": "10.1.0.2"}),
        SubnetConfig("fd00:1::/64", "", "fd00:1::1", {"v6router": "fd00:1::2"}),
    ]


@pytest.mark.parametrize(
    "kw,message",
    [
        pytest.param({"subnets": ["10.0.0.0/33"]}, "invalid subnet", id="bad-subnet"),
        pytest.param(
            {"subnets": ["10.0.0.0/8", "10.1.0.0/16"]}, "overlap", id="overlapping-subnets"
        ),
        pytest.param({"subnets": [], "gateways": ["10.0.0.1"]}, "needs a --subnet", id="no-subnet"),
        pytest.param(
            {"subnets": ["10.0.0.0/24"], "gateways": ["10.0.1.1"]},
            "no matching subnet for gateway",
            id="gateway-outside",
        ),
        pytest.param(
            {"subnets": ["10.0.0.0/24"], "gateways": ["10.0.0.1", "10.0.0.2"]},
            "multiple gateways",
            id="two-gateways",
        ),
        pytest.param(
            {"subnets": ["10.0.0.0/24"], "ip_ranges": ["10.0.0.0/16"]},
            "no matching subnet for range",
            id="range-bigger-than-subnet",
        ),
        pytest.param(
            {"subnets": ["10.0.0.0/24"], "ip_ranges": ["10.0.0.0/26", "10.0.0.64/26"]},
            "multiple ranges",
            id="two-ranges",
        ),
        pytest.param(
            {"subnets": ["10.0.0.0/24"], "aux_addresses": [("r", "fd00::1")]},
            "no matching subnet for aux-address",
            id="aux-other-family",
        ),
        pytest.param(
            {"subnets": ["10.0.0.0/24"], "gateways": ["gw"]}, "not an IP", id="gateway-not-ip"
        ),
    ],
)
def test_ipam_configs_reject(kw, message):
    with pytest.raises(ValueError, match=message):
        ipam_configs(**kw)


# ---------------------------------------------------------------- usage errors exit 2


@pytest.mark.parametrize(
    "argv,message",
    [
        pytest.param([], "required", id="no-command"),
        pytest.param(["bogus"], "invalid choice", id="unknown-command"),
        pytest.param(["network"], "required", id="network-without-subcommand"),
        pytest.param(["network", "create"], "required: NAME", id="create-without-name"),
        pytest.param(
            ["network", "ls", "--format", "{{.Name"], "template: unclosed", id="bad-template"
        ),
        pytest.param(
            ["network", "inspect", "-f", "{{if .X}}", "n"], "without {{end}}", id="bad-inspect-f"
        ),
        pytest.param(["network", "ls", "-f", "type=system"], "invalid filter", id="bad-filter"),
        pytest.param(
            ["network", "prune", "--filter", "until=yesterday"], "invalid time", id="bad-until"
        ),
        pytest.param(["events", "-f", "type=volume"], "invalid filter", id="bad-event-type"),
        pytest.param(
            ["events", "--since", "5m", "--since-revision", "3"], "exclusive", id="since-twice"
        ),
        pytest.param(
            ["network", "create", "--gateway", "10.0.0.1", "n"], "needs a --subnet", id="gw-alone"
        ),
        pytest.param(["network", "create", "-o", "novalue", "n"], "KEY=VALUE", id="bad-option"),
        pytest.param(
            ["network", "create", "--aux-address", "10.0.0.2", "--subnet", "10.0.0.0/24", "n"],
            "aux-address",
            id="aux-without-name",
        ),
        pytest.param(
            ["network", "connect", "-p", "80:80:80:80", "net", "sb"],
            "invalid publish spec",
            id="bad-port-spec",
        ),
        pytest.param(
            ["network", "connect", "--ip", "10.0.0.300", "net", "sb"], "not an IP", id="bad-ip"
        ),
        pytest.param(["network", "connect", "net"], "required: SANDBOX", id="connect-one-arg"),
        pytest.param(
            ["sandbox", "create", "--add-host", "nohost", "sb"], "extra host", id="bad-add-host"
        ),
        pytest.param(
            ["sandbox", "create", "--dns", "dns.example", "sb"], "not an IP", id="bad-dns"
        ),
        pytest.param(["sandbox", "exec", "sb"], "a command is required", id="exec-no-command"),
        pytest.param(["sandbox", "exec", "sb", "--"], "a command is required", id="exec-dash-only"),
        pytest.param(["events", "--since-revision", "-1"], "negative", id="negative-since"),
        pytest.param(["events", "--since-revision", "x"], "not a number", id="since-not-number"),
        pytest.param(["events", "--since", "x"], "invalid time", id="since-not-a-time"),
        pytest.param(["events", "--timeout", "0"], "positive", id="zero-timeout"),
        pytest.param(["gc"], "--all", id="gc-needs-ids-or-all"),
        pytest.param(["gc", "--all", "abc"], "exclusive", id="gc-all-and-ids"),
        pytest.param(["completion", "tcsh"], "invalid choice", id="unknown-shell"),
    ],
)
def test_usage_errors_exit_2_and_name_the_problem(argv, message, capsys):
    code, out, err = run(argv, capsys)
    assert code == 2, err
    assert out == ""
    assert "usage: cnmctl" in err
    assert message in err


@pytest.mark.parametrize(
    "address",
    ["foo", "unix://relative.sock", "host:99999"],
    ids=["no-port", "relative-unix", "port-out-of-range"],
)
def test_bad_controller_address_is_a_usage_error(address, capsys, monkeypatch):
    monkeypatch.delenv("CNM_CONTROLLER", raising=False)
    with pytest.raises(SystemExit) as exc:
        cli.main(["--controller", address, "network", "ls"])
    assert exc.value.code == 2
    assert f"controller {address!r}" in capsys.readouterr().err


def test_controller_address_from_env_then_default(monkeypatch, capsys):
    monkeypatch.setenv("CNM_CONTROLLER", "unix:///nonexistent/from-env.sock")
    assert cli.main(["--timeout", "1", "host", "ls"]) == 125
    err = capsys.readouterr().err
    assert err.startswith("Error: cannot reach the controller at unix:///nonexistent/from-env.sock")
    assert err.count("\n") == 1
    monkeypatch.delenv("CNM_CONTROLLER")
    # A cnmd running on this machine answers on the real default: point the
    # default somewhere empty, and check it is what cnmctl falls back to.
    monkeypatch.setattr(cli, "DEFAULT_CONTROLLER", "unix:///nonexistent/default.sock")
    assert cli.main(["--timeout", "1", "host", "ls"]) == 125
    assert "unix:///nonexistent/default.sock" in capsys.readouterr().err


def test_unreachable_controller_is_one_error_line_exit_125(capsys):
    code, out, err = run(["network", "ls"], capsys)
    assert code == 125
    assert out == ""
    assert err.startswith(f"Error: cannot reach the controller at {NOWHERE}")
    assert err.count("\n") == 1


def _command_paths(parser: argparse.ArgumentParser, prefix: list[str]) -> list[list[str]]:
    paths = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen = set()
            for name, sub in action.choices.items():
                if id(sub) not in seen:  # aliases share a parser
                    seen.add(id(sub))
                    paths += _command_paths(sub, [*prefix, name])
    return paths


COMMAND_PATHS = _command_paths(cli.build_parser(), [])


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=lambda p: " ".join(p) or "cnmctl")
def test_help_everywhere(path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([*path, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: cnmctl {' '.join(path)}".rstrip())


def _parser_at(path: list[str]) -> argparse.ArgumentParser:
    parser = cli.build_parser()
    for word in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[word]
    return parser


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=lambda p: " ".join(p) or "cnmctl")
def test_every_flag_and_argument_has_help(path):
    parser = _parser_at(path)
    missing = [
        a.option_strings or a.dest
        for a in parser._actions
        if not isinstance(a, argparse._SubParsersAction) and not a.help
    ]
    assert missing == []


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith(f"cnmctl version {version()} (python ")


def test_every_documented_command_exists():
    documented = {
        "network create", "network ls", "network inspect", "network rm", "network prune",
        "network connect", "network disconnect", "sandbox create", "sandbox ls",
        "sandbox inspect", "sandbox rm", "sandbox exec", "endpoint ls", "endpoint inspect",
        "host ls", "driver ls", "ipam ls", "events", "gc", "completion",
    }  # fmt: skip
    assert documented <= {" ".join(p) for p in COMMAND_PATHS}


# ---------------------------------------------------------------- completion


def test_completion_prints_the_script(capsys):
    assert cli.main(["completion", "bash"]) == 0
    out = capsys.readouterr().out
    assert "complete -o bashdefault -F _shtab_cnmctl cnmctl" in out
    for shell in ("zsh", "fish"):
        assert cli.main(["completion", shell]) == 0
        assert "cnmctl" in capsys.readouterr().out


needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")


def _complete(words: list[str]) -> list[str]:
    text = script(cli.build_parser(), "bash")
    quoted = " ".join(f"'{w}'" for w in words)
    driver = (
        f"{text}\nCOMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; _shtab_cnmctl; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    res = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", driver],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return sorted(filter(None, res.stdout.splitlines()))


@needs_bash
def test_completion_script_is_valid_bash():
    res = subprocess.run(
        ["bash", "-n"], input=script(cli.build_parser(), "bash"), text=True, timeout=10
    )
    assert res.returncode == 0


@needs_bash
@pytest.mark.parametrize(
    "words,expected",
    [
        pytest.param(["cnmctl", ""], {"network", "sandbox", "events", "gc"}, id="top-level"),
        pytest.param(["cnmctl", "net"], {"network"}, id="prefix"),
        pytest.param(["cnmctl", "network", "c"], {"create", "connect"}, id="network-sub"),
        pytest.param(
            ["cnmctl", "--controller", "unix:///x.sock", "sandbox", "e"],
            {"exec"},
            id="skips-global-flag-value",
        ),
        pytest.param(
            ["cnmctl", "network", "ls", "--f"], {"--filter", "--format"}, id="flags-of-path"
        ),
        pytest.param(
            ["cnmctl", "completion", ""], {"bash", "zsh", "fish"}, id="positional-choices"
        ),
        pytest.param(["cnmctl", "network", "ls", "--format", ""], {"table", "json"}, id="formats"),
    ],
)
def test_completion_completes(words, expected):
    got = set(_complete(words))
    assert expected <= got, got
