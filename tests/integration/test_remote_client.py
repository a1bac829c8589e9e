"""The plugin HTTP client (services.plugins) against real little servers on a
unix socket in a temp dir and on loopback TCP: the handshake with its bounded
retry, libnetwork's error shapes, and what "unavailable" covers."""

from __future__ import annotations

import http.server
import json
import os
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from services.errors import FailedPrecondition, InvalidArgument, Unavailable
from services.plugins import ACCEPT, PluginClient, PluginError, PluginSpec

Reply = tuple[int, bytes]


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return None

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.path, self.headers.get("Accept"), body))  # type: ignore[attr-defined]
        reply = self.server.reply(self.path.lstrip("/"))  # type: ignore[attr-defined]
        if reply is None:  # hang up without an answer
            self.close_connection = True
            return
        status, raw = reply
        self.send_response(status)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class _TcpServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


@contextmanager
def serving(server: socketserver.BaseServer, reply: Callable[[str], Reply | None]) -> Iterator:
    server.reply = reply  # type: ignore[attr-defined]
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def sock_path(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "p.sock"
    yield path
    if path.exists():
        os.unlink(path)


def _client(path: Path, timeout: float = 2.0) -> PluginClient:
    return PluginClient(PluginSpec("p", f"unix://{path}", str(path)), timeout=timeout)


def _json(obj: object, status: int = 200) -> Reply:
    return status, json.dumps(obj).encode()


def test_call_sends_docker_headers_and_null_body(sock_path):
    with serving(_UnixServer(str(sock_path), _Handler), lambda m: _json({"Scope": "local"})) as s:
        assert _client(sock_path).call("NetworkDriver.GetCapabilities") == {"Scope": "local"}
        assert _client(sock_path).call("NetworkDriver.Leave", {"NetworkID": "n"}) == {
            "Scope": "local"
        }
    assert s.seen[0] == ("/NetworkDriver.GetCapabilities", ACCEPT, b"null")
    assert json.loads(s.seen[1][2]) == {"NetworkID": "n"}


@pytest.mark.parametrize(
    ("reply", "cls", "reason", "words"),
    [
        pytest.param(_json({"Err": "boom"}), PluginError, "PLUGIN_ERROR", "boom", id="err-200"),
        pytest.param(
            _json({"Err": "full"}, 500), PluginError, "PLUGIN_ERROR", "full", id="err-500"
        ),
        pytest.param(
            _json({"Err": "bad opt"}, 400), InvalidArgument, "PLUGIN_ERROR", "bad opt", id="400"
        ),
        pytest.param(
            (404, b"404 page not found"), PluginError, "PLUGIN_ERROR", "404 page", id="404"
        ),
        pytest.param(
            (200, b"<html>"), FailedPrecondition, "PLUGIN_BAD_RESPONSE", "JSON", id="html"
        ),
        pytest.param(_json([1, 2]), FailedPrecondition, "PLUGIN_BAD_RESPONSE", "JSON", id="list"),
    ],
)
def test_plugin_answers_become_clear_errors(sock_path, reply, cls, reason, words):
    server = _UnixServer(str(sock_path), _Handler)
    with serving(server, lambda m: reply), pytest.raises(cls) as e:
        _client(sock_path).call("NetworkDriver.Join", {})
    assert e.value.reason == reason and words in str(e.value)
    assert "plugin 'p'" in str(e.value) and "NetworkDriver.Join" in str(e.value)


def test_unreachable_plugins_are_unavailable(sock_path, tmp_path):
    with pytest.raises(Unavailable, match="does not answer"):
        _client(tmp_path / "missing.sock").call("Plugin.Activate")
    # A socket file nobody listens on: what a killed plugin leaves behind.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_path))
    stale.close()
    with pytest.raises(Unavailable) as e:
        _client(sock_path).call("Plugin.Activate")
    assert e.value.reason == "PLUGIN_UNAVAILABLE"
    os.unlink(sock_path)
    server = _UnixServer(str(sock_path), _Handler)
    with serving(server, lambda m: None), pytest.raises(Unavailable, match="RemoteDisconnected"):
        _client(sock_path).call("NetworkDriver.Join", {})


def test_a_plugin_that_hangs_is_unavailable_after_the_call_timeout(sock_path):
    release = threading.Event()

    def slow(method: str) -> Reply:
        release.wait(30)  # answers only when the test ends, far past the call's timeout
        return _json({})

    with serving(_UnixServer(str(sock_path), _Handler), slow):
        with pytest.raises(Unavailable, match="timed out"):
            _client(sock_path, timeout=0.3).call("NetworkDriver.Join", {})
        release.set()


def _counting(client: PluginClient, on_failure: Callable[[int], None] = lambda n: None) -> list:
    """Records each call `client` makes; on_failure(attempt) runs after a failed one."""
    attempts: list[str] = []
    call = client.call

    def counted(method: str, *args, **kwargs):
        attempts.append(method)
        try:
            return call(method, *args, **kwargs)
        except Unavailable:
            on_failure(len(attempts))
            raise

    client.call = counted  # type: ignore[method-assign]
    return attempts


def test_activation_retry_is_bounded(tmp_path):
    client = _client(tmp_path / "never.sock")
    attempts = _counting(client)
    with pytest.raises(Unavailable):
        client.activate("NetworkDriver", budget=0.5)
    # Backoff 0.05, 0.1, 0.2 s, then 0.4 s would pass the budget: at most 4 tries.
    assert 2 <= len(attempts) <= 4


def test_activation_waits_for_a_plugin_that_is_starting(sock_path):
    # The plugin comes up after activate() has failed twice: one activate()
    # call retries (bounded backoff) until the plugin answers.
    with ExitStack() as plugin:

        def start_after_second_failure(attempt: int) -> None:
            if attempt == 2:
                answer = _json({"Implements": ["IpamDriver", "NetworkDriver"]})
                plugin.enter_context(
                    serving(_UnixServer(str(sock_path), _Handler), lambda m: answer)
                )

        client = _client(sock_path)
        attempts = _counting(client, start_after_second_failure)
        assert client.activate("NetworkDriver", budget=10) == ["IpamDriver", "NetworkDriver"]
        assert len(attempts) == 3


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        pytest.param({"Implements": ["VolumeDriver"]}, "PLUGIN_NOT_IMPLEMENTED", id="other-kind"),
        pytest.param({"Implements": []}, "PLUGIN_NOT_IMPLEMENTED", id="nothing"),
        pytest.param({}, "PLUGIN_BAD_RESPONSE", id="no-implements"),
    ],
)
def test_activation_needs_the_wanted_kind(sock_path, answer, reason):
    server = _UnixServer(str(sock_path), _Handler)
    with serving(server, lambda m: _json(answer)), pytest.raises(FailedPrecondition) as e:
        _client(sock_path).activate("NetworkDriver", budget=0.2)
    assert e.value.reason == reason


def test_tcp_plugin_from_a_spec_address():
    with serving(_TcpServer(("127.0.0.1", 0), _Handler), lambda m: _json({"Value": {}})) as s:
        port = s.server_address[1]
        client = PluginClient(PluginSpec("t", f"tcp://127.0.0.1:{port}", "/x/t.spec"))
        assert client.call("NetworkDriver.EndpointOperInfo", {}) == {"Value": {}}
