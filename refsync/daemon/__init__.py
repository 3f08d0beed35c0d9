"""The daemon (``refsync run``): schedules, the sync lease, shutdown, health and metrics."""

from refsync.daemon.service import Daemon, daemon_identity

__all__ = ["Daemon", "daemon_identity"]
