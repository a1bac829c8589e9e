"""DNS messages in and out, through dnslib (no hand-written parser)."""

from __future__ import annotations

from dataclasses import dataclass

from dnslib import AAAA, PTR, QTYPE, RCODE, RR, A, DNSError, DNSRecord

from dns_service.table import Kind, Result

# Without EDNS a UDP answer is at most 512 bytes (RFC 1035); over TCP, 65535.
UDP_LIMIT = 512
TCP_LIMIT = 65535
OPCODE_QUERY = 0


@dataclass(frozen=True)
class Question:
    record: DNSRecord
    name: str
    type: str
    # Largest UDP answer the client takes (its EDNS payload size, or 512).
    udp_limit: int


def parse(data: bytes) -> Question | None:
    """The query's single question; None for anything that is not a plain query."""
    try:
        record = DNSRecord.parse(data)
    except (DNSError, ValueError, IndexError, KeyError):
        return None
    if record.header.qr or record.header.opcode != OPCODE_QUERY or len(record.questions) != 1:
        return None
    q = record.questions[0]
    limit = UDP_LIMIT
    for rr in record.ar:
        if rr.rtype == QTYPE.OPT:
            limit = max(UDP_LIMIT, min(int(rr.rclass), 4096))
    return Question(record, str(q.qname), QTYPE.get(q.qtype, str(q.qtype)), limit)


def answer(q: Question, result: Result, ttl: int, limit: int) -> bytes:
    """The reply to `q` for a locally decided result (not FORWARD)."""
    reply = q.record.reply()  # same id and question; QR, AA, RA set
    if result.kind is Kind.NXDOMAIN:
        reply.header.rcode = RCODE.NXDOMAIN
    elif result.kind is Kind.SERVFAIL:
        reply.header.rcode = RCODE.SERVFAIL
        reply.header.aa = 0
    else:
        for value in result.values:
            if q.type == "A":
                rdata, rtype = A(value), QTYPE.A
            elif q.type == "AAAA":
                rdata, rtype = AAAA(value), QTYPE.AAAA
            else:
                rdata, rtype = PTR(value.rstrip(".") + "."), QTYPE.PTR
            reply.add_answer(RR(q.record.q.qname, rtype, rdata=rdata, ttl=ttl))
    data = reply.pack()
    if len(data) > limit:
        # Too big for this transport: header and question only, TC set (the client retries on TCP).
        reply.rr = []
        reply.header.tc = 1
        data = reply.pack()
    return data


def servfail(q: Question) -> bytes:
    reply = q.record.reply()
    reply.header.rcode = RCODE.SERVFAIL
    reply.header.aa = 0
    return reply.pack()


def message_id(data: bytes) -> int:
    return int.from_bytes(data[:2], "big") if len(data) >= 2 else -1
