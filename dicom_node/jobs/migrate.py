"""Apply the job store's Alembic migrations programmatically (no alembic.ini at run time).

Several processes may open the store at once (SCP, workers, CLI). On SQLite the migration runs in
one ``BEGIN IMMEDIATE`` transaction (the engine's begin hook, see ``dicom_node.jobs.engine``), so
the second process waits and then finds the schema at head. On PostgreSQL a transaction-scoped
advisory lock serialises them the same way.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Arbitrary but fixed key for pg_advisory_xact_lock ("ctnodejb" as 8 ASCII bytes).
_PG_LOCK_KEY = int.from_bytes(b"ctnodejb", "big") & 0x7FFF_FFFF_FFFF_FFFF


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships revision 0001
        raise RuntimeError("no job store migrations found")
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade_to_head(engine: Engine) -> None:
    """Bring the schema to the newest revision; a no-op when it is already there."""
    config = alembic_config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
