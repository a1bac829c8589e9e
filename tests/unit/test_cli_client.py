"""The client's own logic against a scripted in-process controller.

The servicer below is a stand-in that plays back failures on cue (not a
controller): it lets these tests pin what only the client decides: retries of
UNAVAILABLE resend the same request_id, errors keep message and reason,
deadlines, paging, Watch resuming from the last revision, and cnmctl's error
lines. The real stack is exercised in tests/integration/test_cli.py.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import threading

import grpc
import pytest
from google.protobuf import timestamp_pb2

from clients import cli
from clients.client import Client
from clients.errors import (
    AlreadyExistsError,
    DeadlineExceededError,
    FailedPreconditionError,
    NotFoundError,
    UnavailableError,
)
from clients.portspec import parse_port_spec
from cnm.controller.v1 import controller_pb2 as pb
from cnm.controller.v1 import controller_pb2_grpc
from cnm.events.v1 import events_pb2
from cnm.types.v1 import types_pb2
from services import errors
from services.server import Server, ServiceSpec, TlsFiles

SERVICE = "cnm.controller.v1.Controller"


class Scripted(controller_pb2_grpc.ControllerServicer):
    def __init__(self) -> None:
        self.requests: list = []
        self.unavailable_times = 0
        self.networks = {f"n{i}": pb.Network(id=f"{i:064x}", name=f"n{i}") for i in range(5)}
        self.watch_break_after: int | None = None
        # "slow" calls wait for this (set when the test ends), far past any client deadline.
        self.released = threading.Event()

    def _flaky(self, request) -> None:
        self.requests.append(request)
        if self.unavailable_times > 0:
            self.unavailable_times -= 1
            raise errors.Unavailable("redis is unavailable", reason="STORE_UNAVAILABLE")

    def CreateNetwork(self, request, context):
        self._flaky(request)
        if request.name in self.networks:
            raise errors.AlreadyExists(
                f'network with name "{request.name}" already exists', reason="NAME_TAKEN"
            )
        return pb.Network(id="f" * 64, name=request.name, driver=request.driver or "bridge")

    def GetNetwork(self, request, context):
        self._flaky(request)
        if request.id_or_name == "slow":
            self.released.wait(30)
        if request.id_or_name not in self.networks:
            raise errors.NotFound(
                f'network "{request.id_or_name}" not found',
                reason="NETWORK_NOT_FOUND",
                metadata={"network": request.id_or_name},
            )
        return self.networks[request.id_or_name]

    def ListNetworks(self, request, context):
        self._flaky(request)
        names = sorted(self.networks)
        start = int(request.page_token or 0)
        end = start + 2
        return pb.ListNetworksResponse(
            networks=[self.networks[n] for n in names[start:end]],
            next_page_token=str(end) if end < len(names) else "",
        )

    def DeleteNetwork(self, request, context):
        self._flaky(request)
        if request.id_or_name not in self.networks:
            raise errors.NotFound(f'network "{request.id_or_name}" not found')
        if request.id_or_name == "n1":
            raise errors.FailedPrecondition(
                'network "n1" has active endpoints\n(endpoint "e1")', reason="NETWORK_IN_USE"
            )
        del self.networks[request.id_or_name]
        return pb.DeleteNetworkResponse()

    def Connect(self, request, context):
        self._flaky(request)
        return pb.Endpoint(
            id="e" * 64, network_name=request.network, port_bindings=request.spec.port_bindings
        )

    def GetSandbox(self, request, context):
        self._flaky(request)
        # A sandbox of another machine: its namespace path does not exist here.
        return pb.Sandbox(
            id="5" * 64, name=request.id_or_name, host="far", key="/run/netns/cnm-not-here-x"
        )

    def Watch(self, request, context):
        self.requests.append(request)
        # As the controller: the marker first. From 0, nothing is committed yet
        # and events 1..5 come live; from N, 5 are committed and N+1..5 replayed.
        head = 5 if request.since_revision else 0
        yield events_pb2.Event(
            revision=head,
            type=events_pb2.EVENT_TYPE_WATCH_STARTED,
            attributes={"oldest_revision": "1", "replay_after": str(request.since_revision)},
        )
        for rev in range(request.since_revision + 1, 6):
            yield events_pb2.Event(
                revision=rev,
                type=events_pb2.EVENT_TYPE_NETWORK_CREATED,
                id=f"id{rev}",
                time=timestamp_pb2.Timestamp(seconds=1_700_000_000 + rev),
            )
            if self.watch_break_after == rev:
                self.watch_break_after = None
                context.abort(grpc.StatusCode.UNAVAILABLE, "controller going away")
        # An open stream with nothing new: the client decides when to stop.
        ended = threading.Event()
        if context.add_callback(ended.set):
            ended.wait()


@pytest.fixture
def controller(tmp_path):
    servicer = Scripted()
    address = f"unix://{tmp_path}/c.sock"

    def add(s, server):
        controller_pb2_grpc.add_ControllerServicer_to_server(s, server)

    server = Server([ServiceSpec(SERVICE, add, servicer)], address)
    server.start()
    yield servicer, address, server
    servicer.released.set()
    server.stop(0)


def test_create_retries_unavailable_with_the_same_request_id(controller):
    servicer, address, _ = controller
    servicer.unavailable_times = 2
    with Client(address, timeout=5, retry_backoff=0.01) as client:
        net = client.create_network("web", driver="bridge")
    assert net.name == "web"
    ids = [r.request_id for r in servicer.requests]
    assert len(ids) == 3
    assert len(set(ids)) == 1 and len(ids[0]) == 32


def test_each_create_gets_its_own_request_id(controller):
    servicer, address, _ = controller
    with Client(address, timeout=5) as client:
        client.create_network("a")
        client.create_network("b")
        client.create_network("c", request_id="caller-chosen")
    ids = [r.request_id for r in servicer.requests]
    assert ids[0] != ids[1] and ids[2] == "caller-chosen"


def test_retries_give_up_with_the_servers_message_and_reason(controller):
    servicer, address, _ = controller
    servicer.unavailable_times = 100
    client = Client(address, timeout=5, retries=2, retry_backoff=0.01)
    with client, pytest.raises(UnavailableError) as exc:
        client.get_network("n0")
    assert len(servicer.requests) == 3
    assert exc.value.message == "redis is unavailable"
    assert exc.value.reason == "STORE_UNAVAILABLE"


@pytest.mark.parametrize(
    "call,cls,message,reason",
    [
        pytest.param(
            lambda c: c.get_network("nope"),
            NotFoundError,
            'network "nope" not found',
            "NETWORK_NOT_FOUND",
            id="not-found",
        ),
        pytest.param(
            lambda c: c.create_network("n0"),
            AlreadyExistsError,
            'network with name "n0" already exists',
            "NAME_TAKEN",
            id="already-exists",
        ),
        pytest.param(
            lambda c: c.delete_network("n1"),
            FailedPreconditionError,
            'network "n1" has active endpoints\n(endpoint "e1")',
            "NETWORK_IN_USE",
            id="failed-precondition",
        ),
    ],
)
def test_errors_become_classes_keeping_message_and_reason(controller, call, cls, message, reason):
    servicer, address, _ = controller
    with Client(address, timeout=5) as client, pytest.raises(cls) as exc:
        call(client)
    assert exc.value.message == message
    assert exc.value.reason == reason
    # Not retried: only UNAVAILABLE is.
    assert len(servicer.requests) == 1


def test_error_metadata_is_kept(controller):
    _, address, _ = controller
    with Client(address, timeout=5) as client, pytest.raises(NotFoundError) as exc:
        client.get_network("ghost")
    assert exc.value.metadata == {"network": "ghost"}
    assert exc.value.code == grpc.StatusCode.NOT_FOUND


def test_every_call_has_a_deadline(controller):
    _, address, _ = controller
    client = Client(address, timeout=0.3, retries=0)
    with client, pytest.raises(DeadlineExceededError) as exc:
        client.get_network("slow")  # answers only when the test ends
    assert "did not answer in time" in exc.value.message


def test_lists_follow_every_page(controller):
    servicer, address, _ = controller
    with Client(address, timeout=5) as client:
        nets = client.list_networks()
    assert [n.name for n in nets] == [f"n{i}" for i in range(5)]
    assert [r.page_token for r in servicer.requests] == ["", "2", "4"]


def test_connect_sends_parsed_port_specs(controller):
    _, address, _ = controller
    with Client(address, timeout=5) as client:
        ep = client.connect(
            "web", "c1", port_bindings=parse_port_spec("127.0.0.1:8000-8010:80/udp")
        )
    (binding,) = ep.port_bindings
    assert binding == types_pb2.PortBinding(
        protocol=types_pb2.PROTOCOL_UDP,
        host_ip="127.0.0.1",
        host_port=8000,
        host_port_end=8010,
        container_port=80,
    )


def test_client_waits_out_a_controller_restart(tmp_path):
    """The controller comes up only after the first call failed: retries bridge the gap."""
    address = f"unix://{tmp_path}/late.sock"
    server = Server(
        [
            ServiceSpec(
                SERVICE,
                lambda s, g: controller_pb2_grpc.add_ControllerServicer_to_server(s, g),
                Scripted(),
            )
        ],
        address,
    )

    class StartOnFirstRetry(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "retry 1" in record.getMessage():
                server.start()

    logger = logging.getLogger("clients.client")
    handler = StartOnFirstRetry()
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        with Client(address, timeout=5, retries=6, retry_backoff=0.1) as client:
            assert client.create_network("web").name == "web"
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        server.stop(0)


def test_unreachable_controller_names_the_address(tmp_path):
    address = f"unix://{tmp_path}/nobody.sock"
    client = Client(address, timeout=1, retries=1, retry_backoff=0.01)
    with client, pytest.raises(UnavailableError) as exc:
        client.list_hosts()
    assert exc.value.message.startswith(f"cannot reach the controller at {address}")


@pytest.mark.parametrize(
    "kwargs,message",
    [
        pytest.param({"address": "nohost"}, "HOST:PORT", id="bad-address"),
        pytest.param({"address": "unix:///x.sock", "timeout": 0}, "positive", id="zero-timeout"),
        pytest.param(
            {"address": "unix:///x.sock", "tls_ca": "/ca.pem"}, "TLS", id="tls-on-unix-socket"
        ),
    ],
)
def test_client_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Client(**kwargs)


def test_watch_resumes_from_the_last_revision(controller):
    servicer, address, _ = controller
    servicer.watch_break_after = 2
    with Client(address, timeout=5, retry_backoff=0.01) as client:
        stream = client.watch(since=0, timeout=5)
        revisions = [next(stream).revision for _ in range(5)]
        stream.close()
    assert revisions == [1, 2, 3, 4, 5]
    assert [r.since_revision for r in servicer.requests] == [0, 2]


def test_watch_with_timeout_just_ends(controller):
    _, address, _ = controller
    with Client(address, timeout=5) as client:
        # The server keeps the stream open: only the timeout ends the iteration.
        events = list(client.watch(since=3, timeout=0.5))
    assert [e.revision for e in events] == [4, 5]


# ---------------------------------------------------------------- cnmctl over the scripted server


def cnmctl(address: str, *argv: str, capsys) -> tuple[int, str, str]:
    code = cli.main(["--controller", address, "--timeout", "5", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cnmctl_error_is_one_line_with_the_servers_message(controller, capsys):
    _, address, _ = controller
    code, out, err = cnmctl(address, "network", "rm", "n1", capsys=capsys)
    assert code == 1
    assert out == ""
    assert err == 'Error: network "n1" has active endpoints (endpoint "e1")\n'


def test_cnmctl_rm_goes_on_after_a_failure(controller, capsys):
    servicer, address, _ = controller
    code, out, err = cnmctl(address, "network", "rm", "n0", "ghost", "n2", capsys=capsys)
    assert code == 1
    assert out.splitlines() == ["n0", "n2"]
    assert err == 'Error: network "ghost" not found\n'
    assert "n0" not in servicer.networks and "n2" not in servicer.networks


def test_cnmctl_events_stops_after_limit(controller, capsys):
    _, address, _ = controller
    code, out, _ = cnmctl(address, "events", "--since-revision", "1", "--limit", "2", capsys=capsys)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0] == "2023-11-14T22:13:22Z network create id2 (revision=2)"
    assert lines[1].split()[1:4] == ["network", "create", "id3"]


def test_cnmctl_events_past_until_replays_the_window_then_ends(controller, capsys):
    _, address, _ = controller
    # Event n is at 1_700_000_000 + n: --until at event 4's time keeps 2..4.
    code, out, _ = cnmctl(
        address, "events", "--since-revision", "1", "--until", "1700000004", capsys=capsys
    )
    assert code == 0
    assert [line.split()[3] for line in out.splitlines()] == ["id2", "id3", "id4"]
    # Nothing to replay and a past --until: ends at once.
    code, out, _ = cnmctl(address, "events", "--until", "2020-01-01T00:00:00Z", capsys=capsys)
    assert (code, out) == (0, "")


def test_cnmctl_events_filter_by_type(controller, capsys):
    _, address, _ = controller
    code, out, _ = cnmctl(
        address, "events", "--since-revision", "3", "--until", "1700000100",
        "-f", "type=sandbox", capsys=capsys,
    )  # fmt: skip
    assert (code, out) == (0, "")


def test_cnmctl_exec_refuses_a_sandbox_of_another_machine(controller, capsys):
    _, address, _ = controller
    code, out, err = cnmctl(address, "sandbox", "exec", "c1", "--", "true", capsys=capsys)
    assert code == 1
    assert err == (
        "Error: the namespace of sandbox 'c1' (/run/netns/cnm-not-here-x) is not on this "
        "machine (its host is 'far')\n"
    )


# ---------------------------------------------------------------- TLS


def _openssl(*argv: str, cwd) -> None:
    subprocess.run(["openssl", *argv], cwd=cwd, check=True, capture_output=True, timeout=30)


@pytest.fixture
def tls_files(tmp_path):
    """A CA, a server certificate for 127.0.0.1 and a client certificate."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=cnm-test-ca",
        "-keyout", "ca.key", "-out", "ca.pem", cwd=tmp_path,
    )  # fmt: skip
    (tmp_path / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=tmp_path,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-extfile", "san.ext", "-out", f"{name}.pem",
            cwd=tmp_path,
        )  # fmt: skip
    return tmp_path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_client_speaks_mutual_tls_over_tcp(tls_files):
    d = tls_files
    address = f"127.0.0.1:{_free_port()}"
    servicer = Scripted()
    server = Server(
        [
            ServiceSpec(
                SERVICE,
                lambda s, g: controller_pb2_grpc.add_ControllerServicer_to_server(s, g),
                servicer,
            )
        ],
        address,
        tls=TlsFiles(cert=str(d / "server.pem"), key=str(d / "server.key"), ca=str(d / "ca.pem")),
    )
    server.start()
    try:
        with Client(
            address,
            timeout=5,
            tls_ca=str(d / "ca.pem"),
            tls_cert=str(d / "client.pem"),
            tls_key=str(d / "client.key"),
        ) as client:
            assert client.get_network("n3").name == "n3"
        # Without a client certificate the server refuses the handshake.
        anonymous = Client(address, timeout=5, retries=0, tls_ca=str(d / "ca.pem"))
        with anonymous, pytest.raises(UnavailableError):
            anonymous.get_network("n3")
    finally:
        server.stop(0)
