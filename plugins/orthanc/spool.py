"""A small durable spool (SQLite, next to Orthanc's storage) so no submission is lost.

Three tables:

``pending``    submissions decided but not yet accepted by the broker, with attempts and the
               time of the next try (exponential backoff while Redis is down);
``decisions``  per Orthanc study, the digest of the routable SOP set last submitted (what the
               feedback guard compares against), kept across Orthanc restarts;
``meta``       small values, e.g. the change-log watermark used to catch up after a restart.

A new decision for a study replaces an older one still pending: the newer one covers more
instances, and the older one would only make a job on a partial study. Written by one thread
(the dispatcher); the lock makes stray cross-thread use safe too.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    task_id TEXT PRIMARY KEY,
    orthanc_study_id TEXT NOT NULL,
    sop_set_digest TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS pending_due ON pending (next_attempt_at);
CREATE TABLE IF NOT EXISTS decisions (
    orthanc_study_id TEXT PRIMARY KEY,
    sop_set_digest TEXT NOT NULL,
    task_id TEXT NOT NULL,
    decided_at REAL NOT NULL,
    sent_at REAL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class PendingSubmission:
    task_id: str
    orthanc_study_id: str
    sop_set_digest: str
    payload: str  # StudyStable as JSON
    created_at: float
    attempts: int
    next_attempt_at: float
    last_error: str


class Spool:
    """Durable pending submissions and guard state; ``close()`` when done."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=10)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a submission acknowledged to the spool survives a power cut, not just a crash.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- decisions / pending -----------------------------------------------------------------

    def last_digest(self, orthanc_study_id: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT sop_set_digest FROM decisions WHERE orthanc_study_id = ?", (orthanc_study_id,)
            ).fetchone()
        return None if row is None else str(row[0])

    def record_decision(
        self, *, task_id: str, orthanc_study_id: str, sop_set_digest: str, payload: str, now: float
    ) -> None:
        """Remember the decision and queue its submission, replacing older pending ones of the study."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM pending WHERE orthanc_study_id = ?", (orthanc_study_id,))
                self._db.execute(
                    "INSERT OR REPLACE INTO pending (task_id, orthanc_study_id, sop_set_digest, payload,"
                    " created_at, attempts, next_attempt_at, last_error) VALUES (?, ?, ?, ?, ?, 0, ?, '')",
                    (task_id, orthanc_study_id, sop_set_digest, payload, now, now),
                )
                self._db.execute(
                    "INSERT OR REPLACE INTO decisions (orthanc_study_id, sop_set_digest, task_id, decided_at,"
                    " sent_at) VALUES (?, ?, ?, ?, NULL)",
                    (orthanc_study_id, sop_set_digest, task_id, now),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def due(self, now: float, *, limit: int = 100) -> list[PendingSubmission]:
        with self._lock:
            rows = self._db.execute(
                "SELECT task_id, orthanc_study_id, sop_set_digest, payload, created_at, attempts,"
                " next_attempt_at, last_error FROM pending WHERE next_attempt_at <= ?"
                " ORDER BY next_attempt_at, created_at LIMIT ?",
                (now, limit),
            ).fetchall()
        return [PendingSubmission(*row) for row in rows]

    def pending(self) -> list[PendingSubmission]:
        return self.due(float("inf"), limit=1_000_000)

    def next_due_at(self) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT MIN(next_attempt_at) FROM pending").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def mark_sent(self, task_id: str, *, now: float) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM pending WHERE task_id = ?", (task_id,))
                self._db.execute("UPDATE decisions SET sent_at = ? WHERE task_id = ?", (now, task_id))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def mark_failed(self, task_id: str, *, error: str, next_attempt_at: float) -> int:
        """Count a failed attempt; return the number of attempts so far."""
        with self._lock:
            self._db.execute(
                "UPDATE pending SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?"
                " WHERE task_id = ?",
                (next_attempt_at, error[:500], task_id),
            )
            row = self._db.execute("SELECT attempts FROM pending WHERE task_id = ?", (task_id,)).fetchone()
        return 0 if row is None else int(row[0])

    def make_all_due(self, now: float) -> None:
        """After a restart, try every pending submission at once instead of after its backoff."""
        with self._lock:
            self._db.execute("UPDATE pending SET next_attempt_at = ? WHERE next_attempt_at > ?", (now, now))

    def sent_at(self, task_id: str) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT sent_at FROM decisions WHERE task_id = ?", (task_id,)).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    # -- meta --------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
