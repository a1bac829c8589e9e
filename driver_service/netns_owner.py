"""Which of the machine's cnm-named namespaces this driver made.

Several cnm instances may share one machine's /run/netns (two cnmd with their
own run and data dirs, test hosts), all naming sandboxes `<prefix><short id>`,
each knowing only its own Redis. A namespace is this driver's when its state
dir holds a mark for it: written before the namespace is made and removed
after it is deleted, so a crash in between leaves a mark for the start-up
sweep to find. The sweep and `--cleanup` remove only marked namespaces; the
ones another instance made are never touched.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


class OwnedNamespaces:
    def __init__(self, state_dir: str | Path) -> None:
        self.dir = Path(state_dir) / "netns"

    def mark(self, name: str) -> bool:
        """Marks `name` as this driver's; False when it already was."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            os.close(os.open(self.dir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            return False
        return True

    def unmark(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.dir / name).unlink()

    def owns(self, name: str) -> bool:
        return (self.dir / name).is_file()

    def marked(self) -> list[str]:
        try:
            return sorted(p.name for p in self.dir.iterdir())
        except FileNotFoundError:
            return []
