"""deploy/kubernetes/ validated offline against a pinned Kubernetes schema
(kubernetes-validate, strict: unknown fields fail), plus what cnm itself
needs of them. The manifests cannot be run here (no cluster)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

MANIFESTS = sorted((Path(__file__).parents[2] / "deploy" / "kubernetes").glob("*.yaml"))
KUBERNETES_VERSION = "1.30.0"


def _objects() -> dict[str, dict]:
    out = {}
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            out[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return out


def _containers(obj: dict) -> list[dict]:
    spec = obj["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def test_manifests_validate_against_pinned_kubernetes_schema():
    assert MANIFESTS
    res = subprocess.run(
        [str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", "--quiet",
         "-k", KUBERNETES_VERSION, *map(str, MANIFESTS)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr


def test_stateless_services_run_replicas():
    objs = _objects()
    assert objs["Deployment/cnm-ipam"]["spec"]["replicas"] >= 2
    assert objs["Deployment/cnm-controller"]["spec"]["replicas"] >= 2


def test_node_pod_is_privileged_host_networked_and_shares_netns_mounts():
    node = _objects()["DaemonSet/cnm-node"]
    spec = node["spec"]["template"]["spec"]
    assert spec["hostNetwork"] and spec["hostPID"]
    driver = next(c for c in spec["containers"] if c["name"] == "driver")
    assert driver["securityContext"]["privileged"]
    netns = next(m for m in driver["volumeMounts"] if m["mountPath"] == "/run/netns")
    assert netns["mountPropagation"] == "Bidirectional"
    install = spec["initContainers"][0]
    assert "/host/opt/cni/bin/cnm" in " ".join(install["args"])
    assert "/host/etc/cni/net.d/" in " ".join(install["args"])


@pytest.mark.parametrize(
    "name", ["Deployment/cnm-ipam", "Deployment/cnm-controller", "DaemonSet/cnm-node"]
)
def test_every_tcp_listener_has_mutual_tls(name):
    obj = _objects()[name]
    for container in _containers(obj):
        argv = container.get("command", []) + container.get("args", [])
        if "--listen" not in argv or argv[argv.index("--listen") + 1].startswith("unix://"):
            continue
        env = {e["name"] for e in container.get("env", [])}
        assert {"CNM_TLS_CERT", "CNM_TLS_KEY", "CNM_TLS_CA"} <= env, container["name"]
