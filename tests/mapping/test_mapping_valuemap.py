"""Value maps: both directions, many-to-one choices, unmapped values, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from refsync.errors import RecordError
from refsync.mapping import UnmappedValueError, ValueMap
from refsync.mapping.valuemap import match_key

SF_STATUS = {
    "Open - Not Contacted": "submitted",
    "Working - Contacted": "accepted",
    "Closed - Converted": "qualified",
    "Closed - Not Converted": "lost",
}


def test_maps_both_ways() -> None:
    values = ValueMap(SF_STATUS, field="status")
    assert values.to_canonical("Working - Contacted") == "accepted"
    assert values.to_remote("lost") == "Closed - Not Converted"


def test_reading_ignores_case_and_surrounding_spaces_writing_is_exact() -> None:
    values = ValueMap(SF_STATUS)
    assert values.to_canonical("  working - CONTACTED ") == "accepted"
    with pytest.raises(RecordError):
        values.to_remote("LOST")


def test_unmapped_incoming_value_is_a_record_error_with_value_and_allowed() -> None:
    values = ValueMap(SF_STATUS, field="status")
    with pytest.raises(UnmappedValueError) as info:
        values.to_canonical("Nurturing")
    error = info.value
    assert isinstance(error, RecordError)
    assert error.code == "unmapped_value"
    assert error.field == "status"
    assert error.value == "Nurturing"
    assert error.allowed == list(SF_STATUS)
    assert "Nurturing" in error.message and "Open - Not Contacted" in error.message


def test_unmapped_outgoing_value_lists_the_canonical_values() -> None:
    with pytest.raises(UnmappedValueError) as info:
        ValueMap(SF_STATUS).to_remote("won")
    assert info.value.allowed == ["submitted", "accepted", "qualified", "lost"]


def test_blank_values_pass_as_none() -> None:
    values = ValueMap(SF_STATUS)
    assert values.to_canonical("") is None
    assert values.to_canonical(None) is None
    assert values.to_remote(None) is None


def test_many_to_one_needs_an_out_choice() -> None:
    pairs = {"closedlost": "lost", "closednotconverted": "lost", "closedwon": "won"}
    with pytest.raises(ValueError, match="out:"):
        ValueMap(pairs)
    values = ValueMap(pairs, {"lost": "closedlost"})
    assert values.to_canonical("closednotconverted") == "lost"
    assert values.to_remote("lost") == "closedlost"


def test_out_choice_can_add_write_only_values() -> None:
    values = ValueMap(SF_STATUS, {"won": "Closed - Converted"})
    assert values.to_remote("won") == "Closed - Converted"
    assert values.to_canonical("Closed - Converted") == "qualified"


def test_reading_matches_keys_by_their_match_key() -> None:
    assert match_key(" Working - CONTACTED ") == match_key("working - contacted")
    assert match_key(True) == "true"
    values = ValueMap(SF_STATUS)
    for remote, canonical in SF_STATUS.items():
        assert values.to_canonical(f" {remote.upper()} ") == canonical


def test_yaml_scalars_are_matched_by_text() -> None:
    values = ValueMap({True: "yes", 2: "two"})
    assert values.to_canonical("true") == "yes"
    assert values.to_canonical(True) == "yes"
    assert values.to_canonical("2") == "two"
    assert values.to_canonical(2) == "two"


one_to_one = st.dictionaries(
    st.text(min_size=1).filter(lambda s: s.strip()),
    st.text(min_size=1).filter(lambda s: s.strip()),
    min_size=1, max_size=12,
).filter(lambda d: len(set(d.values())) == len(d))


@given(one_to_one)
def test_one_to_one_maps_round_trip(pairs: dict[str, str]) -> None:
    values = ValueMap(pairs)
    for remote, canonical in pairs.items():
        assert values.to_canonical(remote) == canonical
        assert values.to_remote(canonical) == remote
        assert values.to_canonical(values.to_remote(canonical)) == canonical


@given(st.dictionaries(st.text(min_size=1).filter(lambda s: s.strip()),
                       st.sampled_from(["a", "b", "c"]), min_size=1, max_size=12))
def test_many_to_one_maps_round_trip_through_the_out_choice(pairs: dict[str, str]) -> None:
    choice = {canonical: remote for remote, canonical in pairs.items()}  # last one wins
    values = ValueMap(pairs, choice)
    for canonical in set(pairs.values()):
        assert values.to_canonical(values.to_remote(canonical)) == canonical


@given(st.text())
def test_any_incoming_text_maps_or_is_a_record_error(text: str) -> None:
    values = ValueMap(SF_STATUS)
    try:
        result = values.to_canonical(text)
    except RecordError as exc:
        assert exc.code == "unmapped_value"
    else:
        assert result is None or result in SF_STATUS.values()
