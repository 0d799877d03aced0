"""Alembic migrations of the job store, applied by ``JobStore.open`` (no alembic.ini needed)."""
