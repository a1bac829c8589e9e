"""Rtnetlink requests sent several at a time on a raw socket: osl's lean path.

pyroute2's IPRoute (0.9) runs an asyncio event loop under every synchronous
call and turns every reply into nested objects: about 0.7 ms of CPU per
request, and as much again to open a handle (measured, cProfile). The Join
path (`create_veth`) goes this way instead: each request is one of
pyroute2's own message classes (ifinfmsg, ifaddrmsg, rtmsg) encoded by
pyroute2, a batch goes out in one send(2), and the kernel, which handles the
messages of a datagram one after the other, answers each with an ack (after
the message itself for an echo or a GET); acks and the few fields osl needs
are read with struct. Only a failure is decoded by pyroute2, for the
kernel's extended-ack text.

The kernel does not stop at a failed message: put in one batch only requests
that may all run whatever the earlier ones did (later ones then fail too, or
are harmless), and report the first error (`Batch.check`).
"""

from __future__ import annotations

import errno
import itertools
import socket
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from pyroute2.netlink import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_ECHO,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    nlmsg_base,
    nlmsgerr,
)
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import (
    RTM_DELLINK,
    RTM_GETLINK,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
)
from pyroute2.netlink.rtnl.ifaddrmsg import IFA_F_NODAD, ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from .rtnl import to_domain_error
from .types import Route
from .validate import IPInterface

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_DUMP = 0x300
NLM_F_DUMP_INTR = 0x10
IFF_UP = 1
IFLA_IFNAME = 3
IFLA_LINK = 5
IFLA_MASTER = 10
IFLA_LINKINFO = 18
IFLA_EXT_MASK = 29
IFLA_INFO_KIND = 1
RTEXT_FILTER_SKIP_STATS = 1 << 3
RT_TABLE_MAIN = 254
RTN_UNICAST = 1
CREATE = NLM_F_CREATE | NLM_F_EXCL
REPLACE = NLM_F_CREATE | NLM_F_REPLACE

_NLMSG = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # family, type, index, flags, change
_ERRNO = struct.Struct("=i")
_RTA = struct.Struct("=HH")  # len, type
_seq = itertools.count(1)


@dataclass
class Reply:
    """The kernel's answer to one request: its error, and the message it sent
    back (an echo, or what a GET asked for), raw."""

    error: NetlinkError | None = None
    message: bytes | None = None


@dataclass
class Batch:
    """Requests for one socket, sent in one datagram; `send` returns a Reply each."""

    _data: list[bytes] = field(default_factory=list)
    _seqs: list[int] = field(default_factory=list)
    _actions: list[tuple[str, Mapping[str, object]]] = field(default_factory=list)

    def add(self, msg: nlmsg_base, kind: int, flags: int, action: str, **values: object) -> Batch:
        """Queue `msg` (fields and attrs set) as message type `kind`; `action` and
        `values` name it in the error it may cause."""
        seq = next(_seq)
        header = msg["header"]
        header["type"] = kind
        header["flags"] = NLM_F_REQUEST | NLM_F_ACK | flags
        header["sequence_number"] = seq
        msg.encode()
        self._data.append(bytes(msg.data))
        self._seqs.append(seq)
        self._actions.append((action, values))
        return self

    def __len__(self) -> int:
        return len(self._seqs)

    def send(self, sock: socket.socket) -> list[Reply]:
        replies = {seq: Reply() for seq in self._seqs}
        if not replies:
            return []
        sock.send(b"".join(self._data))
        pending = set(self._seqs)
        while pending:
            data = sock.recv(1 << 16)
            off = 0
            while off + _NLMSG.size <= len(data):
                length, kind, _, seq, _ = _NLMSG.unpack_from(data, off)
                if length < _NLMSG.size or off + length > len(data):
                    break
                reply = replies.get(seq)
                if reply is not None:
                    if kind == NLMSG_ERROR:
                        code = -_ERRNO.unpack_from(data, off + _NLMSG.size)[0]
                        if code:
                            reply.error = _error(data[off : off + length], code)
                        pending.discard(seq)
                    else:
                        reply.message = data[off : off + length]
                off += (length + 3) & ~3
        return [replies[seq] for seq in self._seqs]

    def check(self, replies: list[Reply]) -> None:
        """Raise the first failure as a domain error named by its request's action."""
        for reply, (action, values) in zip(replies, self._actions, strict=True):
            if reply.error is not None:
                raise to_domain_error(reply.error, action, **values) from reply.error

    def run(self, sock: socket.socket) -> list[Reply]:
        replies = self.send(sock)
        self.check(replies)
        return replies


def _error(raw: bytes, code: int) -> NetlinkError:
    text = None
    try:
        msg = nlmsgerr(raw)
        msg.decode()
        text = msg.get_attr("NLMSGERR_ATTR_MSG")
    except Exception:  # noqa: BLE001 - the errno alone still says what happened
        pass
    return NetlinkError(code, text) if text else NetlinkError(code)


# --- reading replies -------------------------------------------------------------------------


def link_index_of(message: bytes) -> int:
    """ifi_index of an RTM_NEWLINK message."""
    return int(_IFINFO.unpack_from(message, _NLMSG.size)[2])


def link_attr_u32(message: bytes, attr: int) -> int | None:
    """A u32 attribute (e.g. IFLA_LINK, a veth's peer index) of an RTM_NEWLINK message."""
    off = _NLMSG.size + _IFINFO.size
    end = min(len(message), _NLMSG.unpack_from(message, 0)[0])
    while off + _RTA.size <= end:
        alen, atype = _RTA.unpack_from(message, off)
        if alen < _RTA.size:
            return None
        if atype & 0x3FFF == attr and alen >= _RTA.size + 4:
            return int(struct.unpack_from("=I", message, off + _RTA.size)[0])
        off += (alen + 3) & ~3
    return None


@dataclass(frozen=True, slots=True)
class LeanLink:
    """What the lean link dump reads of a link."""

    index: int
    name: str
    master: int | None  # the index of the bridge it is plugged into
    kind: str | None  # IFLA_INFO_KIND: "veth", "bridge", "vxlan"...


def dump_links(sock: socket.socket) -> tuple[list[LeanLink], bool]:
    """Every link of the socket's namespace (one RTM_GETLINK dump without
    statistics, read with struct: index, name, master and kind only), and
    whether the kernel flagged the dump as interrupted by a change (the
    caller then asks again).

    Why not pyroute2's dump: it decodes each link into ~30 KB of nested
    objects held in reference cycles, which only the cyclic GC frees; a
    periodic dump of 1,000 veths left ~25 MB of them, which stayed in the
    driver's RSS (issue 15's memory target), and cost ~0.5 s of CPU against
    ~9 ms for this.
    """
    seq = next(_seq)
    ext_mask = _RTA.pack(_RTA.size + 4, IFLA_EXT_MASK) + struct.pack("=I", RTEXT_FILTER_SKIP_STATS)
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + ext_mask
    sock.send(
        _NLMSG.pack(_NLMSG.size + len(body), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body
    )
    links: list[LeanLink] = []
    interrupted = False
    while True:
        data = sock.recv(1 << 16)
        off = 0
        while off + _NLMSG.size <= len(data):
            length, kind, flags, mseq, _ = _NLMSG.unpack_from(data, off)
            if length < _NLMSG.size or off + length > len(data):
                break
            if mseq == seq:
                interrupted |= bool(flags & NLM_F_DUMP_INTR)
                if kind == NLMSG_DONE:
                    return links, interrupted
                if kind == NLMSG_ERROR:
                    code = -_ERRNO.unpack_from(data, off + _NLMSG.size)[0]
                    raise _error(data[off : off + length], code)
                if kind == RTM_NEWLINK:
                    link = _lean_link(data, off, off + length)
                    if link is not None:
                        links.append(link)
            off += (length + 3) & ~3


def _lean_link(data: bytes, start: int, end: int) -> LeanLink | None:
    index = int(_IFINFO.unpack_from(data, start + _NLMSG.size)[2])
    name = kind = master = None
    for atype, value in _attrs(data, start + _NLMSG.size + _IFINFO.size, end):
        if atype == IFLA_IFNAME:
            name = _cstr(data[value : _attr_end(data, value)])
        elif atype == IFLA_MASTER:
            master = int(struct.unpack_from("=I", data, value)[0])
        elif atype == IFLA_LINKINFO:
            for itype, ivalue in _attrs(data, value, _attr_end(data, value)):
                if itype == IFLA_INFO_KIND:
                    kind = _cstr(data[ivalue : _attr_end(data, ivalue)])
    return None if name is None else LeanLink(index, name, master, kind)


def _attrs(data: bytes, off: int, end: int) -> Iterator[tuple[int, int]]:
    """(type, offset of the value) of each attribute in data[off:end]."""
    while off + _RTA.size <= end:
        alen, atype = _RTA.unpack_from(data, off)
        if alen < _RTA.size or off + alen > end:
            return
        yield atype & 0x3FFF, off + _RTA.size
        off += (alen + 3) & ~3


def _attr_end(data: bytes, value: int) -> int:
    """The end of the attribute whose value starts at `value`."""
    return value - _RTA.size + int(_RTA.unpack_from(data, value - _RTA.size)[0])


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace")


# --- requests ----------------------------------------------------------------------------


def link_msg(
    index: int = 0,
    *,
    up: bool = False,
    down: bool = False,
    family: int = 0,
    attrs: Mapping[str, object] | None = None,
    **more: object,
) -> ifinfmsg:
    """An ifinfmsg for `index` (set `up` or `down`, else its state untouched);
    `attrs` and `more` are IFLA_* names in lower case without the prefix
    (ifname, mtu, master, group, ifalias, linkinfo...)."""
    msg = ifinfmsg()
    msg["family"] = family
    msg["index"] = index
    if up or down:
        msg["flags"] = IFF_UP if up else 0
        msg["change"] = IFF_UP
    msg["attrs"] = [(f"IFLA_{k.upper()}", v) for k, v in {**(attrs or {}), **more}.items()]
    return msg


def get_link(sock: socket.socket, name: str) -> bytes | None:
    """The RTM_NEWLINK message of interface `name` (RTM_GETLINK by name, without
    its statistics), None if missing."""
    msg = link_msg(ifname=name, ext_mask=RTEXT_FILTER_SKIP_STATS)
    batch = Batch().add(msg, RTM_GETLINK, 0, f"look up link {name!r}")
    reply = batch.send(sock)[0]
    if reply.error is not None:
        if reply.error.code == errno.ENODEV:
            return None
        batch.check([reply])
    return reply.message


@dataclass(frozen=True)
class LinkRef:
    """A link as a lookup found it: its index and, for a veth, its peer's index
    (None when the kernel does not say: it omits it when both ends have the
    same index)."""

    index: int
    peer_index: int | None


def find_link(sock: socket.socket, name: str) -> LinkRef | None:
    """Link `name` in the socket's namespace, or None."""
    found = get_link(sock, name)
    if found is None:
        return None
    return LinkRef(link_index_of(found), link_attr_u32(found, IFLA_LINK))


def delete_link_index(sock: socket.socket, index: int, name: str) -> None:
    Batch().add(link_msg(index), RTM_DELLINK, 0, f"delete link {name!r}").run(sock)


def add_address(batch: Batch, index: int, ifname: str, iface: IPInterface) -> Batch:
    """Queue an address replace (IPv6 without DAD, IPv4 with its broadcast address)."""
    msg = ifaddrmsg()
    msg["family"] = socket.AF_INET if iface.version == 4 else socket.AF_INET6
    msg["prefixlen"] = iface.network.prefixlen
    msg["index"] = index
    ip = str(iface.ip)
    attrs: list[tuple[str, object]] = [("IFA_ADDRESS", ip)]
    if iface.version == 6:
        attrs.append(("IFA_FLAGS", IFA_F_NODAD))
    else:
        attrs.append(("IFA_LOCAL", ip))
        if iface.network.prefixlen < 31:
            attrs.append(("IFA_BROADCAST", str(iface.network.broadcast_address)))
    msg["attrs"] = attrs
    return batch.add(msg, RTM_NEWADDR, REPLACE, f"add address {iface} to {ifname!r}", address=iface)


def add_route(batch: Batch, route: Route, kwargs: Mapping[str, object], ifname: str) -> Batch:
    """Queue a main-table route replace; `kwargs` as `addressing.route_kwargs` gives them."""
    msg = rtmsg()
    msg["family"] = kwargs["family"]
    msg["dst_len"] = kwargs["dst_len"]
    msg["proto"] = kwargs["proto"]
    msg["table"] = RT_TABLE_MAIN
    msg["type"] = RTN_UNICAST
    names = {
        "dst": "RTA_DST",
        "gateway": "RTA_GATEWAY",
        "priority": "RTA_PRIORITY",
        "oif": "RTA_OIF",
    }
    msg["attrs"] = [(names[k], kwargs[k]) for k in names if k in kwargs]
    via = f" via {route.gateway}" if route.gateway else ""
    action = f"add route {route.dst}{via} dev {ifname}"
    return batch.add(msg, RTM_NEWROUTE, REPLACE, action, dst=route.dst, gateway=route.gateway)


def create_link(sock: socket.socket, msg: ifinfmsg) -> Reply:
    """One RTM_NEWLINK that creates a link (EXCL), with the new link echoed back
    (its index, a veth's peer index) where the kernel echoes (Linux >= 6.3)."""
    return Batch().add(msg, RTM_NEWLINK, CREATE | NLM_F_ECHO, "create link").send(sock)[0]
