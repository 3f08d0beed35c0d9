"""State-store URLs: mistakes refused before any file is created, unwritable places explained."""

from __future__ import annotations

from pathlib import Path

import pytest

from refsync.errors import StateError
from refsync.state import StateStore
from refsync.state.engine import DaemonLock, sqlite_url_under, state_url_mistake


@pytest.mark.parametrize("url", [
    "sqlite://state/refsync.db", "sqlite://refsync.db", "sqlite://", "sqlite:///:memory:",
    "mysql://refsync@db/refsync", "refsync.db",
])
def test_a_url_refsync_cannot_use_is_refused_and_creates_nothing(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    mistake = state_url_mistake(url)
    assert mistake is not None
    message, fix = mistake
    with pytest.raises(StateError) as refused:
        StateStore(url)
    assert refused.value.message == f"state database URL: {message} — {fix}"
    assert list(tmp_path.iterdir()) == []


def test_urls_refsync_can_use_have_no_mistake() -> None:
    for url in ("sqlite:///refsync.db", "sqlite:////var/lib/refsync/refsync.db",
                "sqlite+pysqlite:///refsync.db", "postgresql://refsync@db/refsync",
                "postgres://refsync@db/refsync", "postgresql+psycopg://refsync@db/refsync"):
        assert state_url_mistake(url) is None, url


def test_an_unwritable_sqlite_location_is_a_state_error_naming_the_file(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    database = blocker / "refsync.db"
    with pytest.raises(StateError) as refused:
        StateStore(f"sqlite:///{database}")
    assert refused.value.message.startswith(f"cannot create {database}: ")
    assert "point state.url at a directory refsync's user can write to" in refused.value.message
    with pytest.raises(StateError, match="cannot create"):
        DaemonLock(blocker / "refsync.db.lock").acquire()


def test_only_relative_sqlite_paths_move_under_the_directory(tmp_path: Path) -> None:
    assert sqlite_url_under("sqlite:///state/x.db", tmp_path) == \
        f"sqlite:///{tmp_path / 'state' / 'x.db'}"
    assert sqlite_url_under("sqlite:///../x.db", tmp_path / "etc") == \
        f"sqlite:///{tmp_path / 'x.db'}"
    for unchanged in ("sqlite:////abs/x.db", "sqlite:///~/x.db", "sqlite://host/x.db",
                      "postgresql://refsync@db/refsync"):
        assert sqlite_url_under(unchanged, tmp_path) == unchanged
