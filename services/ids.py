"""Object ids and names, with libnetwork's rules."""

from __future__ import annotations

import re
import secrets

from services.errors import InvalidArgument
from services.limits import shown

ID_LENGTH = 64
_ID = re.compile(r"^[0-9a-f]{64}$")
# libnetwork forbids "." in names: it builds `name.network` records with it.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def new_id() -> str:
    """64 hex characters, like libnetwork's (and Docker's) ids."""
    return secrets.token_hex(ID_LENGTH // 2)


def is_full_id(text: str) -> bool:
    return bool(_ID.match(text))


def short_id(full: str) -> str:
    return full[:12]


def validate_name(kind: str, name: str) -> str:
    """A name of 1-64 characters of [A-Za-z0-9_-], starting with a letter or digit."""
    if not _NAME.match(name or ""):
        raise InvalidArgument(
            f"invalid {kind} name {shown(name)}: use 1-64 characters of [A-Za-z0-9_-], "
            "starting with a letter or digit",
            reason="INVALID_NAME",
        )
    return name
