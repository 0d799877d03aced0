from __future__ import annotations

import itertools
import random

import pytest

from dicom_node.errors import ConfigError, PermanentError, TransientError
from dicom_node.settings import QueueSettings
from worker.retry import (
    RetryAction,
    RetryPolicy,
    backoff_cap_s,
    backoff_delay_s,
    should_retry,
)


def test_cap_doubles_then_stays_at_max() -> None:
    caps = [backoff_cap_s(n, base_s=2.0, max_s=300.0) for n in range(1, 12)]
    assert caps[:5] == [2.0, 4.0, 8.0, 16.0, 32.0]
    assert caps[-1] == 300.0
    assert all(a <= b for a, b in itertools.pairwise(caps))  # monotone
    assert max(caps) == 300.0
    assert backoff_cap_s(10_000, base_s=2.0, max_s=300.0) == 300.0  # no overflow


@pytest.mark.parametrize("mode", ["full", "decorrelated", "none"])
def test_delays_stay_within_bounds(mode: str) -> None:
    rng = random.Random(1234)
    previous = None
    for attempt in range(1, 40):
        delay = backoff_delay_s(
            attempt,
            base_s=0.5,
            max_s=30.0,
            jitter=rng,
            mode=mode,
            previous_s=previous,  # type: ignore[arg-type]
        )
        assert 0.0 <= delay <= 30.0
        if mode == "full":
            assert delay <= backoff_cap_s(attempt, base_s=0.5, max_s=30.0)
        if mode == "decorrelated":
            assert delay >= 0.5
            assert delay <= max(previous or 0.5, 0.5) * 3.0 + 1e-9
        previous = delay


def test_full_jitter_spreads_and_is_repeatable() -> None:
    delays = [backoff_delay_s(5, base_s=1.0, max_s=60.0, jitter=random.Random(i)) for i in range(200)]
    assert len(set(delays)) > 150  # not lock-step
    assert min(delays) < 4.0 and max(delays) > 12.0  # spread over [0, 16]
    again = [backoff_delay_s(5, base_s=1.0, max_s=60.0, jitter=random.Random(i)) for i in range(200)]
    assert delays == again


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        backoff_cap_s(0, base_s=1.0, max_s=2.0)
    with pytest.raises(ValueError):
        backoff_cap_s(1, base_s=3.0, max_s=2.0)


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
