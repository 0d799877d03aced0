"""What is waiting on the broker: queue depths and the task ids of waiting messages.

Read straight from the broker's storage, the same way on every process and machine:

- **Redis** (kombu's Redis transport): each queue is a list named like the queue (plus one list per
  non-zero priority step, ``<queue>\\x06\\x16<priority>``); messages fetched but not yet
  acknowledged sit in the ``unacked`` hash until acked or restored. Depth = LLEN of the lists.
- **SQLite** (kombu's SQLAlchemy transport, the embedded default): ``kombu_message`` rows with
  ``visible = 1`` are waiting; a fetched message becomes invisible and is never made visible again
  (see ``worker.tasks.app``).

The sweeper uses :func:`pending_task_ids` to tell a QUEUED job whose message is still waiting
(a long queue) from one whose message was lost (a worker killed -9 on the SQLite broker).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from dicom_node.constants import QUEUES
from worker.tasks.app import SQLITE_BROKER_TRANSPORT, broker_connection_params

logger = logging.getLogger(__name__)

# kombu.transport.redis: PRIORITY_STEPS = [0, 3, 6, 9], separator "\x06\x16".
_REDIS_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")
_REDIS_UNACKED = "unacked"


class BrokerUnavailable(RuntimeError):
    """The broker cannot be read (down, unreachable, not a kind we can look into)."""


@dataclass(frozen=True)
class BrokerView:
    kind: str  # "redis" | "sqlite" | "other"
    depths: dict[str, int]  # waiting messages per queue
    unacked: int  # fetched by a worker, not yet acknowledged (Redis only; 0 elsewhere)


def broker_kind(broker_url: str) -> str:
    url, transport = broker_connection_params(broker_url)
    if transport == SQLITE_BROKER_TRANSPORT:
        return "sqlite"
    if url.startswith(("redis://", "rediss://")):
        return "redis"
    return "other"


@contextlib.contextmanager
def _redis(url: str, timeout_s: float) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        yield client
    finally:
        client.close()


def _sqlite_rows(url: str, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
    database = make_url(url).database
    if database and database != ":memory:" and not Path(database).exists():
        return []  # no message was ever sent: do not create the file by looking
    engine = create_engine(url, connect_args={"timeout": 5.0})
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("kombu_message"):
                return []
            return list(conn.execute(text(sql), params or {}).all())
    finally:
        engine.dispose()


def inspect_broker(broker_url: str, queues: Sequence[str] = QUEUES, *, timeout_s: float = 2.0) -> BrokerView:
    """Depth of each queue; raises :class:`BrokerUnavailable` when the broker cannot be read."""
    kind = broker_kind(broker_url)
    url, _ = broker_connection_params(broker_url)
    try:
        if kind == "redis":
            with _redis(url, timeout_s) as client:
                depths = {q: sum(int(client.llen(q + x)) for x in _REDIS_PRIORITY_SUFFIXES) for q in queues}
                unacked = int(client.hlen(_REDIS_UNACKED))
            return BrokerView(kind, depths, unacked)
        if kind == "sqlite":
            rows = _sqlite_rows(
                url,
                "SELECT q.name, COUNT(m.id) FROM kombu_queue q JOIN kombu_message m ON m.queue_id = q.id "
                "WHERE m.visible = 1 GROUP BY q.name",
            )
            counted = {str(name): int(n) for name, n in rows}
            return BrokerView(kind, {q: counted.get(q, 0) for q in queues}, 0)
    except (redis.RedisError, OSError) as exc:
        raise BrokerUnavailable(f"broker unreachable: {exc}") from exc
    except Exception as exc:  # SQLAlchemy errors: a locked or damaged broker file
        raise BrokerUnavailable(f"broker database unreadable: {type(exc).__name__}: {exc}") from exc
    raise BrokerUnavailable(f"cannot look into a {broker_url.split(':', 1)[0]} broker")


def _task_id(payload: str | bytes) -> str | None:
    try:
        message = json.loads(payload)
    except (ValueError, TypeError):
        return None
    if isinstance(message, list) and message:  # Redis "unacked": [message, exchange, routing_key]
        message = message[0]
    headers = message.get("headers") if isinstance(message, dict) else None
    task_id = headers.get("id") if isinstance(headers, dict) else None
    return str(task_id) if task_id else None


def pending_task_ids(
    broker_url: str, queues: Sequence[str] = QUEUES, *, timeout_s: float = 5.0, max_messages: int = 100_000
) -> set[str]:
    """Task ids of messages waiting (or, on Redis, fetched and not yet acknowledged).

    Raises :class:`BrokerUnavailable` when the broker cannot be read or is too large to scan:
    a caller must then not conclude that a message is missing.
    """
    kind = broker_kind(broker_url)
    url, _ = broker_connection_params(broker_url)
    ids: set[str] = set()
    try:
        if kind == "redis":
            with _redis(url, timeout_s) as client:
                for q in queues:
                    for sfx in _REDIS_PRIORITY_SUFFIXES:
                        if int(client.llen(q + sfx)) > max_messages:
                            raise BrokerUnavailable(f"queue {q} longer than {max_messages}: not scanned")
                        ids.update(t for p in client.lrange(q + sfx, 0, -1) if (t := _task_id(p)))
                ids.update(t for p in client.hvals(_REDIS_UNACKED) if (t := _task_id(p)))
            return ids
        if kind == "sqlite":
            rows = _sqlite_rows(
                url,
                "SELECT m.payload FROM kombu_message m JOIN kombu_queue q ON q.id = m.queue_id "
                "WHERE m.visible = 1 LIMIT :n",
                {"n": max_messages + 1},
            )
            if len(rows) > max_messages:
                raise BrokerUnavailable(f"more than {max_messages} waiting messages: not scanned")
            return {t for (payload,) in rows if (t := _task_id(payload))}
    except BrokerUnavailable:
        raise
    except (redis.RedisError, OSError) as exc:
        raise BrokerUnavailable(f"broker unreachable: {exc}") from exc
    except Exception as exc:
        raise BrokerUnavailable(f"broker database unreadable: {type(exc).__name__}: {exc}") from exc
    raise BrokerUnavailable(f"cannot look into a {broker_url.split(':', 1)[0]} broker")


def ping_workers(celery_app: Any, *, timeout_s: float = 1.0) -> dict[str, bool] | None:
    """Celery's broadcast ping: worker name → answered. None when the broker carries no broadcast.

    Only Redis carries broadcasts between processes (kombu's SQLite transport keeps fanout
    in-process), so on the embedded broker this is None and the job store's recent workers are
    the answer instead.
    """
    transport = celery_app.conf.broker_transport
    if transport is not None or broker_kind(str(celery_app.conf.broker_url)) != "redis":
        return None
    try:
        replies = celery_app.control.inspect(timeout=timeout_s).ping() or {}
    except Exception as exc:  # broker down: the readiness check reports it
        logger.warning("worker ping failed: %s", exc)
        return None
    return {str(name): bool(reply) for name, reply in replies.items()}
