"""Service addresses: `unix:///path/to.sock` or `HOST:PORT` (DESIGN.md)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Address:
    # "unix" or "tcp"
    kind: str
    # socket path for unix, "host:port" for tcp
    target: str

    @property
    def grpc_target(self) -> str:
        return f"unix://{self.target}" if self.kind == "unix" else self.target

    def __str__(self) -> str:
        return f"unix://{self.target}" if self.kind == "unix" else self.target


def parse_address(text: str) -> Address:
    """Raises ValueError with a reason for anything but unix:///abs/path or host:port."""
    if text.startswith("unix://"):
        path = text[len("unix://") :]
        if not path.startswith("/"):
            raise ValueError("unix socket path must be absolute (unix:///path/to.sock)")
        if len(path.encode()) > 107:
            raise ValueError("unix socket path longer than 107 bytes")
        return Address("unix", path)
    if text.startswith("/"):
        return parse_address("unix://" + text)
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError("expected unix:///path or HOST:PORT")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"bad port {port!r}")
    return Address("tcp", text)
