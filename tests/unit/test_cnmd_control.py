"""cnmd_control reading a run dir while a cnmd holds (or leaves) its lock."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from services import cnmd_control
from services.cnmd_control import PID_FILE, STATE_FILE


@pytest.fixture
def locked_run_dir(tmp_path: Path):
    """A run dir whose pid file is flock()ed, as a running cnmd holds it."""
    pid_path = tmp_path / PID_FILE
    pid_path.write_text("4242\n")
    fd = os.open(pid_path, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    yield tmp_path
    os.close(fd)


def test_state_file_is_read_while_the_lock_is_held(locked_run_dir: Path) -> None:
    (locked_run_dir / STATE_FILE).write_text('{"pid": 4242, "ready": true, "components": []}')
    assert cnmd_control.read_state(locked_run_dir) == {
        "pid": 4242,
        "ready": True,
        "components": [],
    }


def test_no_lock_means_not_running(tmp_path: Path) -> None:
    (tmp_path / PID_FILE).write_text("4242\n")
    assert cnmd_control.read_state(tmp_path) is None


def test_files_unlinked_by_a_stopping_cnmd_still_give_its_pid(
    locked_run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # cnmd's shutdown unlinks cnmd.json and cnmd.pid before it drops the lock:
    # a reader that opened the pid file just before must not fail.
    real_flock = fcntl.flock

    def flock_then_shutdown(fd: int, op: int) -> None:
        for name in (STATE_FILE, PID_FILE):
            (locked_run_dir / name).unlink(missing_ok=True)
        real_flock(fd, op)

    monkeypatch.setattr(cnmd_control.fcntl, "flock", flock_then_shutdown)
    state = cnmd_control.read_state(locked_run_dir)
    assert state == {"pid": 4242, "ready": False, "components": []}
