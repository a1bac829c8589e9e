"""Host liveness on Redis' clock (services/liveness.py): pure judgement."""

from __future__ import annotations

from services.liveness import StoreClock, judge, read_clock

TTL = 10.0


def test_fresh_and_stale_heartbeats_on_one_clock():
    clock = StoreClock(now=1000.0, started=0.0)
    live = judge({"a": (995.0, TTL), "b": (989.0, TTL), "c": (0.0, TTL)}, clock)
    assert live == {"a": True, "b": False, "c": False}


def test_redis_restart_keeps_hosts_that_were_live_when_it_stopped():
    # Redis died at ~940 with a, b live (c long dead) and came back at 1000.
    clock = StoreClock(now=1003.0, started=1000.0)
    beats = {"a": (940.0, TTL), "b": (938.5, TTL), "c": (700.0, TTL), "d": (1002.0, TTL)}
    assert judge(beats, clock) == {"a": True, "b": True, "c": False, "d": True}


def test_grace_ends_one_ttl_after_the_restart():
    clock = StoreClock(now=1010.5, started=1000.0)
    # a beat again after the restart; b did not (it died during the outage).
    live = judge({"a": (1010.0, TTL), "b": (940.0, TTL)}, clock)
    assert live == {"a": True, "b": False}


def test_a_new_heartbeat_in_the_uncertain_second_is_not_the_reference():
    # Uptime is whole seconds: Redis really started at 1000.4, reports 1000.9.
    clock = StoreClock(now=1000.9, started=1000.9)
    live = judge({"a": (1000.6, TTL), "b": (985.0, TTL)}, clock)
    assert live == {"a": True, "b": True}


def test_the_store_resumes_at_its_start_or_after_a_silence_of_every_host():
    info = {"uptime_in_seconds": 500}
    assert read_clock([(1000, 500000), info, None]) == StoreClock(now=1000.5, started=500.5)
    # Frozen, not restarted: a heartbeat marked the end of the silence.
    assert read_clock([(1000, 0), info, "990.25"]).started == 990.25
