"""Alembic environment for the refsync state store; run through refsync.state.migrate."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import refsync.state.tables  # noqa: F401  (registers the tables on SQLModel.metadata)

config = context.config
target_metadata = SQLModel.metadata

connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through refsync.state.migrate, which passes a connection")

context.configure(
    connection=connection,
    target_metadata=target_metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
