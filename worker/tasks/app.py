"""The node's Celery application: queues, routing by task name, reliability settings.

``make_celery(settings)`` builds the app every process uses (workers, the SCP's producer, the CLI):

Queues and routes (by task *name*, so producers never import the tasks)::

    worker.tasks.route_study   → routing
    worker.tasks.run_pipeline  → inference        (job priority "stat" → inference-stat)
    worker.tasks.deliver       → delivery

Reliability: JSON only; ``task_acks_late`` + ``task_reject_on_worker_lost`` (a task whose worker
dies is delivered again, never lost silently), ``worker_prefetch_multiplier=1`` (a long inference
does not hold other messages hostage), explicit hard/soft time limits from settings, and on Redis
a ``visibility_timeout`` above the hard limit (settings refuse anything else), so a task that is
still running is never handed to a second worker. Task ids are the job id / delivery id, and the
job store's ``claim`` refuses a second run, so a redelivery never computes a job twice.

No result backend by default: the job store is the source of truth for outcomes. There is no
dead-letter *queue* either: a job whose retries are exhausted is put in state DEAD in the job
store (``worker.tasks.outcomes``), listed by ``ctnode jobs dead`` and requeued by ``ctnode jobs retry``;
this works the same on every broker.

Brokers:

- **Redis** (production, several machines): ``redis://host:6379/0``. Unacknowledged messages of a
  worker that died are restored to their queue by the next worker once ``visibility_timeout`` has
  passed (tested with kill -9 in tests/integration/test_celery_brokers.py).
- **SQLite** (embedded default, one machine): kombu's SQLAlchemy transport, ``sqla+sqlite:///…``.
  Polled: the interval is set to ``SQLITE_POLLING_INTERVAL_S`` (kombu's default 1 s makes every hop
  of the demo a second slower). Its limits, measured here with Celery/kombu 5.7: the transport
  marks a message invisible when a worker fetches it and never restores it if that worker is
  killed (-9, OOM, power loss): acks_late cannot help. A graceful stop (SIGTERM) does give
  unacknowledged messages back. Recovery after a crash goes through the job store: the job is
  left RUNNING; ``JobStore.stale_running(older_than_s=task_time_limit_s)`` finds it and
  ``ctnode jobs retry`` requeues it. Task events are sent on both brokers, but only Redis carries
  them to another process: use Redis for Flower.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from celery import Celery
from kombu.entity import Exchange, Queue
from kombu.transport import sqlalchemy as kombu_sqlalchemy
from sqlalchemy import create_engine, event, inspect, text

from dicom_node.constants import (
    QUEUE_DELIVERY,
    QUEUE_INFERENCE,
    QUEUE_INFERENCE_STAT,
    QUEUE_ROUTING,
    QUEUES,
    TASK_DELIVER,
    TASK_ROUTE_STUDY,
    TASK_RUN_PIPELINE,
)
from dicom_node.settings import Settings

SQLITE_POLLING_INTERVAL_S = 0.1
_SQLITE_BUSY_TIMEOUT_S = 30.0


def queue_for(
    task_name: str, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None
) -> str | None:
    """The queue a task goes to, from its name (and, for run_pipeline, the job's priority).

    ``run_pipeline(job)`` takes ``Job.model_dump(mode="json")``: a job with priority "stat" goes to
    the STAT lane, so a warm GPU worker on ``inference-stat`` takes it before routine work.
    Unknown names return None (Celery's default queue, set to ``routing``).
    """
    if task_name == TASK_ROUTE_STUDY:
        return QUEUE_ROUTING
    if task_name == TASK_DELIVER:
        return QUEUE_DELIVERY
    if task_name == TASK_RUN_PIPELINE:
        job = (args[0] if args else None) or (kwargs or {}).get("job")
        if isinstance(job, Mapping) and job.get("priority") == "stat":
            return QUEUE_INFERENCE_STAT
        return QUEUE_INFERENCE
    return None


def route_task(
    name: str, args: Sequence[Any], kwargs: Mapping[str, Any], options: Mapping[str, Any], *_: Any, **__: Any
) -> dict[str, str] | None:
    """Celery router (``task_routes``): see :func:`queue_for`. An explicit ``queue=`` wins."""
    queue = queue_for(name, args, kwargs)
    return {"queue": queue} if queue is not None else None


class _SQLiteBrokerChannel(kombu_sqlalchemy.Channel):
    """kombu's SQLAlchemy channel, with an engine fit for several processes on one SQLite file.

    kombu hands *all* transport options to ``create_engine``, so the polling interval cannot be
    set through them (create_engine rejects it); this channel builds the engine itself: busy
    timeout (a second process waits for the lock instead of failing) and WAL (readers do not
    block the writer).
    """

    def _engine_from_config(self) -> Any:
        url = self.connection.client.hostname
        engine = create_engine(url, connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_S})

        @event.listens_for(engine, "connect")
        def _wal(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute(f"PRAGMA busy_timeout={int(_SQLITE_BUSY_TIMEOUT_S * 1000)}")
            finally:
                cursor.close()

        return engine


class SQLiteBrokerTransport(kombu_sqlalchemy.Transport):
    """The embedded broker: kombu's SQLAlchemy transport, polled every 0.1 s."""

    Channel = _SQLiteBrokerChannel
    polling_interval = SQLITE_POLLING_INTERVAL_S


SQLITE_BROKER_TRANSPORT = f"{__name__}:SQLiteBrokerTransport"


def broker_connection_params(broker_url: str) -> tuple[str, str | None]:
    """(URL, transport) for Celery: ``sqla+sqlite://`` URLs use :class:`SQLiteBrokerTransport`.

    The stored messages are kombu's usual ``kombu_message``/``kombu_queue`` tables, so a producer
    using the plain ``sqla+sqlite://`` URL (e.g. the Orthanc plugin) talks to the same queues.
    """
    if broker_url.startswith("sqla+sqlite:"):
        return broker_url.removeprefix("sqla+"), SQLITE_BROKER_TRANSPORT
    return broker_url, None


def prune_sqlite_broker(broker_url: str, *, older_than_s: float = 86400.0) -> int:
    """Delete messages fetched more than ``older_than_s`` ago from the embedded broker; return how many.

    kombu's SQLAlchemy transport never deletes a message: a fetched one is only marked invisible
    (acknowledged or not: it is never made visible again, see the module docstring), so the table
    grows with every task. Deleting invisible rows is therefore safe; visible (waiting) messages
    are kept. A no-op for other brokers. Meant for a periodic housekeeping call (e.g. the sweeper).
    """
    url, transport = broker_connection_params(broker_url)
    if transport != SQLITE_BROKER_TRANSPORT:
        return 0
    # kombu stamps its "timestamp" column with naive local time (datetime.now): compare in the same terms.
    cutoff = datetime.now() - timedelta(seconds=older_than_s)
    engine = create_engine(url, connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_S})
    try:
        with engine.begin() as conn:
            if not inspect(conn).has_table("kombu_message"):
                return 0
            result = conn.execute(
                text("DELETE FROM kombu_message WHERE visible = 0 AND timestamp < :cutoff"),
                {"cutoff": cutoff},
            )
            return int(result.rowcount)
    finally:
        engine.dispose()


def make_celery(
    settings: Settings,
    *,
    result_backend: str | None = None,
    include: Sequence[str] | None = None,
    main: str = "ctnode",
) -> Celery:
    """The configured app for ``settings`` (broker from ``settings.broker_url``).

    ``result_backend``: None (default) disables results; pass a URL to enable them.
    ``include``: task modules to import in workers (default none: a worker registers the node's
    tasks explicitly, :func:`worker.tasks.shells.register`, with its runtime).
    """
    queue = settings.queue
    broker_url, transport = broker_connection_params(settings.broker_url)
    is_redis = broker_url.startswith(("redis://", "rediss://", "sentinel://"))
    app = Celery(main, include=list(include or ()), set_as_current=False)

    transport_options: dict[str, Any] = {}
    if is_redis:
        transport_options = {
            # Above the hard time limit (checked by settings): a running task is never re-sent.
            "visibility_timeout": queue.visibility_timeout_s,
            # How often a worker looks for messages of dead workers past the visibility timeout.
            "unacked_restore_interval": max(1, min(10, queue.visibility_timeout_s // 10)),
            # ...scanning on every sweep (kombu's default scans every 10th: 100 s between scans)
            "unacked_restore_throttle": 1,
            "socket_connect_timeout": 5,
            "health_check_interval": 30,
        }
    elif transport == SQLITE_BROKER_TRANSPORT:
        transport_options = {"polling_interval": SQLITE_POLLING_INTERVAL_S}

    app.conf.update(
        broker_url=broker_url,
        broker_transport=transport,
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # With acks_late, a lost broker connection cancels running tasks so that their messages,
        # redelivered, are not run twice (Celery 5.1+ warns without this).
        worker_cancel_long_running_tasks_on_connection_loss=True,
        task_time_limit=queue.task_time_limit_s,
        task_soft_time_limit=queue.task_soft_time_limit_s,
        # One direct exchange per queue, named like it: Celery's own convention for a queue
        # given by name, so a plain producer (the Orthanc plugin: send_task(..., queue="routing"))
        # and these workers agree on the binding.
        task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES],
        task_default_queue=QUEUE_ROUTING,
        task_default_exchange=QUEUE_ROUTING,
        task_default_routing_key=QUEUE_ROUTING,
        task_routes=(route_task,),
        task_create_missing_queues=True,
        result_backend=result_backend,
        task_ignore_result=result_backend is None,
        task_track_started=result_backend is not None,
        # Task events for Flower / `celery events`. On the SQLite broker they are accepted but do
        # not reach other processes (kombu's virtual fanout is in-process): use Redis for Flower.
        worker_send_task_events=True,
        task_send_sent_event=True,
        # Keep the node's logging (with the PHI filter) instead of Celery's root handler.
        worker_hijack_root_logger=False,
        enable_utc=True,
        timezone="UTC",
    )
    return app
