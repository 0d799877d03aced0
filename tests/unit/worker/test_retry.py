from __future__ import annotations

import random

from dicom_node.errors import ConfigError, PermanentError, TransientError
from dicom_node.settings import QueueSettings
from worker.retry import RetryAction, RetryPolicy, should_retry


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
