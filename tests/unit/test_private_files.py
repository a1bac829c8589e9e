"""services.private_files: cnm's directories 0700 and files 0600, without
tightening a directory a user named that holds nothing of cnm's."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from services.private_files import open_log, open_private, private_dir


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_directory_and_its_missing_parents_are_made_private(tmp_path):
    made = private_dir(tmp_path / "a" / "b", marks=("cnmd.pid",))
    assert made.is_dir() and mode(made) == 0o700


def test_an_existing_directory_is_tightened_only_when_it_holds_cnm_files(tmp_path):
    users = tmp_path / "shared"
    users.mkdir(mode=0o755)
    users.chmod(0o755)
    private_dir(users, marks=("cnmd.pid",))
    assert mode(users) == 0o755  # not cnm's: left as it is
    (users / "cnmd.pid").write_text("1\n")
    private_dir(users, marks=("cnmd.pid",))
    assert mode(users) == 0o700


def test_cnm_own_directory_is_always_tightened(tmp_path):
    own = tmp_path / "log"
    own.mkdir(mode=0o755)
    own.chmod(0o755)
    assert mode(private_dir(own)) == 0o700


def test_files_are_created_or_made_0600_and_logs_append(tmp_path):
    old = tmp_path / "log" / "ipam.log"
    old.parent.mkdir()
    old.write_text("before\n")
    old.chmod(0o644)
    with open_log(old) as out:
        out.write(b"after\n")
    assert mode(old) == 0o600 and old.read_text() == "before\nafter\n"
    assert mode(old.parent) == 0o700
    os.close(open_private(tmp_path / "new.pid", os.O_RDWR))
    assert mode(tmp_path / "new.pid") == 0o600
