"""Job store behaviour on SQLite. tests/integration/test_jobstore_postgres.py runs these same tests
against a real PostgreSQL by overriding the ``store_url``/``store`` fixtures."""

from __future__ import annotations

import multiprocessing
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from dicom_node.contracts import (
    CompletionReason,
    DeliveryReport,
    JobState,
    StudySource,
    StudyStable,
)
from dicom_node.identity import delivery_id_for
from dicom_node.jobs import DeliveryState, InvalidTransition, JobNotFound, JobStore
from dicom_node.jobs.migrate import current_revision, head_revision
from dicom_node.jobs.tables import Base
from tests.unit.dicom_node.jobs.builders import STUDY_UID, make_bundle, make_job

# -- schema ---------------------------------------------------------------------------------------


def test_open_migrates_to_head_and_schema_matches_the_orm(store: JobStore) -> None:
    assert current_revision(store.engine) == head_revision()
    with store.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diffs == []


def test_reopening_is_a_no_op_and_keeps_data(store_url: str) -> None:
    job = make_job()
    with JobStore.open(store_url) as first:
        first.create_job(job)
    with JobStore.open(store_url) as again:
        record = again.get_job(job.job_id)
    assert record is not None and record.job == job


def _open_and_create(url: str, barrier: Any, queue: Any) -> None:
    try:
        barrier.wait(timeout=30)
        with JobStore.open(url) as store:
            _, created = store.create_job(make_job())
        queue.put(("ok", created))
    except Exception as exc:  # report to the parent: assertion happens there
        queue.put(("error", repr(exc)))


def test_two_processes_opening_a_new_store_at_once(store_url: str) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(3)
    queue: multiprocessing.Queue = ctx.Queue()
    procs = [ctx.Process(target=_open_and_create, args=(store_url, barrier, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert all(kind == "ok" for kind, _ in results), results
    assert sorted(created for _, created in results) == [False, False, True]


# -- idempotent create ----------------------------------------------------------------------------


def test_create_job_is_idempotent(store: JobStore) -> None:
    job = make_job()
    first, created = store.create_job(job)
    second, created_again = store.create_job(job)
    assert created is True and created_again is False
    assert first == second
    assert first.state == JobState.QUEUED
    assert first.job == job
    events = store.events(job.job_id)
    assert [(e.from_state, e.to_state) for e in events] == [(None, JobState.QUEUED)]


def test_create_job_from_many_threads_makes_one_row(store: JobStore) -> None:
    job = make_job()
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: store.create_job(job)[1], range(16)))
    assert results.count(True) == 1
    assert len(store.list_jobs()) == 1
    assert len(store.events(job.job_id)) == 1


def test_create_skipped_and_refuse_other_initial_states(store: JobStore) -> None:
    record, _ = store.create_job(make_job(), state=JobState.SKIPPED, reason="late series ignored")
    assert record.state == JobState.SKIPPED and record.reason == "late series ignored"
    with pytest.raises(Exception, match="queued or skipped"):
        store.create_job(make_job(pipeline="other"), state=JobState.RUNNING)


# -- transitions and audit ------------------------------------------------------------------------


def test_transitions_are_audited_with_time_and_reason(store: JobStore) -> None:
    job = make_job()
    store.create_job(job)
    before = datetime.now(UTC)
    assert store.claim(job.job_id, "w1")
    store.record_result(job.job_id, make_bundle(job), timings_s={"inference": 1.5})
    store.transition(job.job_id, JobState.DELIVERING, reason="sending to PACS", detail={"n": 3})
    detail = store.job_detail(job.job_id)
    assert detail is not None
    moves = [(e.from_state, e.to_state) for e in detail.events]
    assert moves == [
        (None, JobState.QUEUED),
        (JobState.QUEUED, JobState.RUNNING),
        (JobState.RUNNING, JobState.ENCODED),
        (JobState.ENCODED, JobState.DELIVERING),
    ]
    last = detail.events[-1]
    assert last.reason == "sending to PACS" and last.detail == {"n": 3}
    assert all(e.at.tzinfo is not None for e in detail.events)
    assert before - timedelta(seconds=1) <= last.at <= datetime.now(UTC) + timedelta(seconds=1)
    assert [e.at for e in detail.events] == sorted(e.at for e in detail.events)
    assert detail.job.state == JobState.DELIVERING and detail.job.reason == "sending to PACS"
    assert detail.job.result_bundle == make_bundle(job)
    assert detail.job.timings_s == {"inference": 1.5}


def test_forbidden_transition_raises_and_changes_nothing(store: JobStore) -> None:
    job = make_job()
    store.create_job(job)
    with pytest.raises(InvalidTransition):
        store.transition(job.job_id, JobState.DELIVERED, reason="skip ahead")
    record = store.get_job(job.job_id)
    assert record is not None and record.state == JobState.QUEUED
    assert len(store.events(job.job_id)) == 1


def test_same_state_transition_is_a_no_op(store: JobStore) -> None:
    job = make_job()
    store.create_job(job)
    store.transition(job.job_id, JobState.FAILED, reason="bad input")
    store.transition(job.job_id, JobState.FAILED, reason="reported twice")
    events = store.events(job.job_id)
    assert [e.reason for e in events][-1] == "bad input"
    assert len(events) == 2


def test_expect_from_narrows_the_start(store: JobStore) -> None:
    job = make_job()
    store.create_job(job)
    with pytest.raises(InvalidTransition):
        # queued → dead is allowed by the machine, but not from the states this caller expects
        store.transition(job.job_id, JobState.DEAD, reason="x", expect_from={JobState.RUNNING})


def test_unknown_job(store: JobStore) -> None:
    with pytest.raises(JobNotFound):
        store.transition("00000000-0000-0000-0000-000000000000", JobState.RUNNING, reason="x")
    assert store.get_job("00000000-0000-0000-0000-000000000000") is None
    assert store.job_detail("00000000-0000-0000-0000-000000000000") is None


def test_concurrent_transitions_each_audited_once(store: JobStore) -> None:
    job = make_job()
    store.create_job(job)
    store.claim(job.job_id, "w")
    # Many threads race to report the same outcome: one event, never an error.
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda i: store.transition(job.job_id, JobState.FAILED, reason=f"r{i}"), range(12)))
    to_failed = [e for e in store.events(job.job_id) if e.to_state == JobState.FAILED]
    assert len(to_failed) == 1


# -- claim ----------------------------------------------------------------------------------------


def test_claim_threads_exactly_one_wins(store: JobStore) -> None:
    job = make_job()
    store.create_job(job)
    start = threading.Barrier(8)

    def attempt(i: int) -> bool:
        start.wait()
        return store.claim(job.job_id, f"thread-{i}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        wins = list(pool.map(attempt, range(8)))
    assert wins.count(True) == 1
    record = store.get_job(job.job_id)
    assert record is not None
    assert record.state == JobState.RUNNING and record.attempts == 1
    assert record.worker == f"thread-{wins.index(True)}"


def _claim_in_process(
    url: str,
    job_id: str,
    name: str,
    barrier: multiprocessing.synchronize.Barrier,
    queue: multiprocessing.Queue,
) -> None:
    try:
        with JobStore.open(url, migrate=False) as store:
            barrier.wait(timeout=30)
            queue.put((name, store.claim(job_id, name)))
    except Exception as exc:
        queue.put((name, repr(exc)))


def test_claim_processes_exactly_one_wins(store_url: str) -> None:
    job = make_job()
    with JobStore.open(store_url) as store:
        store.create_job(job)
    ctx = multiprocessing.get_context("fork")
    n = 4
    barrier = ctx.Barrier(n)
    queue: multiprocessing.Queue = ctx.Queue()
    procs = [
        ctx.Process(target=_claim_in_process, args=(store_url, job.job_id, f"proc-{i}", barrier, queue))
        for i in range(n)
    ]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    assert sorted(results.values(), key=str) == [False, False, False, True], results
    winner = next(name for name, won in results.items() if won is True)
    with JobStore.open(store_url) as store:
        record = store.get_job(job.job_id)
    assert record is not None and record.worker == winner and record.attempts == 1


def test_delivered_job_is_not_claimed_again(store: JobStore) -> None:
    job = make_job(destinations=())
    store.create_job(job)
    assert store.claim(job.job_id, "w1")
    store.record_result(job.job_id, make_bundle(job))
    assert store.settle_deliveries(job.job_id) == JobState.DELIVERED
    assert store.claim(job.job_id, "w2") is False
    assert store.claim(job.job_id, "w2", stale_after_s=0) is False
    record = store.get_job(job.job_id)
    assert record is not None and record.state == JobState.DELIVERED and record.attempts == 1


def test_running_job_taken_over_only_when_stale(store: JobStore) -> None:
    job = make_job()
    store.create_job(job)
    assert store.claim(job.job_id, "dead-worker")
    assert store.claim(job.job_id, "w2") is False
    assert store.claim(job.job_id, "w2", stale_after_s=3600) is False
    time.sleep(0.05)
    assert [r.job_id for r in store.stale_running(older_than_s=0.01)] == [job.job_id]
    assert store.claim(job.job_id, "w2", stale_after_s=0.01) is True
    record = store.get_job(job.job_id)
    assert record is not None and record.worker == "w2" and record.attempts == 2
    assert "stale" in store.events(job.job_id)[-1].reason


def test_transient_retry_then_claim_again(store: JobStore) -> None:
    job = make_job()
    store.create_job(job)
    assert store.claim(job.job_id, "w1")
    store.transition(job.job_id, JobState.QUEUED, reason="TransientError: source busy; retry in 2.0 s")
    assert store.claim(job.job_id, "w1")
    record = store.get_job(job.job_id)
    assert record is not None and record.attempts == 2


# -- queries --------------------------------------------------------------------------------------


def test_list_filters_and_dead_letters(store: JobStore) -> None:
    a = make_job(rule_name="a", pipeline="organs")
    b = make_job(rule_name="b", pipeline="lesions")
    c = make_job(study_instance_uid="1.2.826.0.1.3680043.8.498.2002", rule_name="c")
    for job in (a, b, c):
        store.create_job(job)
        time.sleep(0.002)  # distinct creation times: newest first is observable
    store.transition(b.job_id, JobState.DEAD, reason="retries exhausted")
    assert [r.job_id for r in store.list_jobs()] == [c.job_id, b.job_id, a.job_id]
    assert [r.job_id for r in store.list_jobs(state=JobState.QUEUED)] == [c.job_id, a.job_id]
    assert [r.job_id for r in store.list_jobs(study_instance_uid=STUDY_UID)] == [b.job_id, a.job_id]
    assert [r.job_id for r in store.list_jobs(limit=1)] == [c.job_id]
    assert store.list_jobs(since=datetime.now(UTC) + timedelta(minutes=1)) == []
    assert [r.job_id for r in store.dead_letters()] == [b.job_id]
    assert store.count_by_state() == {JobState.QUEUED: 2, JobState.DEAD: 1}


def test_jobs_for_study_and_supersede(store: JobStore) -> None:
    early = make_job(sop_uids=("1.2.3.1",))
    late = make_job(sop_uids=("1.2.3.1", "1.2.3.9"))
    other_rule = make_job(rule_name="chest", pipeline="lungs", sop_uids=("1.2.3.1",))
    assert len({early.job_id, late.job_id, other_rule.job_id}) == 3
    for job in (early, late, other_rule):
        store.create_job(job)
        time.sleep(0.002)
    store.claim(early.job_id, "w")
    store.record_result(early.job_id, make_bundle(early))
    same_rule = store.jobs_for_study(STUDY_UID, "ct-abdomen")
    assert [r.job_id for r in same_rule] == [early.job_id, late.job_id]
    changed = store.mark_superseded([r.job_id for r in same_rule], by_job_id=late.job_id)
    assert changed == [early.job_id]
    record = store.get_job(early.job_id)
    assert record is not None
    assert record.state == JobState.SUPERSEDED and record.superseded_by == late.job_id
    assert late.job_id in record.reason
    assert store.get_job(other_rule.job_id).state == JobState.QUEUED  # type: ignore[union-attr]


# -- deliveries -----------------------------------------------------------------------------------


def _report(job_id: str, dest: str, delivered: tuple[str, ...], failed: dict[str, str]) -> DeliveryReport:
    return DeliveryReport(
        job_id=job_id,
        destination=dest,
        delivered_sop_instance_uids=delivered,
        failed=failed,
        warnings={},
        finished_at=datetime.now(UTC),
    )


def test_partial_delivery_then_retry_accumulates(store: JobStore) -> None:
    job = make_job(destinations=("PACS", "ARCHIVE"))
    bundle = make_bundle(job)
    uids = [f.sop_instance_uid for f in bundle.files]
    store.create_job(job)
    store.claim(job.job_id, "w")
    store.record_result(job.job_id, bundle)
    store.transition(job.job_id, JobState.DELIVERING, reason="deliver")

    first = store.start_delivery(job.job_id, "PACS")
    assert first.delivery_id == delivery_id_for(job.job_id, "PACS")
    assert first.attempts == 1 and first.state == DeliveryState.SENDING
    store.record_delivery(
        _report(job.job_id, "PACS", tuple(uids[:2]), {uids[2]: "0xA700 out of resources"}),
        state=DeliveryState.RETRYING,
        error="0xA700",
    )
    assert store.delivered_uids(job.job_id, "PACS") == frozenset(uids[:2])
    assert store.settle_deliveries(job.job_id) is None  # still in flight

    second = store.start_delivery(job.job_id, "PACS")
    assert second.attempts == 2
    done = store.record_delivery(_report(job.job_id, "PACS", (uids[2],), {}), state=DeliveryState.DELIVERED)
    assert set(done.delivered_sop_instance_uids) == set(uids)
    assert done.failed == {}
    assert store.settle_deliveries(job.job_id) is None  # ARCHIVE not attempted yet

    store.start_delivery(job.job_id, "ARCHIVE")
    store.record_delivery(_report(job.job_id, "ARCHIVE", tuple(uids), {}), state=DeliveryState.DELIVERED)
    assert store.settle_deliveries(job.job_id) == JobState.DELIVERED
    detail = store.job_detail(job.job_id)
    assert detail is not None
    assert detail.job.state == JobState.DELIVERED
    assert [d.destination for d in detail.deliveries] == ["ARCHIVE", "PACS"]
    assert "deliveries settled" in detail.events[-1].reason


def test_permanent_rejection_fails_the_job_and_requeue_is_audited(store: JobStore) -> None:
    job = make_job()
    bundle = make_bundle(job)
    store.create_job(job)
    store.claim(job.job_id, "w")
    store.record_result(job.job_id, bundle)
    store.transition(job.job_id, JobState.DELIVERING, reason="deliver")
    store.start_delivery(job.job_id, "PACS")
    uid = bundle.files[0].sop_instance_uid
    store.record_delivery(
        _report(job.job_id, "PACS", (), {uid: "0x0122 SOP class not supported"}),
        state=DeliveryState.FAILED,
        error="rejected",
    )
    assert store.settle_deliveries(job.job_id) == JobState.FAILED
    delivery = store.get_delivery(job.job_id, "PACS")
    assert delivery is not None and delivery.failed == {uid: "0x0122 SOP class not supported"}

    store.transition(
        job.job_id,
        JobState.DELIVERING,
        reason="requeued by operator",
        expect_from={JobState.FAILED, JobState.DEAD},
    )
    store.set_delivery_state(job.job_id, "PACS", DeliveryState.PENDING, reason="requeued")
    record = store.require_job(job.job_id)
    assert record.state == JobState.DELIVERING
    assert store.events(job.job_id)[-1].reason == "requeued by operator"


def test_record_delivery_needs_a_started_delivery(store: JobStore) -> None:
    job = make_job()
    store.create_job(job)
    with pytest.raises(Exception, match="never started"):
        store.record_delivery(_report(job.job_id, "PACS", (), {}), state=DeliveryState.DELIVERED)


# -- studies and config audit ---------------------------------------------------------------------


def test_record_study_upserts(store: JobStore) -> None:
    t0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    stable = StudyStable(
        study_instance_uid=STUDY_UID,
        source=StudySource(kind="staging", staging_path="/var/staging/x"),
        reason=CompletionReason.QUIET_PERIOD,
        calling_ae_title="CT1",
        instance_count=10,
        first_received_at=t0,
        last_received_at=t0 + timedelta(seconds=20),
        stable_at=t0 + timedelta(seconds=28),
    )
    first = store.record_study(stable)
    assert first.completion_reason == CompletionReason.QUIET_PERIOD and first.instance_count == 10
    later = stable.model_copy(
        update={
            "instance_count": 12,
            "reason": CompletionReason.MAX_AGE,
            "first_received_at": t0 + timedelta(seconds=5),
        }
    )
    again = store.record_study(later)
    assert again.instance_count == 12
    assert again.completion_reason == CompletionReason.MAX_AGE
    assert again.first_received_at == t0  # the earliest is kept
    assert store.get_study(STUDY_UID) == again


def test_config_audit(store: JobStore) -> None:
    store.record_config_change(who="admin", what="routing.yaml", diff={"rules": {"added": ["chest"]}})
    store.record_config_change(who="admin", what="settings", diff={"queue.max_retries": [6, 8]})
    changes = store.config_changes()
    assert [c.what for c in changes] == ["settings", "routing.yaml"]
    assert changes[1].diff == {"rules": {"added": ["chest"]}}


# -- deliveries that wait, destination health, withdrawals (issue 12) ------------------------------


def _delivering(store: JobStore, *sop_uids: str) -> str:
    job = make_job(sop_uids=sop_uids or ("1.2.3.1", "1.2.3.2"))
    store.create_job(job)
    store.claim(job.job_id, "w")
    store.record_result(job.job_id, make_bundle(job))
    store.transition(job.job_id, JobState.DELIVERING, reason="deliver")
    return job.job_id


def test_the_retry_window_counts_from_the_first_failure(store: JobStore) -> None:
    job_id = _delivering(store)
    store.start_delivery(job_id, "PACS")
    assert store.require_delivery(job_id, "PACS").first_failed_at is None
    failed = DeliveryReport(job_id=job_id, destination="PACS", finished_at=datetime.now(UTC))
    first = store.record_delivery(failed, state=DeliveryState.RETRYING, error="refused").first_failed_at
    assert first is not None
    store.start_delivery(job_id, "PACS")
    later = datetime.now(UTC) + timedelta(minutes=10)
    assert store.set_delivery_state(
        job_id, "PACS", DeliveryState.WAITING, reason="down", next_attempt_at=later
    )
    waiting = store.require_delivery(job_id, "PACS")
    assert waiting.first_failed_at == first and waiting.next_attempt_at == later
    assert store.settle_deliveries(job_id) is None  # waiting is still in flight
    # a compare-and-set: only from the expected state
    assert not store.set_delivery_state(
        job_id, "PACS", DeliveryState.PENDING, reason="x", expect_from={DeliveryState.RETRYING}
    )
    assert store.set_delivery_state(
        job_id, "PACS", DeliveryState.PENDING, reason="resumed", expect_from={DeliveryState.WAITING}
    )
    assert store.require_delivery(job_id, "PACS").next_attempt_at is None
    done = DeliveryReport(
        job_id=job_id,
        destination="PACS",
        delivered_sop_instance_uids=("1.2.3",),
        finished_at=datetime.now(UTC),
    )
    assert store.record_delivery(done, state=DeliveryState.DELIVERED).first_failed_at is None
    assert [d.job_id for d in store.deliveries_in_state([DeliveryState.DELIVERED], destination="PACS")] == [
        job_id
    ]
    assert store.deliveries_in_state([DeliveryState.DELIVERED], destination="other") == []


def test_destination_health_since_moves_only_when_up_or_down_changes(store: JobStore) -> None:
    t0 = datetime.now(UTC)
    store.record_destination_health("PACS", up=True, detail="ok", at=t0)
    store.record_destination_health("PACS", up=True, detail="ok again", at=t0 + timedelta(seconds=10))
    status = store.destination_statuses()["PACS"]
    assert status.up and status.since == t0 and status.checked_at == t0 + timedelta(seconds=10)
    store.record_destination_health("PACS", up=False, detail="refused", at=t0 + timedelta(seconds=20))
    status = store.destination_statuses()["PACS"]
    assert not status.up and status.since == t0 + timedelta(seconds=20) and status.detail == "refused"


def test_withdrawals_and_the_chain_of_superseded_jobs(store: JobStore) -> None:
    first = _delivering(store, "1.2.3.1")
    second = _delivering(store, "1.2.3.2")
    third = _delivering(store, "1.2.3.3")
    store.mark_superseded([first], by_job_id=second, reason="late")
    store.mark_superseded([second], by_job_id=third, reason="late")
    assert [r.job_id for r in store.superseded_by_chain(third)] == [first, second]
    assert store.superseded_by_chain(first) == []
    record, created = store.plan_withdrawal(first, "PACS", by_job_id=third, sop_instance_uids=["1.2", "1.3"])
    assert created and record.state.value == "pending" and record.sop_instance_uids == ("1.2", "1.3")
    assert store.plan_withdrawal(first, "PACS", by_job_id=third, sop_instance_uids=[])[1] is False
    from dicom_node.jobs.states import WithdrawalState

    store.update_withdrawal(
        first, "PACS", WithdrawalState.PENDING, detail="refused", failing=True, attempted=True
    )
    waiting = store.update_withdrawal(first, "PACS", WithdrawalState.WAITING, detail="down")
    assert waiting.first_failed_at is not None and waiting.attempts == 1
    done = store.update_withdrawal(
        first, "PACS", WithdrawalState.DONE, detail="ok", method="delete", attempted=True
    )
    assert done.method == "delete" and done.attempts == 2
    assert [w.job_id for w in store.withdrawals_by(third)] == [first]
    assert store.withdrawals_in_state([WithdrawalState.DONE])[0].job_id == first
    detail = store.job_detail(first)
    assert detail is not None and [w.destination for w in detail.withdrawals] == ["PACS"]


def test_real_work_waiting_leaves_shadow_jobs_out(store: JobStore) -> None:
    shadow = make_job(sop_uids=("9.9",)).model_copy(update={"shadow": True, "destinations": ()})
    store.create_job(shadow)
    assert store.real_work_waiting() == 0
    store.create_job(make_job(sop_uids=("9.8",)))
    assert store.real_work_waiting() == 1
