"""Alembic environment. MailFleet hands in an open connection (see db/migrate.py)."""

from __future__ import annotations

from alembic import context

from control_plane.db.models import Base
from control_plane.metrics import partitions

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with 'mailfleet db upgrade', which supplies the connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    include_name=partitions.include_name,  # daily partitions are not in the models
)
with context.begin_transaction():
    context.run_migrations()
