"""Remote IPAM: pools and addresses from plugins speaking libnetwork's IpamDriver protocol.

Why here and not in the controller: IPAM is the one place every pool id and
address goes through, so a network with `ipam.driver = NAME` changes nothing
else: the controller passes the name in RequestPool (`driver`), gets back a
pool id, and every later call (RequestAddress, ReleaseAddress, ReleasePool,
GetPool, ListPools, ListAllocations) reaches the plugin through that id.

Pool ids are "remote:<driver>:<plugin's PoolID>" (a built-in pool id starts
with an address space name, which cannot contain ':'). What the plugin does
not keep for cnm is kept in Redis, so that any IPAM replica serves any pool
and the controller's crash recovery (pools and addresses found by owner)
works as for built-in pools:

  ipam:remote:pools               hash: pool id -> JSON (driver, plugin's id, pool,
                                  space, sub-pool, v6, owner, request id, data)
  ipam:remote:addrs:<pool id>     hash: address -> JSON (owner, CIDR, plugin-made)
  ipam:remote:req:<request id>    JSON {pool_id, fingerprint} (24 h), retries of RequestPool

Calls, as libnetwork makes them: GetCapabilities and GetDefaultAddressSpaces
once per plugin activation; RequestPool {AddressSpace, Pool, SubPool, Options,
V6} -> {PoolID, Pool, Data}; ReleasePool {PoolID}; RequestAddress {PoolID,
Address, Options} -> {Address, Data}; ReleaseAddress {PoolID, Address}. When
RequestPool's Data holds "com.docker.network.gateway", that is the gateway
and the plugin is not asked for one (libnetwork does the same).

Every allocation the plugin made is undone with it when cnm cannot record it
(nothing half-made). Releases: a plugin that does not answer is UNAVAILABLE
and the record stays for a retry; a plugin's "Err" is logged and the record
dropped, as libnetwork logs and goes on.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import redis

from services.errors import (
    Aborted,
    AlreadyExists,
    CnmError,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from services.paging import decode_token, encode_token, page_size
from services.plugins import (
    text_map,
    validate_plugin_name,
)
from services.store import Store

from .allocator import (
    GATEWAY_REQUEST_TYPE,
    REQUEST_ADDRESS_TYPE,
    Allocation,
)
from .remote_plugins import IpamPlugins, bad_response
from .spaces import GLOBAL_DEFAULT, LOCAL_DEFAULT

log = logging.getLogger(__name__)

PREFIX = "remote:"
BUILTIN_DRIVERS = ("", "default")
GATEWAY_DATA = "com.docker.network.gateway"
REQUEST_TTL = 24 * 3600
_TOKEN = "r."
_REQUEST_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_MAX_OWNER = 256


def is_remote(pool_id: str) -> bool:
    return pool_id.startswith(PREFIX)


@dataclass(frozen=True)
class RemotePool:
    pool_id: str
    driver: str
    plugin_pool_id: str
    pool: str
    space: str
    sub_pool: str = ""
    v6: bool = False
    owner: str = ""
    request_id: str = ""
    data: Mapping[str, str] = field(default_factory=dict)

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.pool)

    def capacity(self) -> int:
        """Addresses a plugin could hand out: all but network (and v4 broadcast)."""
        net = self.network
        reserved = 2 if net.version == 4 and net.prefixlen < 31 else 1 if net.version == 6 else 0
        return max(0, net.num_addresses - reserved)


@dataclass(frozen=True)
class RemotePoolInfo:
    pool: RemotePool
    used: int
    free: int


def _check_owner(owner: str) -> str:
    if len(owner) > _MAX_OWNER:
        raise InvalidArgument(f"owner is longer than {_MAX_OWNER} characters: {owner[:40]!r}...")
    return owner


def _network(what: str, text: str) -> str:
    try:
        return str(ipaddress.ip_network(text))
    except ValueError as e:
        raise InvalidArgument(f"invalid {what} {text!r}: {e}") from None


def _address(what: str, text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.split("/")[0]))
    except ValueError:
        raise InvalidArgument(f"invalid {what} {text!r}: not an IP address") from None


class RemotePools:
    """Pools and addresses of remote IPAM plugins; raises domain errors only."""

    def __init__(self, store: Store, plugins: IpamPlugins) -> None:
        self.store = store
        self.plugins = plugins
        self.pools_key = store.key("ipam", "remote", "pools")

    def addrs_key(self, pool_id: str) -> str:
        return self.store.key("ipam", "remote", "addrs", pool_id)

    def req_key(self, request_id: str) -> str:
        return self.store.key("ipam", "remote", "req", request_id)

    # --- pools ----------------------------------------------------------------------------

    def _get(self, pool_id: str) -> RemotePool:
        raw = self.store.client.hget(self.pools_key, pool_id)
        if raw is None:
            raise NotFound(f"no such pool {pool_id!r}", reason="POOL_NOT_FOUND")
        d = json.loads(raw)
        return RemotePool(**{**d, "data": dict(d.get("data") or {})})

    def request_pool(
        self,
        *,
        driver: str,
        space: str,
        pool: str,
        sub_pool: str,
        options: Mapping[str, str],
        v6: bool,
        owner: str,
        request_id: str,
    ) -> RemotePool:
        validate_plugin_name(driver)
        pool = _network("pool", pool) if pool else ""
        sub_pool = _network("sub_pool", sub_pool) if sub_pool else ""
        if sub_pool and not pool:
            raise InvalidArgument("sub_pool needs a pool")
        _check_owner(owner)
        if request_id and not _REQUEST_ID.fullmatch(request_id):
            raise InvalidArgument(
                f"invalid request_id {request_id!r}: use 1-128 characters of [A-Za-z0-9_.:-]"
            )
        fingerprint = hashlib.sha256(
            json.dumps([driver, space, pool, sub_pool, sorted(options.items()), v6, owner]).encode()
        ).hexdigest()
        if request_id:
            prior = self._replay(request_id, fingerprint)
            if prior is not None:
                return prior
        handle = self.plugins.get(driver)
        plugin_space = {LOCAL_DEFAULT: handle.local_space, GLOBAL_DEFAULT: handle.global_space}.get(
            space, space
        )
        body = {
            "AddressSpace": plugin_space,
            "Pool": pool,
            "SubPool": sub_pool,
            "Options": dict(options),
            "V6": v6,
        }
        resp = self.plugins.call(driver, "RequestPool", body)
        plugin_id = resp.get("PoolID")
        if not isinstance(plugin_id, str) or not plugin_id:
            raise bad_response(driver, "RequestPool", "no PoolID")
        try:
            rec = self._granted(
                driver, resp, plugin_id, plugin_space, sub_pool, v6, owner, request_id
            )
            stored = self._record(rec, fingerprint)
        except BaseException:
            self._release_quietly(driver, plugin_id)
            raise
        if stored.pool_id != rec.pool_id:
            # A retry of the same request recorded its pool first: that one stands.
            self._release_quietly(driver, plugin_id)
        return stored

    def _granted(
        self,
        driver: str,
        resp: Mapping[str, Any],
        plugin_id: str,
        space: str,
        sub_pool: str,
        v6: bool,
        owner: str,
        request_id: str,
    ) -> RemotePool:
        try:
            net = ipaddress.ip_network(resp.get("Pool", ""))
        except (TypeError, ValueError):
            raise bad_response(
                driver, "RequestPool", f"Pool {resp.get('Pool')!r} is not a CIDR"
            ) from None
        if net.version != (6 if v6 else 4):
            raise bad_response(driver, "RequestPool", f"Pool {net} is not IPv{6 if v6 else 4}")
        return RemotePool(
            pool_id=f"{PREFIX}{driver}:{plugin_id}",
            driver=driver,
            plugin_pool_id=plugin_id,
            pool=str(net),
            space=space,
            sub_pool=sub_pool,
            v6=v6,
            owner=owner,
            request_id=request_id,
            data=text_map(resp.get("Data")),
        )

    def _replay(self, request_id: str, fingerprint: str) -> RemotePool | None:
        raw = self.store.client.get(self.req_key(request_id))
        if raw is None:
            return None
        prior = json.loads(raw)
        if prior["fingerprint"] != fingerprint:
            raise InvalidArgument(
                f"request_id {request_id!r} was already used for a different request"
            )
        return self._get(prior["pool_id"])

    def _record(self, rec: RemotePool, fingerprint: str) -> RemotePool:
        """Store the pool (and its request id) atomically. Returns the stored
        pool: `rec`, or the pool of a twin request that recorded first."""
        req_key = self.req_key(rec.request_id) if rec.request_id else None

        def write(pipe: redis.client.Pipeline) -> RemotePool | None:
            if pipe.hexists(self.pools_key, rec.pool_id):
                raise AlreadyExists(
                    f"IPAM plugin {rec.driver!r} returned pool id {rec.plugin_pool_id!r}, "
                    "which another pool already holds",
                    reason="POOL_ID_TAKEN",
                )
            if req_key is not None and pipe.exists(req_key):
                return None
            pipe.multi()
            pipe.hset(self.pools_key, rec.pool_id, json.dumps(asdict(rec)))
            if req_key is not None:
                record = json.dumps({"pool_id": rec.pool_id, "fingerprint": fingerprint})
                pipe.set(req_key, record, ex=REQUEST_TTL)
            return rec

        watch = [self.pools_key] + ([req_key] if req_key else [])
        stored = self.store.transaction(write, *watch)
        if stored is None:
            won = self._replay(rec.request_id, fingerprint)
            if won is None:
                raise Aborted("a concurrent RequestPool with this request_id vanished; retry")
            return won
        log.info("remote pool %s (%s) reserved for %r", rec.pool_id, rec.pool, rec.owner)
        return stored

    def _release_quietly(self, driver: str, plugin_id: str) -> None:
        try:
            self.plugins.call(driver, "ReleasePool", {"PoolID": plugin_id})
        except CnmError as e:
            log.warning("rollback: IPAM plugin %s could not release %s: %s", driver, plugin_id, e)

    def release_pool(self, pool_id: str) -> None:
        """The addresses cnm still holds in it (the gateway, aux addresses), then
        the pool, as libnetwork releases a network's IPAM data. NotFound when
        cnm holds no such pool; the plugin's refusal is logged."""
        rec = self._get(pool_id)
        for address in sorted(cast("list[str]", self.store.client.hkeys(self.addrs_key(pool_id)))):
            self.release_address(pool_id, address)
        try:
            self.plugins.call_for_pool(rec.driver, "ReleasePool", {"PoolID": rec.plugin_pool_id})
        except Unavailable:
            raise
        except CnmError as e:
            log.warning("%s (ignored, as libnetwork does)", e)
        pipe = self.store.client.pipeline(transaction=True)
        pipe.hdel(self.pools_key, pool_id)
        pipe.delete(self.addrs_key(pool_id))
        if rec.request_id:
            pipe.delete(self.req_key(rec.request_id))
        pipe.execute()
        log.info("remote pool %s released", pool_id)

    def get_pool(self, pool_id: str) -> RemotePoolInfo:
        rec = self._get(pool_id)
        used = self.store.client.hlen(self.addrs_key(pool_id))
        return RemotePoolInfo(rec, used, max(0, rec.capacity() - used))

    def list_pools(self, space: str, size: int, token: str) -> tuple[list[RemotePoolInfo], str]:
        """A page of remote pools in pool-id order, from the start ("") or from
        a token of `first_token` or of this call."""
        limit = page_size(size, 100, 1000)
        last = ""
        if token:
            token_space, last = decode_token(token[len(_TOKEN) :], 2)
            if token_space != (space or "*"):
                raise InvalidArgument(f"invalid page_token {token!r}: made for another listing")
        ids = sorted(
            i for i in cast("list[str]", self.store.client.hkeys(self.pools_key)) if i > last
        )
        out: list[RemotePoolInfo] = []
        for pool_id in ids:
            try:
                info = self.get_pool(pool_id)
            except NotFound:
                continue
            if space and info.pool.space != space:
                continue
            if len(out) == limit:
                return out, _TOKEN + encode_token(space or "*", out[-1].pool.pool_id)
            out.append(info)
        return out, ""

    @staticmethod
    def is_token(token: str) -> bool:
        return token.startswith(_TOKEN)

    def first_token(self, space: str) -> str:
        """The token of the first page of remote pools, which follow cnm's own
        pools in a listing; "" when there are none (of `space`)."""
        for raw in self.store.client.hvals(self.pools_key):
            if not space or json.loads(raw).get("space") == space:
                return _TOKEN + encode_token(space or "*", "")
        return ""

    # --- addresses ------------------------------------------------------------------------

    def request_address(
        self, pool_id: str, address: str, options: Mapping[str, str], owner: str
    ) -> str:
        """Allocate through the plugin; the address in CIDR form."""
        rec = self._get(pool_id)
        _check_owner(owner)
        net = rec.network
        if address:
            address = _address("address", address)
            if ipaddress.ip_address(address) not in net:
                raise InvalidArgument(f"address {address} is not in pool {pool_id!r} ({net})")
        key = self.addrs_key(pool_id)
        if address and self.store.client.hexists(key, address):
            raise AlreadyExists(
                f"address {address} of pool {pool_id!r} is already allocated",
                reason="ADDRESS_IN_USE",
            )
        gateway = rec.data.get(GATEWAY_DATA, "")
        if not address and gateway and options.get(REQUEST_ADDRESS_TYPE) == GATEWAY_REQUEST_TYPE:
            cidr, made = self._in_pool(rec, gateway, "RequestPool"), False
        else:
            body = {"PoolID": rec.plugin_pool_id, "Address": address, "Options": dict(options)}
            resp = self.plugins.call_for_pool(rec.driver, "RequestAddress", body)
            try:
                cidr, made = self._in_pool(rec, resp.get("Address"), "RequestAddress"), True
            except CnmError:
                bare = str(resp.get("Address") or "").split("/")[0]
                if bare:
                    self._release_address_quietly(rec, bare)
                raise
        bare = cidr.split("/")[0]
        entry = json.dumps({"owner": owner, "cidr": cidr, "plugin": made})
        if not self.store.client.hsetnx(key, bare, entry):
            # Not released with the plugin: cnm's record says someone holds it.
            raise bad_response(
                rec.driver, "RequestAddress", f"{bare} is already allocated to another owner"
            )
        return cidr

    def _in_pool(self, rec: RemotePool, value: Any, method: str) -> str:
        """A plugin's address (CIDR, or bare: the pool's prefix is added) inside the pool."""
        net = rec.network
        try:
            iface = ipaddress.ip_interface(
                value if "/" in str(value) else f"{value}/{net.prefixlen}"
            )
        except (TypeError, ValueError):
            raise bad_response(
                rec.driver, method, f"address {value!r} is not an IP address"
            ) from None
        if iface.ip not in net:
            raise bad_response(rec.driver, method, f"address {iface} is outside pool {net}")
        return str(iface)

    def _release_address_quietly(self, rec: RemotePool, bare: str) -> None:
        try:
            self.plugins.call(
                rec.driver, "ReleaseAddress", {"PoolID": rec.plugin_pool_id, "Address": bare}
            )
        except CnmError as e:
            log.warning("rollback: IPAM plugin %s could not release %s: %s", rec.driver, bare, e)

    def release_address(self, pool_id: str, address: str) -> None:
        """Idempotent: an address cnm does not hold is success."""
        rec = self._get(pool_id)
        bare = _address("address", address)
        key = self.addrs_key(pool_id)
        raw = self.store.client.hget(key, bare)
        if raw is None:
            return
        if json.loads(raw).get("plugin"):
            body = {"PoolID": rec.plugin_pool_id, "Address": bare}
            try:
                self.plugins.call_for_pool(rec.driver, "ReleaseAddress", body)
            except Unavailable:
                raise
            except CnmError as e:
                log.warning("%s (ignored, as libnetwork does)", e)
        self.store.client.hdel(key, bare)

    def list_allocations(self, pool_id: str, size: int, token: str) -> tuple[list[Allocation], str]:
        self._get(pool_id)
        limit = page_size(size, 1000, 10000)
        entries = self.store.client.hgetall(self.addrs_key(pool_id))
        ordered = sorted(entries.items(), key=lambda kv: ipaddress.ip_address(kv[0]))
        start = 0
        if token:
            token_pool, index = decode_token(token, 2)
            if token_pool != pool_id or not index.isdigit():
                raise InvalidArgument(f"invalid page_token {token!r}: made for another listing")
            start = int(index)
        page = ordered[start : start + limit]
        allocations = [
            Allocation(ipaddress.ip_address(addr), json.loads(raw).get("owner", ""))
            for addr, raw in page
        ]
        more = start + limit < len(ordered)
        return allocations, encode_token(pool_id, str(start + limit)) if more else ""
