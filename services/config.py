"""Configuration: defaults, then a TOML file, then CNM_* environment, then flags.

One TOML file can serve every process of a host (`cnmd --config`): common keys
at the top level, per-service keys under `[ipam]`, `[controller]`, `[driver]`
(and `[cnmd]`). Unknown keys are errors, reported in one line (exit code 2).
"""

from __future__ import annotations

import dataclasses
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
    # Mutual TLS for TCP listeners: all three, or none.
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""


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
        from services.address import parse_address

        try:
            parse_address(listen)
        except ValueError as e:
            raise ConfigError(f"listen address {listen!r}: {e}") from None
