"""``refsync demo --workdir DIR`` refuses a directory holding any file the demo would write
(a user's own ``refsync.yaml`` first of all) before writing anything, and leaves it as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from refsync.cli import cli
from refsync.sync.demo import DemoWorkdirInUse, refuse_used_workdir, run_demo, written_files

USER_CONFIG = "# my real refsync config\ninstance: production\n"


def held(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory``, by its path inside it, with its content."""
    return {str(path.relative_to(directory)): path.read_bytes()
            for path in sorted(directory.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("name", ["refsync.yaml", "refsync.db-wal", "tls/sandbox-ca.pem",
                                  "tls/sandbox-server.key"])
def test_a_workdir_holding_a_file_the_demo_writes_is_refused_and_left_alone(
    tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(USER_CONFIG)
    before = held(tmp_path)
    result = CliRunner().invoke(cli, ["demo", "--workdir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr == (
        f"error: {tmp_path} already holds {path}: the demo would overwrite it with its own — "
        "use an empty or new directory\n")
    assert held(tmp_path) == before


def test_every_file_held_is_named(tmp_path: Path) -> None:
    (tmp_path / "refsync.yaml").write_text(USER_CONFIG)
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "sandbox-ca.pem").write_text("ca")
    with pytest.raises(DemoWorkdirInUse) as refused:
        refuse_used_workdir(tmp_path)
    assert str(refused.value) == (
        f"{tmp_path} already holds {tmp_path / 'refsync.yaml'}, "
        f"{tmp_path / 'tls' / 'sandbox-ca.pem'}: the demo would overwrite them with its own — "
        "use an empty or new directory")


def test_a_users_config_is_refused_as_a_json_event_under_json_logging(tmp_path: Path) -> None:
    (tmp_path / "refsync.yaml").write_text(USER_CONFIG)
    result = CliRunner().invoke(cli, ["--log-format", "json", "demo", "--workdir", str(tmp_path)])
    assert result.exit_code == 2 and result.stdout == ""
    (event,) = [json.loads(line) for line in result.stderr.splitlines()]
    assert event["event"] == "command failed" and event["exit_code"] == 2
    assert event["error"].startswith(f"{tmp_path} already holds {tmp_path / 'refsync.yaml'}")
    assert event["error"].endswith("use an empty or new directory")
    assert (tmp_path / "refsync.yaml").read_text() == USER_CONFIG


def test_run_demo_refuses_it_too_before_starting_anything(tmp_path: Path) -> None:
    (tmp_path / "refsync.yaml").write_text(USER_CONFIG)
    with pytest.raises(DemoWorkdirInUse, match="the demo would overwrite it"):
        run_demo(tmp_path)
    assert held(tmp_path) == {"refsync.yaml": USER_CONFIG.encode()}


def test_other_files_do_not_stand_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "other.pem").write_text("mine")
    refuse_used_workdir(tmp_path)  # nothing the demo writes is there
    assert not {path.name for path in written_files(tmp_path)} & {"notes.txt", "other.pem"}


def test_the_files_named_are_the_files_a_demo_writes(tmp_path: Path) -> None:
    """What a demo leaves in its work directory is among the files the refusal looks for."""
    result = CliRunner().invoke(cli, ["demo", "--json", "--workdir", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    left = {path for path in (tmp_path / "demo").rglob("*") if path.is_file()}
    assert left and left <= set(written_files(tmp_path / "demo"))


def test_a_file_where_the_demo_makes_its_tls_directory_is_refused_and_left_alone(
    tmp_path: Path,
) -> None:
    (tmp_path / "tls").write_text("mine")
    result = CliRunner().invoke(cli, ["demo", "--workdir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr == (
        f"error: {tmp_path} already holds {tmp_path / 'tls'}: the demo would overwrite it with "
        "its own — use an empty or new directory\n")
    assert held(tmp_path) == {"tls": b"mine"}


def test_a_tls_directory_of_other_files_is_not_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "tls").mkdir()
    refuse_used_workdir(tmp_path)
    (tmp_path / "tls").rmdir()
    (tmp_path / "tls").symlink_to(tmp_path / "elsewhere")  # dangling: no directory there
    with pytest.raises(DemoWorkdirInUse, match="the demo would overwrite it"):
        refuse_used_workdir(tmp_path)
