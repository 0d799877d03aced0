"""The one error → outcome mapping of the Celery tasks: pure functions, no Celery import.

Every task (route a study, run a job, deliver a result) ends a failed attempt through
:func:`plan_after`: the error is classified once, here, as

=============================================================  ==========  ============================
error                                                          class       why
=============================================================  ==========  ============================
:class:`~dicom_node.errors.TransientError` (peer down/busy)    transient   the node says so
GPU out of memory (``torch.cuda.OutOfMemoryError``, "CUDA out   transient   another job holds the GPU;
of memory"), host ``MemoryError``                                           it passes when that ends
database locked / connection lost (sqlite3 "database is         transient   another process holds the
locked", SQLAlchemy ``OperationalError``/``DisconnectionError``)            lock, PostgreSQL restarts
disk full / quota (``OSError`` ENOSPC, EDQUOT), other               transient   an operator or retention
resource errnos (EAGAIN, ENOMEM, EBUSY, EMFILE, ENFILE)                     frees it
``ConnectionError``, ``TimeoutError`` (network)                  transient   the peer comes back
Celery's soft time limit                                         permanent   it would run as long again
:class:`~dicom_node.errors.PermanentError`, ``ConfigError``,     permanent   bad input, refused object,
any other exception (a bug)                                                 wrong settings: retrying
                                                                            cannot help
=============================================================  ==========  ============================

A transient error is retried with capped exponential backoff and jitter
(:mod:`dicom_node.backoff`) until ``max_retries``; then it is dead-lettered (state DEAD in the job
store, ``ctnode jobs dead``, requeued by ``ctnode jobs retry``: the job store is the dead-letter
queue, on every broker). A permanent one fails at once (FAILED, with the reason, requeueable).
"""

from __future__ import annotations

import errno
import random
import sqlite3
from dataclasses import dataclass
from enum import StrEnum

from dicom_node.backoff import JitterMode, backoff_delay_s
from dicom_node.errors import TransientError
from dicom_node.settings import QueueSettings


class ErrorClass(StrEnum):
    TRANSIENT = "transient"  # trying again later may succeed
    PERMANENT = "permanent"  # trying again cannot help


_TRANSIENT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EAGAIN, errno.ENOMEM, errno.EBUSY, errno.EMFILE, errno.ENFILE}
)
# Class names matched without importing their packages (torch, SQLAlchemy stay optional here).
_TRANSIENT_CLASS_NAMES = frozenset({"OutOfMemoryError", "OperationalError", "DisconnectionError"})


def classify_error(exc: BaseException) -> ErrorClass:
    """Transient or permanent (the table in the module docstring), for any exception."""
    if isinstance(exc, TransientError):
        return ErrorClass.TRANSIENT
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "SoftTimeLimitExceeded" in names:  # Celery's, recognised by name (no Celery import here)
        return ErrorClass.PERMANENT
    if isinstance(exc, MemoryError) or "CUDA out of memory" in str(exc):
        return ErrorClass.TRANSIENT
    if names & _TRANSIENT_CLASS_NAMES:
        return ErrorClass.TRANSIENT
    if isinstance(exc, sqlite3.OperationalError):
        return ErrorClass.TRANSIENT
    if isinstance(exc, ConnectionError | TimeoutError):
        return ErrorClass.TRANSIENT
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return ErrorClass.TRANSIENT
    return ErrorClass.PERMANENT


def describe_error(exc: BaseException) -> str:
    """``Type: message``, bounded, for job reasons and logs."""
    return f"{type(exc).__name__}: {exc}"[:1000]


class RetryAction(StrEnum):
    RETRY = "retry"  # transient, retries left: try again after delay_s
    FAIL = "fail"  # permanent: job FAILED with the reason (an operator may requeue)
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
        what = describe_error(exc)
        if classify_error(exc) is ErrorClass.PERMANENT:
            return RetryPlan(RetryAction.FAIL, 0.0, what)
        if attempt >= self.max_retries:
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


def should_retry(exc: BaseException, attempt: int, max_retries: int) -> bool:
    """True for a transient error while fewer than ``max_retries`` retries were made."""
    return classify_error(exc) is ErrorClass.TRANSIENT and attempt < max_retries
