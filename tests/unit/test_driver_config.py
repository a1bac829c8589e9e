"""cnm-driver's configuration: defaults, environment, and what is refused (exit 2)."""

from __future__ import annotations

import socket

import pytest

from driver_service.config import DriverConfig, finish
from driver_service.drivers.host import HostDriver
from driver_service.drivers.null import NullDriver
from driver_service.main import registered_address
from driver_service.registry import Registry
from services.config import ConfigError, load
from services.errors import NotFound


def test_defaults_and_environment():
    cfg = finish(load(DriverConfig, section="driver", environ={"CNM_NETNS_PREFIX": "cnm-t1-"}))
    assert cfg.host_id == socket.gethostname()
    assert (cfg.state_dir, cfg.netns_prefix, cfg.heartbeat_interval, cfg.host_ttl) == (
        "/var/lib/cnm/driver",
        "cnm-t1-",
        2.0,
        10.0,
    )


@pytest.mark.parametrize(
    "fields, message",
    [
        pytest.param({"listen": "127.0.0.1:9000"}, "mutual TLS", id="tcp-without-tls"),
        pytest.param({"host_id": "bad id"}, "host_id", id="host-id-space"),
        pytest.param({"netns_prefix": "../"}, "netns_prefix", id="prefix-path"),
        pytest.param({"advertise_addr": "10.0.0"}, "advertise_addr", id="advertise-not-ip"),
        pytest.param({"state_dir": "relative"}, "state_dir", id="state-dir-relative"),
        pytest.param({"host_ttl": 1.0}, "host_ttl", id="ttl-below-heartbeat"),
    ],
)
def test_refused_configuration(fields, message):
    with pytest.raises(ConfigError, match=message):
        finish(DriverConfig(**fields))


def test_registry_names_unknown_driver_and_lists_available():
    reg = Registry([NullDriver(), HostDriver()])
    assert [c.name for c in reg.capabilities()] == ["host", "null"]
    with pytest.raises(NotFound, match="'bridge'.*host, null"):
        reg.get("bridge")


@pytest.mark.parametrize(
    "listen, advertise, expected",
    [
        ("unix:///run/cnm/driver.sock", "10.0.0.5", "unix:///run/cnm/driver.sock"),
        ("0.0.0.0:7070", "10.0.0.5", "10.0.0.5:7070"),
        ("[::]:7070", "fd00::5", "[fd00::5]:7070"),
        ("10.0.0.9:7070", "10.0.0.5", "10.0.0.9:7070"),
        ("0.0.0.0:7070", "", "0.0.0.0:7070"),
    ],
)
def test_registered_address_prefers_the_advertise_address_over_a_wildcard(
    listen, advertise, expected
):
    cfg = DriverConfig(listen=listen, advertise_addr=advertise)
    assert registered_address(cfg) == expected
