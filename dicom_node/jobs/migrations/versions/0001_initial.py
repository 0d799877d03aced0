"""Initial job store schema: studies, jobs, job_events, deliveries, config_audit.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("study_instance_uid", sa.String(64), primary_key=True),
        sa.Column("first_received_at", TS, nullable=True),
        sa.Column("last_received_at", TS, nullable=True),
        sa.Column("stable_at", TS, nullable=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("completion_reason", sa.String(64), nullable=True),
        sa.Column("calling_ae_title", sa.String(16), nullable=False),
        sa.Column("instance_count", sa.Integer(), nullable=False),
        sa.Column("source", sa.JSON(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.String(36), primary_key=True),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("rule_name", sa.String(128), nullable=False),
        sa.Column("ruleset_digest", sa.String(128), nullable=False),
        sa.Column("pipeline", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("destinations", sa.JSON(), nullable=False),
        sa.Column("shadow", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("superseded_by", sa.String(36), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("job", sa.JSON(), nullable=False),
        sa.Column("result_bundle", sa.JSON(), nullable=True),
        sa.Column("timings", sa.JSON(), nullable=False),
    )
    op.create_index("ix_jobs_study_instance_uid", "jobs", ["study_instance_uid"])
    op.create_index("ix_jobs_state", "jobs", ["state"])
    op.create_index("ix_jobs_created_at", "jobs", ["created_at"])
    op.create_index("ix_jobs_study_rule", "jobs", ["study_instance_uid", "rule_name"])
    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.job_id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("from_state", sa.String(16), nullable=True),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
    )
    op.create_index("ix_job_events_job_id", "job_events", ["job_id"])
    op.create_table(
        "deliveries",
        sa.Column("delivery_id", sa.String(36), primary_key=True),
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.job_id", ondelete="CASCADE"), nullable=False),
        sa.Column("destination", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("delivered_sop_instance_uids", sa.JSON(), nullable=False),
        sa.Column("failed", sa.JSON(), nullable=False),
        sa.Column("warnings", sa.JSON(), nullable=False),
        sa.Column("confirmed", sa.Boolean(), nullable=False),
        sa.Column("confirmation_detail", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("job_id", "destination", name="uq_deliveries_job_destination"),
    )
    op.create_index("ix_deliveries_job_id", "deliveries", ["job_id"])
    op.create_table(
        "config_audit",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("who", sa.String(255), nullable=False),
        sa.Column("what", sa.String(255), nullable=False),
        sa.Column("diff", sa.JSON(), nullable=False),
    )
    op.create_index("ix_config_audit_at", "config_audit", ["at"])


def downgrade() -> None:
    for table in ("config_audit", "deliveries", "job_events", "jobs", "studies"):
        op.drop_table(table)
