"""The Celery tasks: route a stable study, run a job's pipeline, deliver a job's results.

Each task is a thin shell: decode the message, call its step (:mod:`worker.steps`) with the
worker's context, and on failure let :func:`settle_failure` apply the one error → outcome mapping
(:mod:`worker.tasks.outcomes`): retry with backoff, dead-letter, or fail with the reason — each
task only says how its own record is marked. Nothing is lost silently: every outcome is a job (or
study, or delivery) state with a reason.

The context comes from the :class:`~worker.tasks.runtime.WorkerRuntime` the entry point registered
the tasks with (:func:`register`): settings are loaded once by ``ctnode worker``, never read from
the environment inside a task, and each prefork child opens its own job store after the fork.
"""

from __future__ import annotations

import logging
import random
from typing import Any, NoReturn, Protocol

from celery import Celery, Task

from dicom_node.constants import TASK_DELIVER, TASK_ROUTE_STUDY, TASK_RUN_PIPELINE
from dicom_node.contracts import Job, JobState, StudyStable
from dicom_node.errors import PipelineError
from dicom_node.jobs.states import DeliveryState
from worker.context import WorkerContext, claimant_is_dead
from worker.steps.compute import run_job, settle_without_delivery
from worker.steps.delivery import deliver_to, give_up
from worker.steps.routing import route_study
from worker.tasks.enqueue import enqueue_delivery, enqueue_job
from worker.tasks.outcomes import ErrorClass, RetryAction, RetryPolicy, classify_error, describe_error
from worker.tasks.runtime import WorkerRuntime

logger = logging.getLogger(__name__)


class FailureRecord(Protocol):
    """How one task marks its own record when an attempt fails."""

    def retrying(self, reason: str) -> None: ...

    def dead(self, reason: str) -> dict[str, Any]: ...

    def failed(self, reason: str) -> dict[str, Any]: ...


def settle_failure(
    task: Task, ctx: WorkerContext, exc: BaseException, record: FailureRecord, *, log_extra: dict[str, str]
) -> dict[str, Any]:
    """The one ladder: retry (raises Celery's Retry), dead-letter, or fail — decided by outcomes."""
    reason = describe_error(exc)
    if "SoftTimeLimitExceeded" in {cls.__name__ for cls in type(exc).__mro__}:
        reason = f"time limit: still running after {ctx.settings.queue.task_soft_time_limit_s} s"
    plan = RetryPolicy.from_settings(ctx.settings.queue).plan(
        exc, task.request.retries, jitter=random.Random()
    )
    if plan.action is RetryAction.RETRY:
        logger.warning("retry in %.0f s: %s", plan.delay_s, reason, extra=log_extra)
        record.retrying(f"retry in {plan.delay_s:.0f} s: {reason}")
        _retry(task, exc, plan.delay_s)
    if plan.action is RetryAction.DEAD:
        logger.error("gave up: %s", plan.reason, extra=log_extra)
        return record.dead(plan.reason)
    if classify_error(exc) is ErrorClass.PERMANENT and not isinstance(exc, PipelineError):
        # Not one of the node's own errors: a bug or an unforeseen input; keep the traceback.
        logger.error("failed: %s", reason, exc_info=exc, extra=log_extra)
    else:
        logger.error("failed: %s", reason, extra=log_extra)
    return record.failed(reason)


def _retry(task: Task, exc: BaseException, delay_s: float) -> NoReturn:
    raise task.retry(exc=exc, countdown=delay_s) from exc


# -- route a study ------------------------------------------------------------------------------


class _StudyRecord:
    def __init__(self, ctx: WorkerContext, stable: StudyStable) -> None:
        self.ctx, self.stable = ctx, stable

    def retrying(self, reason: str) -> None:
        pass  # the study stays "stable" in the store until routing ends

    def dead(self, reason: str) -> dict[str, Any]:
        self.ctx.store.record_study(self.stable, state="routing-dead")
        return {"state": "dead", "reason": reason}

    def failed(self, reason: str) -> dict[str, Any]:
        # A study nobody can route (no readable instance, a bad rules file at first load...):
        # kept in the store with its reason; the files stay staged.
        self.ctx.store.record_study(self.stable, state="routing-failed")
        return {"state": "failed", "reason": reason}


def route_study_task(task: Task, ctx: WorkerContext, stable_json: dict[str, Any]) -> dict[str, Any]:
    stable = StudyStable.model_validate(stable_json)
    try:
        outcome = route_study(ctx, stable)
    except Exception as exc:  # process edge: mapped by settle_failure
        return settle_failure(task, ctx, exc, _StudyRecord(ctx, stable), log_extra={"stage": "routing"})
    app: Celery = task.app
    for job in outcome.to_enqueue:
        enqueue_job(app, job)
    return {
        "jobs": [j.job_id for j in outcome.to_enqueue],
        "known": [j.job_id for j in outcome.existing],
        "skipped": [j.job_id for j in outcome.skipped],
    }


# -- run a job ----------------------------------------------------------------------------------


class _JobRecord:
    def __init__(self, ctx: WorkerContext, job_id: str) -> None:
        self.ctx, self.job_id = ctx, job_id

    def _running(self) -> bool:
        return self.ctx.store.require_job(self.job_id).state == JobState.RUNNING

    def retrying(self, reason: str) -> None:
        if self._running():
            self.ctx.store.transition(self.job_id, JobState.QUEUED, reason=reason)

    def dead(self, reason: str) -> dict[str, Any]:
        self.ctx.store.transition(self.job_id, JobState.DEAD, reason=reason)
        return {"state": "dead", "reason": reason}

    def failed(self, reason: str) -> dict[str, Any]:
        if self._running():
            self.ctx.store.transition(self.job_id, JobState.FAILED, reason=reason)
        return {"state": "failed", "reason": reason}


def run_pipeline_task(task: Task, ctx: WorkerContext, job_json: dict[str, Any]) -> dict[str, Any]:
    job = Job.model_validate(job_json)
    try:
        outcome = run_job(ctx, job)
    except Exception as exc:  # process edge: mapped by settle_failure
        return settle_failure(
            task, ctx, exc, _JobRecord(ctx, job.job_id), log_extra={"job_id": job.job_id, "stage": "compute"}
        )
    if outcome.state != JobState.ENCODED:
        return {"state": outcome.state.value, "ran": outcome.ran}
    if job.shadow or not job.destinations:
        return {"state": settle_without_delivery(ctx, job).value, "ran": outcome.ran}
    # Also when not ran: a worker that died between encoding and queueing left none queued.
    delivered = {
        d.destination for d in ctx.store.deliveries_for(job.job_id) if d.state == DeliveryState.DELIVERED
    }
    for destination in job.destinations:
        if destination not in delivered:
            enqueue_delivery(task.app, job.job_id, destination)
    return {"state": JobState.ENCODED.value, "ran": outcome.ran}


# -- deliver ------------------------------------------------------------------------------------


class _DeliveryRecord:
    def __init__(self, ctx: WorkerContext, job_id: str, destination: str) -> None:
        self.ctx, self.job_id, self.destination = ctx, job_id, destination

    def retrying(self, reason: str) -> None:
        self.ctx.store.set_delivery_state(
            self.job_id, self.destination, DeliveryState.RETRYING, reason=reason
        )

    def _give_up(self, state: DeliveryState, reason: str) -> dict[str, Any]:
        job_state = give_up(self.ctx, self.job_id, self.destination, state, reason)
        return {"state": state.value, "job_state": job_state.value if job_state else None}

    def dead(self, reason: str) -> dict[str, Any]:
        return self._give_up(DeliveryState.DEAD, reason)

    def failed(self, reason: str) -> dict[str, Any]:
        return self._give_up(DeliveryState.FAILED, reason)


def deliver_task(task: Task, ctx: WorkerContext, job_id: str, destination: str) -> dict[str, Any]:
    try:
        record = deliver_to(ctx, job_id, destination, attempt=task.request.retries + 1)
    except Exception as exc:  # process edge: mapped by settle_failure
        return settle_failure(
            task,
            ctx,
            exc,
            _DeliveryRecord(ctx, job_id, destination),
            log_extra={"job_id": job_id, "stage": "delivery", "destination": destination},
        )
    return {"state": record.state.value if record else "dropped"}


# -- wiring -------------------------------------------------------------------------------------


def register(app: Celery, runtime: WorkerRuntime) -> None:
    """Register the three tasks on ``app`` under their fixed names, bound to ``runtime``."""
    options: dict[str, Any] = {"bind": True, "max_retries": None}  # the policy decides, not Celery

    @app.task(name=TASK_ROUTE_STUDY, **options)
    def route_study(task: Task, stable_json: dict[str, Any]) -> dict[str, Any]:
        return route_study_task(task, runtime.context(), stable_json)

    @app.task(name=TASK_RUN_PIPELINE, **options)
    def run_pipeline(task: Task, job_json: dict[str, Any]) -> dict[str, Any]:
        return run_pipeline_task(task, runtime.context(), job_json)

    @app.task(name=TASK_DELIVER, **options)
    def deliver(task: Task, job_id: str, destination: str) -> dict[str, Any]:
        return deliver_task(task, runtime.context(), job_id, destination)


def recover_orphans(app: Celery, ctx: WorkerContext) -> list[str]:
    """At worker start: jobs left RUNNING by a worker of this host that is gone → queued again.

    The embedded SQLite broker loses the message of a task whose worker was killed (-9), so the
    job store is what remembers the work: the job goes back to QUEUED with the reason and its
    message is sent again. Jobs of workers on other hosts are left to the serve process's sweeper
    (after the task time limit).
    """
    requeued = []
    for record in ctx.store.list_jobs(state=JobState.RUNNING, limit=1000):
        if not claimant_is_dead(record.worker):
            continue
        ctx.store.transition(
            record.job_id,
            JobState.QUEUED,
            reason=f"worker {record.worker} died while running it: requeued at worker start",
            expect_from={JobState.RUNNING},
        )
        enqueue_job(app, record.job)
        requeued.append(record.job_id)
    return requeued
