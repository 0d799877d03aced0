"""Capped exponential backoff with jitter (dicom_node.backoff): the one implementation the Celery
retry policy, the Orthanc plugin and the study tracker share."""

from __future__ import annotations

import itertools
import random

import pytest

from dicom_node.backoff import backoff_cap_s, backoff_delay_s
from plugins.orthanc.dispatcher import backoff_s


def test_cap_doubles_then_stays_at_max() -> None:
    caps = [backoff_cap_s(n, base_s=2.0, max_s=300.0) for n in range(1, 12)]
    assert caps[:5] == [2.0, 4.0, 8.0, 16.0, 32.0]
    assert caps[-1] == 300.0
    assert all(a <= b for a, b in itertools.pairwise(caps))  # monotone
    assert max(caps) == 300.0
    assert backoff_cap_s(10_000, base_s=2.0, max_s=300.0) == 300.0  # no overflow


@pytest.mark.parametrize("mode", ["full", "equal", "decorrelated", "none"])
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
        if mode == "equal":
            cap = backoff_cap_s(attempt, base_s=0.5, max_s=30.0)
            assert 0.75 * cap - 1e-9 <= delay <= min(30.0, 1.25 * cap)
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


def test_the_orthanc_spool_uses_the_shared_equal_jitter_schedule() -> None:
    for attempt in range(1, 12):
        cap = backoff_cap_s(attempt, base_s=1.0, max_s=60.0)
        value = backoff_s(attempt, base_s=1.0, max_s=60.0, rng=random.Random(attempt))
        assert value == backoff_delay_s(
            attempt, base_s=1.0, max_s=60.0, jitter=random.Random(attempt), mode="equal"
        )
        assert 0.75 * cap - 1e-9 <= value <= min(60.0, 1.25 * cap)
