"""Docker's filter and time flags as cnmctl parses them (clients.filters)."""

from __future__ import annotations

import pytest

from clients.filters import (
    EventFilter,
    event_filter,
    network_filters,
    parse_duration,
    parse_time,
    prune_filter,
)

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10m", 600), ("1h30m", 5400), ("1.5s", 1.5), ("300ms", 0.3), ("2h0m5s", 7205)],
)
def test_go_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("10m", NOW - 600, id="duration-before-now"),
        pytest.param("1733385600", 1733385600.0, id="unix-seconds"),
        pytest.param("1733385600.25", 1733385600.25, id="unix-fraction"),
        pytest.param("2024-12-05T08:00:00Z", 1733385600.0, id="rfc3339-z"),
        pytest.param("2024-12-05T09:00:00+01:00", 1733385600.0, id="rfc3339-offset"),
        pytest.param("2024-12-05T08:00:00.5Z", 1733385600.5, id="rfc3339-fraction"),
        pytest.param("2024-12-05", 1733356800.0, id="date-only-utc"),
    ],
)
def test_times_as_docker_accepts_them(text, expected):
    assert parse_time(text, NOW) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "yesterday", "10x", "-5m", "2024-13-01"])
def test_bad_times_are_refused(text):
    with pytest.raises(ValueError, match="invalid"):
        parse_time(text, NOW)


def test_label_values_are_kept_for_and_matching():
    flt = network_filters(["label=a", "label=b=1", "type=custom", "dangling=true"])
    assert flt == {"label": ["a", "b=1"], "type": ["custom"], "dangling": ["true"]}


def test_dangling_true_and_false_together_is_refused():
    with pytest.raises(ValueError, match="together"):
        network_filters(["dangling=true", "dangling=0"])


def test_prune_filter_labels_and_until():
    flt = prune_filter(["label=env=dev", "until=1h", "label=tmp"], now=NOW)
    assert flt.labels == ("env=dev", "tmp") and flt.until == NOW - 3600
    with pytest.raises(ValueError, match="one until"):
        prune_filter(["until=1h", "until=2h"], now=NOW)
    with pytest.raises(ValueError, match="invalid filter 'name'"):
        prune_filter(["name=x"], now=NOW)


NET = "a" * 64
SB = "b" * 64


@pytest.mark.parametrize(
    ("flags", "event", "wanted"),
    [
        pytest.param([], ("network", "create", NET, "web", {}), True, id="no-filter"),
        pytest.param(["type=network"], ("network", "create", NET, "web", {}), True, id="type"),
        pytest.param(["type=sandbox"], ("network", "create", NET, "web", {}), False, id="type-no"),
        pytest.param(
            ["type=sandbox", "type=network"], ("network", "create", NET, "web", {}), True,
            id="type-or",
        ),
        pytest.param(["event=destroy"], ("network", "create", NET, "web", {}), False, id="event"),
        pytest.param(
            ["event=connect"], ("endpoint", "join", "e1", "ep", {"network": NET}), True,
            id="connect-is-join",
        ),
        pytest.param(["network=web"], ("network", "create", NET, "web", {}), True, id="net-name"),
        pytest.param(["network=aaaa"], ("network", "create", NET, "web", {}), True, id="net-id"),
        pytest.param(
            ["network=web"], ("endpoint", "create", "e1", "ep", {"network_name": "web"}), True,
            id="endpoint-of-network",
        ),
        pytest.param(
            ["network=db"], ("endpoint", "create", "e1", "ep", {"network_name": "web"}), False,
            id="endpoint-of-other-network",
        ),
        pytest.param(
            ["sandbox=bbb", "type=endpoint"],
            ("endpoint", "join", "e1", "ep", {"sandbox": SB}), True, id="sandbox-and-type",
        ),
        pytest.param(
            ["sandbox=c1", "type=network"], ("sandbox", "create", SB, "c1", {}), False,
            id="and-across-keys",
        ),
    ],
)  # fmt: skip
def test_event_filters_and_across_keys_or_within(flags, event, wanted):
    assert event_filter(flags).matches(*event) is wanted


def test_event_filter_rejects_unknown_values():
    with pytest.raises(ValueError, match="type=volume"):
        event_filter(["type=volume"])
    with pytest.raises(ValueError, match="invalid filter 'container'"):
        event_filter(["container=x"])
    assert event_filter([]) == EventFilter()
