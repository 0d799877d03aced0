"""Engines for the job store: SQLite tuned for several processes, or PostgreSQL as given.

SQLite (the embedded default) is shared by the SCP, the workers and the CLI, each in its own
process. To keep that safe:

- WAL journal: readers never block the writer and vice versa;
- ``busy_timeout``: a writer waits for the lock instead of failing at once;
- every transaction starts with ``BEGIN IMMEDIATE``: it takes the write lock up front, so a
  read-then-write transaction can never hit SQLITE_BUSY half-way (in WAL mode a deferred
  transaction that read first cannot wait for the lock: the busy handler is not called);
- foreign keys on (SQLite leaves them off per connection).

pysqlite's own transaction handling is switched off (``isolation_level = None``) and SQLAlchemy's
``begin`` event emits the BEGIN, the recipe in SQLAlchemy's SQLite dialect documentation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

from dicom_node.errors import ConfigError


def make_engine(url: str, *, busy_timeout_s: float = 30.0, echo: bool = False) -> Engine:
    """An Engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg2://...``)."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # SQLAlchemy raises ArgumentError for a malformed URL
        raise ConfigError(f"not a database URL: {exc}") from exc
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, echo=echo, pool_pre_ping=True, future=True)

    memory = parsed.database in (None, "", ":memory:")
    if not memory and parsed.database is not None:
        # the embedded default lives under storage.root, which may not exist yet
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {"connect_args": {"timeout": busy_timeout_s, "check_same_thread": False}}
    if memory:  # one shared connection, else every checkout would see an empty database
        kwargs["poolclass"] = StaticPool
    engine = create_engine(url, echo=echo, **kwargs)
    busy_ms = int(busy_timeout_s * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        try:
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
                # WAL + NORMAL: durable across a process crash; a power loss may lose the last
                # commits but never corrupts the database (SQLite docs, "WAL mode").
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
