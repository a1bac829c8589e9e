"""cnm-docker-plugin: serves libnetwork's remote NetworkDriver and IpamDriver for dockerd.

    cnm-docker-plugin [--socket /run/docker/plugins/cnm.sock] [--controller ADDR]
                      [--cnm-driver bridge|overlay] [--host HOST_ID]

dockerd finds the plugin by its socket's name in /run/docker/plugins: `cnm`
for cnm.sock (`docker network create -d cnm --ipam-driver cnm ...`). One
process fronts one cnm network driver: `--cnm-driver bridge` (the default,
scope local) or `--cnm-driver overlay` (connectivity scope global, data scope
local: see network.SCOPES); run a second process on another socket (e.g.
cnm-overlay.sock) for both.

HTTP+JSON over a unix socket (stdlib ThreadingHTTPServer): POST /<Method>,
the body a JSON object; answers are JSON, errors `{"Err": message}`
(`{"Error": message}` for IpamDriver.*, as libnetwork reads them) with status
200, so Docker shows the message; an undecodable request gets status 400. SIGTERM/SIGINT stop it and remove the socket.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import socketserver
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from clients.client import Client
from clients.docker_plugin import protocol as p
from clients.docker_plugin.ipam import IpamDriver
from clients.docker_plugin.network import SCOPES, NetworkDriver
from clients.docker_plugin.objects import Aliases, Objects
from clients.errors import ClientError, UnavailableError
from services.logsetup import setup_logging

log = logging.getLogger(__name__)

PROG = "cnm-docker-plugin"
DEFAULT_SOCKET = "/run/docker/plugins/cnm.sock"
DEFAULT_STATE_DIR = "/var/lib/cnm/docker-plugin"
ENV_CONTROLLER = "CNM_CONTROLLER"
DEFAULT_CONTROLLER = "unix:///run/cnm/controller.sock"

Handler = Callable[[dict[str, Any]], dict[str, Any]]


def routes(cnm: Client, *, driver: str, host: str, state_dir: str) -> dict[str, Handler]:
    objects = Objects(cnm, Aliases(state_dir))
    sub_pools: dict[str, str] = {}
    table: dict[str, Handler] = {
        "Plugin.Activate": lambda req: {"Implements": ["NetworkDriver", "IpamDriver"]},
    }
    table.update(
        NetworkDriver(cnm, objects, driver=driver, host=host, sub_pools=sub_pools).routes()
    )
    table.update(IpamDriver(cnm, objects, sub_pools).routes())
    return table


def error_key(method: str) -> str:
    """libnetwork's IPAM answers carry errors as "Error", everything else as "Err"."""
    return "Error" if method.startswith("IpamDriver.") else "Err"


def answer(table: Mapping[str, Handler], method: str, body: bytes) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON answer) for one call: the whole protocol minus the transport."""
    key = error_key(method)
    handler = table.get(method)
    if handler is None:
        return 404, {key: f"{PROG}: unknown method {method[:100]!r}"}
    try:
        req = p.decode(body)
    except p.PluginError as e:
        return 400, {key: str(e)}
    try:
        return 200, handler(req)
    except p.PluginError as e:
        log.info("%s refused: %s", method, e)
        return 200, {key: str(e)}
    except UnavailableError as e:
        log.warning("%s: controller unavailable: %s", method, e)
        return 200, {key: f"cnm: {e}"}
    except ClientError as e:
        log.info("%s: cnm refused: %s", method, e)
        return 200, {key: str(e)}
    except Exception as e:  # noqa: BLE001 - every failure must reach Docker as an answer
        log.exception("%s failed", method)
        return 200, {key: f"cnm plugin: {type(e).__name__}: {e}"}


class _UnixHTTPServer(ThreadingHTTPServer):
    address_family = socket.AF_UNIX
    daemon_threads = True

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        self.server_name = "localhost"
        self.server_port = 0


def make_handler(table: Mapping[str, Handler]) -> type[BaseHTTPRequestHandler]:
    class RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def address_string(self) -> str:
            return "unix"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug(format, *args)

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length") or 0)
            if length > p.MAX_BODY:
                self._send(413, {"Err": f"request body over {p.MAX_BODY} bytes"})
                self.close_connection = True
                return
            body = self.rfile.read(length) if length > 0 else b""
            status, out = answer(table, self.path.lstrip("/"), body)
            log.debug("%s %s -> %s %s", self.path, body[:2000], status, out)
            self._send(status, out)

        def _send(self, status: int, out: dict[str, Any]) -> None:
            data = json.dumps(out).encode()
            self.send_response(status)
            self.send_header("Content-Type", p.CONTENT_TYPE)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return RequestHandler


def serve(socket_path: str, table: Mapping[str, Handler]) -> _UnixHTTPServer:
    """Bind the socket (replacing a stale one) and return the server, not yet serving."""
    path = Path(socket_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        path.unlink()
    # typeshed types server_address as (host, port); an AF_UNIX server takes a path.
    server = _UnixHTTPServer(str(path), make_handler(table))  # type: ignore[arg-type]
    os.chmod(path, 0o600)
    return server


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--socket", default=DEFAULT_SOCKET, help=f"plugin socket (default {DEFAULT_SOCKET})"
    )
    parser.add_argument(
        "--controller",
        default=os.environ.get(ENV_CONTROLLER, DEFAULT_CONTROLLER),
        help=f"controller address (default ${ENV_CONTROLLER} or {DEFAULT_CONTROLLER})",
    )
    parser.add_argument(
        "--cnm-driver",
        choices=sorted(SCOPES),
        default="bridge",
        help="cnm network driver behind this plugin: bridge (scope local, the default) "
        "or overlay (scope global)",
    )
    parser.add_argument(
        "--host",
        default="",
        help="cnm host id of this machine (default: the only ready host)",
    )
    parser.add_argument(
        "--state-dir",
        default=DEFAULT_STATE_DIR,
        help=f"where the plugin keeps its few facts (default {DEFAULT_STATE_DIR})",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="controller call deadline")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-format", choices=("json", "text"), default="text")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(PROG, args.log_level, args.log_format)
    cnm = Client(args.controller, timeout=args.timeout, retries=2)
    table = routes(cnm, driver=args.cnm_driver, host=args.host, state_dir=args.state_dir)
    try:
        server = serve(args.socket, table)
    except OSError as e:
        print(f"{PROG}: cannot listen on {args.socket}: {e}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "serving %s (cnm driver %s, controller %s)", args.socket, args.cnm_driver, args.controller
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
        Path(args.socket).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
