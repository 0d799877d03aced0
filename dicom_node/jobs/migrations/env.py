"""Alembic environment: runs on the connection that ``dicom_node.jobs.migrate`` hands over."""

from __future__ import annotations

from alembic import context

from dicom_node.jobs.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only through dicom_node.jobs.migrate
    raise RuntimeError("run the job store migrations through dicom_node.jobs.migrate.upgrade_to_head")

# render_as_batch: SQLite cannot ALTER most things; batch mode rebuilds tables (future migrations).
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
