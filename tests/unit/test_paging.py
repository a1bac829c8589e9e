"""services/paging.py: the page sizes and page tokens of every List method."""

from __future__ import annotations

import pytest

from services.errors import InvalidArgument
from services.paging import decode_token, encode_token, page_size


def test_page_tokens_round_trip_and_reject_garbage() -> None:
    token = encode_token("LocalDefault/fd00::/64", "12345")
    assert decode_token(token, 2) == ["LocalDefault/fd00::/64", "12345"]
    for bad in ("!!!", "garbage!", encode_token("only-one-part"), "\u00e9"):
        with pytest.raises(InvalidArgument, match="invalid page_token") as e:
            decode_token(bad, 2)
        assert e.value.reason == "INVALID_PAGE_TOKEN"


def test_a_tagged_token_needs_its_tag() -> None:
    token = encode_token("alpha\x00" + "a" * 64, tag="after:")
    assert "=" not in token
    assert decode_token(token, tag="after:") == ["alpha\x00" + "a" * 64]
    with pytest.raises(InvalidArgument, match="invalid page_token"):
        decode_token(encode_token("alpha"), tag="after:")


def test_page_size_defaults_caps_and_rejects_negative() -> None:
    assert page_size(0, 100, 1000) == 100
    assert page_size(5000, 100, 1000) == 1000
    with pytest.raises(InvalidArgument, match="page_size") as e:
        page_size(-1, 100, 1000)
    assert e.value.reason == "INVALID_PAGE_SIZE"
