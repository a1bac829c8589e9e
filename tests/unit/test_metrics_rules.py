"""services.metrics: the address rules of --metrics-listen, steps and scrape-time gauges."""

from __future__ import annotations

import prometheus_client
import pytest

from services import metrics
from services.config import ConfigError


@pytest.mark.parametrize("listen", ["9100", ":9100", "localhost:http", "127.0.0.1:70000"])
def test_a_malformed_address_is_refused_naming_it(listen):
    with pytest.raises(ConfigError, match="expected HOST:PORT"):
        metrics.serve(listen)


def test_plaintext_metrics_only_on_loopback():
    with pytest.raises(ConfigError, match="refusing plaintext metrics on 0.0.0.0:9100"):
        metrics.serve("0.0.0.0:9100")


def _get(name: str, **labels: str) -> float:
    return prometheus_client.REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_step_is_timed_even_when_it_fails():
    before = _get("cnm_driver_step_duration_seconds_count", step="files")
    with pytest.raises(OSError), metrics.step("files"):
        raise OSError("disk full")
    assert _get("cnm_driver_step_duration_seconds_count", step="files") == before + 1


def test_state_gauges_are_read_at_scrape_time_and_a_failing_one_is_left_out():
    calls = []

    def used():
        calls.append(1)
        return [(("p1", "used"), 3.0)]

    def broken():
        raise ConnectionError("redis down")

    metrics.register_state("cnm_test_used", "test", ["pool", "state"], used)
    metrics.register_state("cnm_test_broken", "test", ["x"], broken)
    assert calls == []
    assert _get("cnm_test_used", pool="p1", state="used") == 3.0
    assert _get("cnm_test_broken", x="a") == 0.0
    assert b"cnm_test_used" in prometheus_client.generate_latest()
