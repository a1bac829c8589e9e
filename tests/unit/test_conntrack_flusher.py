"""When ConntrackFlusher runs its passes (pure scheduling; the kernel part is
tests/netns/test_ctnetlink.py and test_driver_firewall's Leave test)."""

from __future__ import annotations

import threading

from driver_service.conntrack import ConntrackFlusher


class RecordingFlusher(ConntrackFlusher):
    """Records each pass instead of dumping the kernel's table."""

    def __init__(self) -> None:
        # No lull within a test's lifetime: a pass runs only when asked for.
        super().__init__(quiet=3600, max_delay=3600)
        self.passes: list[tuple[set[str], str]] = []

    def flush_now(self, ips: set[str]) -> None:
        self.passes.append((set(ips), threading.current_thread().name))


def test_addresses_queued_before_a_lull_share_one_pass():
    f = RecordingFlusher()
    f.flush(["10.0.0.2", "fd00::2"])
    f.flush(["10.0.0.3", ""])
    assert f.passes == []
    assert f.wait_idle(10)
    assert f.passes == [({"10.0.0.2", "fd00::2", "10.0.0.3"}, "cnm-conntrack")]


def test_a_join_reusing_a_queued_address_flushes_it_first_in_the_caller():
    f = RecordingFlusher()
    f.flush(["10.0.0.2", "10.0.0.3"])
    f.settle(["10.0.0.2", "fd00::9"])
    assert f.passes == [({"10.0.0.2"}, threading.current_thread().name)]
    f.settle(["10.0.0.2"])  # nothing queued for it any more
    assert len(f.passes) == 1
    assert f.wait_idle(10)
    assert f.passes[1] == ({"10.0.0.3"}, "cnm-conntrack")


def test_settle_and_wait_idle_with_nothing_queued_do_nothing():
    f = RecordingFlusher()
    f.settle(["10.0.0.2", ""])
    assert f.wait_idle(1)
    assert f.passes == []


def test_a_short_lull_runs_the_pass_without_being_asked():
    f = ConntrackFlusher(quiet=0.01, max_delay=0.05)
    done = threading.Event()
    seen: list[set[str]] = []

    def record(ips: set[str]) -> None:
        seen.append(set(ips))
        done.set()

    f.flush_now = record  # type: ignore[method-assign]
    f.flush(["10.0.0.2"])
    assert done.wait(10)
    assert seen == [{"10.0.0.2"}]
