"""Every ErrorInfo reason a service raises is documented in its proto (one
comment block per service: reason, status code, meaning), so clients in any
language can branch on them. Shared runtime reasons (services/) must be in
every service's proto that can send them; the shared values'
(services/values/) in the controller's and the driver's, which validate them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


VALUES = "services/values"


def _reasons(package: str) -> set[str]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        if package != VALUES and path.is_relative_to(ROOT / VALUES):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg == "reason" and isinstance(kw.value, ast.Constant):
                        found.add(kw.value.value)
    return found


@pytest.mark.parametrize(
    ("packages", "proto"),
    [
        (("controller_service",), "controller/v1/controller.proto"),
        (("ipam_service",), "ipam/v1/ipam.proto"),
        (("driver_service",), "driver/v1/driver.proto"),
        (("services",), "ipam/v1/ipam.proto"),
        ((VALUES,), "controller/v1/controller.proto"),
        ((VALUES,), "driver/v1/driver.proto"),
    ],
    ids=["controller", "ipam", "driver", "shared-runtime", "values-controller", "values-driver"],
)
def test_every_error_reason_is_documented_in_the_proto(packages, proto):
    text = (ROOT / "protos/cnm" / proto).read_text()
    reasons = set().union(*(_reasons(p) for p in packages))
    assert reasons, "no reasons found"
    assert sorted(r for r in reasons if r not in text) == []
