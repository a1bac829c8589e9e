"""services.limits: the size bounds every request passes, and how errors quote values."""

from __future__ import annotations

import pytest

from cnm.controller.v1 import controller_pb2 as cpb
from cnm.driver.v1 import driver_pb2 as dpb
from cnm.ipam.v1 import ipam_pb2 as ipb
from services import errors, limits, rpc_errors
from services.errors import InvalidArgument

K, V, N = limits.KEY_MAX, limits.VALUE_MAX, limits.ENTRIES_MAX


@pytest.mark.parametrize(
    "request_",
    [
        pytest.param(cpb.CreateNetworkRequest(labels={"k" * K: "v" * V}), id="label-at-bounds"),
        pytest.param(
            cpb.CreateNetworkRequest(labels={str(i): "v" for i in range(N)}), id="128-labels"
        ),
        pytest.param(cpb.CreateNetworkRequest(name="n" * limits.STRING_MAX), id="string-at-bound"),
        pytest.param(
            cpb.GarbageCollectRequest(valid_sandbox_ids=["a" * 64] * 65536), id="gc-65536-ids"
        ),
        pytest.param(
            cpb.CreateEndpointRequest(
                spec=cpb.EndpointSpec(exposed_ports=[{"port": p} for p in range(1, 65536)])
            ),
            id="expose-every-port",
        ),
    ],
)
def test_inputs_at_their_bounds_pass(request_) -> None:
    limits.check_request(request_)


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        pytest.param(cpb.CreateNetworkRequest(name="n" * 20000), "name", id="name-20000"),
        pytest.param(
            cpb.CreateNetworkRequest(labels={"k" * (K + 1): ""}), "labels key", id="label-key-256"
        ),
        pytest.param(
            cpb.CreateNetworkRequest(labels={"k": "v" * (V + 1)}), "labels['k']", id="label-value"
        ),
        pytest.param(
            cpb.CreateNetworkRequest(labels={str(i): "" for i in range(N + 1)}),
            "labels",
            id="129-labels",
        ),
        pytest.param(
            cpb.CreateNetworkRequest(
                labels={f"l{i}": "v" * V for i in range(10)},
                options={f"o{i}": "v" * V for i in range(10)},
            ),
            "labels and options",
            id="object-total",
        ),
        pytest.param(
            cpb.CreateSandboxRequest(dns={"search": ["a"] * 2000}), "dns.search", id="list-2000"
        ),
        pytest.param(
            cpb.CreateNetworkRequest(ipam={"configs": [{"aux_addresses": {"a": "x" * (V + 1)}}]}),
            "ipam.configs[0].aux_addresses['a']",
            id="nested-map",
        ),
        pytest.param(
            ipb.RequestPoolRequest(options={"k" * 300: ""}), "options key", id="ipam-option"
        ),
        pytest.param(
            dpb.JoinRequest(options={str(i): "" for i in range(N + 1)}), "options", id="driver-join"
        ),
        pytest.param(
            cpb.CreateSandboxRequest(external_key="/" * 5000), "external_key", id="path-5000"
        ),
        pytest.param(cpb.CreateNetworkRequest(name="é" * 2049), "name", id="utf8-bytes-counted"),
    ],
)
def test_inputs_over_a_bound_are_invalid_naming_the_field(request_, field) -> None:
    with pytest.raises(InvalidArgument) as exc:
        limits.check_request(request_)
    assert exc.value.reason == limits.REASON
    assert exc.value.metadata["field"].startswith(field)
    assert len(exc.value.message) < 300


def test_shown_cuts_long_values_and_keeps_short_ones() -> None:
    assert limits.shown("abc") == "'abc'"
    long = limits.shown("x" * 20000)
    assert long == repr("x" * limits.SHOWN_MAX) + "..."
    assert len(limits.shown(list(range(10000)))) <= limits.SHOWN_MAX + 5


def test_status_of_an_error_echoing_a_huge_value_stays_small() -> None:
    err = errors.NotFound("no such network " + "x" * 50000, metadata={"name": "y" * 50000})
    status = rpc_errors.to_status(err)
    assert len(status.details) <= limits.MESSAGE_MAX + 3
    detail = dict(status.trailing_metadata)["grpc-status-details-bin"]
    assert len(detail) < 2 * limits.MESSAGE_MAX


def test_long_quoted_words_are_cut_and_the_rest_of_the_message_kept() -> None:
    long_id = "a" * 64  # a full id is exactly SHOWN_MAX: kept whole
    message = f"no such network '{'x' * 5000}' on host \"{'h' * 70}\" (id '{long_id}', it's fine)"
    cut = limits.cut_quoted(message)
    assert cut == (
        f"no such network '{'x' * 64}'... on host \"{'h' * 64}\"... (id '{long_id}', it's fine)"
    )
