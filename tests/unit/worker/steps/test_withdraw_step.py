"""Planning withdrawals of superseded results (real SQLite job store): only what a destination
holds, the whole chain of superseded jobs, once, and "unsupported" when the destination's
settings say not to. (Sending the rejection note and Orthanc's delete run against real peers in
tests/e2e/test_split_study.py and tests/integration/test_delivery_orthanc.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dicom_node.contracts import DeliveryReport, JobState
from dicom_node.jobs import DeliveryState, JobStore
from dicom_node.jobs.states import WithdrawalState
from tests.unit.dicom_node.jobs.builders import make_bundle, make_job
from tests.unit.worker.admin.conftest import settings_for
from worker.context import WorkerContext
from worker.steps.withdraw import plan_withdrawals, withdraw_at


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[WorkerContext]:
    settings = settings_for(tmp_path)
    context = WorkerContext(settings=settings, store=JobStore.open(settings.database_url))
    yield context
    context.close()


def _delivered(ctx: WorkerContext, n: int, *, to: str | None = "pacs") -> str:
    store = ctx.store
    job = make_job(destinations=("pacs",), sop_uids=(f"1.2.3.{n}",))
    store.create_job(job)
    store.claim(job.job_id, "w")
    store.record_result(job.job_id, make_bundle(job))
    store.transition(job.job_id, JobState.DELIVERING, reason="deliver")
    if to is not None:
        store.start_delivery(job.job_id, to)
        uids = tuple(f.sop_instance_uid for f in make_bundle(job).files)
        report = DeliveryReport(
            job_id=job.job_id, destination=to, delivered_sop_instance_uids=uids, finished_at=datetime.now(UTC)
        )
        store.record_delivery(report, state=DeliveryState.DELIVERED)
        store.settle_deliveries(job.job_id)
    return job.job_id


def test_the_chain_of_superseded_jobs_is_withdrawn_once_where_delivered(ctx: WorkerContext) -> None:
    store = ctx.store
    first = _delivered(ctx, 1)  # delivered to pacs
    second = make_job(destinations=("pacs",), sop_uids=("1.2.3.2",))  # superseded before it delivered
    store.create_job(second)
    store.mark_superseded([first], by_job_id=second.job_id, reason="late instances")
    third = _delivered(ctx, 3)
    store.mark_superseded([second.job_id], by_job_id=third, reason="late instances")

    assert [r.job_id for r in store.superseded_by_chain(third)] == [first, second.job_id]
    assert plan_withdrawals(ctx, third, "pacs") == [first]  # the second never reached pacs
    withdrawal = store.get_withdrawal(first, "pacs")
    assert withdrawal is not None and withdrawal.state == WithdrawalState.PENDING
    assert withdrawal.by_job_id == third and len(withdrawal.sop_instance_uids) == 3
    assert plan_withdrawals(ctx, third, "pacs") == []  # planned once
    assert plan_withdrawals(ctx, third, "archive") == []  # nothing of the first there
    assert "to be withdrawn" in store.events(first)[-1].reason


def test_a_destination_that_keeps_superseded_results_is_recorded(ctx: WorkerContext) -> None:
    pacs = ctx.settings.destinations["pacs"].model_copy(update={"withdraw_superseded": False})
    ctx.settings = ctx.settings.model_copy(update={"destinations": {"pacs": pacs}})
    first = _delivered(ctx, 1)
    second = _delivered(ctx, 2)
    ctx.store.mark_superseded([first], by_job_id=second, reason="re-routed")
    assert plan_withdrawals(ctx, second, "pacs") == []
    withdrawal = ctx.store.get_withdrawal(first, "pacs")
    assert withdrawal is not None and withdrawal.state == WithdrawalState.UNSUPPORTED
    assert "withdraw_superseded: false" in withdrawal.detail
    assert "withdraw_superseded: false" in ctx.store.events(second)[-1].reason  # both trails say it
    assert withdraw_at(ctx, first, "pacs").state == WithdrawalState.UNSUPPORTED  # a late message: no-op
