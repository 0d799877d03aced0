"""The sweeper against a real SQLite job store and the embedded SQLite broker (messages read back)."""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dicom_node.contracts import JobState
from dicom_node.identity import delivery_id_for
from dicom_node.jobs import DeliveryState, JobStore
from tests.unit.dicom_node.jobs.builders import make_bundle, make_job
from tests.unit.worker.admin.conftest import broker_messages, settings_for
from worker.context import WorkerContext, worker_identity
from worker.node.requeue import send_pipeline_task
from worker.node.sweeper import sweep
from worker.tasks.app import make_celery

LATER = datetime.now(UTC) + timedelta(hours=2)  # past the 900 s task time limit


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[WorkerContext]:
    settings = settings_for(tmp_path)
    settings = settings.model_copy(update={"queue": settings.queue.model_copy(update={"max_retries": 2})})
    context = WorkerContext(settings=settings, store=JobStore.open(settings.database_url))
    yield context
    context.close()


def dead_local_worker() -> str:
    """The identity a worker process on this host had, after it exited."""
    process = subprocess.Popen(["true"])
    process.wait()
    return f"{socket.gethostname()}:{process.pid}:1"


def fetch_all_messages(ctx: WorkerContext) -> None:
    """What kombu's SQLite transport does when a worker fetches: the message turns invisible for good."""
    with contextlib.closing(sqlite3.connect(ctx.settings.storage.root / "broker.sqlite")) as conn:
        conn.execute("UPDATE kombu_message SET visible = 0")
        conn.commit()


def test_running_job_of_a_dead_local_worker_is_requeued_at_once(ctx: WorkerContext) -> None:
    app = make_celery(ctx.settings, include=[])
    job = make_job()
    ctx.store.create_job(job)
    assert ctx.store.claim(job.job_id, dead_local_worker())
    alive = make_job(pipeline="alive")
    ctx.store.create_job(alive)
    assert ctx.store.claim(alive.job_id, worker_identity())  # this very process: alive

    report = sweep(ctx, app)
    assert report.requeued == [job.job_id] and report.problems == []
    assert ctx.store.require_job(job.job_id).state == JobState.QUEUED
    assert ctx.store.require_job(alive.job_id).state == JobState.RUNNING
    assert "requeued by sweeper" in ctx.store.events(job.job_id)[-1].reason
    assert "process ended" in ctx.store.events(job.job_id)[-1].reason
    (message,) = broker_messages(ctx.settings)
    assert message["id"] == job.job_id and message["task"] == "worker.tasks.run_pipeline"

    assert sweep(ctx, app).changed == 0  # the message is waiting: nothing more to do


def test_other_hosts_only_after_the_time_limit_and_failed_after_max_attempts(ctx: WorkerContext) -> None:
    app = make_celery(ctx.settings, include=[])
    job = make_job()
    ctx.store.create_job(job)
    assert ctx.store.claim(job.job_id, "gpu-host-2:4242:99")
    assert sweep(ctx, app).changed == 0  # another host, recent: may well be running

    report = sweep(ctx, app, now=LATER)
    assert report.requeued == [job.job_id]
    assert "silent for" in ctx.store.events(job.job_id)[-1].reason

    for _ in range(2):  # the job kills its worker every time
        assert ctx.store.claim(job.job_id, "gpu-host-2:4242:99")
        if ctx.store.require_job(job.job_id).attempts > ctx.settings.queue.max_retries:
            break
        sweep(ctx, app, now=LATER)
    report = sweep(ctx, app, now=LATER)
    assert report.failed == [job.job_id]
    record = ctx.store.require_job(job.job_id)
    assert record.state == JobState.FAILED and "WorkerLost" in record.reason and "3 times" in record.reason


def test_lost_queued_message_is_resent_but_a_waiting_one_is_not(ctx: WorkerContext) -> None:
    app = make_celery(ctx.settings, include=[])
    lost = make_job(pipeline="lost")
    waiting = make_job(pipeline="waiting")
    for job in (lost, waiting):
        ctx.store.create_job(job)
    send_pipeline_task(app, waiting)

    assert sweep(ctx, app).changed == 0  # both queued just now
    report = sweep(ctx, app, now=LATER)
    assert report.resent_queued == [lost.job_id]
    assert sorted(m["id"] for m in broker_messages(ctx.settings)) == sorted([lost.job_id, waiting.job_id])
    event = ctx.store.events(lost.job_id)[-1]
    assert event.from_state == event.to_state == JobState.QUEUED and "re-sent" in event.reason
    assert sweep(ctx, app, now=LATER).changed == 0  # both messages are on the broker now


def test_stuck_delivery_is_resent_then_dead(ctx: WorkerContext) -> None:
    app = make_celery(ctx.settings, include=[])
    job = make_job(destinations=("pacs",))
    store = ctx.store
    store.create_job(job)
    store.claim(job.job_id, worker_identity())
    store.record_result(job.job_id, make_bundle(job))
    store.transition(job.job_id, JobState.DELIVERING, reason="deliver")
    store.start_delivery(job.job_id, "pacs")  # the delivery worker died here

    report = sweep(ctx, app, now=LATER)
    assert report.resent_deliveries == [(job.job_id, "pacs")]
    assert store.get_delivery(job.job_id, "pacs").state == DeliveryState.PENDING  # type: ignore[union-attr]
    (message,) = broker_messages(ctx.settings)
    assert message["id"] == delivery_id_for(job.job_id, "pacs") and message["args"] == [job.job_id, "pacs"]

    fetch_all_messages(ctx)  # a delivery worker fetched the message...
    for _ in range(3):
        store.start_delivery(job.job_id, "pacs")  # ...and each attempt died again
    report = sweep(ctx, app, now=LATER + timedelta(hours=1))
    assert report.dead_deliveries == [(job.job_id, "pacs")]
    assert store.require_job(job.job_id).state == JobState.DEAD
