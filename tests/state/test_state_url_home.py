"""A SQLite ``state.url`` starting with ``~`` names a file in the home directory, everywhere."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from refsync.cli import cli
from refsync.errors import StateError, StoreLockedError
from refsync.state import StateStore
from refsync.state.engine import state_url_mistake
from tests.foundation.test_cli_foundation import make_config


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home directory of the test's own, and a working directory that is not it."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return home


def test_the_database_its_lock_and_its_messages_are_in_the_home_directory(home: Path) -> None:
    database = home / "state" / "refsync.db"
    with StateStore("sqlite:///~/state/refsync.db") as store:
        assert store.schema_revision() is not None
        assert stat.S_IMODE(database.stat().st_mode) == 0o600
        store.acquire_daemon_lock()
        assert (home / "state" / "refsync.db.lock").exists()
        with StateStore("sqlite:///~/state/refsync.db") as second, \
                pytest.raises(StoreLockedError) as refused:
            second.acquire_daemon_lock()
        assert f"already using {database} " in refused.value.message
    assert list(Path.cwd().iterdir()) == []  # no directory called '~' where refsync ran

    (home / "notes.db").write_text("not a database")
    with pytest.raises(StateError) as refused_file:
        StateStore("sqlite:///~/notes.db")
    assert refused_file.value.message.startswith(f"{home / 'notes.db'} is not a SQLite database")


def test_commands_open_the_database_in_the_home_directory(home: Path, tmp_path: Path) -> None:
    path = make_config(tmp_path, "sqlite:///~/refsync.db")
    runner = CliRunner()
    shown = runner.invoke(cli, ["-c", str(path), "state", "show"])
    assert shown.exit_code == 0, shown.output
    assert "No cursors yet" in shown.output
    runs = runner.invoke(cli, ["runs", "-c", str(path)])
    assert runs.exit_code == 0 and "No runs yet" in runs.output, runs.output
    with StateStore(f"sqlite:///{home / 'refsync.db'}", migrate=False) as store:
        assert store.schema_revision() is not None  # migrated there, not left empty
    assert list(Path.cwd().iterdir()) == []


def test_a_home_directory_that_does_not_exist_is_refused_and_creates_nothing(
    home: Path, tmp_path: Path
) -> None:
    url = "sqlite:///~no-such-user-of-refsync/refsync.db"
    mistake = state_url_mistake(url)
    assert mistake is not None
    assert mistake[0].startswith("'~no-such-user-of-refsync' names no home directory")
    with pytest.raises(StateError):
        StateStore(url)
    path = make_config(tmp_path, url)
    checked = CliRunner().invoke(cli, ["check", "-c", str(path)])
    assert checked.exit_code == 2, checked.output
    assert "names no home directory" in checked.output
    assert list(Path.cwd().iterdir()) == [] and list(home.iterdir()) == []
