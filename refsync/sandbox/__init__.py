"""Local, stateful emulators of the APIs refsync talks to, plus demo data.

The emulators serve three purposes: the offline demo, the test peer of every connector test,
and a place to try a mapping before touching production. See :mod:`refsync.sandbox.core` for
the control API every emulator shares and :mod:`refsync.sandbox.runner` to start them all.
"""

from __future__ import annotations

from refsync.sandbox.core import SANDBOX_CREDENTIALS, Emulator, build_app
from refsync.sandbox.faults import FaultRule
from refsync.sandbox.server import SandboxServer

__all__ = ["SANDBOX_CREDENTIALS", "Emulator", "FaultRule", "SandboxServer", "build_app"]
