"""Host liveness on Redis' own clock, never the writer's clock against the reader's.

A driver's heartbeat stamps `last_heartbeat` with Redis' TIME (the Lua script
below), and readers compare it with Redis' TIME read at the same moment: no
two machines' clocks are ever compared, so clock skew between hosts cannot
split the cluster. The writer's own clock is only recorded, as `clock_offset`
(its time minus Redis'), for diagnosis.

After an outage (Redis restarted from its persisted data, was unreachable
or frozen, or failed over to a replica) every heartbeat is as old as the
outage: judged against "now" every host would look dead until it beats
again, and peers would be withdrawn everywhere at once. So for one ttl after
the store resumed, a heartbeat written before that is judged against the
newest heartbeat written before it (the store's last known moment) instead.
A host that died during the outage is then still live for one ttl after the
store came back, and withdrawn after that. The store "resumed" when Redis
started (its uptime), or when a heartbeat found that no host had beaten for
longer than half its ttl (`store:last_beat`, `store:resumed`, kept by the
heartbeat script: this covers outages without a restart).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# KEYS[1] host hash, KEYS[2] store:last_beat, KEYS[3] store:resumed.
# ARGV[1] the writer's own time (seconds, float), ARGV[2] the longest silence
# of all hosts that is not an outage (seconds).
# Stamps the heartbeat when the record exists; 0 when it does not (Redis lost
# it), so the caller writes the whole record again.
HEARTBEAT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local stamp = string.format('%.6f', now)
if now - tonumber(redis.call('GET', KEYS[2]) or '0') > tonumber(ARGV[2]) then
  redis.call('SET', KEYS[3], stamp)
end
redis.call('SET', KEYS[2], stamp)
redis.call('HSET', KEYS[1], 'last_heartbeat', stamp,
           'clock_offset', string.format('%.3f', tonumber(ARGV[1]) - now))
return 1
"""


def heartbeat_keys(store: Any, host_key: str) -> list[str]:
    return [host_key, store.key("store", "last_beat"), store.key("store", "resumed")]


@dataclass(frozen=True)
class StoreClock:
    now: float  # Redis' TIME
    # When the store last came back from an outage (this redis-server's start,
    # or the end of a silence of every host), on the same clock.
    started: float


def queue_clock(pipe: Any, store: Any) -> None:
    """Queue what `read_clock` needs (CLOCK_REPLIES replies) on a pipeline."""
    pipe.time()
    pipe.info("server")
    pipe.get(store.key("store", "resumed"))


CLOCK_REPLIES = 3


def read_clock(replies: Sequence[Any]) -> StoreClock:
    time_reply, info, resumed = replies
    seconds, micros = time_reply
    now = float(seconds) + float(micros) / 1e6
    started = now - float(info.get("uptime_in_seconds", 1e9))
    return StoreClock(now=now, started=max(started, as_float(resumed)))


def judge(beats: Mapping[str, tuple[float, float]], clock: StoreClock) -> dict[str, bool]:
    """host -> live, from host -> (last_heartbeat, ttl) on Redis' clock; pure.

    Pass every host whose record was read (the reader's own too): the newest
    heartbeat written before Redis started is the reference during the grace.
    Redis reports its uptime in whole seconds, so the start is only known to
    within a second: a heartbeat in that last second before `started` may
    already be a new one, and does not count as the reference.
    """
    certain = clock.started - 1.0
    before = [last for last, _ttl in beats.values() if 0 < last < certain]
    reference = max(before, default=0.0)
    out = {}
    for host, (last, ttl) in beats.items():
        if not last:
            out[host] = False
        elif clock.now - last <= ttl:
            out[host] = True
        elif clock.now - clock.started > ttl:
            out[host] = False
        else:
            # Within one ttl of Redis' start: judged against the store's last moment.
            out[host] = last >= certain or reference - last <= ttl
    return out


def as_float(text: Any, default: float = 0.0) -> float:
    try:
        return float(text) if text not in (None, "") else default
    except (TypeError, ValueError):
        return default
