"""Operator commands for cnm's nftables tables.

    python -m driver_service.firewall show    [--netns NS]   print cnm's tables
    python -m driver_service.firewall cleanup [--netns NS]   delete cnm's tables

`cleanup` is what `cnm-driver --cleanup` does for the firewall; it needs no
desired state and is safe to repeat.
"""

from __future__ import annotations

import argparse
import sys

from services.errors import CnmError

from . import cleanup, open_backend, ruleset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m driver_service.firewall")
    parser.add_argument("command", choices=("show", "cleanup"))
    parser.add_argument("--netns", help="namespace name or path (default: this one)")
    parser.add_argument("--backend", choices=("libnftables", "nft"))
    args = parser.parse_args(argv)
    try:
        if args.command == "cleanup":
            cleanup(args.netns, args.backend)
            return 0
        nft = open_backend(args.backend, args.netns)
        try:
            for family, table in ruleset.TABLES:
                print(nft.list_table(family, table) or f"# table {family} {table}: absent")
        finally:
            nft.close()
    except CnmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
