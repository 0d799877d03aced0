"""The Celery tasks: route a stable study, run a job's pipeline, deliver a job's results.

Each task is a thin shell around a step in :mod:`worker.steps` plus the retry policy
(:mod:`worker.retry`): only :class:`~dicom_node.errors.TransientError` is retried, with capped
exponential backoff and jitter; anything else fails the job at once with its reason in the job
store. Nothing is lost silently: every outcome is a job state with a reason.

The worker context (settings, job store) is made once per worker *process*: prefork children
open their own database engine after the fork.
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any

from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded

from dicom_node.constants import TASK_DELIVER, TASK_ROUTE_STUDY, TASK_RUN_PIPELINE
from dicom_node.contracts import Job, JobState, StudyStable
from dicom_node.errors import TransientError
from dicom_node.jobs.states import DeliveryState
from dicom_node.settings import Settings
from worker.context import WorkerContext
from worker.enqueue import enqueue_delivery, enqueue_job
from worker.retry import RetryAction, RetryPolicy
from worker.steps.compute import run_job, settle_without_delivery
from worker.steps.delivery import deliver_to, give_up
from worker.steps.routing import route_study

logger = logging.getLogger(__name__)

_settings: Settings | None = None
_contexts: dict[int, WorkerContext] = {}


def configure(settings: Settings) -> None:
    """Set the settings the tasks use (called by ``ctnode worker`` before the pool starts)."""
    global _settings
    _settings = settings
    _contexts.clear()


def context() -> WorkerContext:
    """This process's context, opened on first use (after a prefork fork: never shared)."""
    pid = os.getpid()
    ctx = _contexts.get(pid)
    if ctx is None:
        if _settings is None:
            from dicom_node.settings import load_settings

            configure(load_settings(os.environ.get("CTNODE_CONFIG")))
        assert _settings is not None
        ctx = WorkerContext.open(_settings)
        _contexts[pid] = ctx
    return ctx


def _policy() -> RetryPolicy:
    return RetryPolicy.from_settings(context().settings.queue)


def route_study_task(task: Task, stable_json: dict[str, Any]) -> dict[str, Any]:
    ctx = context()
    stable = StudyStable.model_validate(stable_json)
    try:
        outcome = route_study(ctx, stable)
    except TransientError as exc:
        plan = _policy().plan(exc, task.request.retries, jitter=random.Random())
        if plan.action is RetryAction.RETRY:
            logger.warning("routing retried in %.0f s: %s", plan.delay_s, exc, extra={"stage": "routing"})
            raise task.retry(exc=exc, countdown=plan.delay_s) from exc
        ctx.store.record_study(stable, state="routing-dead")
        logger.error("routing gave up: %s", plan.reason, extra={"stage": "routing"})
        return {"state": "dead", "reason": plan.reason}
    except Exception as exc:
        # A study nobody can route (no readable instance, a bad rules file at first load...):
        # kept in the store with its reason; the files stay staged.
        ctx.store.record_study(stable, state="routing-failed")
        logger.exception("routing failed: %s: %s", type(exc).__name__, exc, extra={"stage": "routing"})
        return {"state": "failed", "reason": f"{type(exc).__name__}: {exc}"}
    app: Celery = task.app
    for job in outcome.to_enqueue:
        enqueue_job(app, job)
    return {
        "jobs": [j.job_id for j in outcome.to_enqueue],
        "known": [j.job_id for j in outcome.existing],
        "skipped": [j.job_id for j in outcome.skipped],
    }


def run_pipeline_task(task: Task, job_json: dict[str, Any]) -> dict[str, Any]:
    ctx = context()
    job = Job.model_validate(job_json)
    store = ctx.store
    try:
        outcome = run_job(ctx, job)
    except SoftTimeLimitExceeded:
        limit = ctx.settings.queue.task_soft_time_limit_s
        store.transition(job.job_id, JobState.FAILED, reason=f"time limit: still running after {limit} s")
        return {"state": "failed"}
    except TransientError as exc:
        plan = _policy().plan(exc, task.request.retries, jitter=random.Random())
        if plan.action is RetryAction.RETRY:
            store.transition(job.job_id, JobState.QUEUED, reason=f"retry in {plan.delay_s:.0f} s: {exc}")
            raise task.retry(exc=exc, countdown=plan.delay_s) from exc
        store.transition(job.job_id, JobState.DEAD, reason=plan.reason)
        return {"state": "dead", "reason": plan.reason}
    except Exception as exc:
        logger.exception(
            "job failed: %s", type(exc).__name__, extra={"job_id": job.job_id, "stage": "compute"}
        )
        record = store.require_job(job.job_id)
        if record.state == JobState.RUNNING:
            store.transition(job.job_id, JobState.FAILED, reason=f"{type(exc).__name__}: {exc}"[:1000])
        return {"state": "failed", "reason": f"{type(exc).__name__}: {exc}"}
    if outcome.state != JobState.ENCODED:
        return {"state": outcome.state.value, "ran": outcome.ran}
    if job.shadow or not job.destinations:
        return {"state": settle_without_delivery(ctx, job).value, "ran": outcome.ran}
    # Also when not ran: a worker that died between encoding and queueing left none queued.
    delivered = {
        d.destination for d in store.deliveries_for(job.job_id) if d.state == DeliveryState.DELIVERED
    }
    for destination in job.destinations:
        if destination not in delivered:
            enqueue_delivery(task.app, job.job_id, destination)
    return {"state": JobState.ENCODED.value, "ran": outcome.ran}


def deliver_task(task: Task, job_id: str, destination: str) -> dict[str, Any]:
    ctx = context()
    attempt = task.request.retries + 1
    try:
        record = deliver_to(ctx, job_id, destination, attempt=attempt)
    except TransientError as exc:
        plan = _policy().plan(exc, task.request.retries, jitter=random.Random())
        if plan.action is RetryAction.RETRY:
            ctx.store.set_delivery_state(
                job_id, destination, DeliveryState.RETRYING, reason=f"retry in {plan.delay_s:.0f} s: {exc}"
            )
            raise task.retry(exc=exc, countdown=plan.delay_s) from exc
        state = give_up(ctx, job_id, destination, DeliveryState.DEAD, plan.reason)
        return {"state": "dead", "job_state": state.value if state else None}
    except Exception as exc:
        logger.error(
            "delivery failed: %s: %s",
            type(exc).__name__,
            exc,
            extra={"job_id": job_id, "stage": "delivery", "destination": destination},
        )
        state = give_up(ctx, job_id, destination, DeliveryState.FAILED, f"{type(exc).__name__}: {exc}"[:1000])
        return {"state": "failed", "job_state": state.value if state else None}
    return {"state": record.state.value if record else "dropped"}


def register(app: Celery) -> None:
    """Register the three tasks on ``app`` under their fixed names (producers use the names)."""
    options: dict[str, Any] = {"bind": True, "max_retries": None}  # the policy decides, not Celery
    app.task(name=TASK_ROUTE_STUDY, **options)(route_study_task)
    app.task(name=TASK_RUN_PIPELINE, **options)(run_pipeline_task)
    app.task(name=TASK_DELIVER, **options)(deliver_task)


def recover_orphans(app: Celery) -> list[str]:
    """At worker start: jobs left RUNNING by a worker of this host that is gone → queued again.

    The embedded SQLite broker loses the message of a task whose worker was killed (-9), so the
    job store is what remembers the work: the job goes back to QUEUED with the reason and its
    message is sent again. Jobs of workers on other hosts are left to the serve process's sweeper
    (after the task time limit).
    """
    from worker.context import claimant_is_dead

    ctx = context()
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
