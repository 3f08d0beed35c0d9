"""The two hashes a link keeps: what refsync wrote, what it read, and under which mapping."""

from __future__ import annotations

import hashlib

from refsync.sync.link_hashes import RecordHashes, StoredHashes


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


NOW = RecordHashes(_digest("written"), _digest("read only"), "0badcafe")


def test_both_hashes_fit_the_links_64_character_columns() -> None:
    assert len(NOW.written_text) == 64 and len(NOW.read_text) == 64


def test_a_record_as_refsync_wrote_and_read_it_is_recognised_under_its_mapping() -> None:
    stored = StoredHashes(NOW.written_text, NOW.read_text)
    assert stored.holds_written(NOW) and stored.written_under(NOW)
    assert stored.holds_read(NOW) and stored.read_under(NOW) and stored.read_only_as_read(NOW)


def test_a_mapping_edit_keeps_what_was_written_but_not_under_which_mapping() -> None:
    stored = StoredHashes(NOW.written_text, NOW.read_text)
    edited = RecordHashes(NOW.written, NOW.read_only, "5eed1e55")
    assert stored.holds_written(edited) and not stored.written_under(edited)
    assert stored.holds_read(edited) and not stored.read_under(edited)
    assert not stored.read_only_as_read(edited)  # looked at again once


def test_a_change_to_a_field_refsync_only_reads_is_seen() -> None:
    stored = StoredHashes(NOW.written_text, NOW.read_text)
    changed = RecordHashes(NOW.written, _digest("sales changed AnnualRevenue"), NOW.mapping)
    assert stored.holds_written(changed) and not stored.read_only_as_read(changed)


def test_hashes_kept_by_an_earlier_refsync_match_nothing() -> None:
    earlier = _digest("salted with the whole mapping")
    stored = StoredHashes(earlier, earlier)
    assert not stored.holds_written(NOW) and not stored.written_under(NOW)
    assert not stored.holds_read(NOW) and not stored.read_under(NOW)
    assert not stored.read_only_as_read(NOW)
    assert not StoredHashes(None, None).holds_written(NOW)
