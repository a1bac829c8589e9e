"""Configuration of the driver service (`cnm-driver`, section `[driver]`).

The CommonConfig keys plus what a host needs: its id, the address other hosts
reach it on, where sandbox files live, the prefix of the namespaces it makes
(cnm's mark on them), and the heartbeat that keeps its `host:<id>` record READY.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import socket

from services.config import CommonConfig, ConfigError, check_listener
from services.errors import InvalidArgument
from services.plugins import validate_plugin_name

DEFAULT_STATE_DIR = "/var/lib/cnm/driver"
DEFAULT_NETNS_PREFIX = "cnm-"

_HOST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
# Namespace names are `<prefix><12 hex>`: keep the prefix a safe file-name part.
_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclasses.dataclass(frozen=True)
class DriverConfig(CommonConfig):
    # Defaults to this machine's hostname.
    host_id: str = ""
    # The underlay address other hosts reach this one on (overlay VTEPs); optional.
    advertise_addr: str = ""
    # Sandbox hosts/resolv.conf files live under <state_dir>/sandboxes/<id>/.
    state_dir: str = DEFAULT_STATE_DIR
    # Namespaces this service creates are named <netns_prefix><short id>; the
    # prefix is how reconciliation and --cleanup recognise cnm's namespaces.
    netns_prefix: str = DEFAULT_NETNS_PREFIX
    heartbeat_interval: float = 2.0
    host_ttl: float = 10.0
    # Remote drivers (driver_service/drivers/remote/loader.py): every plugin in
    # these directories (env CNM_PLUGIN_DIRS, comma-separated) is loaded, and
    # the plugins named in remote_drivers are looked up there and in Docker's
    # places (/run/docker/plugins, /etc/docker/plugins, ...).
    plugin_dirs: tuple[str, ...] = ()
    remote_drivers: tuple[str, ...] = ()
    # Directories (besides /run/netns and /var/run/netns) whose namespaces a
    # runtime may give as a sandbox's external key, e.g. /var/run/docker/netns
    # (env CNM_SANDBOX_KEY_DIRS, comma-separated); driver_service/sandbox_keys.py.
    sandbox_key_dirs: tuple[str, ...] = ()
    # Overlay networks: a full comparison of the kernel's peer entries with the
    # store, repairing anything a lost pub/sub message left out.
    overlay_resync_interval: float = 15.0
    # The embedded resolver's address written as the sandboxes' nameserver
    # (cnm-dns answers there); "" writes the host's servers instead, filtered.
    dns_resolver: str = "127.0.0.11"


def finish(cfg: DriverConfig) -> DriverConfig:
    """Fill defaults that depend on the machine and check the driver-only keys.

    Raises ConfigError (one line, exit code 2) for anything unusable; in
    particular a TCP listener without mutual TLS is refused (plaintext only with
    insecure_tcp on loopback): this process can reshape the host's network.
    """
    host_id = cfg.host_id or socket.gethostname()
    if not _HOST_ID.fullmatch(host_id):
        raise ConfigError(
            f"host_id {host_id!r}: use 1-63 characters of [A-Za-z0-9_.-], "
            "starting with a letter or digit"
        )
    if not _PREFIX.fullmatch(cfg.netns_prefix):
        raise ConfigError(f"netns_prefix {cfg.netns_prefix!r}: use up to 64 of [A-Za-z0-9_.-]")
    if cfg.advertise_addr:
        try:
            ipaddress.ip_address(cfg.advertise_addr)
        except ValueError:
            raise ConfigError(
                f"advertise_addr {cfg.advertise_addr!r}: expected an IPv4 or IPv6 address"
            ) from None
    if not cfg.state_dir.startswith("/"):
        raise ConfigError(f"state_dir {cfg.state_dir!r}: must be an absolute path")
    for key, dirs in (("plugin_dirs", cfg.plugin_dirs), ("sandbox_key_dirs", cfg.sandbox_key_dirs)):
        for d in dirs:
            if not d.startswith("/") or d.rstrip("/") in ("", "/proc"):
                raise ConfigError(f"{key}: {d!r} must be an absolute path (not / or /proc)")
    for name in cfg.remote_drivers:
        try:
            validate_plugin_name(name)
        except InvalidArgument as e:
            raise ConfigError(f"remote_drivers: {e}") from None
    if cfg.heartbeat_interval <= 0:
        raise ConfigError("heartbeat_interval must be > 0 seconds")
    if cfg.host_ttl <= cfg.heartbeat_interval:
        raise ConfigError("host_ttl must be longer than heartbeat_interval")
    if cfg.dns_resolver:
        try:
            ipaddress.ip_address(cfg.dns_resolver)
        except ValueError:
            raise ConfigError(f"dns_resolver {cfg.dns_resolver!r}: not an IP address") from None
    if cfg.overlay_resync_interval <= 0:
        raise ConfigError("overlay_resync_interval must be > 0 seconds")
    if cfg.listen:
        check_listener(cfg.listen, bool(cfg.tls_cert), cfg.insecure_tcp)
    return dataclasses.replace(cfg, host_id=host_id)
