from __future__ import annotations

import pytest

from dicom_node.contracts import JobState
from dicom_node.jobs.states import (
    ALLOWED_TRANSITIONS,
    DeliveryState,
    InvalidTransition,
    check_transition,
    job_state_after_deliveries,
)

S = JobState

# The happy path and the documented detours, written out by hand from the brief.
MUST_ALLOW = [
    (S.QUEUED, S.RUNNING),
    (S.RUNNING, S.ENCODED),
    (S.ENCODED, S.DELIVERING),
    (S.DELIVERING, S.DELIVERED),
    (S.RUNNING, S.QUEUED),  # transient error, retried
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.DEAD),
    (S.DELIVERING, S.FAILED),
    (S.DELIVERING, S.DEAD),
    (S.FAILED, S.QUEUED),  # operator requeue of the model run
    (S.DEAD, S.QUEUED),
    (S.FAILED, S.DELIVERING),  # operator requeue of the delivery
    (S.DEAD, S.DELIVERING),
    (S.QUEUED, S.SKIPPED),
    (S.QUEUED, S.SUPERSEDED),
    (S.DELIVERED, S.SUPERSEDED),  # a late series supersedes delivered results
]

MUST_FORBID = [
    (S.DELIVERED, S.RUNNING),  # a delivered job is never re-run
    (S.DELIVERED, S.QUEUED),
    (S.DELIVERED, S.FAILED),
    (S.QUEUED, S.DELIVERED),  # results cannot appear without running
    (S.QUEUED, S.ENCODED),
    (S.RUNNING, S.DELIVERED),  # must be encoded first
    (S.SKIPPED, S.QUEUED),
    (S.SKIPPED, S.RUNNING),
    (S.SUPERSEDED, S.QUEUED),
    (S.SUPERSEDED, S.DELIVERING),
    (S.FAILED, S.RUNNING),  # a requeue goes through QUEUED (audited), not straight to running
    (S.DEAD, S.ENCODED),
]


@pytest.mark.parametrize(("a", "b"), MUST_ALLOW)
def test_allowed_transitions(a: JobState, b: JobState) -> None:
    assert check_transition("job", a, b) is True


@pytest.mark.parametrize(("a", "b"), MUST_FORBID)
def test_forbidden_transitions_raise(a: JobState, b: JobState) -> None:
    with pytest.raises(InvalidTransition) as info:
        check_transition("job-1", a, b)
    assert info.value.from_state == a and info.value.to_state == b
    assert "job-1" in str(info.value)


@pytest.mark.parametrize("state", list(JobState))
def test_same_state_is_a_no_op(state: JobState) -> None:
    assert check_transition("job", state, state) is False


def test_every_state_has_a_row_and_final_states_have_no_way_out() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(JobState)
    assert ALLOWED_TRANSITIONS[S.SKIPPED] == frozenset()
    assert ALLOWED_TRANSITIONS[S.SUPERSEDED] == frozenset()


D = DeliveryState


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([D.DELIVERED, D.DELIVERED], S.DELIVERED),
        ([], S.DELIVERED),  # no destination (shadow mode): nothing to send
        ([D.DELIVERED, D.SENDING], None),
        ([D.FAILED, D.RETRYING], None),  # wait for the retry before judging
        ([D.DELIVERED, D.FAILED], S.FAILED),
        ([D.DEAD, D.FAILED], S.DEAD),
        ([D.PENDING], None),
    ],
)
def test_job_state_after_deliveries(states: list[DeliveryState], expected: JobState | None) -> None:
    assert job_state_after_deliveries(states) == expected
