"""The destination monitor (``ctnode serve``): health checks, and deliveries resumed the moment a
destination answers again.

A delivery whose quick retries are used up WAITS in the job store (``DeliveryState.WAITING``,
nothing on the broker: see :mod:`worker.tasks.outcomes`). Every ``queue.destination_probe_interval_s``
the serve process runs one :meth:`DestinationMonitor.run`:

1. **Probe** every destination with waiting work (deliveries, withdrawals of superseded results) with the
   Destination protocol's ``health()`` (C-ECHO for a DICOM peer, a QIDO-RS search for a DICOMweb
   server, Orthanc's ``/system``); other configured destinations every ``IDLE_PROBE_INTERVAL_S``.
   What it saw goes to the job store (``destination_status``: up/down and since when) for the
   dashboard and the admin API.
2. **Resume**: a waiting delivery goes back to PENDING and its task is sent again when its
   destination *came back* (answered after having been down since the delivery started waiting),
   or when its next slow attempt is due (``queue.waiting_retry_interval_s``: a destination may
   refuse our C-ECHO and still take our C-STORE). A destination that answers its health check
   but still fails the delivery therefore gets slow attempts, not a loop.
3. **Give up**: a waiting delivery whose retry window (``queue.delivery_retry_window_s``, from its
   first failure) is over is DEAD, and its job settled; ``ctnode jobs retry`` requeues it.

Every resumption and every give-up is a note in the job's audit trail.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from dicom_node.contracts import JobState
from dicom_node.delivery.destination import HealthResult, open_destination
from dicom_node.jobs import DeliveryState, JobStore
from dicom_node.jobs.records import DeliveryRecord, DestinationStatus, WithdrawalRecord
from dicom_node.jobs.states import WithdrawalState
from dicom_node.settings import DestinationBase, Settings
from worker.context import WorkerContext
from worker.node.requeue import send_delivery_task, send_withdraw_task

logger = logging.getLogger(__name__)

IDLE_PROBE_INTERVAL_S = 300.0  # destinations with nothing waiting: checked this often, for the dashboard

Prober = Callable[[str, DestinationBase], HealthResult]


@dataclass
class MonitorReport:
    probed: dict[str, HealthResult] = field(default_factory=dict)
    resumed: list[tuple[str, str]] = field(default_factory=list)  # (job id, destination)
    dead: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def default_prober(settings: Settings, environ: Mapping[str, str]) -> Prober:
    def probe(name: str, dest: DestinationBase) -> HealthResult:
        started = time.monotonic()
        try:
            destination = open_destination(
                name, dest, calling_ae_title=settings.dicom.ae_title, environ=environ
            )
            return destination.health()
        except Exception as exc:  # a health check reports, never raises
            return HealthResult(False, f"{type(exc).__name__}: {exc}", time.monotonic() - started)

    return probe


class DestinationMonitor:
    """Probes destinations and resumes what waits for them; :meth:`run` is one pass."""

    def __init__(self, ctx: WorkerContext, celery_app: Any, *, prober: Prober | None = None) -> None:
        self.ctx = ctx
        self.celery = celery_app
        self.prober = prober or default_prober(ctx.settings, ctx.environ)

    @property
    def store(self) -> JobStore:
        return self.ctx.store

    def run(self, *, now: datetime | None = None) -> MonitorReport:
        now = now or datetime.now(UTC)
        report = MonitorReport()
        waiting = self.store.deliveries_in_state((DeliveryState.WAITING,), limit=10_000)
        withdrawals = self.store.withdrawals_in_state((WithdrawalState.WAITING,), limit=10_000)
        # A PENDING withdrawal untouched for longer than any task could take lost its message (the
        # SQLite broker loses those of a worker killed -9): due again, like a waiting one.
        lost_after = timedelta(
            seconds=self.ctx.settings.queue.task_time_limit_s + self.ctx.settings.queue.retry_backoff_max_s
        )
        withdrawals += [
            w.model_copy(update={"next_attempt_at": now})
            for w in self.store.withdrawals_in_state((WithdrawalState.PENDING,), limit=10_000)
            if now - w.updated_at > lost_after
        ]
        statuses = self.store.destination_statuses()
        names = {d.destination for d in waiting} | {w.destination for w in withdrawals}
        for name, dest in sorted(self.ctx.settings.destinations.items()):
            last = statuses.get(name)
            idle_due = last is None or (now - last.checked_at).total_seconds() >= IDLE_PROBE_INTERVAL_S
            if name in names or idle_due:
                statuses[name] = self._probe(name, dest, now, report)
        for delivery in waiting:
            try:
                self._settle_waiting(delivery, statuses.get(delivery.destination), now, report)
            except Exception as exc:  # one delivery's trouble must not stop the others
                report.problems.append(f"delivery of job {delivery.job_id} to {delivery.destination}: {exc}")
        for withdrawal in withdrawals:
            try:
                self._settle_withdrawal(withdrawal, statuses.get(withdrawal.destination), now, report)
            except Exception as exc:
                report.problems.append(
                    f"withdrawal of job {withdrawal.job_id} at {withdrawal.destination}: {exc}"
                )
        if report.resumed or report.dead or report.problems:
            logger.warning(
                "destinations: %d deliveries resumed, %d dead; %d problems",
                len(report.resumed),
                len(report.dead),
                len(report.problems),
                extra={"stage": "destinations"},
            )
        return report

    def _probe(
        self, name: str, dest: DestinationBase, now: datetime, report: MonitorReport
    ) -> DestinationStatus:
        result = self.prober(name, dest)
        report.probed[name] = result
        before = self.store.destination_statuses().get(name)
        status = self.store.record_destination_health(name, up=result.ok, detail=result.detail, at=now)
        if before is None or before.up != status.up:
            log = logger.info if status.up else logger.warning
            log(
                "destination %s is %s: %s",
                name,
                "up" if status.up else "DOWN",
                result.detail,
                extra={"stage": "destinations", "destination": name},
            )
        return status

    def _settle_waiting(
        self, delivery: DeliveryRecord, status: DestinationStatus | None, now: datetime, report: MonitorReport
    ) -> None:
        store, queue = self.store, self.ctx.settings.queue
        key = (delivery.job_id, delivery.destination)
        job = store.get_job(delivery.job_id)
        if job is None or job.state != JobState.DELIVERING:
            # superseded, cancelled or settled meanwhile: nothing to resume, nothing to count
            state = job.state.value if job is not None else "gone"
            store.set_delivery_state(
                *key,
                DeliveryState.DEAD,
                reason=f"not resumed: the job is {state}",
                expect_from={DeliveryState.WAITING},
            )
            return
        failing_since = delivery.first_failed_at or delivery.updated_at
        failing_s = (now - failing_since).total_seconds()
        window_s = queue.delivery_retry_window_s
        if window_s and failing_s >= window_s:
            why = (
                f"retry window over: {delivery.destination} failing for {failing_s:.0f} s "
                f"(queue.delivery_retry_window_s {window_s:g} s); last error: {delivery.last_error}"
            )
            if store.set_delivery_state(
                *key, DeliveryState.DEAD, reason=why, expect_from={DeliveryState.WAITING}
            ):
                store.note(
                    delivery.job_id,
                    why,
                    detail={"by": "destination monitor", "destination": delivery.destination},
                )
                store.settle_deliveries(delivery.job_id)
                report.dead.append(key)
            return
        came_back = status is not None and status.up and status.since > delivery.updated_at
        slow_attempt_due = delivery.next_attempt_at is not None and delivery.next_attempt_at <= now
        if not (came_back or slow_attempt_due):
            return
        why = (
            f"{delivery.destination} answers its health check again ({status.detail})"
            if came_back and status is not None
            else f"slow attempt every {queue.waiting_retry_interval_s:g} s"
        )
        if not store.set_delivery_state(
            *key, DeliveryState.PENDING, reason=f"resumed: {why}", expect_from={DeliveryState.WAITING}
        ):
            return  # a worker or another monitor moved it meanwhile
        send_delivery_task(self.celery, *key)
        store.note(
            delivery.job_id,
            f"delivery to {delivery.destination} resumed: {why}",
            detail={"by": "destination monitor", "destination": delivery.destination},
        )
        report.resumed.append(key)

    def _settle_withdrawal(
        self,
        withdrawal: WithdrawalRecord,
        status: DestinationStatus | None,
        now: datetime,
        report: MonitorReport,
    ) -> None:
        store, queue = self.store, self.ctx.settings.queue
        key = (withdrawal.job_id, withdrawal.destination)
        failing_since = withdrawal.first_failed_at or withdrawal.updated_at
        failing_s = (now - failing_since).total_seconds()
        window_s = queue.delivery_retry_window_s
        if window_s and failing_s >= window_s:
            why = (
                f"retry window over: {withdrawal.destination} failing for {failing_s:.0f} s; "
                f"{withdrawal.detail}"
            )
            store.update_withdrawal(*key, WithdrawalState.FAILED, detail=why)
            text = f"NOT withdrawn at {withdrawal.destination}: {why}"
            store.note(withdrawal.job_id, text, detail={"by": "destination monitor"})
            store.note(
                withdrawal.by_job_id, f"job {withdrawal.job_id}: {text}", detail={"by": "destination monitor"}
            )
            report.dead.append(key)
            return
        came_back = status is not None and status.up and status.since > withdrawal.updated_at
        due = withdrawal.next_attempt_at is not None and withdrawal.next_attempt_at <= now
        if not (came_back or due):
            return
        store.update_withdrawal(*key, WithdrawalState.PENDING, detail="resumed by the destination monitor")
        send_withdraw_task(self.celery, *key)
        report.resumed.append(key)


def destination_overview(store: JobStore, settings: Settings) -> list[dict[str, Any]]:
    """Each configured destination's state for the admin API and the dashboard: up/down and since
    when (as the last health check saw it), and the deliveries not yet through."""
    statuses = store.destination_statuses()
    open_states = (
        DeliveryState.PENDING,
        DeliveryState.SENDING,
        DeliveryState.RETRYING,
        DeliveryState.WAITING,
    )
    unsettled = store.deliveries_in_state(open_states, limit=100_000)
    out = []
    for name, dest in sorted(settings.destinations.items()):
        mine = [d for d in unsettled if d.destination == name]
        failing = [d.first_failed_at for d in mine if d.first_failed_at is not None]
        status = statuses.get(name)
        out.append(
            {
                "name": name,
                "kind": getattr(dest, "kind", "dicom"),
                "state": "unknown" if status is None else ("up" if status.up else "down"),
                "since": status.since.isoformat() if status else None,
                "checked_at": status.checked_at.isoformat() if status else None,
                "detail": status.detail if status else "not checked yet",
                "deliveries_waiting": sum(1 for d in mine if d.state == DeliveryState.WAITING),
                "deliveries_retrying": sum(1 for d in mine if d.state == DeliveryState.RETRYING),
                "deliveries_in_flight": sum(
                    1 for d in mine if d.state in (DeliveryState.PENDING, DeliveryState.SENDING)
                ),
                "oldest_failure": min(failing).isoformat() if failing else None,
                "retry_window_ends": (
                    min(failing) + timedelta(seconds=settings.queue.delivery_retry_window_s)
                ).isoformat()
                if failing and settings.queue.delivery_retry_window_s
                else None,
            }
        )
    return out
