"""The plugin's worker thread: Orthanc change events in, routing submissions out.

Orthanc calls ``OnChange`` on its single change thread, so the callback only enqueues
(:meth:`Dispatcher.notify`); everything that talks to Orthanc's REST API, the spool or the broker
happens here, on the dispatcher's own thread:

* ``STABLE_STUDY`` → read a snapshot of the study, run the feedback guard, and if it says
  "submit", record the decision in the spool and publish it (reason ``orthanc-stable-study``).
* ``NEW_CHILD_INSTANCE`` at series level → count instances per series; when a series reaches
  the size it announced (ImagesInAcquisition), check the whole study early: if every routable
  series is complete by count, submit now (reason ``expected-instance-count``) instead of
  waiting StableAge. The later STABLE_STUDY then finds the same SOP set and is skipped.
* Publishing failures (broker down) leave the submission in the spool; it is retried with
  exponential backoff (``RetryBaseSeconds`` doubling up to ``RetryMaxSeconds``, ±25 % jitter)
  until the broker takes it, also across Orthanc restarts.
* Catch-up after a restart: Orthanc forgets studies that were not yet stable when it stopped,
  and events between the callback and the spool live only in memory. The dispatcher keeps a
  watermark on Orthanc's change log (``/changes``), committed only when no study is open, nothing
  is queued, and no event arrived for a grace period after the sequence number was read. On
  ``ORTHANC_STARTED`` every study touched by a change after the watermark is checked again
  (after StableAge); the guard skips those already submitted.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from dicom_node.backoff import backoff_delay_s
from dicom_node.contracts import CompletionReason, StudyStable
from dicom_node.errors import PipelineError, TransientError
from plugins.orthanc.config import PluginConfig
from plugins.orthanc.guard import NodeResultClassifier, decide
from plugins.orthanc.publisher import RoutingPublisher
from plugins.orthanc.snapshot import (
    OrthancApi,
    OrthancNotFound,
    fetch_snapshot,
    positive_int,
    route_task_id,
    study_stable_from,
)
from plugins.orthanc.spool import Spool

log = logging.getLogger(__name__)

WATERMARK_KEY = "orthanc_changes_watermark"
_CHANGES_PAGE = 500


class EventKind(StrEnum):
    STABLE_STUDY = "stable-study"
    INSTANCE_IN_SERIES = "instance-in-series"  # NEW_CHILD_INSTANCE, series level
    INSTANCE_IN_STUDY = "instance-in-study"  # NEW_CHILD_INSTANCE, study level
    STARTED = "orthanc-started"
    STOP = "stop"


@dataclass(frozen=True)
class Event:
    kind: EventKind
    resource_id: str = ""


@dataclass
class _Check:
    due_at: float
    reason: CompletionReason
    detail: str
    attempts: int = 0


@dataclass
class _SeriesCount:
    orthanc_study_id: str
    expected: int | None
    count: int


@dataclass
class _WatermarkCandidate:
    seq: int
    read_at: float
    events_seen: int


@dataclass
class DispatcherStats:
    """Counters for tests and logs."""

    submitted: int = 0
    skipped: int = 0
    publish_failures: int = 0
    checks: int = 0
    recovered_studies: int = 0
    skip_reasons: list[str] = field(default_factory=list)


def backoff_s(attempts: int, *, base_s: float, max_s: float, rng: random.Random) -> float:
    """Exponential backoff for the ``attempts``-th failure (1-based), capped, with ±25 % jitter."""
    return backoff_delay_s(max(1, attempts), base_s=base_s, max_s=max_s, jitter=rng, mode="equal")


class Dispatcher:
    """Owns the spool and the broker connection; fed by :meth:`notify` from any thread."""

    def __init__(
        self,
        *,
        api: OrthancApi,
        spool: Spool,
        publisher: RoutingPublisher,
        classifier: NodeResultClassifier,
        config: PluginConfig,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.api = api
        self.spool = spool
        self.publisher = publisher
        self.classifier = classifier
        self.config = config
        self.clock = clock
        self.rng = rng or random.Random()
        self.stats = DispatcherStats()
        self._inbox: queue.Queue[Event] = queue.Queue()
        self._checks: dict[str, _Check] = {}
        self._series: dict[str, _SeriesCount] = {}
        self._open_studies: dict[str, float] = {}
        self._count_check_after: dict[str, float] = {}
        self._events_seen = 0
        self._watermark: _WatermarkCandidate | None = None
        self._next_watermark_at = 0.0
        # Orthanc refuses REST calls from plugins until it has started (error 2038): checks and
        # the watermark wait for ORTHANC_STARTED; spooled sends need no REST and go at once.
        self.started = False
        self._recovery_due = False
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- feeding (any thread, no I/O) ---------------------------------------------------------

    def notify(self, event: Event) -> None:
        """Queue an event; safe and cheap on Orthanc's change thread."""
        self._inbox.put(event)

    # -- thread ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ctnode-orthanc-dispatcher", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping.set()
        self._inbox.put(Event(EventKind.STOP))
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.run_once(wait_s=self._wait_s())
            except Exception:  # process edge: the thread must survive any single failure
                log.exception("dispatcher iteration failed; continuing")
                self._stopping.wait(1.0)

    def _wait_s(self) -> float:
        now = self.clock()
        candidates = [now + 5.0]
        if self._checks and self.started:
            candidates.append(min(c.due_at for c in self._checks.values()))
        spool_due = self.spool.next_due_at()
        if spool_due is not None:
            candidates.append(spool_due)
        if self._watermark is not None:
            candidates.append(self._watermark.read_at + self.config.watermark_grace_s)
        return max(0.0, min(candidates) - now)

    # -- one step (called by the thread, or directly by tests) ---------------------------------

    def run_once(self, *, wait_s: float = 0.0) -> None:
        """Handle queued events (waiting up to ``wait_s`` for the first), due checks, due sends."""
        events: list[Event] = []
        with contextlib.suppress(queue.Empty):
            events.append(self._inbox.get(timeout=wait_s) if wait_s > 0 else self._inbox.get_nowait())
            while True:
                events.append(self._inbox.get_nowait())
        for event in events:
            self._handle(event)
        if self._recovery_due:
            self.recover()  # raises: stays due, retried on the next iteration
            self._recovery_due = False
        if self.started:
            self._run_due_checks()
        self.flush()
        if self.started:
            self._maybe_advance_watermark()

    def _handle(self, event: Event) -> None:
        now = self.clock()
        if event.kind is EventKind.STOP:
            return
        self._events_seen += 1
        if event.kind is EventKind.STABLE_STUDY:
            self._forget_study_counters(event.resource_id)
            self._schedule(event.resource_id, now, CompletionReason.ORTHANC_STABLE, "Orthanc STABLE_STUDY")
        elif event.kind is EventKind.INSTANCE_IN_STUDY:
            self._open_studies[event.resource_id] = now
        elif event.kind is EventKind.INSTANCE_IN_SERIES:
            if self.config.expected_counts:
                self._count_instance(event.resource_id, now)
        elif event.kind is EventKind.STARTED:
            self.started = True
            self._recovery_due = True

    def _schedule(self, orthanc_study_id: str, due_at: float, reason: CompletionReason, detail: str) -> None:
        existing = self._checks.get(orthanc_study_id)
        # A stable event outranks an early count check; otherwise keep the earliest due time.
        if existing is None or reason is CompletionReason.ORTHANC_STABLE or due_at < existing.due_at:
            self._checks[orthanc_study_id] = _Check(due_at=due_at, reason=reason, detail=detail)

    # -- expected counts ---------------------------------------------------------------------

    def _count_instance(self, orthanc_series_id: str, now: float) -> None:
        entry = self._series.get(orthanc_series_id)
        if entry is None:
            try:
                series = self.api.get_json(f"/series/{orthanc_series_id}")
            except OrthancNotFound:
                return
            tags = series.get("MainDicomTags", {})
            expected = positive_int(series.get("ExpectedNumberOfInstances")) or positive_int(
                tags.get("ImagesInAcquisition")
            )
            # Counted from Orthanc at first sight (the events already queued for this series may
            # count twice: harmless, the study check below verifies against Orthanc itself).
            entry = _SeriesCount(str(series["ParentStudy"]), expected, len(series.get("Instances", [])))
            self._series[orthanc_series_id] = entry
        else:
            entry.count += 1
        study = entry.orthanc_study_id
        if (
            entry.expected is not None
            and entry.count >= entry.expected
            and study not in self._checks
            and now >= self._count_check_after.get(study, 0.0)
        ):
            # At most one early check per study and second while a series sits at/over its count.
            self._count_check_after[study] = now + 1.0
            self._schedule(
                study,
                now,
                CompletionReason.EXPECTED_COUNT,
                "every series has its announced ImagesInAcquisition count (Orthanc)",
            )

    def _forget_study_counters(self, orthanc_study_id: str) -> None:
        self._open_studies.pop(orthanc_study_id, None)
        self._count_check_after.pop(orthanc_study_id, None)
        for series_id in [k for k, v in self._series.items() if v.orthanc_study_id == orthanc_study_id]:
            del self._series[series_id]

    # -- checks ------------------------------------------------------------------------------

    def _run_due_checks(self) -> None:
        now = self.clock()
        for study_id, check in sorted(self._checks.items(), key=lambda kv: kv[1].due_at):
            if check.due_at > now:
                continue
            del self._checks[study_id]
            try:
                self.check_study(study_id, check.reason, check.detail)
            except Exception as exc:  # Orthanc REST or spool failure: try again later, never drop
                check.attempts += 1
                check.due_at = now + backoff_s(
                    check.attempts,
                    base_s=self.config.retry_base_s,
                    max_s=self.config.retry_max_s,
                    rng=self.rng,
                )
                self._checks.setdefault(study_id, check)
                log.warning(
                    "study check failed (attempt %d): %s: %s",
                    check.attempts,
                    type(exc).__name__,
                    exc,
                    extra={"orthanc_study_id": study_id},
                )

    def check_study(self, orthanc_study_id: str, reason: CompletionReason, detail: str) -> bool:
        """Snapshot the study, apply the guard, and record + publish a submission. True if submitted."""
        self.stats.checks += 1
        now = self.clock()
        snapshot = fetch_snapshot(
            self.api, orthanc_study_id, classifier=self.classifier, now=datetime.fromtimestamp(now, UTC)
        )
        if snapshot is None:
            return False
        if reason is CompletionReason.EXPECTED_COUNT and not snapshot.complete_by_counts:
            for s in snapshot.series:  # re-sync the counters with what Orthanc really holds
                if s.orthanc_series_id in self._series:
                    self._series[s.orthanc_series_id].count = len(s.sop_instance_uids)
            return False
        decision = decide(
            snapshot.routable_sop_instance_uids,
            node_result_count=snapshot.node_result_count,
            previous_digest=self.spool.last_digest(orthanc_study_id),
        )
        context = {"orthanc_study_id": orthanc_study_id, "study": snapshot.study_instance_uid}
        if not decision.submit:
            self.stats.skipped += 1
            self.stats.skip_reasons.append(decision.reason)
            log.info("not submitting study: %s", decision.reason, extra=context)
            return False
        stable = study_stable_from(
            snapshot,
            reason=reason,
            reason_detail=f"{detail}; {decision.reason}",
            orthanc_url=self.config.orthanc_url,
            stable_at=datetime.fromtimestamp(now, UTC),
        )
        task_id = route_task_id(orthanc_study_id, decision.sop_set_digest)
        self.spool.record_decision(
            task_id=task_id,
            orthanc_study_id=orthanc_study_id,
            sop_set_digest=decision.sop_set_digest,
            payload=stable.model_dump_json(),
            now=now,
        )
        self.stats.submitted += 1
        log.info(
            "study queued for routing (%s, %d routable instances): %s",
            reason.value,
            stable.instance_count,
            decision.reason,
            extra={**context, "task_id": task_id},
        )
        return True

    # -- sending -----------------------------------------------------------------------------

    def flush(self) -> int:
        """Publish every due spooled submission; return how many the broker accepted."""
        sent = 0
        for item in self.spool.due(self.clock()):
            try:
                self.publisher.publish(StudyStable.model_validate_json(item.payload), task_id=item.task_id)
            except PipelineError as exc:
                # Never dropped: a broker outage (TransientError) heals by itself; anything else
                # needs an operator (logged as an error) and is retried with the same backoff.
                self.stats.publish_failures += 1
                attempts = item.attempts + 1
                delay = backoff_s(
                    attempts, base_s=self.config.retry_base_s, max_s=self.config.retry_max_s, rng=self.rng
                )
                self.spool.mark_failed(item.task_id, error=str(exc), next_attempt_at=self.clock() + delay)
                log.log(
                    logging.WARNING if isinstance(exc, TransientError) else logging.ERROR,
                    "routing submission not sent (attempt %d), retry in %.1f s: %s",
                    attempts,
                    delay,
                    exc,
                    extra={"orthanc_study_id": item.orthanc_study_id, "task_id": item.task_id},
                )
                break  # the broker is down: the rest would fail the same way
            self.spool.mark_sent(item.task_id, now=self.clock())
            sent += 1
            log.info(
                "routing submission sent after %d failed attempts",
                item.attempts,
                extra={"orthanc_study_id": item.orthanc_study_id, "task_id": item.task_id},
            )
        return sent

    # -- restart catch-up --------------------------------------------------------------------

    def recover(self) -> int:
        """Re-check studies changed since the committed watermark; return how many were scheduled."""
        self.spool.make_all_due(self.clock())
        last = int(self.api.get_json("/changes?last")["Last"])
        stored = self.spool.get_meta(WATERMARK_KEY)
        if stored is None:
            # First run: history before the plugin was installed is not ours to process.
            self.spool.set_meta(WATERMARK_KEY, str(last))
            return 0
        since = int(stored)
        studies: set[str] = set()
        parents: dict[str, str | None] = {}
        while since < last:
            page = self.api.get_json(f"/changes?since={since}&limit={_CHANGES_PAGE}")
            changes = page.get("Changes", [])
            for change in changes:
                study = self._study_of_change(change, parents)
                if study is not None:
                    studies.add(study)
            if not changes or page.get("Done", True):
                break
            since = int(page["Last"])
        due = self.clock() + self.config.stable_age_s
        for study in sorted(studies):
            self._schedule(study, due, CompletionReason.ORTHANC_STABLE, "re-checked after Orthanc restart")
        self.stats.recovered_studies += len(studies)
        if studies:
            log.info("re-checking %d studies changed while the plugin was not watching", len(studies))
        return len(studies)

    def _study_of_change(self, change: dict[str, Any], parents: dict[str, str | None]) -> str | None:
        level = change.get("ResourceType")
        resource = str(change.get("ID", ""))
        if change.get("ChangeType") == "Deleted" or not resource:
            return None
        if level == "Study":
            return resource
        if level not in ("Series", "Instance"):
            return None
        key = f"{level}/{resource}"
        if key not in parents:
            path = "series" if level == "Series" else "instances"
            try:
                parents[key] = str(self.api.get_json(f"/{path}/{resource}/study")["ID"])
            except OrthancNotFound:
                parents[key] = None
        return parents[key]

    def _maybe_advance_watermark(self) -> None:
        now = self.clock()
        # Spooled submissions are durable already: only in-memory state holds the watermark back.
        if self._open_studies or self._checks or not self._inbox.empty():
            self._watermark = None
            return
        if self._watermark is None:
            if now < self._next_watermark_at:
                return
            self._next_watermark_at = now + self.config.watermark_interval_s
            seq = int(self.api.get_json("/changes?last")["Last"])
            self._watermark = _WatermarkCandidate(seq=seq, read_at=now, events_seen=self._events_seen)
            return
        if self._watermark.events_seen != self._events_seen:
            self._watermark = None
            return
        if now - self._watermark.read_at >= self.config.watermark_grace_s:
            self.spool.set_meta(WATERMARK_KEY, str(self._watermark.seq))
            self._watermark = None
