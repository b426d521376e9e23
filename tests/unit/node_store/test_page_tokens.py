"""Page tokens are opaque, round-trip any key a node issues, and anything else is invalid input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from federation.errors import InvalidInputError
from federation_node.store.db import decode_page_token, encode_page_token


@given(key=st.text(min_size=1, max_size=128).filter(str.isprintable))
def test_a_token_resumes_after_the_key_it_was_made_from(key: str) -> None:
    token = encode_page_token(key)
    assert decode_page_token(token) == key
    assert token.isascii()
    assert key not in token or len(key) < 3


@pytest.mark.parametrize("key", ["\x00", "a\x00b", "\x1f", "x" * 129])
def test_a_token_naming_a_key_no_node_issues_is_refused(key: str) -> None:
    # A NUL in a key would reach PostgreSQL, which cannot compare it with text.
    with pytest.raises(InvalidInputError, match="page_token"):
        decode_page_token(encode_page_token(key))


def test_the_empty_token_is_the_first_page() -> None:
    assert decode_page_token("") is None


@given(token=st.text(min_size=1))
def test_an_arbitrary_string_decodes_to_a_key_or_is_invalid_input(token: str) -> None:
    refused_field: str | None = None
    try:
        key = decode_page_token(token)
    except InvalidInputError as error:
        refused_field = error.field
    else:
        assert key
    assert refused_field in {None, "page_token"}


@pytest.mark.parametrize("token", ["%%%", "djE6", "aGVsbG8", "v1:abc"])
def test_tokens_this_node_did_not_issue_are_refused(token: str) -> None:
    with pytest.raises(InvalidInputError):
        decode_page_token(token)
