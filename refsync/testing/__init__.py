"""Test helpers shipped with refsync so connector packages can reuse them.

* :mod:`refsync.testing.contract`: the contract suite every connector must pass.
* :mod:`refsync.testing.fakes`: a manual clock and a sleep recorder to inject instead of time.
* :mod:`refsync.testing.chaos` and :mod:`refsync.testing.soak`: the crash harness and the fault
  soak (:mod:`refsync.testing.chaos_retry` kills ``refsync retry`` instead of syncs), built
  on :mod:`refsync.testing.scenario` (seeded sandbox and config) and :mod:`refsync.testing.audit`
  (is every referral where it belongs, once).
"""

from __future__ import annotations

from refsync.testing.fakes import ManualClock, SleepRecorder

__all__ = ["ManualClock", "SleepRecorder"]
