"""check_addresses_free: an endpoint may not take an address another endpoint of
its network holds (compared as canonical text, as specs.endpoint_spec stores it)."""

from __future__ import annotations

import pytest

from driver_service import specs
from driver_service.attachment_plan import check_addresses_free
from driver_service.models import EndpointRecord, EndpointSpec
from services.errors import AlreadyExists

NET = "a" * 64


class _Endpoints:
    """The one State read check_addresses_free makes."""

    def __init__(self, *records: EndpointRecord) -> None:
        self.records = records

    def endpoints_of_network(self, network_id: str) -> list[EndpointRecord]:
        return [r for r in self.records if r.network_id == network_id]


def _spec(n: int, v4: str = "", v6: str = "", network: str = NET) -> EndpointSpec:
    spec = EndpointSpec(network_id=network, endpoint_id=f"{n:064x}", address=v4, address_ipv6=v6)
    return specs.endpoint_spec(spec)


def test_a_taken_address_is_refused_naming_it_and_a_free_one_passes():
    state = _Endpoints(EndpointRecord(_spec(1, "10.0.0.2/24", "fd00::2/64")))
    with pytest.raises(AlreadyExists) as e:
        check_addresses_free(state, _spec(2, v6="fd00:0::0002/64"))  # type: ignore[arg-type]
    assert e.value.reason == "ADDRESS_IN_USE"
    assert "fd00::2" in str(e.value)
    with pytest.raises(AlreadyExists, match="address 10.0.0.2 is already used"):
        check_addresses_free(state, _spec(3, "10.0.0.2/16"))  # type: ignore[arg-type]
    check_addresses_free(state, _spec(4, "10.0.0.3/24", "fd00::3/64"))  # type: ignore[arg-type]
    check_addresses_free(state, _spec(5, "10.0.0.2/24", network="b" * 64))  # type: ignore[arg-type]
    check_addresses_free(state, _spec(6))  # type: ignore[arg-type]
