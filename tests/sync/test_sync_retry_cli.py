"""`refsync retry ID`: an id that names no open quarantined record is refused, and no run is
recorded. File systems on both backends."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from refsync.cli import cli
from refsync.state import StateStore
from tests.sync.file_workspace import quarantined_open_and_resolved


def _retry(workspace: Path, *ids: int) -> Result:
    return CliRunner().invoke(
        cli, ["retry", "-c", str(workspace / "refsync.yaml"), *map(str, ids)])


def _runs(state_url: str) -> int:
    with StateStore(state_url) as store:
        return len(store.list_runs())


def test_retry_of_an_unknown_or_resolved_id_says_so_and_records_no_run(
    workspace: Path, state_url: str
) -> None:
    open_id, resolved_id = quarantined_open_and_resolved(state_url)
    for ids, named in [((9999,), "record 9999"), ((resolved_id,), f"record {resolved_id}"),
                       ((open_id, 9999, resolved_id), f"records 9999, {resolved_id}")]:
        result = _retry(workspace, *ids)
        assert result.exit_code == 2, result.output
        assert f"no open quarantined {named}: never quarantined, or already resolved" \
            in result.output
        assert "`refsync errors`" in result.output
        assert _runs(state_url) == 1, "a refused retry recorded a run"
    with StateStore(state_url) as store:
        assert [row["id"] for row in store.list_quarantine()] == [open_id], \
            "a refused retry touched the open row"


def test_retry_of_an_open_id_replays_it(workspace: Path, state_url: str) -> None:
    open_id, _ = quarantined_open_and_resolved(state_url)
    result = _retry(workspace, open_id)
    assert result.exit_code == 0, result.output
    assert _runs(state_url) == 2
    with StateStore(state_url) as store:
        assert store.list_quarantine() == []
