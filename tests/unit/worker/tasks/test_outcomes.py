"""The one error → outcome mapping of the Celery tasks, and the shells' single failure ladder."""

from __future__ import annotations

import errno
import random
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy.exc
from celery.exceptions import SoftTimeLimitExceeded

from dicom_node.errors import ConfigError, PermanentError, TransientError
from dicom_node.settings import QueueSettings, Settings
from tests.support.fake_task import FakeTask, Retry
from worker.context import WorkerContext
from worker.tasks.outcomes import ErrorClass, RetryAction, RetryPolicy, classify_error, should_retry
from worker.tasks.shells import settle_failure


def test_only_transient_errors_are_retried() -> None:
    assert should_retry(TransientError("peer down"), 0, 3)
    assert should_retry(TransientError("peer down"), 2, 3)
    assert not should_retry(TransientError("peer down"), 3, 3)
    assert not should_retry(PermanentError("rejected"), 0, 3)
    assert not should_retry(ConfigError("bad"), 0, 3)
    assert not should_retry(RuntimeError("bug"), 0, 3)


def test_plan_retries_then_dead_letters() -> None:
    policy = RetryPolicy(max_retries=3, base_s=0.1, max_s=1.0, mode="none")
    rng = random.Random(0)
    plans = [policy.plan(TransientError("A700 out of resources"), n, jitter=rng) for n in range(4)]
    assert [p.action for p in plans] == [RetryAction.RETRY] * 3 + [RetryAction.DEAD]
    assert [p.delay_s for p in plans[:3]] == [0.1, 0.2, 0.4]
    assert "retry 1/3" in plans[0].reason and "A700" in plans[0].reason
    assert "gave up after 3 retries" in plans[3].reason


def test_plan_fails_permanent_errors_at_once() -> None:
    plan = RetryPolicy().plan(PermanentError("0x0122 SOP class not supported"), 0, jitter=random.Random())
    assert plan.action is RetryAction.FAIL
    assert "0x0122" in plan.reason


def test_policy_from_settings() -> None:
    queue = QueueSettings(max_retries=4, retry_backoff_base_s=0.5, retry_backoff_max_s=10.0)
    policy = RetryPolicy.from_settings(queue)
    assert (policy.max_retries, policy.base_s, policy.max_s) == (4, 0.5, 10.0)


# -- the one error → outcome mapping (issue 10, item 3) ----------------------------------------


class OutOfMemoryError(RuntimeError):
    """Named like torch.cuda.OutOfMemoryError (recognised by name: no torch import in outcomes)."""


@pytest.mark.parametrize(
    "exc",
    [
        TransientError("PACS refused: 0xA700"),
        OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("CUDA out of memory. Tried to allocate 512.00 MiB"),
        MemoryError(),
        sqlite3.OperationalError("database is locked"),
        sqlalchemy.exc.OperationalError("UPDATE jobs", {}, Exception("server closed the connection")),
        OSError(errno.ENOSPC, "No space left on device"),
        OSError(errno.EMFILE, "Too many open files"),
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError("timed out"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_that_pass_are_transient(exc: BaseException) -> None:
    assert classify_error(exc) is ErrorClass.TRANSIENT
    plan = RetryPolicy(max_retries=2, mode="none").plan(exc, 0, jitter=random.Random(0))
    assert plan.action is RetryAction.RETRY


@pytest.mark.parametrize(
    "exc",
    [
        PermanentError("no slices"),
        ConfigError("bad rules"),
        ValueError("a bug"),
        KeyError("missing"),
        OSError(errno.ENOENT, "No such file"),
        SoftTimeLimitExceeded(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_that_cannot_pass_are_permanent(exc: BaseException) -> None:
    assert classify_error(exc) is ErrorClass.PERMANENT
    assert RetryPolicy().plan(exc, 0, jitter=random.Random(0)).action is RetryAction.FAIL


class _Marks:
    def __init__(self) -> None:
        self.marks: list[tuple[str, str]] = []

    def retrying(self, reason: str) -> None:
        self.marks.append(("retrying", reason))

    def dead(self, reason: str) -> dict[str, str]:
        self.marks.append(("dead", reason))
        return {"state": "dead"}

    def failed(self, reason: str) -> dict[str, str]:
        self.marks.append(("failed", reason))
        return {"state": "failed"}


def _ctx(tmp_path: Path, **queue: object) -> WorkerContext:
    rules = tmp_path / "routing.yaml"
    rules.write_text("version: 1\nrules: []\n")
    settings = Settings(storage={"root": tmp_path}, rules_file=rules, queue=queue)
    return WorkerContext.open(settings)


def test_one_ladder_retries_then_dead_letters_then_fails(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, max_retries=2, retry_backoff_base_s=1.0, retry_backoff_max_s=4.0)
    try:
        marks = _Marks()
        task = FakeTask(retries=0)
        with pytest.raises(Retry):
            settle_failure(task, ctx, OSError(errno.ENOSPC, "disk full"), marks, log_extra={})  # type: ignore[arg-type]
        assert marks.marks[0][0] == "retrying" and "disk full" in marks.marks[0][1]
        assert 0.0 <= task.countdowns[0] <= 2.0
        exhausted = settle_failure(FakeTask(retries=2), ctx, TransientError("peer down"), marks, log_extra={})  # type: ignore[arg-type]
        assert exhausted == {"state": "dead"} and "gave up after 2 retries" in marks.marks[-1][1]
        failed = settle_failure(FakeTask(retries=0), ctx, ValueError("bad header"), marks, log_extra={})  # type: ignore[arg-type]
        assert failed == {"state": "failed"} and marks.marks[-1] == ("failed", "ValueError: bad header")
        timed_out = settle_failure(FakeTask(retries=0), ctx, SoftTimeLimitExceeded(), marks, log_extra={})  # type: ignore[arg-type]
        assert timed_out == {"state": "failed"} and "time limit: still running after" in marks.marks[-1][1]
    finally:
        ctx.close()
