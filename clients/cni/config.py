"""What a CNI runtime hands the plugin: CNI_* variables and a JSON configuration.

Everything is parsed and validated here, once, before the controller is
called: a bad variable is error 4 naming it, undecodable stdin is 6, a bad
configuration value is 7 naming the key, an unsupported version is 1.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from clients.client import DEFAULT_ADDRESS
from clients.cni import errors
from clients.cni.errors import CniError
from clients.portspec import PROTOCOLS, PortMapping
from services.address import parse_address

SPEC_VERSION = "1.1.0"
SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
COMMANDS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")
# The verbs each spec version introduced (older configurations cannot use them).
_SINCE = {"CHECK": (0, 4, 0), "GC": (1, 1, 0), "STATUS": (1, 1, 0)}

MAX_CONFIG_BYTES = 1 << 20
MAX_PORT_MAPPINGS = 1024
MAX_VALID_ATTACHMENTS = 100_000
MAX_NETNS_PATH = 4096
MAX_NAME = 255

# CNI's rule for container ids and network names.
_CNI_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
# Linux interface names: <16 bytes, not "." or "..", no '/', ':' or whitespace.
_IFNAME_BAD = re.compile(r"[/:\s]")


@dataclass(frozen=True)
class Attachment:
    """The attachment parameters of ADD, DEL and CHECK."""

    container_id: str
    ifname: str
    # "" only for DEL, which may come after the namespace is gone.
    netns: str


@dataclass(frozen=True)
class NetConf:
    cni_version: str
    # The CNI network's name (the conflist's `name`).
    name: str
    # The cnm network (name or id); the CNI name when not given.
    network: str
    controller: str
    # A cnm host id for multi-host stores; "" for the only ready host.
    host: str = ""
    # False for a secondary network: its gateway never becomes the default route.
    default_route: bool = True
    port_mappings: tuple[PortMapping, ...] = ()
    prev_result: dict[str, Any] | None = None
    # GC: the (CNI_CONTAINERID, CNI_IFNAME) pairs still in use.
    valid_attachments: frozenset[tuple[str, str]] = field(default_factory=frozenset)

    def version_tuple(self) -> tuple[int, ...]:
        return version_tuple(self.cni_version)


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def command(environ: Mapping[str, str]) -> str:
    value = environ.get("CNI_COMMAND", "")
    if value not in COMMANDS:
        raise CniError(
            errors.INVALID_ENVIRONMENT,
            f"invalid CNI_COMMAND {value[:32]!r}",
            f"expected one of {', '.join(COMMANDS)}",
        )
    return value


def attachment(environ: Mapping[str, str], *, netns_required: bool) -> Attachment:
    cid = environ.get("CNI_CONTAINERID", "")
    if not cid or len(cid) > MAX_NAME or not _CNI_ID.fullmatch(cid):
        raise CniError(
            errors.INVALID_ENVIRONMENT,
            f"invalid CNI_CONTAINERID {cid[:64]!r}",
            "expected 1-255 letters, digits and _.- starting with a letter or digit",
        )
    ifname = environ.get("CNI_IFNAME", "")
    if (
        not ifname
        or len(ifname.encode()) > 15
        or ifname in (".", "..")
        or _IFNAME_BAD.search(ifname)
    ):
        raise CniError(
            errors.INVALID_ENVIRONMENT,
            f"invalid CNI_IFNAME {ifname[:32]!r}",
            "expected a Linux interface name: 1-15 bytes, not '.' or '..', no '/', ':' or spaces",
        )
    netns = environ.get("CNI_NETNS", "")
    bad = not netns.startswith("/") or len(netns) > MAX_NETNS_PATH or "\0" in netns
    if (netns or netns_required) and bad:
        raise CniError(
            errors.INVALID_ENVIRONMENT,
            f"invalid CNI_NETNS {netns[:128]!r}",
            "expected the absolute path of a network namespace, e.g. /proc/PID/ns/net",
        )
    return Attachment(container_id=cid, ifname=ifname, netns=netns)


def read_stdin(stream: Any) -> bytes:
    try:
        data = stream.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise CniError(errors.IO_FAILURE, "cannot read the network configuration", str(e)) from e
    if len(data) > MAX_CONFIG_BYTES:
        raise CniError(
            errors.IO_FAILURE,
            "network configuration too large",
            f"stdin holds more than {MAX_CONFIG_BYTES} bytes",
        )
    return data


def decode(data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CniError(
            errors.DECODE_FAILURE, "cannot decode the network configuration", str(e)
        ) from e
    if not isinstance(doc, dict):
        raise CniError(
            errors.DECODE_FAILURE,
            "cannot decode the network configuration",
            "expected a JSON object on stdin",
        )
    return doc


def requested_version(doc: Mapping[str, Any]) -> str:
    """The configuration's cniVersion, checked against what this plugin speaks."""
    version = doc.get("cniVersion")
    if not isinstance(version, str) or not version:
        raise _bad("cniVersion", version, 'required, e.g. "1.1.0"')
    if version not in SUPPORTED_VERSIONS:
        raise CniError(
            errors.INCOMPATIBLE_VERSION,
            f"incompatible CNI version {version[:32]!r}",
            f"this plugin supports {', '.join(SUPPORTED_VERSIONS)}",
        )
    return version


def _bad(key: str, value: object, why: str) -> CniError:
    shown = json.dumps(value)[:128] if value is not None else "missing"
    return CniError(errors.INVALID_CONFIG, f"invalid {key} {shown} in network configuration", why)


def _string(doc: Mapping[str, Any], key: str, default: str = "", limit: int = MAX_NAME) -> str:
    value = doc.get(key, default)
    if not isinstance(value, str) or len(value) > limit:
        raise _bad(key, value, f"expected a string of at most {limit} characters")
    return value


def netconf(doc: Mapping[str, Any], cmd: str, environ: Mapping[str, str]) -> NetConf:
    version = requested_version(doc)
    since = _SINCE.get(cmd)
    if since and version_tuple(version) < since:
        raise CniError(
            errors.INCOMPATIBLE_VERSION,
            f"{cmd} needs cniVersion {'.'.join(map(str, since))} or later",
            f"the configuration says {version}",
        )
    plugin_type = doc.get("type")
    if not isinstance(plugin_type, str) or not plugin_type:
        raise _bad("type", plugin_type, 'the plugin\'s name, "cnm"')
    name = _string(doc, "name")
    if not _CNI_ID.fullmatch(name):
        raise _bad("name", name, "letters, digits and _.- starting with a letter or digit")
    if "ipam" in doc:
        raise CniError(
            errors.UNSUPPORTED_FIELD,
            f"unsupported field ipam={json.dumps(doc['ipam'])[:128]} in network configuration",
            "cnm's IPAM assigns addresses from the cnm network's pools; remove the ipam section",
        )
    network = _string(doc, "network", name) or name
    controller = _string(
        doc, "controller", environ.get("CNM_CONTROLLER", DEFAULT_ADDRESS), limit=MAX_NETNS_PATH
    )
    try:
        parse_address(controller)
    except ValueError as e:
        raise _bad("controller", controller, str(e)) from e
    runtime = doc.get("runtimeConfig", {})
    if not isinstance(runtime, dict):
        raise _bad("runtimeConfig", runtime, "expected an object")
    default_route = doc.get("defaultRoute", True)
    if not isinstance(default_route, bool):
        raise _bad("defaultRoute", default_route, "expected true or false")
    prev = doc.get("prevResult")
    if prev is not None and not isinstance(prev, dict):
        raise _bad("prevResult", prev, "expected a result object")
    return NetConf(
        cni_version=version,
        name=name,
        network=network,
        controller=controller,
        host=_string(doc, "host"),
        default_route=default_route,
        port_mappings=port_mappings(runtime.get("portMappings", [])),
        prev_result=prev,
        valid_attachments=valid_attachments(doc) if cmd == "GC" else frozenset(),
    )


def port_mappings(items: object) -> tuple[PortMapping, ...]:
    """runtimeConfig.portMappings: [{hostPort, containerPort, protocol, hostIP}]."""
    key = "runtimeConfig.portMappings"
    if not isinstance(items, list) or len(items) > MAX_PORT_MAPPINGS:
        raise _bad(key, items, f"expected a list of at most {MAX_PORT_MAPPINGS} mappings")
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise _bad(key, item, "each mapping is an object")
        given = (item.get("hostPort"), item.get("containerPort"))
        ports = [p for p in given if type(p) is int and 1 <= p <= 65535]
        if len(ports) != 2:
            raise _bad(key, item, "hostPort and containerPort are numbers 1-65535")
        protocol = item.get("protocol", "tcp")
        if not isinstance(protocol, str) or protocol.lower() not in PROTOCOLS:
            raise _bad(key, item, "protocol is tcp, udp or sctp")
        host_ip = item.get("hostIP", "")
        try:
            host_ip = str(ipaddress.ip_address(host_ip)) if host_ip else ""
        except (TypeError, ValueError) as e:
            raise _bad(key, item, "hostIP is an IPv4 or IPv6 address") from e
        out.append(
            PortMapping(
                protocol=protocol.lower(),
                host_ip=host_ip,
                host_port=ports[0],
                host_port_end=0,
                container_port=ports[1],
            )
        )
    return tuple(dict.fromkeys(out))


def valid_attachments(doc: Mapping[str, Any]) -> frozenset[tuple[str, str]]:
    key = "cni.dev/valid-attachments"
    items = doc.get(key)
    # Missing must not read as "nothing is valid": that would remove everything.
    if not isinstance(items, list) or len(items) > MAX_VALID_ATTACHMENTS:
        raise _bad(key, items, "GC needs the list of attachments still in use")
    out = set()
    for item in items:
        if not isinstance(item, dict):
            raise _bad(key, item, "each attachment is {containerID, ifname}")
        cid, ifname = item.get("containerID"), item.get("ifname")
        if not isinstance(cid, str) or not isinstance(ifname, str):
            raise _bad(key, item, "each attachment is {containerID, ifname}")
        out.add((cid, ifname))
    return frozenset(out)
