"""docker-compose.yml and the Dockerfile, checked without a Docker engine:
the compose-spec JSON schema, our console scripts, and the driver's privileges."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
SERVICES = ("ipam", "controller", "driver", "dns")
SHARED_RUN = "/run/cnm"
# The host side of the shared run dir: CNM_RUN_DIR, /run/cnm by default.
HOST_RUN = "${CNM_RUN_DIR:-/run/cnm}"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def console_scripts() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _flag(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def _mounts(service: dict) -> dict[str, dict]:
    """target -> {"source", "propagation"} for short and long volume syntax."""
    out = {}
    for vol in service.get("volumes", []):
        if isinstance(vol, str):
            # SOURCE:TARGET[:MODE]; a ${VAR:-default} source holds a colon of its own.
            cut = vol.index("}") + 1 if vol.startswith("${") else vol.index(":")
            source, (target, *mode) = vol[:cut], vol[cut + 1 :].split(":")
            out[target] = {"source": source, "propagation": mode[0] if mode else None}
        else:
            out[vol["target"]] = {
                "source": vol["source"],
                "propagation": vol.get("bind", {}).get("propagation"),
            }
    return out


def test_compose_file_matches_the_compose_spec() -> None:
    res = _validate(COMPOSE)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        ("\n    network_mode: host", "\n    netwrk_mode: host", "'netwrk_mode' was unexpected"),
        ("pid: host", "pid: [host]", "pid"),
        ("condition: service_healthy", "condition: when_ready", "when_ready"),
    ],
    ids=["misspelt-key", "pid-not-a-string", "unknown-depends-on-condition"],
)
def test_schema_check_rejects_a_broken_file(tmp_path: Path, old, new, complaint) -> None:
    # Proves the check above can fail.
    text = COMPOSE.read_text()
    assert old in text
    path = tmp_path / "docker-compose.yml"
    path.write_text(text.replace(old, new, 1))
    res = _validate(path)
    assert res.returncode != 0
    assert complaint in res.stdout + res.stderr


def test_the_four_services_and_their_commands(compose: dict, console_scripts: set[str]) -> None:
    assert set(compose["services"]) == {"redis", *SERVICES}
    for name in SERVICES:
        command = compose["services"][name]["command"]
        assert command[0] in console_scripts, f"{name}: {command[0]} is not a console script"
        assert command[0] == f"cnm-{name}"
        assert _flag(command, "--listen") == f"unix://{SHARED_RUN}/{name}.sock"
    redis = compose["services"]["redis"]["command"]
    assert redis[0] == "redis-server"
    assert _flag(redis, "--appendonly") == "yes"
    assert _flag(redis, "--port") == "0"  # unix socket only
    assert "/data" in {m for m in _mounts(compose["services"]["redis"])}


def test_services_reach_each_other_through_the_shared_run_dir(compose: dict) -> None:
    redis_sock = _flag(compose["services"]["redis"]["command"], "--unixsocket")
    for name in SERVICES:
        svc = compose["services"][name]
        assert _flag(svc["command"], "--redis-url") == f"unix://{redis_sock}"
        assert _mounts(svc)[SHARED_RUN]["source"] == HOST_RUN
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
    assert _mounts(compose["services"]["redis"])[SHARED_RUN]["source"] == HOST_RUN
    controller = compose["services"]["controller"]
    assert _flag(controller["command"], "--ipam") == f"unix://{SHARED_RUN}/ipam.sock"
    assert controller["depends_on"]["ipam"]["condition"] == "service_healthy"


def test_driver_has_the_privileges_and_mounts_it_needs(compose: dict) -> None:
    driver = compose["services"]["driver"]
    # The capabilities it uses, not `privileged` (refused where the bounding set lacks one).
    assert set(driver["cap_add"]) >= {"NET_ADMIN", "SYS_ADMIN"}
    assert "privileged" not in driver
    assert "remount,rw /proc/sys" in " ".join(driver["entrypoint"])
    assert driver["network_mode"] == "host"
    assert driver["pid"] == "host"
    mounts = _mounts(driver)
    assert mounts["/run/netns"] == {"source": "/run/netns", "propagation": "shared"}
    assert mounts["/var/lib/cnm"]["source"] == "${CNM_DATA_DIR:-/var/lib/cnm}"
    assert _flag(driver["command"], "--state-dir").startswith("/var/lib/cnm/")
    assert "--host-id" in driver["command"]
    # The resolver enters the sandboxes' namespaces (setns) to listen there: two
    # capabilities, not privileged.
    dns = compose["services"]["dns"]
    assert not dns.get("privileged") and dns["network_mode"] == "host"
    assert set(dns["cap_add"]) == {"SYS_ADMIN", "NET_BIND_SERVICE"}
    assert _mounts(dns)["/run/netns"] == {"source": "/run/netns", "propagation": "shared"}
    assert "--host-id" in dns["command"]
    # Only the driver is privileged; only the driver and the resolver on the host network.
    for name in ("redis", "ipam", "controller"):
        svc = compose["services"][name]
        assert not svc.get("privileged") and "cap_add" not in svc
        assert "network_mode" not in svc and "ports" not in svc


def test_every_service_has_a_health_check_on_its_own_socket(compose: dict) -> None:
    assert importlib.util.find_spec("services.healthcheck") is not None
    for name, svc in compose["services"].items():
        test = svc["healthcheck"]["test"]
        assert test[:4] == ["CMD", "python", "-m", "services.healthcheck"], name
        target = test[-1]
        if name == "redis":
            assert "--redis" in test and target == f"unix://{SHARED_RUN}/redis.sock"
        else:
            assert target == _flag(svc["command"], "--listen")


def test_dockerfile_is_debian_and_installs_the_project(compose: dict) -> None:
    text = (ROOT / "Dockerfile").read_text()
    froms = [ln.split()[1] for ln in text.splitlines() if ln.startswith("FROM ")]
    assert froms and all(f == "${BASE}" for f in froms)
    assert "ARG BASE=debian:" in text  # a registry's Debian unless a local base is given
    assert "scripts/gen-protos.sh" in text  # the same stubs as a developer machine
    assert "pip install" in text and "/wheels" in text
    assert "redis-server" in text and "nftables" in text
    for svc in compose["services"].values():
        assert svc["build"]["dockerfile"] == "Dockerfile" and svc["image"] == "cnm:latest"
        assert svc["build"]["args"]["BASE"] == "${CNM_BASE:-debian:bookworm-slim}"
