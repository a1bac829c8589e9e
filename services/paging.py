"""Page sizes and page tokens, shared by every List method of every service.

A page token is opaque to clients: the parts that say where the next page
starts (a sort key, an ordinal, the listing it was made for), joined by
newlines, behind an optional tag that tells a token from random text,
base64url-encoded without padding.
"""

from __future__ import annotations

import base64
import binascii

from services.errors import InvalidArgument
from services.limits import shown


def page_size(requested: int, default: int, maximum: int) -> int:
    """`requested` (0: `default`), at most `maximum`; INVALID_ARGUMENT when negative."""
    if requested < 0:
        raise InvalidArgument(
            f"invalid page_size {requested}: must be >= 0", reason="INVALID_PAGE_SIZE"
        )
    return min(requested or default, maximum)


def encode_token(*parts: str, tag: str = "") -> str:
    return base64.urlsafe_b64encode((tag + "\n".join(parts)).encode()).decode().rstrip("=")


def decode_token(token: str, nparts: int = 1, *, tag: str = "") -> list[str]:
    """The `nparts` parts of a token made by `encode_token` with this `tag`;
    INVALID_ARGUMENT (reason INVALID_PAGE_TOKEN) for anything else."""
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        text = raw.decode()
        if not text.startswith(tag):
            raise ValueError(token)
        parts = text[len(tag) :].split("\n")
        if len(parts) != nparts:
            raise ValueError(token)
        return parts
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidArgument(
            f"invalid page_token {shown(token)}: pass back a next_page_token unchanged",
            reason="INVALID_PAGE_TOKEN",
        ) from None
