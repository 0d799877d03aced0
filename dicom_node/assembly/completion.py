"""When is a study complete? A pure function of (what is known about the study, now).

Signals, checked in this order (the first that holds is the recorded reason):

1. **expected instance count** (``completion.expected_counts``): every series that has routable
   instances announced its size (``InstanceStored.expected_series_instances``:
   NumberOfSeriesRelatedInstances, else ImagesInAcquisition of single-frame CT; see
   ``dicom_node.ingest.classify``) and has at least that many, and the study has been quiet for
   the settle time (``association_release_grace_s``) so that a next series already on its way
   can still start. A series without an announced size disables this signal for the study.
2. **association released** (``completion.association_release``): an association that carried
   this study ended with A-RELEASE, no association carrying it is still open, and nothing arrived
   for ``association_release_grace_s`` after the release (or the last instance, if later). An
   aborted association is no signal: the sender may retry.
3. **quiet period**: no routable instance for ``quiet_period_s`` (settings.completion, overridden
   per calling AE by ``AllowedPeer.quiet_period_s``, and per study by an override function).
4. **forced maximum age**: ``max_age_s`` since the first instance of this round, whatever else is
   still arriving (a sender that never stops must not block the study forever).

Times are POSIX seconds (wall clock: restart recovery compares them with file mtimes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from dicom_node.contracts import CompletionReason
from dicom_node.settings import CompletionSettings


@dataclass(frozen=True)
class CompletionPolicy:
    """The completion settings that apply to one study (quiet period already resolved)."""

    quiet_period_s: float
    association_release: bool = True
    association_release_grace_s: float = 1.0
    expected_counts: bool = True
    max_age_s: float = 1800.0

    @classmethod
    def from_settings(
        cls, completion: CompletionSettings, *, quiet_period_s: float | None = None
    ) -> CompletionPolicy:
        return cls(
            quiet_period_s=quiet_period_s if quiet_period_s is not None else completion.quiet_period_s,
            association_release=completion.association_release,
            association_release_grace_s=completion.association_release_grace_s,
            expected_counts=completion.expected_counts,
            max_age_s=completion.max_age_s,
        )


@dataclass(frozen=True)
class StudyFacts:
    """What the decision needs to know about one study with undispatched instances."""

    first_received_at: float  # first instance of this round (since the last dispatch)
    last_received_at: float  # latest routable instance
    open_associations: int  # associations that carried this study and are still open
    released_at: float | None  # when the last such association was released (None: not yet)
    # series UID -> (routable instances received, announced size or None)
    series_counts: Mapping[str, tuple[int, int | None]]


@dataclass(frozen=True)
class CompletionDecision:
    reason: CompletionReason
    detail: str


def _expected_counts_met(series_counts: Mapping[str, tuple[int, int | None]]) -> bool:
    if not series_counts:
        return False
    return all(expected is not None and count >= expected for count, expected in series_counts.values())


def decide(facts: StudyFacts, now: float, policy: CompletionPolicy) -> CompletionDecision | None:
    """The first completion signal that holds at ``now``, or None to keep waiting."""
    quiet_s = now - facts.last_received_at
    if (
        policy.expected_counts
        and _expected_counts_met(facts.series_counts)
        and quiet_s >= policy.association_release_grace_s
    ):
        total = sum(count for count, _ in facts.series_counts.values())
        return CompletionDecision(
            CompletionReason.EXPECTED_COUNT,
            f"all {len(facts.series_counts)} series have their announced instance count ({total} instances)",
        )
    if policy.association_release and facts.released_at is not None and facts.open_associations == 0:
        since = now - max(facts.released_at, facts.last_received_at)
        if since >= policy.association_release_grace_s:
            return CompletionDecision(
                CompletionReason.ASSOCIATION_RELEASED,
                f"association released, nothing new for {since:.1f} s",
            )
    if quiet_s >= policy.quiet_period_s:
        return CompletionDecision(
            CompletionReason.QUIET_PERIOD,
            f"no new instance for {quiet_s:.1f} s (quiet period {policy.quiet_period_s:g} s)",
        )
    age_s = now - facts.first_received_at
    if age_s >= policy.max_age_s:
        return CompletionDecision(
            CompletionReason.MAX_AGE,
            f"forced after {age_s:.0f} s (max age {policy.max_age_s:g} s) while instances still arrived",
        )
    return None
