"""Keep each study's routing manifest (headers only, no PHI) for rule replay in the admin API.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Nullable: studies routed before this revision (or never routed) have none.
    with op.batch_alter_table("studies") as batch:
        batch.add_column(sa.Column("manifest", sa.JSON(), nullable=True))
    op.create_index("ix_studies_updated_at", "studies", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_studies_updated_at", table_name="studies")
    with op.batch_alter_table("studies") as batch:
        batch.drop_column("manifest")
