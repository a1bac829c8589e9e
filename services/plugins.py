"""Docker/libnetwork v1 plugins: discovery by name, JSON over HTTP, the handshake.

Plugins written for Docker's networking (remote network drivers, remote IPAM
drivers) work with cnm unchanged: they are found where Docker finds them and
spoken to the way libnetwork speaks to them. Shared by the driver service
(NetworkDriver) and the IPAM service (IpamDriver).

Discovery of plugin NAME (`Discovery.find`):

1. spec files, first match wins: in each of cnm's configured `plugin_dirs`,
   then /etc/docker/plugins, /usr/lib/docker/plugins and libnetwork's original
   /usr/share/docker/plugins, the paths NAME.spec, NAME/NAME.spec, NAME.json,
   NAME/NAME.json. A `.spec` holds one URL (`unix:///path.sock` or
   `tcp://host:port`); a `.json` is libnetwork's {"Name", "Addr", "TLSConfig"}.
2. sockets: NAME.sock and NAME/NAME.sock in each configured dir, then in
   /run/docker/plugins.

A spec file wins over a socket, as in libnetwork's first plugin registry
(later Docker releases look at sockets first): a spec file is an operator's
explicit statement of where the plugin is.

Wire protocol: every call is `POST /<Method>` with a JSON body and
`Accept: application/vnd.docker.plugins.v1+json`, one connection per call (a
restarted plugin is reached by the next call without any re-dial logic). A
response carrying a non-empty "Err" (with any HTTP status) is the plugin's
refusal: PluginError (FAILED_PRECONDITION, or INVALID_ARGUMENT for HTTP 400)
with the plugin's own message. A plugin that cannot be reached, times out or
hangs up is UNAVAILABLE. A response that is not a JSON object is a
FAILED_PRECONDITION naming the plugin (reason PLUGIN_BAD_RESPONSE).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import socket
import ssl
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from services.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable

log = logging.getLogger(__name__)

# Where Docker keeps plugin sockets and spec files.
SOCKET_DIRS: tuple[str, ...] = ("/run/docker/plugins",)
SPEC_DIRS: tuple[str, ...] = (
    "/etc/docker/plugins",
    "/usr/lib/docker/plugins",
    "/usr/share/docker/plugins",
)

ACCEPT = "application/vnd.docker.plugins.v1+json"
NETWORK_DRIVER = "NetworkDriver"
IPAM_DRIVER = "IpamDriver"

# A call's deadline: below the controller's default driver_timeout (10 s), so a
# hung plugin surfaces as this service's UNAVAILABLE, not as the caller's deadline.
CALL_TIMEOUT = 8.0
# Activation is retried while the plugin starts: first retry after 50 ms,
# doubling up to 1 s, for at most this long in total.
ACTIVATE_BUDGET = 5.0

# Plugin names become file names: no '/', no leading dot.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def validate_plugin_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidArgument(
            f"invalid plugin name {name!r}: use 1-128 characters of [A-Za-z0-9_.-], "
            "starting with a letter or digit",
            reason="INVALID_PLUGIN_NAME",
        )
    return name


class PluginError(FailedPrecondition):
    """The plugin answered with an "Err": it refused the call."""

    default_reason = "PLUGIN_ERROR"


@dataclass(frozen=True)
class TlsConfig:
    """libnetwork's TLSConfig of a .json spec (tcp plugins only)."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class PluginSpec:
    """Where plugin `name` listens: "unix:///path" or "tcp://host:port"."""

    name: str
    addr: str
    # The spec file or socket it was found through (for messages, and to
    # notice a plugin that was replaced).
    source: str
    tls: TlsConfig | None = None

    @property
    def fingerprint(self) -> tuple[str, str, int, int]:
        """Changes when the plugin's socket or spec file is replaced."""
        try:
            st = os.stat(self.source)
        except OSError:
            return (self.source, self.addr, 0, 0)
        return (self.source, self.addr, st.st_ino, int(st.st_mtime_ns))


def _pick_addr(name: str, url: str, source: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme == "unix" and parts.path.startswith("/"):
        return f"unix://{parts.path}"
    if parts.scheme in ("tcp", "http", "https") and parts.hostname and parts.port:
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        return f"tcp://{host}:{parts.port}"
    raise InvalidArgument(
        f"plugin {name!r}: {source}: unsupported address {url.strip()!r} "
        "(expected unix:///path or tcp://host:port)",
        reason="INVALID_PLUGIN_SPEC",
    )


def read_spec_file(name: str, path: str) -> PluginSpec:
    """A PluginSpec from a `.spec` (one URL) or `.json` (libnetwork's shape) file."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise InvalidArgument(
            f"plugin {name!r}: cannot read {path}: {e.strerror}", reason="INVALID_PLUGIN_SPEC"
        ) from e
    if not path.endswith(".json"):
        return PluginSpec(name=name, addr=_pick_addr(name, text, path), source=path)
    try:
        data = json.loads(text)
    except ValueError as e:
        raise InvalidArgument(
            f"plugin {name!r}: {path} is not valid JSON: {e}", reason="INVALID_PLUGIN_SPEC"
        ) from e
    if not isinstance(data, dict) or not isinstance(data.get("Addr"), str):
        raise InvalidArgument(
            f'plugin {name!r}: {path} has no "Addr"', reason="INVALID_PLUGIN_SPEC"
        )
    tls = None
    raw_tls = data.get("TLSConfig")
    if isinstance(raw_tls, dict):
        tls = TlsConfig(
            ca_file=str(raw_tls.get("CAFile") or ""),
            cert_file=str(raw_tls.get("CertFile") or ""),
            key_file=str(raw_tls.get("KeyFile") or ""),
            insecure_skip_verify=bool(raw_tls.get("InsecureSkipVerify")),
        )
    # libnetwork names the plugin after the file it was asked for, not "Name".
    return PluginSpec(name=name, addr=_pick_addr(name, data["Addr"], path), source=path, tls=tls)


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


class Discovery:
    """Finds plugins by name; lists the plugins of cnm's own directories."""

    def __init__(
        self,
        plugin_dirs: Sequence[str] = (),
        *,
        socket_dirs: Sequence[str] = SOCKET_DIRS,
        spec_dirs: Sequence[str] = SPEC_DIRS,
    ) -> None:
        self.plugin_dirs = tuple(plugin_dirs)
        self.socket_dirs = (*self.plugin_dirs, *socket_dirs)
        self.spec_dirs = (*self.plugin_dirs, *spec_dirs)

    @staticmethod
    def _paths(base: str, name: str, ext: str) -> list[str]:
        return [os.path.join(base, name + ext), os.path.join(base, name, name + ext)]

    def find(self, name: str) -> PluginSpec:
        """The plugin's address; NotFound listing where it was looked for."""
        validate_plugin_name(name)
        for base in self.spec_dirs:
            for path in [*self._paths(base, name, ".spec"), *self._paths(base, name, ".json")]:
                if os.path.isfile(path):
                    return read_spec_file(name, path)
        for base in self.socket_dirs:
            for path in self._paths(base, name, ".sock"):
                if _is_socket(path):
                    return PluginSpec(name=name, addr=f"unix://{path}", source=path)
        raise NotFound(
            f"no plugin named {name!r}: no {name}.spec/.json in "
            f"{', '.join(self.spec_dirs)} and no {name}.sock in {', '.join(self.socket_dirs)}",
            reason="PLUGIN_NOT_FOUND",
            metadata={"plugin": name},
        )

    def names(self) -> list[str]:
        """Every plugin name present in cnm's configured directories (not Docker's)."""
        found: set[str] = set()
        for base in self.plugin_dirs:
            try:
                entries = list(os.scandir(base))
            except OSError:
                continue
            for entry in entries:
                stem, ext = os.path.splitext(entry.name)
                if ext in (".spec", ".json", ".sock") and _NAME.fullmatch(stem):
                    found.add(stem)
                elif (
                    entry.is_dir()
                    and _NAME.fullmatch(entry.name)
                    and any(
                        os.path.exists(os.path.join(entry.path, entry.name + x))
                        for x in (".spec", ".json", ".sock")
                    )
                ):
                    found.add(entry.name)
        return sorted(found)


# --- HTTP ------------------------------------------------------------------------------------


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a unix socket: the stdlib connection with another connect()."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("plugin", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _ssl_context(tls: TlsConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=tls.ca_file or None)
    if tls.cert_file:
        ctx.load_cert_chain(tls.cert_file, tls.key_file or None)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _bad_response(spec: PluginSpec, method: str, why: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"plugin {spec.name!r}: {method}: invalid response: {why}",
        reason="PLUGIN_BAD_RESPONSE",
        metadata={"plugin": spec.name, "method": method},
    )


class PluginClient:
    """Calls to one plugin. Thread-safe: every call has its own connection."""

    def __init__(self, spec: PluginSpec, timeout: float = CALL_TIMEOUT) -> None:
        self.spec = spec
        self.timeout = timeout

    @property
    def name(self) -> str:
        return self.spec.name

    def _connection(self) -> http.client.HTTPConnection:
        kind, _, target = self.spec.addr.partition("://")
        if kind == "unix":
            return _UnixConnection(target, self.timeout)
        host, _, port = target.rpartition(":")
        host = host.strip("[]")
        if self.spec.tls is not None:
            return http.client.HTTPSConnection(
                host, int(port), timeout=self.timeout, context=_ssl_context(self.spec.tls)
            )
        return http.client.HTTPConnection(host, int(port), timeout=self.timeout)

    def call(self, method: str, body: Any = None) -> dict[str, Any]:
        """POST /<method> with `body` as JSON (None is sent as `null`, as Docker does).

        Returns the response object; raises Unavailable when the plugin cannot
        be reached or does not answer, PluginError when it answers with "Err".
        """
        payload = json.dumps(body).encode()
        conn = self._connection()
        try:
            conn.request(
                "POST",
                f"/{method}",
                body=payload,
                headers={"Accept": ACCEPT, "Content-Type": "application/json"},
            )
            resp = conn.getresponse()
            status, raw = resp.status, resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise Unavailable(
                f"plugin {self.name!r} ({self.spec.addr}) does not answer {method}: "
                f"{e.__class__.__name__}: {e}",
                reason="PLUGIN_UNAVAILABLE",
                metadata={"plugin": self.name, "method": method},
            ) from e
        finally:
            conn.close()
        return self._decode(method, status, raw)

    def _decode(self, method: str, status: int, raw: bytes) -> dict[str, Any]:
        data: Any
        try:
            data = json.loads(raw) if raw.strip() else {}
        except ValueError:
            data = None
        err = data.get("Err") if isinstance(data, dict) else None
        if status != 200 or err:
            message = str(err) if err else raw.decode(errors="replace").strip()
            cls = InvalidArgument if status == 400 else PluginError
            raise cls(
                f"plugin {self.name!r}: {method}: {message or f'HTTP {status}'}",
                reason="PLUGIN_ERROR",
                metadata={"plugin": self.name, "method": method, "http_status": str(status)},
            )
        if not isinstance(data, dict):
            raise _bad_response(self.spec, method, "not a JSON object")
        return data

    def activate(self, want: str, *, budget: float = ACTIVATE_BUDGET) -> list[str]:
        """The handshake: `Plugin.Activate` until it answers (bounded backoff);
        `want` ("NetworkDriver", "IpamDriver") must be in "Implements"."""
        deadline = time.monotonic() + budget
        delay = 0.05
        while True:
            try:
                resp = self.call("Plugin.Activate")
                break
            except Unavailable:
                if time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        implements = resp.get("Implements")
        if not isinstance(implements, list):
            raise _bad_response(self.spec, "Plugin.Activate", 'no "Implements" list')
        if want not in implements:
            raise FailedPrecondition(
                f"plugin {self.name!r} does not implement {want} "
                f"(it implements: {', '.join(map(str, implements)) or 'nothing'})",
                reason="PLUGIN_NOT_IMPLEMENTED",
                metadata={"plugin": self.name},
            )
        return [str(i) for i in implements]


def text_map(value: Any) -> dict[str, str]:
    """A JSON object of a plugin's response as a string map (non-strings as JSON)."""
    if not isinstance(value, Mapping):
        return {}
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}
