"""The CNI verbs, each a few controller calls.

One attachment `(CNI network name, CNI_CONTAINERID, CNI_IFNAME)` is one cnm
sandbox on the runtime's namespace, named from a digest of that key (so DEL
and CHECK find it without any state in the plugin) and labelled with it (so
GC can tell this network's attachments from everyone else's), joined to the
cnm network through Connect. Deleting the sandbox leaves and deletes the
endpoint with it: addresses, published ports, links and rules go back.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from typing import Any

from clients.client import Client
from clients.cni import errors, result
from clients.cni.config import SUPPORTED_VERSIONS, Attachment, NetConf
from clients.cni.errors import CniError, from_client_error, unreachable
from clients.errors import (
    AlreadyExistsError,
    ClientError,
    NotFoundError,
    UnavailableError,
)
from cnm.controller.v1 import controller_pb2 as pb

log = logging.getLogger(__name__)

# Endpoint options: the interface's name inside the sandbox; "false" to keep
# the network's gateway out of the default route.
IFNAME_OPTION = "com.cnm.endpoint.ifname"
DEFAULT_ROUTE_OPTION = "com.cnm.endpoint.default_route"
# Sandbox labels: which CNI attachment a sandbox is.
LABEL_NETWORK = "com.cnm.cni.network"
LABEL_CONTAINER = "com.cnm.cni.container-id"
LABEL_IFNAME = "com.cnm.cni.ifname"
# ADD and DEL wait this long per call; STATUS answers faster.
CALL_TIMEOUT = 30.0
STATUS_TIMEOUT = 5.0


def sandbox_name(conf: NetConf, att: Attachment) -> str:
    """A readable, collision-free sandbox name for the attachment:
    `<container id, up to 32 chars>-<12 hex of the key's digest>`."""
    key = "\0".join((conf.name, att.container_id, att.ifname)).encode()
    readable = re.sub(r"[^A-Za-z0-9_-]", "_", att.container_id)[:32]
    return f"{readable}-{hashlib.sha256(key).hexdigest()[:12]}"


def _client(conf: NetConf, timeout: float = CALL_TIMEOUT) -> Client:
    return Client(conf.controller, timeout=timeout)


def _network(cnm: Client, conf: NetConf) -> pb.Network:
    try:
        return cnm.get_network(conf.network)
    except NotFoundError as e:
        raise CniError(
            errors.INVALID_CONFIG,
            f"network {conf.network!r} not found",
            f"no cnm network is named {conf.network!r} (create it with cnmctl network create)",
        ) from e


# ---------------------------------------------------------------------- ADD


def add(conf: NetConf, att: Attachment) -> dict[str, Any]:
    name = sandbox_name(conf, att)
    with _client(conf) as cnm:
        try:
            net = _network(cnm, conf)
        except ClientError as e:
            raise from_client_error(e, conf.controller) from e
        try:
            sandbox = _create_sandbox(cnm, conf, att, name)
        except ClientError as e:
            # What CreateSandbox can refuse came from CNI_NETNS or CNI_CONTAINERID.
            raise from_client_error(e, conf.controller, invalid=errors.INVALID_ENVIRONMENT) from e
        options = {IFNAME_OPTION: att.ifname}
        if not conf.default_route:
            options[DEFAULT_ROUTE_OPTION] = "false"
        try:
            endpoint = cnm.connect(
                net.id, sandbox.id, port_bindings=conf.port_mappings, options=options
            )
        except BaseException as e:
            _remove_quietly(cnm, sandbox.id)
            if isinstance(e, ClientError):
                raise from_client_error(e, conf.controller) from e
            raise
    return result.add_result(
        conf.cni_version,
        conf.prev_result,
        ifname=att.ifname,
        netns=att.netns,
        endpoint=endpoint,
        dns=_dns(sandbox),
    )


def _create_sandbox(cnm: Client, conf: NetConf, att: Attachment, name: str) -> pb.Sandbox:
    try:
        return cnm.create_sandbox(
            name,
            container_id=att.container_id,
            host=conf.host,
            external_key=att.netns,
            labels={
                LABEL_NETWORK: conf.name,
                LABEL_CONTAINER: att.container_id,
                LABEL_IFNAME: att.ifname,
            },
        )
    except AlreadyExistsError as e:
        if e.reason != "SANDBOX_NAME_TAKEN":
            raise
        raise CniError(
            errors.CNM_ERROR,
            f"container {att.container_id!r} is already attached to network {conf.name!r} "
            f"as {att.ifname!r}",
            "ADD twice for one attachment: DEL it first",
        ) from e
    except NotFoundError as e:
        # The driver's NETNS_NOT_FOUND, as the controller relays it.
        if e.reason == "NETNS_NOT_FOUND" or "namespace" in e.message:
            raise CniError(errors.UNKNOWN_CONTAINER, e.message, "CNI_NETNS does not exist") from e
        raise


def _remove_quietly(cnm: Client, sandbox_id: str) -> None:
    try:
        cnm.delete_sandbox(sandbox_id)
    except NotFoundError:
        pass
    except ClientError as e:
        # DEL (which runtimes send after a failed ADD) finds it by name and retries.
        log.error("could not remove sandbox %s after a failed ADD: %s", sandbox_id[:12], e)


def _dns(sandbox: pb.Sandbox) -> dict[str, Any]:
    """What the sandbox's resolv.conf says; its DNS settings when the file is not
    readable here (a controller on another machine)."""
    try:
        with open(sandbox.resolv_conf_path, encoding="utf-8") as f:
            return result.resolv_conf_dns(f.read(64 << 10))
    except OSError:
        return result.merge_dns(
            {"nameservers": list(sandbox.dns.servers), "search": list(sandbox.dns.search),
             "options": list(sandbox.dns.options)},
            {},
        )  # fmt: skip


# ---------------------------------------------------------------------- DEL


def delete(conf: NetConf, att: Attachment) -> None:
    """Idempotent: an attachment cnm does not know is already deleted."""
    with _client(conf) as cnm:
        try:
            cnm.delete_sandbox(sandbox_name(conf, att))
        except NotFoundError:
            return
        except ClientError as e:
            raise from_client_error(e, conf.controller) from e


# ---------------------------------------------------------------------- CHECK


def check(conf: NetConf, att: Attachment) -> None:
    prev = conf.prev_result
    if not prev:
        raise CniError(errors.INVALID_CONFIG, "CHECK needs prevResult", "the result of the ADD")
    index = result.find_interface(prev, att.ifname, att.netns)
    if index < 0:
        raise CniError(
            errors.CNM_ERROR,
            f"prevResult has no interface {att.ifname!r} in {att.netns}",
            "the ADD result does not list this attachment",
        )
    with _client(conf) as cnm:
        try:
            net = _network(cnm, conf)
            sandbox = cnm.get_sandbox(sandbox_name(conf, att))
        except NotFoundError as e:
            raise CniError(
                errors.CNM_ERROR,
                f"container {att.container_id!r} is not attached to network {conf.name!r}",
                e.message,
            ) from e
        except ClientError as e:
            raise from_client_error(e, conf.controller) from e
    endpoint = next((ep for ep in sandbox.endpoints if ep.network_id == net.id), None)
    if endpoint is None or endpoint.state != pb.ENDPOINT_STATE_JOINED:
        raise CniError(
            errors.CNM_ERROR,
            f"container {att.container_id!r} is not joined to cnm network {net.name!r}",
            "the endpoint is missing or not joined",
        )
    if endpoint.interface_name != att.ifname or sandbox.key != att.netns:
        raise CniError(
            errors.CNM_ERROR,
            f"container {att.container_id!r}: {att.ifname} in {att.netns} is now "
            f"{endpoint.interface_name} in {sandbox.key}",
        )
    expected = {ip.get("address") for ip in prev.get("ips", []) if ip.get("interface") == index}
    actual = {a for a in (endpoint.ipv4_address, endpoint.ipv6_address) if a}
    if expected != actual:
        raise CniError(
            errors.CNM_ERROR,
            f"container {att.container_id!r}: addresses {sorted(actual)} differ from "
            f"prevResult's {sorted(expected)}",
        )
    if not os.path.exists(att.netns):
        raise CniError(errors.CNM_ERROR, f"network namespace {att.netns} is gone")


# ---------------------------------------------------------------------- GC


def gc(conf: NetConf) -> None:
    """Deletes this CNI network's attachments that the runtime no longer lists;
    goes on after a failure and reports every failure at the end."""
    failures: list[str] = []
    transient = False
    with _client(conf) as cnm:
        try:
            sandboxes = cnm.list_sandboxes(host=conf.host)
        except ClientError as e:
            raise from_client_error(e, conf.controller) from e
        for sb in sandboxes:
            labels = sb.labels
            if labels.get(LABEL_NETWORK) != conf.name:
                continue
            key = (labels.get(LABEL_CONTAINER, ""), labels.get(LABEL_IFNAME, ""))
            if key in conf.valid_attachments:
                continue
            try:
                cnm.delete_sandbox(sb.id)
                log.info("GC: removed attachment %s/%s (sandbox %s)", *key, sb.name)
            except NotFoundError:
                pass
            except ClientError as e:
                transient = transient or isinstance(e, UnavailableError)
                failures.append(f"{key[0]}/{key[1]}: {e}")
    if failures:
        raise CniError(
            errors.TRY_AGAIN_LATER if transient else errors.CNM_ERROR,
            f"could not remove {len(failures)} stale attachment(s)",
            "; ".join(failures)[:4000],
        )


# ---------------------------------------------------------------------- STATUS


def status(conf: NetConf) -> None:
    """Ready when the controller answers, the network exists and its host is READY."""
    with _client(conf, STATUS_TIMEOUT) as cnm:
        cnm.retries = 1
        try:
            net = cnm.get_network(conf.network)
            host_id = net.host or conf.host
            hosts = [cnm.get_host(host_id)] if host_id else cnm.list_hosts()
        except UnavailableError as e:
            raise CniError(errors.NOT_AVAILABLE, unreachable(e, conf.controller), e.message) from e
        except ClientError as e:
            raise CniError(errors.NOT_AVAILABLE, _status_message(e, conf), e.reason) from e
    if not any(h.state == pb.HOST_STATE_READY for h in hosts):
        raise CniError(
            errors.NOT_AVAILABLE,
            f"no cnm host is ready for network {conf.network!r}",
            ", ".join(f"{h.id}: {pb.HostState.Name(h.state)}" for h in hosts) or "no hosts",
        )


def _status_message(exc: ClientError, conf: NetConf) -> str:
    if isinstance(exc, NotFoundError):
        return f"network {conf.network!r} not found"
    return exc.message


# ---------------------------------------------------------------------- VERSION


def version(cni_version: str) -> dict[str, Any]:
    return {"cniVersion": cni_version, "supportedVersions": list(SUPPORTED_VERSIONS)}
