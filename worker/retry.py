"""Retry policy for the Celery tasks: pure functions, no Celery import.

Only :class:`~dicom_node.errors.TransientError` is retried (a peer down, busy or timed out);
everything else fails the job at once with its reason. Delays grow exponentially with jitter and
are capped, so a destination that is down for a while is probed ever less often, and many jobs
failing together do not retry in lock-step ("exponential backoff and jitter", AWS Architecture
Blog, 2015). After ``max_retries`` retries a job (or a delivery) is dead-lettered: state DEAD in
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
from typing import Literal

from dicom_node.errors import TransientError
from dicom_node.settings import QueueSettings

JitterMode = Literal["full", "decorrelated", "none"]


def backoff_cap_s(attempt: int, *, base_s: float, max_s: float) -> float:
    """The ceiling for retry number ``attempt`` (1-based): ``min(max_s, base_s * 2**(attempt-1))``."""
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    if base_s <= 0 or max_s < base_s:
        raise ValueError("need 0 < base_s <= max_s")
    # 2**1000 overflows float multiplication long before it matters: clamp the exponent.
    exponent = min(attempt - 1, 1000)
    return min(max_s, base_s * 2.0**exponent) if exponent < 1000 else max_s


def backoff_delay_s(
    attempt: int,
    *,
    base_s: float,
    max_s: float,
    jitter: random.Random,
    mode: JitterMode = "full",
    previous_s: float | None = None,
) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based).

    - ``full``: uniform in ``[0, cap]`` (cap from :func:`backoff_cap_s`): spreads retries most.
    - ``decorrelated``: uniform in ``[base_s, 3 × previous]``, capped at ``max_s``; pass the
      previous delay (``None`` for the first retry, taken as ``base_s``).
    - ``none``: exactly the cap (for tests and deterministic schedules).

    Always within ``[0, max_s]``; ``jitter`` is injected so tests are repeatable.
    """
    cap = backoff_cap_s(attempt, base_s=base_s, max_s=max_s)
    if mode == "none":
        return cap
    if mode == "full":
        return jitter.uniform(0.0, cap)
    prev = base_s if previous_s is None else max(previous_s, base_s)
    return min(max_s, jitter.uniform(base_s, prev * 3.0))


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
