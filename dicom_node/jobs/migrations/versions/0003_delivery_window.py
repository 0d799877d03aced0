"""Deliveries that outlast a destination outage, destination health, and withdrawals.

- ``deliveries.first_failed_at`` / ``next_attempt_at``: the retry window is counted from the first
  failure (queue.delivery_retry_window_s); a WAITING delivery is tried again at next_attempt_at
  at the latest (sooner when the destination answers its health check).
- ``destination_status``: what the serve process's health checks last saw of each destination
  (up/down and since when) for the dashboard.
- ``withdrawals``: results of a superseded job withdrawn at a destination (rejection note or
  delete), with their state and reason.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("first_failed_at", TS, nullable=True))
        batch.add_column(sa.Column("next_attempt_at", TS, nullable=True))
    op.create_index("ix_deliveries_state", "deliveries", ["state"])
    op.create_table(
        "destination_status",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("up", sa.Boolean(), nullable=False),
        sa.Column("since", TS, nullable=False),
        sa.Column("checked_at", TS, nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    op.create_table(
        "withdrawals",
        sa.Column("withdrawal_id", sa.String(36), primary_key=True),
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.job_id", ondelete="CASCADE"), nullable=False),
        sa.Column("destination", sa.String(128), nullable=False),
        sa.Column("by_job_id", sa.String(36), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("sop_instance_uids", sa.JSON(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("first_failed_at", TS, nullable=True),
        sa.Column("next_attempt_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("job_id", "destination", name="uq_withdrawals_job_destination"),
    )
    op.create_index("ix_withdrawals_job_id", "withdrawals", ["job_id"])
    op.create_index("ix_withdrawals_state", "withdrawals", ["state"])


def downgrade() -> None:
    op.drop_index("ix_withdrawals_state", table_name="withdrawals")
    op.drop_index("ix_withdrawals_job_id", table_name="withdrawals")
    op.drop_table("withdrawals")
    op.drop_table("destination_status")
    op.drop_index("ix_deliveries_state", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("next_attempt_at")
        batch.drop_column("first_failed_at")
