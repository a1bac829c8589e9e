"""cnmctl: the command line of cnm, shaped like `docker network`.

    cnmctl [--controller ADDR] COMMAND ...

ADDR is `unix:///path/to.sock` or `HOST:PORT`; from --controller, else the
CNM_CONTROLLER environment variable, else unix:///run/cnm/controller.sock.
Exit codes, one per kind of error wherever it was found (cnmctl or the
controller); every error is one line on stderr, `Error: <message>`, except
usage errors, which print the command's usage line first:
    0    success
    1    refused: not found, already exists, in use, exhausted, wrong state
    2    invalid input: usage, or a value cnmctl or the controller rejects
         (INVALID_ARGUMENT), or a --format template that does not apply
    125  the controller could not be reached, timed out or failed internally
    130  interrupted
`sandbox exec` exits with its command's code.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from clients import commands, output
from clients.completion import FORMATS, SHELLS, complete_with, complete_words
from clients.errors import ClientError, exit_code
from services.version import version_line

ENV_CONTROLLER = "CNM_CONTROLLER"
DEFAULT_CONTROLLER = "unix:///run/cnm/controller.sock"
FORMAT_HELP = (
    "table (default), json (one object per line), 'table TEMPLATE' or a Go template, "
    "e.g. '{{.Name}}' or 'table {{.ID}}\\t{{.Name}}'"
)


def _sub(
    group: argparse._SubParsersAction,
    name: str,
    help_text: str,
    func: Callable | None = None,
    aliases: Sequence[str] = (),
) -> argparse.ArgumentParser:
    parser = group.add_parser(name, help=help_text, description=help_text, aliases=list(aliases))
    if func is not None:
        # The command's own parser, so a late usage error prints the right usage line.
        parser.set_defaults(func=func, command_parser=parser)
    return parser


def _group(parser: argparse.ArgumentParser, title: str) -> argparse._SubParsersAction:
    group = parser.add_subparsers(title=title, metavar="COMMAND")
    group.required = True
    return group


def _list_flags(parser: argparse.ArgumentParser, *, quiet: bool = True) -> None:
    if quiet:
        parser.add_argument("-q", "--quiet", action="store_true", help="only display ids")
    parser.add_argument("--no-trunc", action="store_true", help="do not truncate ids")
    complete_words(
        parser.add_argument("--format", default="table", metavar="FORMAT", help=FORMAT_HELP),
        FORMATS,
    )


def _names(
    parser: argparse.ArgumentParser,
    dest: str,
    metavar: str,
    kind: str,
    help_text: str,
    nargs: str | None = "+",
) -> None:
    """A positional naming objects of `kind`, completed from the controller."""
    complete_with(parser.add_argument(dest, nargs=nargs, metavar=metavar, help=help_text), kind)


def _inspect_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f",
        "--format",
        default="",
        metavar="TEMPLATE",
        help="render each object with this Go template, e.g. '{{.IPAM.Config}}' or "
        "'{{json .Options}}' (default: a JSON array)",
    )


def _network_parsers(top: argparse._SubParsersAction) -> None:
    net = _group(_sub(top, "network", "manage networks"), "network commands")

    p = _sub(net, "create", "create a network; prints its id", commands.network_create)
    complete_with(
        p.add_argument("-d", "--driver", default="", help='driver (default "bridge")'), "driver"
    )
    p.add_argument(
        "--subnet", action="append", default=[], metavar="CIDR", help="subnet (repeatable)"
    )
    p.add_argument(
        "--ip-range",
        action="append",
        default=[],
        metavar="CIDR",
        help="allocate container addresses from this sub-range of a subnet",
    )
    p.add_argument(
        "--gateway", action="append", default=[], metavar="IP", help="gateway of a subnet"
    )
    p.add_argument(
        "--aux-address",
        action="append",
        default=[],
        metavar="NAME=IP",
        help="an address of a subnet the IPAM must not hand out",
    )
    p.add_argument("--ipv6", action="store_true", help="enable IPv6")
    p.add_argument("--attachable", action="store_true", help="recorded and shown, as Docker's flag")
    p.add_argument(
        "--scope",
        default="",
        choices=("local", "global"),
        help="the network's scope; must be the driver's (the default)",
    )
    p.add_argument("--internal", action="store_true", help="no external access")
    p.add_argument(
        "--ipam-driver", default="", metavar="NAME", help='IPAM driver (default "default")'
    )
    p.add_argument(
        "--ipam-opt", action="append", default=[], metavar="KEY=VALUE", help="IPAM driver option"
    )
    p.add_argument(
        "-o", "--opt", action="append", default=[], metavar="KEY=VALUE", help="driver option"
    )
    p.add_argument(
        "--label", action="append", default=[], metavar="KEY=VALUE", help="metadata label"
    )
    complete_with(
        p.add_argument("--host", default="", help="host of a local-scope network"), "host"
    )
    p.add_argument("--config-only", action="store_true", help="create a configuration only network")
    p.add_argument(
        "--config-from",
        default="",
        metavar="NAME",
        help="the network from which to copy the configuration",
    )
    p.add_argument("name", metavar="NAME", help="its name, unique among its kind")

    p = _sub(net, "ls", "list networks", commands.network_ls, aliases=["list"])
    _list_flags(p)
    p.add_argument(
        "-f",
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="name, id, driver, label, scope, type (builtin|custom), dangling (true|false); "
        "repeated keys are OR'ed, except label: every label must match",
    )

    p = _sub(net, "inspect", "show networks as a JSON array", commands.network_inspect)
    _inspect_format(p)
    _names(p, "networks", "NETWORK", "network", "networks (names, ids or id prefixes)")

    p = _sub(net, "rm", "remove networks", commands.network_rm, aliases=["remove"])
    _names(p, "networks", "NETWORK", "network", "networks (names, ids or id prefixes)")

    p = _sub(net, "prune", "remove every network without endpoints", commands.network_prune)
    p.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    p.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="label=KEY[=VALUE] (every one must match), until=TIME (created before)",
    )

    p = _sub(net, "connect", "connect a sandbox to a network", commands.network_connect)
    p.add_argument("--ip", default="", help="IPv4 address")
    p.add_argument("--ip6", default="", help="IPv6 address")
    p.add_argument("--mac-address", default="", help="MAC address of the interface")
    p.add_argument(
        "--alias",
        action="append",
        default=[],
        metavar="NAME",
        help="another name of the sandbox on this network",
    )
    p.add_argument(
        "-p",
        "--publish",
        action="append",
        default=[],
        metavar="[HOSTIP:]HOSTPORT[-END]:PORT[-END][/PROTO]",
        help="publish a port on the host (docker's -p syntax)",
    )
    _names(p, "network", "NETWORK", "network", "the network", nargs=None)
    _names(p, "sandbox", "SANDBOX", "sandbox", "the sandbox", nargs=None)

    p = _sub(net, "disconnect", "disconnect a sandbox from a network", commands.network_disconnect)
    _names(p, "network", "NETWORK", "network", "the network", nargs=None)
    _names(p, "sandbox", "SANDBOX", "sandbox", "the sandbox", nargs=None)


def _sandbox_parsers(top: argparse._SubParsersAction) -> None:
    sb = _group(_sub(top, "sandbox", "manage sandboxes"), "sandbox commands")

    p = _sub(sb, "create", "create a sandbox; prints its id", commands.sandbox_create)
    p.add_argument("--hostname", default="", help="host name written to its /etc/hosts")
    p.add_argument("--domainname", default="", help="domain name")
    p.add_argument(
        "--dns", action="append", default=[], metavar="IP", help="DNS server for resolv.conf"
    )
    p.add_argument(
        "--dns-search", action="append", default=[], metavar="DOMAIN", help="DNS search domain"
    )
    p.add_argument(
        "--dns-option", action="append", default=[], metavar="OPTION", help="resolv.conf option"
    )
    p.add_argument(
        "--add-host",
        action="append",
        default=[],
        metavar="NAME:IP",
        help="an extra line of its /etc/hosts",
    )
    complete_with(p.add_argument("--host", default="", help="host to create it on"), "host")
    p.add_argument("--netns", default="", metavar="PATH", help="bring your own namespace")
    complete_with(
        p.add_argument(
            "--network",
            default="",
            metavar="NETWORK",
            help="connect it to this network; `host` makes it use the host's network namespace",
        ),
        "network",
    )
    p.add_argument(
        "-p",
        "--publish",
        action="append",
        default=[],
        metavar="[HOSTIP:]HOSTPORT[-END]:PORT[-END][/PROTO]",
        help="with --network: publish a port on the host (docker's -p syntax)",
    )
    p.add_argument("--container-id", default="", help="the runtime's container id")
    p.add_argument(
        "--label", action="append", default=[], metavar="KEY=VALUE", help="metadata label"
    )
    p.add_argument("name", metavar="NAME", help="its name, unique among its kind")

    p = _sub(sb, "ls", "list sandboxes", commands.sandbox_ls, aliases=["list"])
    _list_flags(p)
    complete_with(p.add_argument("--host", default="", help="only sandboxes of this host"), "host")

    p = _sub(sb, "inspect", "show sandboxes as a JSON array", commands.sandbox_inspect)
    _inspect_format(p)
    _names(p, "sandboxes", "SANDBOX", "sandbox", "sandboxes (names, ids or id prefixes)")

    p = _sub(sb, "rm", "remove sandboxes", commands.sandbox_rm, aliases=["remove"])
    _names(p, "sandboxes", "SANDBOX", "sandbox", "sandboxes (names, ids or id prefixes)")

    p = _sub(
        sb,
        "exec",
        "run a command in a sandbox's network namespace: exec SANDBOX -- CMD...",
        commands.sandbox_exec,
    )
    _names(p, "sandbox", "SANDBOX", "sandbox", "the sandbox", nargs=None)
    p.add_argument(
        "command", nargs=argparse.REMAINDER, metavar="-- CMD...", help="the command and its args"
    )


def _other_parsers(top: argparse._SubParsersAction) -> None:
    ep = _group(_sub(top, "endpoint", "list and inspect endpoints"), "endpoint commands")
    p = _sub(ep, "ls", "list endpoints", commands.endpoint_ls, aliases=["list"])
    _list_flags(p)
    complete_with(
        p.add_argument("--network", default="", help="only endpoints of this network"), "network"
    )
    complete_with(
        p.add_argument("--sandbox", default="", help="only endpoints joined to this sandbox"),
        "sandbox",
    )
    p = _sub(ep, "inspect", "show endpoints as a JSON array", commands.endpoint_inspect)
    _inspect_format(p)
    _names(p, "endpoints", "ID", "endpoint", "endpoint ids or id prefixes")

    host = _group(_sub(top, "host", "hosts running a driver service"), "host commands")
    p = _sub(host, "ls", "list hosts and their state", commands.host_ls, aliases=["list"])
    _list_flags(p)
    p = _sub(host, "inspect", "show hosts as a JSON array", commands.host_inspect)
    _inspect_format(p)
    _names(p, "hosts", "HOST", "host", "host ids")

    drv = _group(_sub(top, "driver", "network drivers across hosts"), "driver commands")
    p = _sub(drv, "ls", "list drivers", commands.driver_ls, aliases=["list"])
    complete_words(
        p.add_argument("--format", default="table", metavar="FORMAT", help=FORMAT_HELP), FORMATS
    )

    ipam = _group(_sub(top, "ipam", "address pools"), "ipam commands")
    p = _sub(ipam, "ls", "list pools with used/free counts", commands.ipam_ls, aliases=["list"])
    _list_flags(p, quiet=False)
    p = _sub(
        ipam,
        "release-pool",
        "release pools no network holds (e.g. requested with grpcurl); prints their ids",
        commands.ipam_release_pool,
    )
    p.add_argument(
        "--address-space",
        default="",
        metavar="SPACE",
        help="the address space, when a subnet is in several",
    )
    p.add_argument("pools", nargs="+", metavar="POOL", help="pool ids or subnets (ipam ls)")

    p = _sub(top, "events", "stream events (until interrupted)", commands.events)
    p.add_argument(
        "--since",
        default="",
        metavar="TIME",
        help="replay retained events from this time: RFC 3339, Unix seconds or a duration (10m)",
    )
    p.add_argument(
        "--until",
        default="",
        metavar="TIME",
        help="stop at this time (RFC 3339, Unix seconds or a duration before now)",
    )
    p.add_argument(
        "--since-revision",
        type=_non_negative,
        default=0,
        metavar="REV",
        help="replay events after this revision (default 0: only new events)",
    )
    p.add_argument(
        "-f",
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="type (network|endpoint|sandbox|host), event (create|destroy|join|leave|"
        "connect|disconnect|up|down), network=NAME|ID, sandbox=NAME|ID",
    )
    p.add_argument("--limit", type=_non_negative, default=0, metavar="N", help="stop after N")
    # Its own dest: the global --timeout (per-call deadline) must not be overwritten.
    p.add_argument(
        "--timeout",
        dest="watch_timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after this long",
    )
    p.add_argument(
        "--format",
        default="text",
        metavar="FORMAT",
        help="text (default), json (one object per line) or a Go template, e.g. "
        "'{{.Type}} {{.Action}} {{.Name}}'",
    )

    p = _sub(top, "gc", "release everything of sandboxes not listed", commands.gc)
    p.add_argument("--all", action="store_true", help="no sandbox is valid: release everything")
    complete_with(
        p.add_argument(
            "sandboxes", nargs="*", metavar="SANDBOX_ID", help="full ids of sandboxes to keep"
        ),
        "sandbox_id",
    )

    p = _sub(top, "completion", "print a shell completion script", commands.completion)
    p.add_argument("shell", choices=sorted(SHELLS), help="the shell to complete in")


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnmctl",
        description="Manage cnm networks, sandboxes and endpoints.",
        epilog=f"ADDR: unix:///path or HOST:PORT (env {ENV_CONTROLLER}, "
        f"default {DEFAULT_CONTROLLER})",
    )
    parser.add_argument("--controller", metavar="ADDR", help="controller address")
    parser.add_argument(
        "--timeout", type=float, default=10.0, metavar="SECONDS", help="deadline of each call"
    )
    parser.add_argument(
        "--tls-ca",
        default=os.environ.get("CNM_TLS_CA", ""),
        metavar="FILE",
        help="CA bundle to verify a TCP controller with (env CNM_TLS_CA)",
    )
    parser.add_argument(
        "--tls-cert",
        default=os.environ.get("CNM_TLS_CERT", ""),
        metavar="FILE",
        help="client certificate for mutual TLS (env CNM_TLS_CERT)",
    )
    parser.add_argument(
        "--tls-key",
        default=os.environ.get("CNM_TLS_KEY", ""),
        metavar="FILE",
        help="key of the client certificate (env CNM_TLS_KEY)",
    )
    parser.add_argument("-v", "--version", action="version", version=version_line("cnmctl"))
    top = _group(parser, "commands")
    _network_parsers(top)
    _sandbox_parsers(top)
    _other_parsers(top)
    return parser


def _command_parser(
    args: argparse.Namespace, parser: argparse.ArgumentParser
) -> argparse.ArgumentParser:
    """The sub-command's parser (its usage line), else the top one."""
    parser_of_command: argparse.ArgumentParser = getattr(args, "command_parser", parser)
    return parser_of_command


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.controller = args.controller or os.environ.get(ENV_CONTROLLER) or DEFAULT_CONTROLLER
    ctx = commands.Context(parser=parser, args=args)
    form = getattr(args, "format", "")
    if form and output.is_template(form):
        try:
            output.check(form)
        except output.TemplateError as exc:
            # Before anything is sent: a usage error of the command (exit 2).
            _command_parser(args, parser).error(f"template: {exc}")
    try:
        return args.func(ctx, args) or 0
    except commands.UsageError as exc:
        # argparse's own format: usage line, then the reason; exits 2.
        _command_parser(args, parser).error(str(exc))
    except ClientError as exc:
        commands.error_line(exc.message)
        return exit_code(exc)
    except commands.CommandError as exc:
        commands.error_line(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `cnmctl network ls | head -1`: the reader left; not an error of ours.
        sys.stderr.close()
        return 0
    finally:
        ctx.close()


if __name__ == "__main__":
    sys.exit(main())
