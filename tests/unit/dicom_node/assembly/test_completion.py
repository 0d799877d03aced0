"""The pure completion decision, one signal at a time, at explicit times."""

from __future__ import annotations

import pytest

from dicom_node.assembly.completion import CompletionPolicy, StudyFacts, decide
from dicom_node.contracts import CompletionReason
from dicom_node.settings import CompletionSettings

POLICY = CompletionPolicy(
    quiet_period_s=8.0,
    association_release=True,
    association_release_grace_s=1.0,
    expected_counts=True,
    max_age_s=100.0,
)


def facts(
    *,
    first: float = 0.0,
    last: float = 10.0,
    open_associations: int = 0,
    released_at: float | None = None,
    series: dict[str, tuple[int, int | None]] | None = None,
) -> StudyFacts:
    return StudyFacts(
        first_received_at=first,
        last_received_at=last,
        open_associations=open_associations,
        released_at=released_at,
        series_counts=series if series is not None else {"s1": (5, None)},
    )


def test_nothing_holds_while_instances_are_arriving() -> None:
    assert decide(facts(open_associations=1), 10.5, POLICY) is None


def test_quiet_period_fires_at_exactly_the_quiet_period() -> None:
    assert decide(facts(open_associations=1), 17.9, POLICY) is None
    decision = decide(facts(open_associations=1), 18.0, POLICY)
    assert decision is not None and decision.reason == CompletionReason.QUIET_PERIOD
    assert "8" in decision.detail


def test_association_release_after_grace() -> None:
    released = facts(released_at=10.2)
    assert decide(released, 11.1, POLICY) is None  # grace counts from the release
    decision = decide(released, 11.2, POLICY)
    assert decision is not None and decision.reason == CompletionReason.ASSOCIATION_RELEASED


def test_release_is_no_signal_while_another_association_carries_the_study() -> None:
    assert decide(facts(released_at=10.0, open_associations=1), 12.0, POLICY) is None


def test_release_signal_can_be_turned_off() -> None:
    policy = CompletionPolicy(quiet_period_s=8.0, association_release=False)
    assert decide(facts(released_at=10.0), 12.0, policy) is None


def test_announced_counts_alone_never_complete_a_study() -> None:
    complete = {"s1": (100, 100), "s2": (3, 3)}
    assert decide(facts(series=complete, open_associations=1), 17.9, POLICY) is None
    decision = decide(facts(series=complete, open_associations=1), 18.0, POLICY)
    assert decision is not None and decision.reason == CompletionReason.QUIET_PERIOD


def test_a_short_series_holds_the_study_and_the_release() -> None:
    policy = CompletionPolicy(quiet_period_s=8.0, association_release=True, incomplete_series_quiet_s=60.0)
    partial = {"s1": (100, 100), "s2": (2, 3)}
    assert decide(facts(series=partial, released_at=10.0), 69.9, policy) is None
    decision = decide(facts(series=partial, released_at=10.0), 70.0, policy)
    assert decision is not None and decision.reason == CompletionReason.QUIET_PERIOD
    assert "short of its announced size (e.g. 2 of 3)" in decision.detail
    # the hold can be turned off
    off = CompletionPolicy(quiet_period_s=8.0, association_release=True, expected_counts=False)
    decision = decide(facts(series=partial, released_at=10.0), 11.0, off)
    assert decision is not None and decision.reason == CompletionReason.ASSOCIATION_RELEASED


def test_a_restart_never_shortens_the_quiet_period() -> None:
    recovered = StudyFacts(
        first_received_at=0.0,
        last_received_at=10.0,
        open_associations=0,
        released_at=None,
        series_counts={"s1": (5, None)},
        recovered_at=500.0,
    )
    assert decide(recovered, 507.9, POLICY) is None
    decision = decide(recovered, 508.0, POLICY)
    assert decision is not None and decision.reason == CompletionReason.QUIET_PERIOD
    assert "since the serve process restarted" in decision.detail


def test_max_age_forces_completion_while_instances_still_arrive() -> None:
    still_arriving = facts(first=0.0, last=99.5, open_associations=1)
    assert decide(still_arriving, 99.9, POLICY) is None
    decision = decide(still_arriving, 100.0, POLICY)
    assert decision is not None and decision.reason == CompletionReason.MAX_AGE


@pytest.mark.parametrize("override", [None, 2.5])
def test_policy_from_settings(override: float | None) -> None:
    settings = CompletionSettings(quiet_period_s=6.0, max_age_s=50.0)
    policy = CompletionPolicy.from_settings(settings, quiet_period_s=override)
    assert policy.quiet_period_s == (override or 6.0)
    assert policy.max_age_s == 50.0


def test_policy_for_a_one_association_per_study_sender() -> None:
    settings = CompletionSettings()
    assert CompletionPolicy.from_settings(settings).association_release is False  # the default
    assert CompletionPolicy.from_settings(settings, one_association_per_study=True).association_release
    assert CompletionPolicy.from_settings(CompletionSettings(association_release=True)).association_release
