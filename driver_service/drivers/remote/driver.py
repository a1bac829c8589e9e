"""`RemoteDriver`: a network driver living in a plugin process (libnetwork's remote driver).

The plugin owns its kernel objects; this side does what libnetwork's sandbox
does around the calls:

- CreateNetwork / DeleteNetwork: forwarded.
- CreateEndpoint (the manager's `create_endpoint` hook, before the record is
  written): forwarded; a MAC or address the plugin fills in (only where none
  was given) is kept in the record and used at Join.
- Join: the plugin makes a link in the host namespace and names it
  (InterfaceName.SrcName); it is moved into the sandbox and named
  DstPrefix+N (the manager's eth<n> when the prefix is "eth" or empty),
  given the endpoint's MAC and addresses, brought up, then the plugin's
  static routes and, when this endpoint carries the sandbox's default route,
  its Gateway/GatewayIPv6 are installed. Any failure after the plugin's Join
  undoes the plumbing and calls Leave, as libnetwork does.
- Leave: the link is moved back to the host namespace under its SrcName
  (libnetwork's osl Remove) and the plugin's Leave is called; the plugin
  deletes it.

Errors: the plugin's "Err" on a create/Join/EndpointOperInfo is raised
(FAILED_PRECONDITION with the plugin's message). Teardown (Leave,
DeleteEndpoint, DeleteNetwork) logs a plugin's "Err" and goes on, as
libnetwork does, so cnm's records never stay stuck on a plugin that forgot
an object; a plugin that does not answer is UNAVAILABLE, and the intent stays
for a retry.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from typing import Any

from driver_service import osl
from driver_service.constants import SANDBOX_IFNAME_PREFIX
from driver_service.drivers.remote import api
from driver_service.models import (
    Attachment,
    EndpointRecord,
    EndpointSpec,
    NetworkRecord,
    NetworkSpec,
    SandboxRecord,
)
from services.errors import AlreadyExists, CnmError, MultiError, NotFound, Unavailable
from services.plugins import PluginClient

log = logging.getLogger(__name__)


class RemoteDriver:
    makes_interface = True

    def __init__(self, client: PluginClient, scope: str) -> None:
        self.client = client
        self.name = client.name
        self.scope = scope

    # --- calls -----------------------------------------------------------------------------

    def _call(self, method: str, body: Any = None) -> dict[str, Any]:
        return self.client.call(f"NetworkDriver.{method}", body)

    def _teardown(self, method: str, body: Any) -> None:
        """A teardown call: the plugin's refusal is logged, UNAVAILABLE raised."""
        try:
            self._call(method, body)
        except Unavailable:
            raise
        except CnmError as e:
            log.warning("%s (ignored, as libnetwork does)", e)

    def _quietly(self, method: str, body: Any) -> None:
        """A rollback call: never hides the error that caused the rollback."""
        try:
            self._call(method, body)
        except CnmError as e:
            log.warning("rollback: %s", e)

    # --- networks --------------------------------------------------------------------------

    def plan_network(self, spec: NetworkSpec, others: Sequence[NetworkRecord]) -> Mapping[str, str]:
        # Options are the plugin's to judge (at CreateNetwork).
        return {}

    def create_network(self, net: NetworkRecord) -> None:
        self._call("CreateNetwork", api.create_network(net.spec))

    def delete_network(self, net: NetworkRecord) -> None:
        self._teardown("DeleteNetwork", {"NetworkID": net.id})

    # --- endpoints -------------------------------------------------------------------------

    def plan_endpoint(self, net: NetworkRecord, spec: EndpointSpec) -> str:
        return spec.mac

    def create_endpoint(self, net: NetworkRecord, ep: EndpointRecord) -> EndpointRecord:
        """Forward CreateEndpoint; returns the record with what the plugin filled in."""
        resp = self._call("CreateEndpoint", api.create_endpoint(ep.spec, ep.mac))
        sent = api.EndpointInterface(ep.spec.address, ep.spec.address_ipv6, ep.mac)
        try:
            got = api.endpoint_interface(self.name, resp, sent)
        except CnmError:
            self._quietly("DeleteEndpoint", api.endpoint_ref(net.id, ep.id))
            raise
        spec = dataclasses.replace(ep.spec, address=got.address, address_ipv6=got.address_ipv6)
        return dataclasses.replace(ep, spec=spec, mac=got.mac)

    def delete_endpoint(self, network_id: str, endpoint_id: str) -> None:
        self._teardown("DeleteEndpoint", api.endpoint_ref(network_id, endpoint_id))

    def gateways(self, net: NetworkRecord, ep: EndpointRecord) -> tuple[str, str]:
        """The network's IPAM gateways: only a hint that this endpoint may take
        the default route; the gateway used is the one Join returns."""
        if net.spec.internal:
            return ("", "")
        out = []
        for addr, pools in (
            (ep.spec.address, net.spec.ipv4),
            (ep.spec.address_ipv6, net.spec.ipv6),
        ):
            gw = ""
            if addr:
                ip = ipaddress.ip_interface(addr).ip
                for d in pools:
                    if d.gateway and ip in ipaddress.ip_network(d.pool):
                        gw = str(ipaddress.ip_interface(d.gateway).ip)
            out.append(gw)
        return (out[0], out[1])

    def host_ifname(self, ep: EndpointSpec) -> str:
        # The plugin names its link at Join (SrcName).
        return ""

    def oper_info(self, net: NetworkRecord, ep: EndpointRecord) -> Mapping[str, str]:
        resp = self._call("EndpointOperInfo", api.endpoint_ref(net.id, ep.id))
        return api.oper_value(self.name, resp)

    def restore(self, nets: Sequence[NetworkRecord], eps: Sequence[EndpointRecord]) -> None:
        # The plugin keeps its own state across our restarts; nothing to redo here.
        return None

    # --- join / leave ----------------------------------------------------------------------

    def join(
        self, net: NetworkRecord, ep: EndpointRecord, sandbox: SandboxRecord, att: Attachment
    ) -> Attachment:
        try:
            resp = self._call("Join", api.join(net.id, ep.id, sandbox.key, att.options))
            reply = api.join_reply(self.name, resp)
            return self._plumb(ep, sandbox, att, reply)
        except BaseException:
            self._quietly("Leave", api.endpoint_ref(net.id, ep.id))
            raise

    def _sandbox_name(self, sandbox: SandboxRecord, att: Attachment, prefix: str) -> str:
        if prefix in ("", SANDBOX_IFNAME_PREFIX) and att.ifname:
            return att.ifname
        used = {li.name for li in osl.list_links(netns=sandbox.key)}
        n = 0
        while f"{prefix}{n}" in used:
            n += 1
        return f"{prefix}{n}"

    def _plumb(
        self, ep: EndpointRecord, sandbox: SandboxRecord, att: Attachment, reply: api.JoinReply
    ) -> Attachment:
        key = sandbox.key
        ifname = ""
        with ExitStack() as undo:
            if reply.src_name:
                ifname = self._sandbox_name(sandbox, att, reply.dst_prefix)
                try:
                    osl.move_link_into_netns(reply.src_name, key, ifname, mac=ep.mac or None)
                except NotFound as e:
                    if e.reason != "LINK_NOT_FOUND":
                        raise
                    raise api.bad_response(
                        self.name, "Join", f"SrcName {reply.src_name!r} does not exist on the host"
                    ) from e
                undo.callback(self._move_back_quietly, ifname, reply.src_name, key)
                osl.add_addresses(
                    ifname, [a for a in (ep.spec.address, ep.spec.address_ipv6) if a], netns=key
                )
                osl.set_link_state(ifname, True, netns=key)
            for route in reply.routes:
                osl.add_route(
                    route.destination,
                    gateway=route.next_hop or None,
                    ifname=ifname or None,
                    netns=key,
                )
            default = att.default_route and bool(reply.gateway or reply.gateway_ipv6)
            if default:
                for gw in (reply.gateway, reply.gateway_ipv6):
                    if gw:
                        osl.set_default_route(gw, ifname=ifname or None, netns=key)
            undo.pop_all()
        return dataclasses.replace(
            att,
            ifname=ifname,
            host_ifname=reply.src_name,
            gateway=reply.gateway,
            gateway_ipv6=reply.gateway_ipv6,
            default_route=default,
            static_routes=reply.routes,
        )

    def _move_back(self, ifname: str, src_name: str, netns: str) -> None:
        """The sandbox's link back to the host namespace as `src_name` (deleted
        when it has no such name or the name is taken). Gone is success."""
        try:
            if not osl.link_exists(ifname, netns=netns):
                return
            if src_name:
                try:
                    osl.move_link_into_netns(ifname, None, src_name, from_netns=netns)
                    return
                except AlreadyExists:
                    log.warning(
                        "%s: %r is taken on the host: deleting the link", self.name, src_name
                    )
            osl.delete_link(ifname, netns=netns)
        except NotFound:
            return

    def _move_back_quietly(self, ifname: str, src_name: str, netns: str) -> None:
        try:
            self._move_back(ifname, src_name, netns)
        except CnmError as e:
            log.warning("rollback: cannot give %s back to plugin %s: %s", ifname, self.name, e)

    def leave(
        self,
        net: NetworkRecord,
        ep: EndpointRecord,
        att: Attachment,
        sandbox: SandboxRecord | None,
    ) -> None:
        errors: list[Exception] = []
        if att.ifname and sandbox is not None and osl.is_netns(sandbox.key):
            try:
                self._move_back(att.ifname, att.host_ifname, sandbox.key)
            except CnmError as e:
                errors.append(e)
        try:
            self._teardown("Leave", api.endpoint_ref(net.id, ep.id))
        except CnmError as e:
            errors.append(e)
        if errors:
            raise errors[0] if len(errors) == 1 else MultiError(errors)
