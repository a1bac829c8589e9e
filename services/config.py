"""Configuration: defaults, then a TOML file, then CNM_* environment, then flags.

One TOML file can serve every process of a host (`cnmd --config`): common keys
at the top level, per-service keys under `[ipam]`, `[controller]`, `[driver]`
(and `[cnmd]`). Unknown keys are errors, reported in one line (exit code 2).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ENV_PREFIX = "CNM_"


class ConfigError(Exception):
    """Bad configuration: printed as one line, exit code 2."""


@dataclasses.dataclass(frozen=True)
class CommonConfig:
    """Keys every service understands."""

    listen: str = ""
    redis_url: str = "unix:///run/cnm/redis.sock"
    redis_prefix: str = "cnm"
    log_level: str = "info"
    log_format: str = "json"
    # Mutual TLS for TCP listeners: all three, or none. A TCP listener without
    # them is refused (check_listener) unless insecure_tcp is set and the
    # address is a loopback one.
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    insecure_tcp: bool = False
    # Prometheus metrics (HOST:PORT, /metrics); empty = not served. Plaintext only
    # on loopback; elsewhere HTTPS with the TLS files above (services.metrics).
    metrics_listen: str = ""


# Keys allowed outside a section: the common ones, plus cnmd's directories.
_TOP_LEVEL_KEYS = {f.name for f in dataclasses.fields(CommonConfig)} | {"run_dir", "data_dir"}


def _coerce(name: str, value: Any, target: Any) -> Any:
    origin = typing.get_origin(target)
    try:
        if target is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(value)
        if target is int:
            return int(value)
        if target is float:
            return float(value)
        if target is str:
            if not isinstance(value, str | int | float):
                raise ValueError(value)
            return str(value)
        if origin is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(i).strip() for i in items if str(i).strip())
    except (TypeError, ValueError):
        raise ConfigError(f"config key {name!r}: invalid value {value!r}") from None
    return value


def load(
    schema: type[T],
    *,
    section: str,
    file: str | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> T:
    """Builds `schema` (a frozen dataclass) from file, environment and flags.

    `flags` holds only the options the user actually gave (None values are
    ignored), so a flag's default never masks the file or the environment.
    """
    fields = {f.name: f for f in dataclasses.fields(schema)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(schema)
    values: dict[str, Any] = {}

    if file:
        path = Path(file)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {file}: not found") from None
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"config file {file}: {e}") from None
        sections = {"ipam", "controller", "driver", "dns", "cnmd"}
        for key, value in data.items():
            if key in sections:
                continue
            if key not in _TOP_LEVEL_KEYS:
                raise ConfigError(f"config file {file}: unknown key {key!r}")
            if key in fields:
                values[key] = value
        own = data.get(section, {})
        if not isinstance(own, dict):
            raise ConfigError(f"config file {file}: [{section}] must be a table")
        for key, value in own.items():
            if key not in fields:
                raise ConfigError(f"config file {file}: unknown key {key!r} in [{section}]")
            values[key] = value

    env = os.environ if environ is None else environ
    for name in fields:
        env_name = ENV_PREFIX + name.upper()
        if env_name in env:
            values[name] = env[env_name]

    for name, value in (flags or {}).items():
        if value is None:
            continue
        if name not in fields:
            raise ConfigError(f"unknown option {name!r}")
        values[name] = value

    coerced = {name: _coerce(name, value, hints[name]) for name, value in values.items()}
    cfg = schema(**coerced)
    validate_common(cfg)
    return cfg


def validate_common(cfg: Any) -> None:
    level = getattr(cfg, "log_level", "info")
    if level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"log_level {level!r}: expected debug, info, warning or error")
    tls = [getattr(cfg, k, "") for k in ("tls_cert", "tls_key", "tls_ca")]
    if any(tls) and not all(tls):
        raise ConfigError("tls_cert, tls_key and tls_ca must be given together (mutual TLS)")
    for path in filter(None, tls):
        if not Path(path).is_file():
            raise ConfigError(f"TLS file {path}: not found")
    listen = getattr(cfg, "listen", "")
    if listen:
        check_listener(listen, bool(tls[0]), getattr(cfg, "insecure_tcp", False))


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and loopback IP literals (127.0.0.0/8, ::1)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listener(listen: str, mutual_tls: bool, insecure_tcp: bool) -> None:
    """Anyone who reaches a TCP port can, through the controller, make the
    privileged driver change the host: TCP needs mutual TLS, or an explicit
    insecure_tcp on a loopback address (unix sockets are 0600, root only)."""
    from services.address import parse_address

    try:
        addr = parse_address(listen)
    except ValueError as e:
        raise ConfigError(f"listen address {listen!r}: {e}") from None
    if addr.kind != "tcp" or mutual_tls:
        return
    host = addr.target.rpartition(":")[0]
    if not insecure_tcp:
        raise ConfigError(
            f"refusing to listen on TCP {addr} without mutual TLS: give --tls-cert, "
            "--tls-key and --tls-ca, listen on a unix socket, or (loopback only) --insecure-tcp"
        )
    if not is_loopback_host(host):
        raise ConfigError(
            f"refusing --insecure-tcp on {addr}: plaintext TCP is allowed only on a "
            "loopback address (127.0.0.1, ::1, localhost); use mutual TLS"
        )
