"""What every part of the job store shares: the engine, sessions and a portable INSERT."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import CursorResult, Engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from dicom_node.errors import PermanentError


class StoreCore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def _insert(self, table: Any) -> Any:
        """``INSERT`` that can say ``ON CONFLICT DO NOTHING`` on both supported backends."""
        if self.engine.dialect.name == "postgresql":
            return postgresql.insert(table)
        if self.engine.dialect.name == "sqlite":
            return sqlite.insert(table)
        raise PermanentError(f"job store backend {self.engine.dialect.name!r} is not supported")


def rowcount(result: Any) -> int:
    """Rows matched by an UPDATE/INSERT (SQLAlchemy types ``execute`` as a plain Result)."""
    return int(cast(CursorResult[Any], result).rowcount)
