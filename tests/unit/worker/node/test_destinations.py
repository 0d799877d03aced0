"""The destination monitor against a real SQLite job store and the embedded broker; the health
check's answer comes from a stand-in for the network peer (the real C-ECHO is in the e2e test)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dicom_node.contracts import DeliveryReport, JobState
from dicom_node.delivery.destination import HealthResult
from dicom_node.identity import delivery_id_for
from dicom_node.jobs import DeliveryState, JobStore
from dicom_node.settings import DestinationBase
from tests.unit.dicom_node.jobs.builders import make_bundle, make_job
from tests.unit.worker.admin.conftest import broker_messages, settings_for
from worker.context import WorkerContext, worker_identity
from worker.node.destinations import DestinationMonitor, destination_overview
from worker.tasks.app import make_celery


class Peer:
    """What the destination answers to a health check, switchable by the test."""

    def __init__(self) -> None:
        self.up = False
        self.calls: list[str] = []

    def __call__(self, name: str, dest: DestinationBase) -> HealthResult:
        self.calls.append(name)
        if self.up:
            return HealthResult(True, "C-ECHO to PACS@127.0.0.1:11199: 0x0000", 0.01, 0)
        return HealthResult(False, "C-ECHO to PACS@127.0.0.1:11199: connection refused", 0.01)


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[WorkerContext]:
    settings = settings_for(tmp_path)
    context = WorkerContext(settings=settings, store=JobStore.open(settings.database_url))
    yield context
    context.close()


def waiting_delivery(ctx: WorkerContext, *, next_attempt_in_s: float = 600.0) -> str:
    """A job whose delivery to "pacs" failed and used up its quick retries."""
    store = ctx.store
    job = make_job(destinations=("pacs",))
    store.create_job(job)
    store.claim(job.job_id, worker_identity())
    store.record_result(job.job_id, make_bundle(job))
    store.transition(job.job_id, JobState.DELIVERING, reason="deliver")
    store.start_delivery(job.job_id, "pacs")
    report = DeliveryReport(job_id=job.job_id, destination="pacs", finished_at=datetime.now(UTC))
    store.record_delivery(report, state=DeliveryState.RETRYING, error="connection refused")
    store.set_delivery_state(
        job.job_id,
        "pacs",
        DeliveryState.WAITING,
        reason="quick retries used up",
        next_attempt_at=datetime.now(UTC) + timedelta(seconds=next_attempt_in_s),
    )
    return job.job_id


def test_a_waiting_delivery_resumes_the_moment_the_destination_answers(ctx: WorkerContext) -> None:
    job_id = waiting_delivery(ctx)
    peer = Peer()
    monitor = DestinationMonitor(ctx, make_celery(ctx.settings, include=[]), prober=peer)

    report = monitor.run()
    assert peer.calls == ["pacs"] and report.resumed == []
    assert ctx.store.require_delivery(job_id, "pacs").state == DeliveryState.WAITING
    assert ctx.store.destination_statuses()["pacs"].up is False
    assert broker_messages(ctx.settings) == []

    peer.up = True
    report = monitor.run()
    assert report.resumed == [(job_id, "pacs")]
    delivery = ctx.store.require_delivery(job_id, "pacs")
    assert delivery.state == DeliveryState.PENDING
    assert delivery.first_failed_at is not None  # the window keeps counting until delivered
    (message,) = broker_messages(ctx.settings)
    assert message["id"] == delivery_id_for(job_id, "pacs") and message["queue"] == "delivery"
    assert "answers its health check again" in ctx.store.events(job_id)[-1].reason
    assert monitor.run().resumed == []  # resumed once, not on every pass


def test_a_destination_that_answers_but_still_fails_gets_slow_attempts_not_a_loop(ctx: WorkerContext) -> None:
    peer = Peer()
    peer.up = True
    monitor = DestinationMonitor(ctx, make_celery(ctx.settings, include=[]), prober=peer)
    monitor.run()  # the destination was up before the delivery started waiting
    job_id = waiting_delivery(ctx, next_attempt_in_s=600.0)
    assert monitor.run().resumed == []
    report = monitor.run(now=datetime.now(UTC) + timedelta(seconds=601))
    assert report.resumed == [(job_id, "pacs")]
    assert "slow attempt" in ctx.store.events(job_id)[-1].reason


def test_the_retry_window_ends_in_a_dead_letter(ctx: WorkerContext) -> None:
    job_id = waiting_delivery(ctx)
    monitor = DestinationMonitor(ctx, make_celery(ctx.settings, include=[]), prober=Peer())
    later = datetime.now(UTC) + timedelta(seconds=ctx.settings.queue.delivery_retry_window_s + 1)
    report = monitor.run(now=later)
    assert report.dead == [(job_id, "pacs")]
    assert ctx.store.require_delivery(job_id, "pacs").state == DeliveryState.DEAD
    assert ctx.store.require_job(job_id).state == JobState.DEAD
    assert any("retry window over" in e.reason for e in ctx.store.events(job_id))


def test_overview_says_what_waits_for_each_destination(ctx: WorkerContext) -> None:
    (row,) = destination_overview(ctx.store, ctx.settings)
    assert (row["name"], row["state"], row["deliveries_waiting"]) == ("pacs", "unknown", 0)
    waiting_delivery(ctx)
    DestinationMonitor(ctx, make_celery(ctx.settings, include=[]), prober=Peer()).run()
    (row,) = destination_overview(ctx.store, ctx.settings)
    assert (row["state"], row["deliveries_waiting"]) == ("down", 1)
    assert "connection refused" in row["detail"]
    assert row["oldest_failure"] is not None and row["retry_window_ends"] is not None


def test_a_withdrawal_whose_message_was_lost_is_sent_again(ctx: WorkerContext) -> None:
    from dicom_node.identity import withdrawal_id_for

    job_id = waiting_delivery(ctx)
    ctx.store.plan_withdrawal(job_id, "pacs", by_job_id=job_id, sop_instance_uids=["1.2.3"])
    monitor = DestinationMonitor(ctx, make_celery(ctx.settings, include=[]), prober=Peer())
    assert (job_id, "pacs") not in monitor.run().resumed  # just planned: its message is on its way
    report = monitor.run(now=datetime.now(UTC) + timedelta(hours=1))
    assert (job_id, "pacs") in report.resumed
    sent = [m for m in broker_messages(ctx.settings) if m["task"] == "worker.tasks.withdraw"]
    assert [m["id"] for m in sent] == [withdrawal_id_for(job_id, "pacs")]
