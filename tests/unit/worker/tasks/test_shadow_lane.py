"""Shadow jobs never hold back real work: their own lane, and a worker that also takes the real
lanes lets them step aside while a real job is queued (real SQLite job store and broker)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dicom_node.contracts import JobState
from dicom_node.jobs import JobStore
from tests.unit.dicom_node.jobs.builders import make_job
from tests.unit.worker.admin.conftest import broker_messages, settings_for
from worker.context import WorkerContext
from worker.tasks.app import make_celery
from worker.tasks.runtime import WorkerRuntime
from worker.tasks.shells import run_pipeline_task


class _Task:
    """The bound task's ``app`` and ``request`` (a stand-in for Celery's task object, not its broker)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.request = type("Request", (), {"retries": 0})()


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[WorkerContext]:
    settings = settings_for(tmp_path)
    context = WorkerContext(settings=settings, store=JobStore.open(settings.database_url))
    yield context
    context.close()


def test_a_shadow_job_steps_aside_while_a_real_job_waits(ctx: WorkerContext) -> None:
    app = make_celery(ctx.settings, include=[])
    shadow = make_job(destinations=(), rule_name="shadow-vessels").model_copy(update={"shadow": True})
    real = make_job(destinations=("pacs",), sop_uids=("1.2.3.9",))
    ctx.store.create_job(shadow)
    ctx.store.create_job(real)

    out = run_pipeline_task(_Task(app), ctx, shadow.model_dump(mode="json"), defer_shadow=True)  # type: ignore[arg-type]
    assert out == {"state": "deferred", "real_work_waiting": 1}
    assert ctx.store.require_job(shadow.job_id).state == JobState.QUEUED  # not claimed, not run
    (message,) = broker_messages(ctx.settings)
    assert message["queue"] == "inference-shadow" and message["id"] == shadow.job_id
    assert message.get("eta")  # it looks again a few seconds later


def test_a_worker_on_the_shadow_lane_alone_does_not_defer() -> None:
    from dicom_node.settings import Settings

    settings = Settings()
    assert WorkerRuntime(settings).takes_real_inference  # the default: every queue
    assert not WorkerRuntime(settings, queues=["inference-shadow"]).takes_real_inference
    assert WorkerRuntime(settings, queues=["inference-shadow", "inference"]).takes_real_inference


def test_real_work_waiting_counts_what_a_worker_could_take_now(ctx: WorkerContext) -> None:
    from datetime import UTC, datetime

    from dicom_node.contracts import DeliveryReport
    from dicom_node.jobs import DeliveryState
    from tests.unit.dicom_node.jobs.builders import make_bundle

    store = ctx.store
    shadow = make_job(destinations=(), rule_name="shadow-vessels").model_copy(update={"shadow": True})
    store.create_job(shadow)
    assert store.real_work_waiting() == 0  # shadow work does not count
    real = make_job(destinations=("pacs",), sop_uids=("1.2.3.9",))
    store.create_job(real)
    assert store.real_work_waiting() == 1  # queued
    store.claim(real.job_id, "w")
    assert store.real_work_waiting() == 0  # running elsewhere: not waiting for this worker
    store.record_result(real.job_id, make_bundle(real))
    assert store.real_work_waiting() == 1  # encoded: its delivery is about to be queued
    store.transition(real.job_id, JobState.DELIVERING, reason="deliver")
    store.start_delivery(real.job_id, "pacs")
    assert store.real_work_waiting() == 1  # a delivery under way
    report = DeliveryReport(job_id=real.job_id, destination="pacs", finished_at=datetime.now(UTC))
    store.record_delivery(report, state=DeliveryState.RETRYING, error="PACS down")
    store.set_delivery_state(real.job_id, "pacs", DeliveryState.WAITING, reason="PACS down")
    assert store.real_work_waiting() == 0  # waiting on a destination that is down: shadow may run
