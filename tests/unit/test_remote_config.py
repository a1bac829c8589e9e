"""Configuration of remote plugins (driver and IPAM services), and the driver
registry's view of plugins that were found but could not be registered."""

from __future__ import annotations

import pytest

from driver_service.config import DriverConfig, finish
from driver_service.drivers.null import NullDriver
from driver_service.registry import Registry
from ipam_service.config import IpamConfig
from services.config import ConfigError, load
from services.errors import FailedPrecondition, NotFound


def test_plugin_dirs_and_names_from_environment():
    env = {"CNM_PLUGIN_DIRS": "/a/plugins, /b", "CNM_REMOTE_DRIVERS": "weave,calico"}
    cfg = finish(load(DriverConfig, section="driver", environ=env))
    assert cfg.plugin_dirs == ("/a/plugins", "/b")
    assert cfg.remote_drivers == ("weave", "calico")
    assert load(IpamConfig, section="ipam", environ=env).plugin_dirs == ("/a/plugins", "/b")
    assert finish(load(DriverConfig, section="driver", environ={})).plugin_dirs == ()


@pytest.mark.parametrize(
    ("schema", "env", "words"),
    [
        pytest.param(DriverConfig, {"CNM_PLUGIN_DIRS": "plugins"}, "plugin_dirs", id="relative"),
        pytest.param(DriverConfig, {"CNM_REMOTE_DRIVERS": "../x"}, "remote_drivers", id="name"),
        pytest.param(IpamConfig, {"CNM_PLUGIN_DIRS": "rel/dir"}, "plugin_dirs", id="ipam-dir"),
    ],
)
def test_refused_plugin_configuration(schema, env, words):
    with pytest.raises(ConfigError, match=words):
        cfg = load(schema, section="driver" if schema is DriverConfig else "ipam", environ=env)
        if schema is DriverConfig:
            finish(cfg)


def test_unusable_plugin_is_listed_with_its_error_and_refused_by_name():
    reg = Registry([NullDriver()])
    reg.set_unusable("p", "invalid capability: expecting 'local' or 'global', got x")
    caps = {c.name: (c.scope, c.error) for c in reg.capabilities()}
    assert caps == {
        "null": ("local", ""),
        "p": ("", "invalid capability: expecting 'local' or 'global', got x"),
    }
    assert reg.capabilities("p")[0].error.startswith("invalid capability")
    with pytest.raises(FailedPrecondition, match="driver 'p' is not usable on this host"):
        reg.get("p")
    with pytest.raises(NotFound, match="no such driver 'q'"):
        reg.get("q")
    assert reg.names() == ["null"]
    assert reg.forget_unusable("p") and [c.name for c in reg.capabilities()] == ["null"]
