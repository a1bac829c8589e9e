"""How nftables commands reach the kernel: in-process libnftables, or the `nft` binary.

Both backends take the same input: a JSON command list that becomes ONE
nftables transaction (all of it or none of it is applied), or a constant
script in nft's own syntax (only the table skeleton, see `ruleset`), and both
can work on another network namespace than the caller's.

- ``libnftables`` (default): `pip-nftables` over Debian's libnftables1. A
  libnftables context opens its netlink socket once, in `nft_ctx_new`, and a
  socket keeps the namespace it was created in; so the context is created on
  a disposable thread inside the target namespace (`osl.nsenter.run_in_netns`)
  and then used from any thread, with no per-call namespace switch. Measured
  in bench/bench_nft.py: ~10x cheaper per transaction than a subprocess.
- ``nft``: `nft -j -f -` per transaction (under `nsenter --net=` for another
  namespace). A fallback for hosts without libnftables, and the yardstick.

The backends are chosen by name (`open_backend`); an unknown name fails loudly.
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

from driver_service.osl.nsenter import NetnsRef, netns_path, open_netns, run_in_netns
from services import metrics
from services.errors import InvalidArgument, Unavailable

log = logging.getLogger(__name__)

Json = dict[str, Any]

# libnftables keeps process-wide state (interface cache, parser globals) and
# documents no thread safety: one call at a time in this process.
_LIB_LOCK = threading.Lock()
_MISSING = "No such file or directory"


class NftError(Exception):
    """nftables refused a transaction; nothing of it was applied."""

    def __init__(self, message: str) -> None:
        super().__init__(message.strip() or "nftables command failed")

    @property
    def missing(self) -> bool:
        """The transaction referred to a table, chain, set or element that does not exist."""
        return _MISSING in str(self)


class Backend(Protocol):
    name: ClassVar[str]

    def apply(self, commands: list[Json]) -> None:
        """Run `commands` as one transaction; NftError when the kernel refuses it."""

    def apply_script(self, script: str) -> None:
        """Run a constant nft-syntax script as one transaction."""

    def list_table(self, family: str, table: str) -> str | None:
        """The table as `nft list table` prints it, or None when it does not exist."""

    def list_json(self, family: str, table: str) -> list[Json] | None:
        """The table as nft's JSON objects (`nft -j list table`), or None when absent."""

    def close(self) -> None: ...


class LibNftables:
    """In-process libnftables; the context's netlink socket lives in `netns`."""

    name: ClassVar[str] = "libnftables"

    def __init__(self, netns: NetnsRef = None) -> None:
        try:
            import nftables
        except ImportError as e:
            raise Unavailable(f"libnftables backend: {e}") from e

        def new_context() -> Any:
            ctx = nftables.Nftables()
            ctx.set_handle_output(False)
            return ctx

        try:
            self._ctx = run_in_netns(netns, new_context)
        except OSError as e:
            raise Unavailable(f"libnftables backend: cannot load libnftables.so.1: {e}") from e

    @metrics.step("nft")
    def apply(self, commands: list[Json]) -> None:
        if not commands:
            return
        with _LIB_LOCK:
            rc, _, err = self._ctx.json_cmd({"nftables": commands})
        if rc != 0:
            raise NftError(err)

    @metrics.step("nft")
    def apply_script(self, script: str) -> None:
        with _LIB_LOCK:
            rc, _, err = self._ctx.cmd(script)
        if rc != 0:
            raise NftError(err)

    def list_table(self, family: str, table: str) -> str | None:
        with _LIB_LOCK:
            rc, out, err = self._ctx.cmd(f"list table {family} {table}")
        if rc != 0:
            if _MISSING in err:
                return None
            raise NftError(err)
        return out

    def list_json(self, family: str, table: str) -> list[Json] | None:
        with _LIB_LOCK:
            rc, out, err = self._ctx.json_cmd(
                {"nftables": [{"list": {"table": {"family": family, "name": table}}}]}
            )
        if rc != 0:
            if _MISSING in err:
                return None
            raise NftError(err)
        return out["nftables"]

    def close(self) -> None:
        # The context (and its socket) is freed with the Nftables object.
        self._ctx = None


class NftCommand:
    """`nft` as a subprocess per call; never through a shell."""

    name: ClassVar[str] = "nft"

    def __init__(self, netns: NetnsRef = None, binary: str = "nft") -> None:
        path = netns_path(netns)
        if path is not None:
            with open_netns(netns):  # NotFound / InvalidArgument now, not on first use
                pass
        self._argv = ["nsenter", f"--net={path}", binary] if path else [binary]

    def _run(self, args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(
                [*self._argv, *args], input=stdin, capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise Unavailable(f"nft backend: {e}") from e

    @metrics.step("nft")
    def apply(self, commands: list[Json]) -> None:
        if not commands:
            return
        res = self._run(["-j", "-f", "-"], json.dumps({"nftables": commands}))
        if res.returncode != 0:
            raise NftError(res.stderr)

    @metrics.step("nft")
    def apply_script(self, script: str) -> None:
        res = self._run(["-f", "-"], script)
        if res.returncode != 0:
            raise NftError(res.stderr)

    def list_table(self, family: str, table: str) -> str | None:
        res = self._run(["list", "table", family, table])
        if res.returncode != 0:
            if _MISSING in res.stderr:
                return None
            raise NftError(res.stderr)
        return res.stdout

    def list_json(self, family: str, table: str) -> list[Json] | None:
        res = self._run(["-j", "list", "table", family, table])
        if res.returncode != 0:
            if _MISSING in res.stderr:
                return None
            raise NftError(res.stderr)
        return json.loads(res.stdout)["nftables"]

    def close(self) -> None:
        pass


BACKENDS: dict[str, Callable[[NetnsRef], Backend]] = {
    LibNftables.name: LibNftables,
    NftCommand.name: NftCommand,
}
DEFAULT_BACKEND = LibNftables.name


def open_backend(name: str | None = None, netns: NetnsRef = None) -> Backend:
    """The backend called `name` working on `netns` (None: this process's namespace).

    With no name, libnftables is used when it loads and `nft` otherwise.
    """
    if name is None:
        try:
            return LibNftables(netns)
        except Unavailable as e:
            log.warning("%s; falling back to the nft command", e)
            return NftCommand(netns)
    factory = BACKENDS.get(name)
    if factory is None:
        raise InvalidArgument(
            f"unknown firewall backend {name!r}: choose one of {', '.join(sorted(BACKENDS))}"
        )
    return factory(netns)
