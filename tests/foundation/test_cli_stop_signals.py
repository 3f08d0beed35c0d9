"""How a one-off command (`refsync sync`, `refsync retry`) takes SIGTERM and Ctrl-C while its
run goes on: the first asks the run to stop, the second ends it at once."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from refsync.cli.common import StopOnSignals


def _ignored(*_: object) -> None:
    """What SIGTERM does in this test process while no command handles it."""


@pytest.fixture(autouse=True)
def sigterm_ignored_outside_the_command() -> Iterator[None]:
    """SIGTERM does not end the test process: only the command under test may act on it."""
    previous = signal.signal(signal.SIGTERM, _ignored)
    yield
    signal.signal(signal.SIGTERM, previous)


def _signal_self(signum: int = signal.SIGTERM) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(0.05)  # the handler runs in this (the main) thread at the next instruction


def test_the_first_signal_asks_the_run_to_stop_and_cuts_its_waits_short() -> None:
    stop = StopOnSignals("refsync sync")
    ctrl_c = signal.getsignal(signal.SIGINT)
    assert stop() is False
    with stop.handling():
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
        started = time.monotonic()
        stop.sleep(30)  # a connector's wait before its next attempt
        assert time.monotonic() - started < 5
        assert stop() == "refsync sync was stopped by SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is _ignored
    assert signal.getsignal(signal.SIGINT) is ctrl_c  # both put back as they were


def test_a_second_signal_ends_the_run_at_once_and_exits_128_plus_its_number() -> None:
    stop = StopOnSignals("refsync retry")
    with pytest.raises(SystemExit) as exited, stop.handling():
        _signal_self()
        _signal_self(signal.SIGINT)  # the run was still on its page: it ends here
        pytest.fail("the second signal did not end the run")
    assert exited.value.code == 128 + signal.SIGINT
    assert signal.getsignal(signal.SIGTERM) is _ignored


def test_a_second_signal_lets_a_run_that_is_already_ending_be_recorded() -> None:
    stop = StopOnSignals("refsync sync")
    with stop.handling():
        _signal_self()
        assert stop()  # the engine has seen the stop: it is recording how the run ended
        _signal_self()
    assert stop() == "refsync sync was stopped by SIGTERM"


def test_signals_are_left_alone_outside_the_main_thread() -> None:
    stop = StopOnSignals("refsync sync")
    seen: list[object] = []

    def run() -> None:
        with stop.handling():
            seen.append(signal.getsignal(signal.SIGTERM))

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    assert seen == [_ignored]
