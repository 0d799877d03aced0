"""Retry policy for the Celery tasks: pure functions, no Celery import.

Only :class:`~dicom_node.errors.TransientError` is retried (a peer down, busy or timed out);
everything else fails the job at once with its reason. Delays grow exponentially with jitter and
are capped (:mod:`dicom_node.backoff`, shared with the Orthanc plugin and the study tracker).
After ``max_retries`` retries a job (or a delivery) is dead-lettered: state DEAD in
the job store, listed by ``ctnode jobs dead`` and requeued by ``ctnode jobs retry``; there is no
broker dead-letter queue (the job store is the source of truth, and it works on every broker).

Usage in a task (``attempt`` = retries already made, Celery's ``self.request.retries``)::

    plan = policy.plan(exc, attempt, jitter=random.Random())
    if plan.action is RetryAction.RETRY:
        raise self.retry(exc=exc, countdown=plan.delay_s)
    store.transition(job_id, JobState.DEAD if plan.action is RetryAction.DEAD else JobState.FAILED,
                     reason=plan.reason)
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from dicom_node.backoff import JitterMode, backoff_delay_s
from dicom_node.errors import TransientError
from dicom_node.settings import QueueSettings


def should_retry(exc: BaseException, attempt: int, max_retries: int) -> bool:
    """True only for a TransientError while fewer than ``max_retries`` retries were made."""
    return isinstance(exc, TransientError) and attempt < max_retries


class RetryAction(StrEnum):
    RETRY = "retry"  # transient, retries left: try again after delay_s
    FAIL = "fail"  # not transient: job FAILED with the reason (an operator may requeue)
    DEAD = "dead"  # transient but retries exhausted: dead-lettered (job DEAD)


@dataclass(frozen=True)
class RetryPlan:
    action: RetryAction
    delay_s: float
    reason: str


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 6
    base_s: float = 2.0
    max_s: float = 300.0
    mode: JitterMode = "full"

    @classmethod
    def from_settings(cls, queue: QueueSettings) -> RetryPolicy:
        return cls(
            max_retries=queue.max_retries,
            base_s=queue.retry_backoff_base_s,
            max_s=queue.retry_backoff_max_s,
        )

    def plan(
        self, exc: BaseException, attempt: int, *, jitter: random.Random, previous_s: float | None = None
    ) -> RetryPlan:
        """What to do after ``exc`` when ``attempt`` retries have already been made."""
        what = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, TransientError):
            return RetryPlan(RetryAction.FAIL, 0.0, what)
        if not should_retry(exc, attempt, self.max_retries):
            return RetryPlan(RetryAction.DEAD, 0.0, f"{what} (gave up after {attempt} retries)")
        delay = backoff_delay_s(
            attempt + 1,
            base_s=self.base_s,
            max_s=self.max_s,
            jitter=jitter,
            mode=self.mode,
            previous_s=previous_s,
        )
        return RetryPlan(
            RetryAction.RETRY, delay, f"{what} (retry {attempt + 1}/{self.max_retries} in {delay:.1f} s)"
        )
