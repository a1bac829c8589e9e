"""What each cnmctl command does: flags -> client calls -> formatted output.

Handlers take (Context, argparse.Namespace) and return an exit code. Bad flag
values raise UsageError (exit 2, nothing sent); the controller's refusals
propagate as clients.errors.ClientError (`Error: <message>`, the exit code of
its kind: clients.errors.exit_code).
Commands over several objects (`network rm a b`) go on after a failure,
print one error line per failure, and exit non-zero at the end, as docker does.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from clients import formatting as fmt
from clients import output
from clients.args import extra_host, ip_address, ipam_configs, key_value
from clients.client import Client, IpamConfig
from clients.completion import SHELLS
from clients.errors import EXIT_INVALID, ClientError, NotFoundError, exit_code
from clients.filters import boolean, event_filter, network_filters, parse_time, prune_filter
from clients.portspec import PortSpecError, parse_port_spec
from clients.sandbox_exec import exec_argv
from cnm.events.v1 import events_pb2

T = TypeVar("T")


class UsageError(Exception):
    """A flag value that cannot be sent; printed with the command's usage, exit 2."""


class CommandError(Exception):
    """A local failure (not the controller's): `Error: <message>`, exit `exit_code`."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Context:
    parser: argparse.ArgumentParser
    args: argparse.Namespace
    _client: Client | None = field(default=None, repr=False)

    @property
    def client(self) -> Client:
        if self._client is None:
            try:
                self._client = Client(
                    self.args.controller,
                    timeout=self.args.timeout,
                    tls_ca=self.args.tls_ca,
                    tls_cert=self.args.tls_cert,
                    tls_key=self.args.tls_key,
                    retries=3,
                )
            except (ValueError, OSError) as exc:
                # A global flag (or CNM_CONTROLLER): the top-level usage applies; exits 2.
                self.parser.error(f"controller {self.args.controller!r}: {exc}")
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def error_line(message: str) -> None:
    """`Error: <message>` on one line: a multi-line server message is joined."""
    sys.stderr.write("Error: " + " ".join(message.splitlines()) + "\n")
    sys.stderr.flush()


def _warn(message: str) -> None:
    """Docker's `WARNING: ...` on stderr: the command goes on."""
    sys.stderr.write(f"WARNING: {message}\n")
    sys.stderr.flush()


def _usage(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _each(items: Iterable[str], fn: Callable[[str], T]) -> tuple[list[T], int]:
    """fn over every item; failures printed as they come. (results, exit code)."""
    results: list[T] = []
    code = 0
    for item in items:
        try:
            results.append(fn(item))
        except ClientError as exc:
            error_line(exc.message)
            code = max(code, exit_code(exc))
    return results, code


def _template(text: str, objects: Sequence[Any], headers: dict[str, str] | None = None) -> str:
    try:
        return output.render(text, objects, headers)
    except output.TemplateError as exc:
        raise CommandError(f"template: {exc}", EXIT_INVALID) from None


def _listing(
    args: argparse.Namespace,
    items: Sequence[Any],
    headers: Sequence[str],
    row: Callable[[Any], list[str]],
    as_json: Callable[[Any], dict],
    ident: Callable[[Any], str],
) -> int:
    if getattr(args, "quiet", False):
        for item in items:
            out(fmt.short_id(ident(item), args.no_trunc))
    elif args.format == output.JSON:
        for item in items:
            out(fmt.json_line(as_json(item)))
    elif output.is_template(args.format):
        # Column headers as the default table names them ("ID" -> "NETWORK ID").
        names = {"ID": headers[0]} if headers and headers[0].endswith(" ID") else {}
        sys.stdout.write(_template(args.format, [as_json(i) for i in items], names))
    else:
        out(fmt.render_table(headers, [row(i) for i in items]))
    return 0


def _inspect(args: argparse.Namespace, objects: Sequence[dict]) -> None:
    """A JSON array, or each object through `-f TEMPLATE` (one line each)."""
    if args.format:
        sys.stdout.write(_template(args.format, objects))
    else:
        out(fmt.inspect_json(objects))


# ---------------------------------------------------------------- networks


def network_create(ctx: Context, args: argparse.Namespace) -> int:
    def parse() -> tuple[list[IpamConfig], dict, dict, dict]:
        aux = [key_value(a, what="aux-address") for a in args.aux_address]
        configs = ipam_configs(args.subnet, args.ip_range, args.gateway, aux)
        options = dict(key_value(o, what="option") for o in args.opt)
        ipam_options = dict(key_value(o, what="ipam option") for o in args.ipam_opt)
        labels = dict(key_value(v, what="label", value_required=False) for v in args.label)
        protos = [
            IpamConfig(
                subnet=c.subnet,
                ip_range=c.ip_range,
                gateway=c.gateway,
                aux_addresses=c.aux_addresses,
            )
            for c in configs
        ]
        return protos, options, ipam_options, labels

    configs, options, ipam_options, labels = _usage(parse)
    net = ctx.client.create_network(
        args.name,
        driver=args.driver,
        subnets=configs,
        ipam_driver=args.ipam_driver,
        ipam_options=ipam_options,
        internal=args.internal,
        enable_ipv6=args.ipv6,
        options=options,
        labels=labels,
        host=args.host,
        config_only=args.config_only,
        config_from=args.config_from,
        attachable=args.attachable,
        scope=args.scope,
    )
    out(net.id)
    return 0


def network_ls(ctx: Context, args: argparse.Namespace) -> int:
    filters = _usage(lambda: network_filters(args.filter))
    nets = ctx.client.list_networks(
        names=filters.get("name", ()),
        ids=filters.get("id", ()),
        drivers=filters.get("driver", ()),
        labels=filters.get("label", ()),
        scopes=filters.get("scope", ()),
        types=filters.get("type", ()),
        dangling=boolean("dangling", filters["dangling"][0]) if "dangling" in filters else None,
    )
    nets = sorted(nets, key=lambda n: n.name)
    return _listing(
        args,
        nets,
        fmt.NETWORK_HEADERS,
        lambda n: fmt.network_row(n, args.no_trunc),
        lambda n: fmt.network_json(n, args.no_trunc),
        lambda n: n.id,
    )


def network_inspect(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client
    nets, code = _each(args.networks, client.get_network)
    names: dict[str, str] | None = None
    objects = []
    for net in nets:
        endpoints = client.list_endpoints(network=net.id) if net.endpoint_ids else []
        if names is None and any(ep.sandbox_id for ep in endpoints):
            names = {sb.id: sb.name for sb in client.list_sandboxes()}
        objects.append(fmt.network_inspect(net, endpoints, names))
    _inspect(args, objects)
    return code


def network_rm(ctx: Context, args: argparse.Namespace) -> int:
    def remove(name: str) -> str:
        ctx.client.delete_network(name)
        out(name)
        return name

    return _each(args.networks, remove)[1]


def network_prune(ctx: Context, args: argparse.Namespace) -> int:
    flt = _usage(lambda: prune_filter(args.filter))
    if not args.force:
        sys.stdout.write(
            "WARNING! This will remove all networks without endpoints.\n"
            "Are you sure you want to continue? [y/N] "
        )
        sys.stdout.flush()
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            return 0
    client = ctx.client
    # Prune answers ids; docker prints names, so learn them first.
    names = {n.id: n.name for n in client.list_networks()}
    deleted = client.prune_networks(labels=flt.labels, until=flt.until)
    if deleted:
        out("Deleted Networks:")
        for net_id in deleted:
            out(names.get(net_id, net_id))
    return 0


def network_connect(ctx: Context, args: argparse.Namespace) -> int:
    def parse() -> tuple[list, str, str]:
        ports = [m for spec in args.publish for m in _port_spec(spec)]
        ip4 = ip_address(args.ip) if args.ip else ""
        ip6 = ip_address(args.ip6) if args.ip6 else ""
        return ports, ip4, ip6

    ports, ip4, ip6 = _usage(parse)
    if ports and ctx.client.get_network(args.network).driver == "host":
        _warn("Published ports are discarded when using host network mode")
    ctx.client.connect(
        args.network,
        args.sandbox,
        ipv4_address=ip4,
        ipv6_address=ip6,
        mac_address=args.mac_address,
        aliases=args.alias,
        port_bindings=ports,
    )
    return 0


def _port_spec(spec: str) -> list:
    try:
        return parse_port_spec(spec)
    except PortSpecError as exc:
        raise ValueError(f"invalid publish spec {spec!r}: {exc}") from None


def network_disconnect(ctx: Context, args: argparse.Namespace) -> int:
    ctx.client.disconnect(args.network, args.sandbox)
    return 0


# ---------------------------------------------------------------- sandboxes


def sandbox_create(ctx: Context, args: argparse.Namespace) -> int:
    def parse() -> tuple[list, dict, list, list]:
        hosts = [extra_host(h) for h in args.add_host]
        labels = dict(key_value(v, what="label", value_required=False) for v in args.label)
        dns = [ip_address(d) for d in args.dns]
        if args.publish and not args.network:
            raise ValueError("--publish needs --network")
        ports = [m for spec in args.publish for m in _port_spec(spec)]
        return hosts, labels, dns, ports

    hosts, labels, dns, ports = _usage(parse)
    # `docker run --network NAME`: host networking is decided here, at creation.
    network = ctx.client.get_network(args.network) if args.network else None
    host_network = network is not None and network.driver == "host"
    if host_network and ports:
        _warn("Published ports are discarded when using host network mode")
        ports = []
    sb = ctx.client.create_sandbox(
        args.name,
        container_id=args.container_id,
        host=args.host,
        hostname=args.hostname,
        domainname=args.domainname,
        dns_servers=dns,
        dns_search=args.dns_search,
        dns_options=args.dns_option,
        extra_hosts=hosts,
        external_key=args.netns,
        labels=labels,
        host_network=host_network,
    )
    if network is not None:
        try:
            ctx.client.connect(network.id, sb.id, port_bindings=ports)
        except BaseException:
            ctx.client.delete_sandbox(sb.id)  # as if never created
            raise
    out(sb.id)
    return 0


def sandbox_ls(ctx: Context, args: argparse.Namespace) -> int:
    sandboxes = sorted(ctx.client.list_sandboxes(host=args.host), key=lambda s: s.name)
    return _listing(
        args,
        sandboxes,
        fmt.SANDBOX_HEADERS,
        lambda s: fmt.sandbox_row(s, args.no_trunc),
        lambda s: fmt.sandbox_json(s, args.no_trunc),
        lambda s: s.id,
    )


def sandbox_inspect(ctx: Context, args: argparse.Namespace) -> int:
    sandboxes, code = _each(args.sandboxes, ctx.client.get_sandbox)
    _inspect(args, [fmt.sandbox_inspect(s) for s in sandboxes])
    return code


def sandbox_rm(ctx: Context, args: argparse.Namespace) -> int:
    def remove(name: str) -> str:
        ctx.client.delete_sandbox(name)
        out(name)
        return name

    return _each(args.sandboxes, remove)[1]


def sandbox_exec(ctx: Context, args: argparse.Namespace) -> int:
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise UsageError("a command is required: sandbox exec SANDBOX -- CMD...")
    sb = ctx.client.get_sandbox(args.sandbox)
    if not sb.key:
        raise CommandError(f"sandbox {sb.name!r} has no network namespace")
    if not os.path.exists(sb.key):
        raise CommandError(
            f"the namespace of sandbox {sb.name!r} ({sb.key}) is not on this machine "
            f"(its host is {sb.host!r})"
        )
    try:
        # The sandbox's namespace and its hosts/resolv.conf (private mount namespace).
        argv = exec_argv(sb.key, sb.hosts_path, sb.resolv_conf_path, command)
    except LookupError as e:
        raise CommandError(f"not installed: {e} (util-linux)") from None
    ctx.close()
    sys.stdout.flush()
    sys.stderr.flush()
    # Replace cnmctl: signals, the terminal and the exit code are the command's own.
    os.execv(argv[0], argv)
    return 0  # not reached


# ---------------------------------------------------------------- endpoints, hosts, drivers, pools


def endpoint_ls(ctx: Context, args: argparse.Namespace) -> int:
    eps = ctx.client.list_endpoints(network=args.network, sandbox=args.sandbox)
    eps = sorted(eps, key=lambda e: (e.network_name, e.name, e.id))
    return _listing(
        args,
        eps,
        fmt.ENDPOINT_HEADERS,
        lambda e: fmt.endpoint_row(e, args.no_trunc),
        lambda e: fmt.endpoint_json(e, args.no_trunc),
        lambda e: e.id,
    )


def endpoint_inspect(ctx: Context, args: argparse.Namespace) -> int:
    eps, code = _each(args.endpoints, ctx.client.get_endpoint)
    _inspect(args, [fmt.endpoint_inspect(e) for e in eps])
    return code


def host_ls(ctx: Context, args: argparse.Namespace) -> int:
    hosts = sorted(ctx.client.list_hosts(), key=lambda h: h.id)
    if args.quiet:
        args.no_trunc = True  # host ids are names, never truncated
    return _listing(args, hosts, fmt.HOST_HEADERS, fmt.host_row, fmt.host_json, lambda h: h.id)


def host_inspect(ctx: Context, args: argparse.Namespace) -> int:
    hosts, code = _each(args.hosts, ctx.client.get_host)
    _inspect(args, [fmt.host_json(h) for h in hosts])
    return code


def driver_ls(ctx: Context, args: argparse.Namespace) -> int:
    drivers = sorted(ctx.client.list_drivers(), key=lambda d: d.name)
    return _listing(
        args, drivers, fmt.DRIVER_HEADERS, fmt.driver_row, fmt.driver_json, lambda d: d.name
    )


def ipam_ls(ctx: Context, args: argparse.Namespace) -> int:
    pools = ctx.client.list_pools()
    return _listing(
        args,
        pools,
        fmt.POOL_HEADERS,
        lambda p: fmt.pool_row(p, args.no_trunc),
        fmt.pool_json,
        lambda p: p.pool_id,
    )


def ipam_release_pool(ctx: Context, args: argparse.Namespace) -> int:
    def release(pool: str) -> str:
        pool_id = ctx.client.release_pool(pool, address_space=args.address_space)
        out(pool_id)
        return pool_id

    return _each(args.pools, release)[1]


# ---------------------------------------------------------------- events, gc, completion


def events(ctx: Context, args: argparse.Namespace) -> int:
    if args.watch_timeout is not None and args.watch_timeout <= 0:
        raise UsageError("--timeout must be positive")
    if args.since and args.since_revision:
        raise UsageError("--since and --since-revision are exclusive")
    flt = _usage(lambda: event_filter(args.filter))
    if flt.sandboxes:
        # Endpoint events name their sandbox by id: add the ids of the names given
        # (a sandbox already gone still matches its own events by name).
        ids = []
        for ref in flt.sandboxes:
            with contextlib.suppress(NotFoundError):
                ids.append(ctx.client.get_sandbox(ref).id)
        flt = dataclasses.replace(flt, sandboxes=(*flt.sandboxes, *ids))
    since_time = _usage(lambda: parse_time(args.since)) if args.since else None
    until = _usage(lambda: parse_time(args.until)) if args.until else None
    timeout = args.watch_timeout
    if until is not None and until > time.time():
        left = until - time.time()
        timeout = left if timeout is None else min(timeout, left)
    stream = ctx.client.watch(
        args.since_revision, since_time=since_time, timeout=timeout, markers=True
    )
    # A --until already past: replay the window, stop where live events begin.
    past = until is not None and until <= time.time()
    seen = 0
    head: int | None = None
    try:
        for event in stream:
            if event.type == events_pb2.EVENT_TYPE_WATCH_STARTED:
                head = event.revision
                if past and int(event.attributes.get("replay_after", head)) >= head:
                    break  # nothing to replay
                continue
            if until is not None and event.time.ToNanoseconds() / 1e9 > until:
                break
            obj, action = fmt.event_kind(event.type)
            if flt.matches(obj, action, event.id, event.name, event.attributes):
                out(_event_text(args.format, event))
                sys.stdout.flush()
                seen += 1
                if args.limit and seen >= args.limit:
                    break
            if past and head is not None and event.revision >= head:
                break
    finally:
        stream.close()  # cancels the stream
    return 0


def _event_text(form: str, event: events_pb2.Event) -> str:
    if form == output.JSON:
        return fmt.json_line(fmt.event_json(event))
    if form == "text":
        return fmt.event_line(event)
    return _template(form, [fmt.event_json(event)])


def gc(ctx: Context, args: argparse.Namespace) -> int:
    if not args.sandboxes and not args.all:
        raise UsageError(
            "give the ids of the sandboxes to keep (or --all: every sandbox is released)"
        )
    if args.sandboxes and args.all:
        raise UsageError("--all and SANDBOX_ID are exclusive")
    resp = ctx.client.garbage_collect(args.sandboxes)
    for sb_id in resp.removed_sandbox_ids:
        out(f"removed sandbox {sb_id}")
    for ep_id in resp.removed_endpoint_ids:
        out(f"removed endpoint {ep_id}")
    return 0


def completion(ctx: Context, args: argparse.Namespace) -> int:
    out(SHELLS[args.shell](ctx.parser))
    return 0
