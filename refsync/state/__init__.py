"""The state store: SQLModel tables, the StateStore API, the engine factory and migrations."""

from refsync.state.engine import create_state_engine
from refsync.state.store import LeaseToken, StateStore, StateTransaction

__all__ = ["LeaseToken", "StateStore", "StateTransaction", "create_state_engine"]
