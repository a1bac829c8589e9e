"""services.config: defaults < TOML file (top level < own section) < CNM_* env < flags,
and every configuration error as one ConfigError line. Also cnmd's plan built from it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from services.cnmd import CnmdConfig, Plan
from services.config import CommonConfig, ConfigError, load


@dataclasses.dataclass(frozen=True)
class DemoConfig(CommonConfig):
    host_id: str = ""
    heartbeat_interval: float = 2.0
    workers: int = 4
    debug_dump: bool = False
    drivers: tuple[str, ...] = ("bridge", "null")


def _file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "cnm.toml"
    path.write_text(text)
    return str(path)


def test_defaults_without_file_env_or_flags() -> None:
    cfg = load(DemoConfig, section="driver", environ={})
    assert cfg == DemoConfig()
    assert cfg.redis_url == "unix:///run/cnm/redis.sock"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.workers = 5  # type: ignore[misc]


def test_precedence_flag_over_env_over_section_over_top_level(tmp_path: Path) -> None:
    file = _file(
        tmp_path,
        'redis_url = "redis://top:6379"\nlog_level = "warning"\nredis_prefix = "top"\n'
        '[driver]\nredis_url = "redis://section:6379"\nhost_id = "from-file"\nworkers = 8\n',
    )
    env = {"CNM_REDIS_URL": "redis://env:6379", "CNM_HOST_ID": "from-env"}
    flags = {"host_id": "from-flag", "workers": None}
    cfg = load(DemoConfig, section="driver", file=file, environ=env, flags=flags)
    assert cfg.host_id == "from-flag"  # flag beats env and file
    assert cfg.redis_url == "redis://env:6379"  # env beats the file's section
    assert cfg.workers == 8  # a flag left at None does not mask the file
    assert cfg.log_level == "warning"  # top level applies when the section is silent
    assert cfg.redis_prefix == "top"


def test_section_beats_top_level_and_other_sections_are_ignored(tmp_path: Path) -> None:
    file = _file(
        tmp_path,
        'log_level = "error"\n[ipam]\nlog_level = "debug"\nunknown_to_driver = 1\n'
        '[driver]\nlog_level = "warning"\n',
    )
    assert load(DemoConfig, section="driver", file=file, environ={}).log_level == "warning"
    assert load(CommonConfig, section="controller", file=file, environ={}).log_level == "error"


@pytest.mark.parametrize(
    ("env", "field", "expected"),
    [
        ({"CNM_WORKERS": "16"}, "workers", 16),
        ({"CNM_HEARTBEAT_INTERVAL": "0.5"}, "heartbeat_interval", 0.5),
        ({"CNM_DEBUG_DUMP": "yes"}, "debug_dump", True),
        ({"CNM_DEBUG_DUMP": "0"}, "debug_dump", False),
        ({"CNM_DRIVERS": "bridge, overlay,,host"}, "drivers", ("bridge", "overlay", "host")),
        ({"CNM_LISTEN": "unix:///run/x.sock"}, "listen", "unix:///run/x.sock"),
    ],
    ids=["int", "float", "bool-yes", "bool-zero", "comma-list", "listen"],
)
def test_environment_strings_are_coerced_to_field_types(env, field, expected) -> None:
    assert getattr(load(DemoConfig, section="driver", environ=env), field) == expected


def test_file_values_keep_toml_types(tmp_path: Path) -> None:
    file = _file(tmp_path, '[driver]\nworkers = 3\ndebug_dump = true\ndrivers = ["overlay"]\n')
    cfg = load(DemoConfig, section="driver", file=file, environ={})
    assert (cfg.workers, cfg.debug_dump, cfg.drivers) == (3, True, ("overlay",))


def test_run_dir_and_data_dir_are_allowed_at_top_level_for_cnmd(tmp_path: Path) -> None:
    file = _file(tmp_path, 'run_dir = "/tmp/r"\ndata_dir = "/tmp/d"\n[cnmd]\nhost_id = "h"\n')
    cfg = load(CnmdConfig, section="cnmd", file=file, environ={})
    assert (cfg.run_dir, cfg.data_dir, cfg.host_id) == ("/tmp/r", "/tmp/d", "h")
    # The services ignore cnmd's directories instead of rejecting them.
    assert load(CommonConfig, section="ipam", file=file, environ={}) == CommonConfig()


@pytest.mark.parametrize(
    ("toml", "env", "flags", "message"),
    [
        ("bogus = 1\n", {}, {}, "unknown key 'bogus'"),
        ("[driver]\nbogus = 1\n", {}, {}, r"unknown key 'bogus' in \[driver\]"),
        ("driver = 3\n", {}, {}, r"\[driver\] must be a table"),
        ("redis_url = \n", {}, {}, "config file .*cnm.toml: "),
        ("", {"CNM_WORKERS": "many"}, {}, "config key 'workers': invalid value 'many'"),
        ("", {"CNM_DEBUG_DUMP": "perhaps"}, {}, "config key 'debug_dump': invalid value"),
        ('[driver]\nhost_id = ["a"]\n', {}, {}, "config key 'host_id': invalid value"),
        ("", {}, {"nonsense": "x"}, "unknown option 'nonsense'"),
        ("", {"CNM_LOG_LEVEL": "loud"}, {}, "log_level 'loud': expected debug"),
        ("", {}, {"tls_cert": "/x.pem"}, "must be given together"),
        (
            "",
            {},
            {"tls_cert": "/nope/c", "tls_key": "/nope/k", "tls_ca": "/nope/ca"},
            "TLS file /nope/c: not found",
        ),
        ("", {}, {"listen": "unix://relative.sock"}, "listen address .*must be absolute"),
        ("", {}, {"listen": "localhost"}, "listen address 'localhost'"),
        ("", {}, {"listen": "127.0.0.1:7001"}, "refusing to listen on TCP .*without mutual TLS"),
        ("", {"CNM_LISTEN": "0.0.0.0:7001"}, {}, "without mutual TLS"),
        (
            "",
            {"CNM_INSECURE_TCP": "1"},
            {"listen": "0.0.0.0:7001"},
            "refusing --insecure-tcp on 0.0.0.0:7001: .*only on a loopback",
        ),
        ("", {}, {"listen": "192.0.2.1:7001", "insecure_tcp": True}, "only on a loopback"),
        ("", {}, {"listen": "myhost:7001", "insecure_tcp": True}, "only on a loopback"),
    ],
    ids=[
        "unknown-top-level-key",
        "unknown-key-in-own-section",
        "section-not-a-table",
        "invalid-toml",
        "env-int-not-a-number",
        "env-bool-not-a-bool",
        "file-string-given-a-list",
        "unknown-flag",
        "bad-log-level",
        "tls-partial",
        "tls-file-missing",
        "listen-relative-unix-path",
        "listen-without-port",
        "tcp-without-tls",
        "tcp-without-tls-from-env",
        "insecure-tcp-on-any-address",
        "insecure-tcp-on-a-public-address",
        "insecure-tcp-on-a-hostname",
    ],
)
def test_bad_configuration_is_one_config_error(tmp_path, toml, env, flags, message) -> None:
    file = _file(tmp_path, toml) if toml else None
    with pytest.raises(ConfigError, match=message) as info:
        load(DemoConfig, section="driver", file=file, environ=env, flags=flags)
    assert "\n" not in str(info.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=f"config file {missing}: not found"):
        load(DemoConfig, section="driver", file=str(missing), environ={})


# --- cnmd's plan: what it starts, with which flags --------------------------------------------


def _plan(tmp_path: Path, **kw) -> Plan:
    cfg = CnmdConfig(run_dir=str(tmp_path / "run"), data_dir=str(tmp_path / "data"), **kw)
    return Plan.build(cfg, None, {})


def test_cnmd_plan_private_redis_and_service_flags(tmp_path: Path) -> None:
    plan = _plan(tmp_path, host_id="h1")
    run, data = tmp_path / "run", tmp_path / "data"
    assert plan.private_redis and plan.redis_url == f"unix://{run}/redis.sock"
    by_name = {c.name: c for c in plan.children}
    assert list(by_name) == ["redis", "ipam", "controller", "driver", "dns"]
    redis = " ".join(by_name["redis"].argv)
    for part in ("--port 0", f"--unixsocket {run}/redis.sock", "--appendonly yes", f"{data}/redis"):
        assert part in redis
    ctl = by_name["controller"].argv
    assert ctl[ctl.index("--ipam") + 1] == f"unix://{run}/ipam.sock"
    assert ctl[ctl.index("--listen") + 1] == f"unix://{run}/controller.sock"
    drv = by_name["driver"].argv
    assert drv[drv.index("--host-id") + 1] == "h1"
    assert drv[drv.index("--state-dir") + 1] == str(data / "driver")
    dns = by_name["dns"].argv
    assert dns[dns.index("--host-id") + 1] == "h1"
    for child in plan.children[1:]:
        assert child.argv[child.argv.index("--redis-url") + 1] == plan.redis_url
        assert child.log_path == data / "log" / f"{child.name}.log"


def test_cnmd_plan_external_redis_starts_no_redis(tmp_path: Path) -> None:
    plan = _plan(tmp_path, redis_url="redis://10.0.0.5:6379/0")
    assert not plan.private_redis
    assert [c.name for c in plan.children] == ["ipam", "controller", "driver", "dns"]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"run_dir": "/tmp/" + "r" * 100}, "longer than 107 bytes"),
        ({"run_dir": "/proc/cnm-no/run"}, "run dir /proc/cnm-no/run: cannot create"),
        ({"redis_url": "http://x"}, "redis url 'http://x': expected"),
        ({"redis_server": "no-such-redis-server"}, "no-such-redis-server: not found"),
        ({"bin_dir": "/nonexistent"}, "/nonexistent/cnm-ipam: not found"),
    ],
    ids=["socket-path-too-long", "run-dir-not-creatable", "bad-redis-url", "no-redis", "no-bin"],
)
def test_cnmd_plan_rejects_bad_configuration_and_creates_nothing(tmp_path, kw, message) -> None:
    base = {"run_dir": str(tmp_path / "run"), "data_dir": str(tmp_path / "data")}
    with pytest.raises(ConfigError, match=message):
        Plan.build(CnmdConfig(**{**base, **kw}), None, {})
    assert not (tmp_path / "run").exists() and not (tmp_path / "data").exists()


@pytest.mark.parametrize("listen", ["127.0.0.1:7001", "127.9.9.9:1", "[::1]:7001", "localhost:0"])
def test_insecure_tcp_is_allowed_on_loopback_only_when_asked(listen) -> None:
    cfg = load(
        DemoConfig, section="driver", environ={}, flags={"listen": listen, "insecure_tcp": True}
    )
    assert cfg.insecure_tcp and cfg.listen == listen
    with pytest.raises(ConfigError, match="without mutual TLS"):
        load(DemoConfig, section="driver", environ={}, flags={"listen": listen})
