"""A fake upstream DNS server for the forwarding test: answers every A query
with one fixed address. Run inside a namespace the test made:

    nsenter --net=KEY -- python fake_upstream.py LISTEN_IP ANSWER_IP

Prints "ready" once bound; serves until killed.
"""

from __future__ import annotations

import socket
import sys

from dnslib import QTYPE, RR, A, DNSRecord


def main() -> None:
    listen, answer = sys.argv[1], sys.argv[2]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((listen, 53))
        print("ready", flush=True)
        while True:
            data, addr = s.recvfrom(4096)
            query = DNSRecord.parse(data)
            reply = query.reply()
            if query.q.qtype == QTYPE.A:
                reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A(answer), ttl=30))
            s.sendto(reply.pack(), addr)


if __name__ == "__main__":
    main()
