"""A new referral's match columns come from the match keys computed to identify it: they must be
the columns its values would give, and the keys must not depend on how they are computed."""

from __future__ import annotations

import unicodedata
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from refsync.sync.keys import company_key, email_domain_key, email_key, match_keys
from refsync.sync.pull import normalised_columns

texts = st.none() | st.text(max_size=30) | st.integers() | st.sampled_from([
    "", "  ", "Pat@Acme.example", " x@gmail.com ", "@acme", "ACME, Inc.", "École Ltd",
    "https://www.Acme.com/about", "acme", "+1 (415) 555-0100", "0044 20 7946 0018", "12345"])


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({}, optional={
    "email": texts, "domain": texts, "phone": texts, "company": texts}), st.booleans())
def test_match_columns_from_the_keys_equal_those_from_the_values(
    values: dict[str, Any], ignore_free: bool,
) -> None:
    row = {name: value for name, value in values.items() if value is not None}
    keys = match_keys(values, ignore_free=ignore_free)
    assert normalised_columns(row, keys) == normalised_columns(row)


@settings(max_examples=300, deadline=None)
@given(texts, st.booleans())
def test_match_keys_agree_with_the_single_keys(value: Any, ignore_free: bool) -> None:
    keys = match_keys({"email": value, "company": value}, ignore_free=ignore_free)
    assert keys["email"] == email_key(value)
    assert keys["email_domain"] == email_domain_key(value, ignore_free=ignore_free)
    assert keys["company_name"] == company_key(value)


@given(st.text(max_size=40))
def test_company_key_of_ascii_text_skips_nothing(value: str) -> None:
    folded = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    assert company_key(value) == company_key(folded)
    if value.isascii():
        assert folded == value
