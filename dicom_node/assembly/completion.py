"""When is a study complete? A pure function of (what is known about the study, now).

What really says "complete", and what does not:

* **The end of an association is no signal on its own.** A PACS or router commonly sends a study
  series by series, one association per series, seconds apart; a modality sends the whole study
  in one association. Only a sender configured as "one association per study"
  (``AllowedPeer.one_association_per_study``, or ``completion.association_release`` for every
  sender) has its release count (after ``association_release_grace_s``, with no association still
  carrying the study). An aborted association is never a signal: the sender may retry.
* **Announced series sizes cannot say a study is complete** (NumberOfSeriesRelatedInstances or
  ImagesInAcquisition describe one series; nothing in a C-STORE says how many series follow), but
  they can say it is not: a series with fewer instances than it announced holds the study for at
  least ``incomplete_series_quiet_s`` of quiet (``completion.expected_counts``), and a release
  with such a series short is no signal either.
* **The quiet period** (no routable instance for ``quiet_period_s``: settings.completion,
  overridden per calling AE by ``AllowedPeer.quiet_period_s`` and per study by the rules) is the
  signal every sender gets. It is counted from the last instance, or from the restart of the
  serve process for a study recovered from staging: a restart never shortens it (the sender may
  have been sending, or retrying, while the node was down).
* **Forced maximum age**: ``max_age_s`` since the first instance of this round (or since the
  restart, for a recovered study), whatever else is still arriving (a sender that never stops must
  not block the study forever).

Checked in this order; the first that holds is the recorded reason. Times are POSIX seconds
(wall clock: restart recovery compares them with file mtimes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from dicom_node.contracts import CompletionReason
from dicom_node.settings import CompletionSettings


@dataclass(frozen=True)
class CompletionPolicy:
    """The completion settings that apply to one study (sender and rules already resolved)."""

    quiet_period_s: float
    association_release: bool = False  # True: the sender sends one association per study
    association_release_grace_s: float = 1.0
    expected_counts: bool = True  # a series short of its announced size holds the study
    incomplete_series_quiet_s: float = 60.0
    max_age_s: float = 1800.0

    @classmethod
    def from_settings(
        cls,
        completion: CompletionSettings,
        *,
        quiet_period_s: float | None = None,
        one_association_per_study: bool = False,
    ) -> CompletionPolicy:
        return cls(
            quiet_period_s=quiet_period_s if quiet_period_s is not None else completion.quiet_period_s,
            association_release=completion.association_release or one_association_per_study,
            association_release_grace_s=completion.association_release_grace_s,
            expected_counts=completion.expected_counts,
            incomplete_series_quiet_s=completion.incomplete_series_quiet_s,
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
    # When the serve process recovered this study from staging after a restart (None: it did
    # not): the quiet period counts from here at the earliest.
    recovered_at: float | None = None


@dataclass(frozen=True)
class CompletionDecision:
    reason: CompletionReason
    detail: str


def short_series(series_counts: Mapping[str, tuple[int, int | None]]) -> dict[str, tuple[int, int]]:
    """Series with fewer instances than they announced: UID -> (received, announced)."""
    return {
        uid: (count, expected)
        for uid, (count, expected) in series_counts.items()
        if expected is not None and count < expected
    }


def decide(facts: StudyFacts, now: float, policy: CompletionPolicy) -> CompletionDecision | None:
    """The first completion signal that holds at ``now``, or None to keep waiting."""
    short = short_series(facts.series_counts) if policy.expected_counts else {}
    if (
        policy.association_release
        and not short
        and facts.released_at is not None
        and facts.open_associations == 0
    ):
        since = now - max(facts.released_at, facts.last_received_at)
        if since >= policy.association_release_grace_s:
            return CompletionDecision(
                CompletionReason.ASSOCIATION_RELEASED,
                f"association released (the sender sends one association per study), "
                f"nothing new for {since:.1f} s",
            )
    quiet_from = facts.last_received_at
    if facts.recovered_at is not None:
        quiet_from = max(quiet_from, facts.recovered_at)
    quiet_s = now - quiet_from
    needed_s = policy.quiet_period_s
    why = f"quiet period {policy.quiet_period_s:g} s"
    if short:
        needed_s = max(needed_s, policy.incomplete_series_quiet_s)
        received, announced = next(iter(short.values()))
        why = (
            f"{len(short)} series short of its announced size (e.g. {received} of {announced}): "
            f"waited {needed_s:g} s"
        )
    if quiet_s >= needed_s:
        restart = " since the serve process restarted" if quiet_from != facts.last_received_at else ""
        return CompletionDecision(
            CompletionReason.QUIET_PERIOD, f"no new instance for {quiet_s:.1f} s{restart} ({why})"
        )
    # A recovered study's age counts from the restart too: else any study older than max_age_s
    # when the node comes back would be forced out at the first sweep, partial or not.
    age_s = now - max(facts.first_received_at, facts.recovered_at or 0.0)
    if age_s >= policy.max_age_s:
        return CompletionDecision(
            CompletionReason.MAX_AGE,
            f"forced after {age_s:.0f} s (max age {policy.max_age_s:g} s) while instances still arrived",
        )
    return None
