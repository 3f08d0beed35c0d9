"""Test helpers shipped with refsync so connector packages can reuse them.

* :mod:`refsync.testing.contract`: the contract suite every connector must pass.
* :mod:`refsync.testing.fakes`: a manual clock and a sleep recorder to inject instead of time.
"""

from __future__ import annotations

from refsync.testing.fakes import ManualClock, SleepRecorder

__all__ = ["ManualClock", "SleepRecorder"]
