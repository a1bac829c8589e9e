"""Every Redis call path fails the same way when Redis is gone (the store's
Unavailable naming the URL, reason STORE_UNAVAILABLE), and works again when
it is back; a periodic loop survives the outage and any other exception."""

from __future__ import annotations

import threading

import pytest

from harness.redis_proc import RedisProcess
from harness.wait import until
from services.errors import Unavailable
from services.periodic import Periodic
from services.store import Store


@pytest.fixture
def redis_proc():
    r = RedisProcess(persistent=True).start()
    yield r
    r.close()


def _paths(store: Store, ps_holder: list) -> dict:
    """One call of each Redis call path cnm uses."""
    script = store.script("return redis.call('INCR', KEYS[1])")

    def pipeline():
        pipe = store.client.pipeline(transaction=True)
        pipe.set(store.key("a"), "1")
        pipe.incr(store.key("b"))
        return pipe.execute()

    def pipeline_script():
        pipe = store.client.pipeline(transaction=False)
        script(keys=[store.key("c")], client=pipe)
        return pipe.execute()

    def watch_multi():
        def fn(pipe):
            pipe.get(store.key("a"))
            pipe.multi()
            pipe.set(store.key("a"), "2")

        return store.transaction(fn, store.key("a"))

    def pubsub():
        ps = store.client.pubsub(ignore_subscribe_messages=True)
        ps_holder.append(ps)
        ps.subscribe(store.key("chan"))
        return ps.get_message(timeout=0.05)

    return {
        "command": lambda: store.client.set(store.key("x"), "1"),
        "raw command": lambda: store.raw.get(store.key("x")),
        "evalsha": lambda: script(keys=[store.key("c")]),
        "pipeline": pipeline,
        "pipeline with script": pipeline_script,
        "watch/multi": watch_multi,
        "pubsub": pubsub,
    }


def test_every_call_path_maps_connection_errors(redis_proc):
    store = Store(redis_proc.url, "cnmtest", timeout=2.0)
    subs: list = []
    try:
        paths = _paths(store, subs)
        for call in paths.values():
            call()  # warm: connections made, scripts loaded
        live = subs[-1]
        redis_proc.kill()
        for name, call in paths.items():
            with pytest.raises(Unavailable) as info:
                call()
            assert info.value.reason == "STORE_UNAVAILABLE", name
            assert redis_proc.url in str(info.value), name
        # A subscription made before the outage fails the same way when read.
        with pytest.raises(Unavailable):
            live.get_message(timeout=0.1)
        assert store.ping() is False
        redis_proc.start()
        for call in paths.values():
            call()  # every path works again on the same Store
        assert store.ping() is True
    finally:
        for ps in subs:
            ps.close()
        store.close()


def test_periodic_survives_any_exception_and_recovers(redis_proc):
    store = Store(redis_proc.url, "cnmtest", timeout=1.0)
    outcomes: list[str] = []
    done = threading.Event()

    def tick():
        if len(outcomes) == 1:
            outcomes.append("bug")
            raise RuntimeError("a bug in one pass")
        pipe = store.client.pipeline()
        pipe.incr(store.key("ticks"))
        pipe.execute()
        outcomes.append("ok")
        if outcomes.count("ok") >= 3 and "bug" in outcomes:
            done.set()

    loop = Periodic("test-loop", tick, 0.05, run_first=True)
    try:
        redis_proc.kill()
        loop.start()
        # Several passes fail on the dead store.
        until(lambda: loop.failures >= 3, "three failed passes", timeout=10, interval=0.02)
        redis_proc.start()
        assert done.wait(10), outcomes
        assert loop.failures == 0
    finally:
        loop.stop()
        store.close()
