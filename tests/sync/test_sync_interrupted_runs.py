"""A run cut short by Ctrl-C or a stop signal is recorded ``interrupted`` with why, never
``failed`` or left ``running``. File systems on both backends."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from refsync.cli import cli
from refsync.connectors.base import Page
from refsync.connectors.file import FileConnector
from refsync.state import StateStore
from tests.sync.file_workspace import CONFIG, engine_for, read_jsonl, with_crm_settings, write_jsonl


def _one_lead_a_page(workspace: Path, state_url: str) -> None:
    (workspace / "refsync.yaml").write_text(CONFIG.format(url=state_url).replace(
        "settings: {directory: prm}", "settings: {directory: prm, page_size: 1}"))


def test_ctrl_c_in_the_middle_of_a_page_records_the_run_interrupted_not_failed(
    workspace: Path, state_url: str
) -> None:
    _one_lead_a_page(workspace, state_url)
    engine, store = engine_for(workspace)
    (partner_leads,) = [b for b in engine.bindings if b.system == "prm"]
    connector = partner_leads.connector
    read = connector.read

    def ctrl_c_while_reading_the_second_page(*args: Any) -> Iterator[Page]:
        pages = read(*args)
        yield next(pages)
        raise KeyboardInterrupt  # as Python raises it for Ctrl-C: no message

    connector.read = ctrl_c_while_reading_the_second_page  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        engine.run()
    (run,) = store.list_runs()
    assert run["status"] == "interrupted", run
    assert run["error"].startswith("stopped: Ctrl-C (SIGINT); the page or batch in progress "
                                   "was not committed"), run["error"]
    assert run["finished_at"] is not None
    # the first page is committed and counted, with its cursor: the next run reads on
    assert run["counts"]["read"] == 1 and sum(store.status_counts().values()) == 1
    connector.read = read  # type: ignore[method-assign]
    assert engine.run().counts["read"] == 2
    store.close()


def _one_write_quarantined(workspace: Path, state_url: str) -> None:
    """A sync in which the CRM refuses one lead (no company), then the rule relaxed: the
    quarantined write is ready to be retried."""
    (workspace / "refsync.yaml").write_text(
        with_crm_settings(CONFIG.format(url=state_url), "required_fields: [Company]"))
    leads = read_jsonl(workspace / "prm" / "leads.jsonl")
    leads[1]["company"] = ""
    write_jsonl(workspace / "prm" / "leads.jsonl", leads)
    engine, store = engine_for(workspace)
    assert engine.run().counts["quarantined"] == 1
    store.close()
    (workspace / "refsync.yaml").write_text(CONFIG.format(url=state_url))


def test_a_retry_cut_short_is_recorded_interrupted_with_why(
    workspace: Path, state_url: str
) -> None:
    _one_write_quarantined(workspace, state_url)
    engine, store = engine_for(workspace)

    def second_signal() -> bool:
        raise KeyboardInterrupt("refsync retry was stopped by SIGTERM, then at once by a "
                                "second signal (SIGTERM)")

    engine.should_stop = second_signal
    with pytest.raises(KeyboardInterrupt):
        engine.retry(None)
    retry = store.list_runs(1)[0]
    assert (retry["job"], retry["status"]) == ("retry", "interrupted"), retry
    assert retry["error"].startswith("stopped: refsync retry was stopped by SIGTERM, then at "
                                     "once by a second signal (SIGTERM); the page or batch in "
                                     "progress was not committed"), retry["error"]
    store.close()


def _ignored(*_: object) -> None:
    """What SIGTERM does in this test process while the command does not handle it."""


@pytest.fixture
def sigterm_ignored_outside_the_command() -> Iterator[None]:
    """SIGTERM does not end the test process: only the command may act on it."""
    previous = signal.signal(signal.SIGTERM, _ignored)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.mark.usefixtures("sigterm_ignored_outside_the_command")
def test_sigterm_stops_refsync_retry_after_the_batch_in_progress(
    workspace: Path, state_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _one_write_quarantined(workspace, state_url)
    write = FileConnector.write

    def write_then_sigterm(self: FileConnector, object_name: str, key_field: str,
                           records: Sequence[Mapping[str, Any]]) -> Any:
        os.kill(os.getpid(), signal.SIGTERM)  # systemd stops the unit while a batch is written
        return write(self, object_name, key_field, records)

    monkeypatch.setattr(FileConnector, "write", write_then_sigterm)
    result = CliRunner().invoke(cli, ["retry", "--all", "-c", str(workspace / "refsync.yaml")])
    assert result.exit_code == 4, result.output
    assert "stopping: SIGTERM: the run stops once the page or batch in progress is " \
        "committed" in result.output
    with StateStore(state_url) as store:
        retry = store.list_runs(1)[0]
        # the batch went through and was committed before the run stopped
        assert store.list_quarantine() == []
    assert (retry["job"], retry["status"]) == ("retry", "interrupted"), retry
    assert "stopped: refsync retry was stopped by SIGTERM" in retry["error"], retry
    assert retry["counts"]["written"] == 1, retry["counts"]
    assert signal.getsignal(signal.SIGTERM) is _ignored  # the command put it back
