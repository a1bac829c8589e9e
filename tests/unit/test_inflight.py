"""Which intents of this controller are no longer worked on (controller_service/inflight.py)."""

from __future__ import annotations

import threading

import pytest

from controller_service.inflight import Inflight


def test_an_intent_left_open_by_a_failed_operation_is_handed_over():
    f = Inflight()
    with pytest.raises(RuntimeError), f.operation():
        f.note("ep:a", open_=True)  # intent written
        raise RuntimeError("redis went away before the undo was written")
    assert f.left("ep:a")


def test_settled_intents_and_running_operations_are_not_handed_over():
    f = Inflight()
    with f.operation():
        f.note("ep:a", open_=True)
        f.note("ep:a", open_=False)  # settled before the end
        f.note("sb:b", open_=True)
        assert not f.left("sb:b")  # still being worked on
    assert not f.left("ep:a")
    assert f.left("sb:b")


def test_a_new_operation_on_the_record_takes_it_back():
    f = Inflight()
    with f.operation():
        f.note("net:n", open_=True)
    assert f.left("net:n")
    started, release = threading.Event(), threading.Event()

    def retry():
        with f.operation():
            f.note("net:n", open_=True)
            started.set()
            release.wait(5)

    t = threading.Thread(target=retry)
    t.start()
    assert started.wait(5)
    assert not f.left("net:n")  # the retry works on it now
    release.set()
    t.join(5)
    f.forget("net:n")
    assert not f.left("net:n")


def test_nested_operations_hand_over_once_at_the_outer_end():
    f = Inflight()
    with f.operation():
        with f.operation():
            f.note("ep:x", open_=True)
        assert not f.left("ep:x")
    assert f.left("ep:x")
